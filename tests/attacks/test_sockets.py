"""
Idle sockets against a real node: one address opening hundreds of TCP
connections that never speak must not keep a js-libp2p peer at another
address from dialing and pinging the node.

The attacker binds its sockets to 127.0.0.2, the js peer dials from
127.0.0.1: two addresses on Linux loopback, no setup needed.
"""

import re
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase

from tests.interop.jspeer import startJsPeer
from tests.processes import TWISTD, spawn, stopped

ATTACKER = "127.0.0.2"
SOCKETS = 300


class _Idle(Protocol):
    """
    A socket that never sends a byte.
    """

    def __init__(self, flood):
        self.flood = flood

    def connectionMade(self):
        self.flood.connected += 1
        self.flood.open.add(self)

    def connectionLost(self, reason):
        self.flood.open.discard(self)
        self.flood._lost()


class Flood:
    """
    C{sockets} idle TCP connections from C{source} to C{port}; each one the
    node drops is opened again after C{redial} seconds, at most C{budget}
    connection attempts in all.

    @ivar connected: connections the node accepted (TCP handshake done).
    @ivar open: the connections open now.
    """

    def __init__(self, port, *, source=ATTACKER, sockets=SOCKETS, redial=1.0, budget=3000):
        self.port = port
        self.source = source
        self.sockets = sockets
        self.redial = redial
        self.budget = budget
        self.connected = 0
        self.open = set()
        self._running = False
        self._attempts = 0
        self._timers = []
        self._pending = set()

    def start(self):
        """
        Open the sockets; the Deferred fires once every first attempt is
        done (connected, maybe already dropped, or failed).
        """
        self._running = True
        first = [self._connect() for _ in range(self.sockets)]
        return Deferred.fromCoroutine(self._all(first))

    async def _all(self, attempts):
        for d in attempts:
            await d

    def _connect(self):
        self._attempts += 1
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, timeout=5, bindAddress=(self.source, 0))
        d = connectProtocol(endpoint, _Idle(self))
        self._pending.add(d)
        d.addBoth(self._attempted, d)
        return d

    def _attempted(self, result, d):
        self._pending.discard(d)
        if not isinstance(result, Protocol):
            self._lost()

    def _lost(self):
        self._timers = [t for t in self._timers if t.active()]
        if self._running and self._attempts < self.budget:
            self._timers.append(reactor.callLater(self.redial, self._again))

    def _again(self):
        if self._running and self._attempts < self.budget:
            self._connect()

    def stop(self):
        self._running = False
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        for d in list(self._pending):
            d.cancel()
        for protocol in list(self.open):
            protocol.transport.abortConnection()


class IdleSocketTests(TestCase):
    timeout = 180

    async def startNode(self, config=None):
        root = Path(self.mktemp()).resolve()
        extra = []
        if config is not None:
            path = Path(self.mktemp()).resolve()
            path.write_text(config)
            extra = [f"--config={path}"]
        node = spawn(reactor, TWISTD + ["-n", "--pidfile=", "taubyte", f"--root={root}", "--listen=/ip4/127.0.0.1/tcp/0", *extra])
        self.addCleanup(stopped, node)
        await node.waitFor(b"reachable at")
        address = re.search(r"reachable at (\S+)", node.output()).group(1)
        return node, address

    async def attackAndPing(self, config=None):
        node, address = await self.startNode(config)
        port = int(address.split("/")[4])
        js = await startJsPeer(reactor, listen=[])
        self.addCleanup(js.stop)
        flood = Flood(port)
        self.addCleanup(flood.stop)
        await flood.start()
        # every socket got through the TCP handshake (the node accepts them
        # from its backlog as it goes)
        self.assertGreaterEqual(flood.connected, SOCKETS)
        dialed = await js.command("dial", addr=address, timeout=20)
        self.assertEqual(dialed["remoteAddr"], address)
        pinged = await js.command("ping", addr=address, timeout=20)
        self.assertGreaterEqual(pinged["rtt"], 0)
        # the attack was still on while the js peer got in, and the node
        # goes on refusing the attacker's address
        self.assertGreater(len(flood.open), 0)
        await node.waitFor(f"refusing inbound connections from {ATTACKER}: ".encode(), timeout=30)
        return node

    async def test_perAddressLimit(self):
        """
        300 idle sockets from 127.0.0.2, kept open (each one dropped is
        opened again): the node holds only a few of them, so a js-libp2p
        peer at 127.0.0.1 dials and pings it; the node says why it refuses
        127.0.0.2, and drops the ones it held once they stayed silent for
        3 s (not at the end of the 10 s upgrade timeout).
        """
        node = await self.attackAndPing()
        self.assertIn(f"refusing inbound connections from {ATTACKER}: 8 upgrades in progress (", node.output())
        await node.waitFor(b"failed during the upgrade: nothing received in 3.0s", timeout=30)
        self.assertRegex(node.output(), rf"inbound connection with /ip4/{re.escape(ATTACKER)}/tcp/\d+ failed during the upgrade: nothing received in 3.0s")
        self.assertNotIn("upgrade not done after", node.output())

    async def test_busiestAddressGivesWay(self):
        """
        With no limit per address, 300 idle sockets from 127.0.0.2 fill all
        the node's upgrade slots (32 here, so that they are full however
        slowly the kernel hands the node its backlog): the js peer's connection from
        127.0.0.1 still gets in, in place of the newest one from 127.0.0.2,
        and the attacker's next sockets are refused.
        """
        # silent connections kept for the whole upgrade timeout (10 s), so
        # that the slots stay full while the js peer dials
        node = await self.attackAndPing("connections:\n  max-upgrades: 32\n  max-upgrades-per-ip: 0\n  max-per-ip: 0\n  first-bytes: 10\n")
        output = node.output()
        self.assertIn(f"{ATTACKER} holds 32 of the 32 upgrade slots: its newest connection is dropped for one from 127.0.0.1", output)
        # the busiest address's newcomers are the ones refused
        self.assertRegex(output, rf"refusing inbound connections from {ATTACKER}: 3[12] upgrades in progress, all 32 upgrade slots taken")
