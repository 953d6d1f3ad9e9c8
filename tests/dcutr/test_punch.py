"""
The hole punch's dials: which addresses, from which port, and the socket
options that let them share the relay connection's port.
"""

import socket

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tau.dcutr.punch import MAX_DIALS, PunchFailed, allowReuse, dialable, localPortOf, punch, punchAny, tcpTransportOf
from tests.hosts import addressOf, startHost


class DialableTests(SynchronousTestCase):
    def test_publicTCPOnly(self):
        """
        Public IP TCP addresses are kept, without their /p2p suffix; relayed,
        private, loopback, DNS and non-TCP ones are not.
        """
        got = dialable(
            [
                "/ip4/11.0.1.2/tcp/4001/p2p/12D3KooWSAbmEtgz9gg6bpNZ7m31aQHWEMEa26GXjCx3Cg5vYgBm",
                "/ip4/11.0.1.1/tcp/1/p2p/12D3KooWSAbmEtgz9gg6bpNZ7m31aQHWEMEa26GXjCx3Cg5vYgBm/p2p-circuit",
                "/ip4/10.1.0.2/tcp/4001",
                "/ip4/127.0.0.1/tcp/4001",
                "/ip4/192.168.1.2/tcp/4001",
                "/dns4/example.com/tcp/4001",
                "/ip4/11.0.1.2/udp/4001/quic-v1",
                "/ip6/2606:4700::1/tcp/4002",
                "/ip4/11.0.1.2/tcp/4001",
            ]
        )
        self.assertEqual(got, ["/ip4/11.0.1.2/tcp/4001", "/ip6/2606:4700::1/tcp/4002"])

    def test_limit(self):
        addrs = [f"/ip4/11.0.0.{i}/tcp/1" for i in range(10)]
        self.assertEqual(dialable(addrs), addrs[:MAX_DIALS])
        self.assertEqual(dialable(addrs, limit=1), addrs[:1])


class PunchDialTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()

    def test_boundToThePortWithReuse(self):
        """
        The dial leaves from the given local port, with SO_REUSEADDR (the
        relay connection holds that port too).
        """
        d = Deferred.fromCoroutine(
            punch(object(), "/ip4/11.0.1.2/tcp/4001", None, isClient=True, localPort=5555, timeout=3, reactor=self.reactor)
        )
        host, port, factory, timeout, binding = self.reactor.tcpClients[0]
        self.assertEqual((host, port, timeout), ("11.0.1.2", 4001, 3))
        self.assertEqual((binding._address, binding._port, binding._reuseAddress), ("0.0.0.0", 5555, True))
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        e = self.failureResultOf(d, PunchFailed).value
        self.assertIn("/ip4/11.0.1.2/tcp/4001", str(e))

    def test_ipv6Unbound(self):
        """
        An IPv6 address is dialed from C{::}; no local port, no binding.
        """
        Deferred.fromCoroutine(punch(object(), "/ip6/2606:4700::1/tcp/4001", None, isClient=False, localPort=7, reactor=self.reactor))
        Deferred.fromCoroutine(punch(object(), "/ip4/11.0.0.1/tcp/1", None, isClient=False, reactor=self.reactor))
        self.assertEqual(self.reactor.tcpClients[0][4]._address, "::")
        self.assertIsNone(self.reactor.tcpClients[1][4])

    def test_cancelStopsConnecting(self):
        d = Deferred.fromCoroutine(punch(object(), "/ip4/11.0.1.2/tcp/4001", None, isClient=True, reactor=self.reactor))
        connector = self.reactor.connectors[0]
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(connector.stoppedConnecting)

    def test_anyFailsWithEveryReason(self):
        """
        When every address fails, the error names each.
        """
        d = Deferred.fromCoroutine(
            punchAny(object(), ["/ip4/11.0.0.1/tcp/1", "/ip4/11.0.0.2/tcp/2"], None, isClient=True, reactor=self.reactor)
        )
        for client in self.reactor.tcpClients:
            client[2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        e = self.failureResultOf(d, PunchFailed).value
        self.assertIn("11.0.0.1", str(e))
        self.assertIn("11.0.0.2", str(e))

    def test_anyNoAddress(self):
        d = Deferred.fromCoroutine(punchAny(object(), [], None, isClient=True, reactor=self.reactor))
        self.assertIn("no public address", str(self.failureResultOf(d, PunchFailed).value))


class ReuseTests(TestCase):
    async def test_relayPortShared(self):
        """
        After L{allowReuse}, a socket with SO_REUSEADDR binds the local port
        of a live host connection and connects elsewhere from it.
        """
        a = await startHost(self)
        b = await startHost(self)
        c = await startHost(self)
        conn = await a.connect(addressOf(b))
        port = localPortOf(conn)
        self.assertEqual(conn.localAddr, f"/ip4/127.0.0.1/tcp/{port}")
        self.assertIsNotNone(tcpTransportOf(conn))
        self.assertTrue(allowReuse(conn))
        s = socket.socket()
        self.addCleanup(s.close)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.connect(("127.0.0.1", int(str(c.listenAddresses()[0]).rsplit("/", 1)[1])))
        self.assertEqual(s.getsockname()[1], port)
