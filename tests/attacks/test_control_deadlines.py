"""
Slow clients against a real node's control API on loopback: headers sent
a byte a second (slowloris) are cut at ControlChannel.headerTimeout, a body
that stalls at ControlChannel.bodyWindow, both with a 408; the node serves
other clients meanwhile.  (About 30 s of real time: the two run at once.)
"""

from pathlib import Path
from types import SimpleNamespace

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tau.control.client import readAPIAddress
from tau.control.intake import ControlChannel
from tests.processes import TWISTD, spawn, stopped


class _Client(Protocol):
    def __init__(self):
        self.received = b""
        self.lost = Deferred()

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost.callback(None)


class DeadlineTests(TestCase):
    timeout = 180

    def test_slowClientsCut(self):
        """
        A slowloris on the headers and a stalled body are both answered 408
        and cut (within the loop's bound); an id call meanwhile is served.
        """
        async def t():
            root = Path(self.mktemp()).resolve()
            node = spawn(reactor, TWISTD + ["-n", "--pidfile=", "taubyte", f"--root={root}",
                                            "--listen=/ip4/127.0.0.1/tcp/0"])
            self.addCleanup(stopped, node)
            await node.waitFor(b"reachable at", timeout=60)
            addr = readAPIAddress(SimpleNamespace(apiFile=root / "storage" / "full" / "api", shape="full", root=root))
            port = int(addr.value_for_protocol("tcp"))
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)

            loris, staller = _Client(), _Client()
            await connectProtocol(endpoint, loris)
            await connectProtocol(endpoint, staller)
            loris.transport.write(b"POST /api/v0/add HTTP/1.1\r\nHost: x\r\n")
            staller.transport.write(b"POST /api/v0/add HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"
                                    + b"s" * 1000)
            limit = int(ControlChannel.bodyWindow + ControlChannel.headerTimeout) + 10
            for second in range(limit):
                if loris.lost.called and staller.lost.called:
                    break
                if not loris.lost.called:
                    loris.transport.write(b"X")   # one header byte a second
                if second == 3:
                    response = await treq.post(f"http://127.0.0.1:{port}/api/v0/id", persistent=False)
                    self.assertEqual(response.code, 200)
                    await response.content()
                await deferLater(reactor, 1, lambda: None)
            for client in (loris, staller):
                if not client.lost.called:
                    client.transport.abortConnection()
            self.assertTrue(loris.received.startswith(b"HTTP/1.1 408 "), loris.received)
            self.assertIn(b"the request headers came too slowly", loris.received)
            self.assertTrue(staller.received.startswith(b"HTTP/1.1 408 "), staller.received)
            self.assertIn(b"the request body came too slowly", staller.received)
            self.assertTrue(loris.lost.called and staller.lost.called)
        return Deferred.fromCoroutine(t())
