"""
Tests for L{tau.protocols.ping}.
"""

from twisted.internet.defer import Deferred
from twisted.internet.error import TimeoutError
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tau.protocols import ping
from tau.protocols.ping import ID, PingError, PingResponder, PingService
from tau.protocols.yamux import StreamReset
from tau.streams import StreamProtocol
from tests.protocols.fakehost import Pair


class HalfCloseTransport(StringTransport):
    def __init__(self):
        super().__init__()
        self.aborted = False

    def abortConnection(self):
        self.aborted = True


class ResponderTests(SynchronousTestCase):
    def test_echoWholePings(self) -> None:
        """
        Only complete 32-byte pings are echoed, however the bytes arrive.
        """
        transport = HalfCloseTransport()
        responder = PingResponder()
        responder.makeConnection(transport)
        data = bytes(range(64))
        responder.dataReceived(data[:10])
        self.assertEqual(transport.value(), b"")
        responder.dataReceived(data[10:40])
        self.assertEqual(transport.value(), data[:32])
        responder.dataReceived(data[40:])
        self.assertEqual(transport.value(), data)

    def test_closeAtEOF(self) -> None:
        transport = HalfCloseTransport()
        responder = PingResponder()
        responder.makeConnection(transport)
        responder.readConnectionLost()
        self.assertTrue(transport.disconnecting)

    def test_idleTimeout(self) -> None:
        clock = Clock()
        transport = HalfCloseTransport()
        responder = PingResponder(clock, idleTimeout=60)
        responder.makeConnection(transport)
        clock.advance(50)
        responder.dataReceived(b"x" * 32)
        clock.advance(50)
        self.assertFalse(transport.aborted)
        clock.advance(10)
        self.assertTrue(transport.aborted)


    def test_unreadPongsPauseReading(self) -> None:
        """
        While echoes wait for the peer's window (it does not read them),
        the responder reads no more pings; it reads again once they left.
        """
        transport = WindowTransport()
        responder = PingResponder()
        responder.makeConnection(transport)
        responder.dataReceived(b"a" * 32)
        self.assertFalse(transport.paused)
        transport.full = True
        responder.dataReceived(b"b" * 32)
        self.assertTrue(transport.paused)
        transport.drain()
        self.assertFalse(transport.paused)
        self.assertEqual(transport.value(), b"a" * 32 + b"b" * 32)


class WindowTransport(HalfCloseTransport):
    """
    A transport whose writes wait for the peer's window while C{full}.
    """

    def __init__(self):
        super().__init__()
        self.full = False
        self.paused = False
        self.waiting = []

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False

    def whenDrained(self):
        d = Deferred()
        if self.full:
            self.waiting.append(d)
        else:
            d.callback(None)
        return d

    def drain(self):
        self.full = False
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(None)


class Silent(Protocol):
    pass


class Corrupt(Protocol):
    def dataReceived(self, data):
        self.transport.write(bytes(b ^ 0xFF for b in data))


class PingEndToEndTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pair = Pair()
        self.a, self.b = self.pair.a, self.pair.b

    def streams(self):
        return (self.pair.client.streamCount, self.pair.server.streamCount)

    def test_ping(self) -> None:
        """
        RTTs are measured with the host clock on one stream, which is
        closed on both ends afterwards.
        """
        service = ping.install(self.b)
        self.assertEqual(self.b.protocols(), [ID])
        d = self.pair.run(ping.ping(self.a, self.b.peerID, count=3), step=0.25)
        rtts = self.successResultOf(d)
        self.assertEqual(len(rtts), 3)
        for rtt in rtts:
            self.assertGreater(rtt, 0)
            self.assertAlmostEqual(rtt / 0.25, round(rtt / 0.25))
        self.assertEqual(self.streams(), (0, 0))
        self.assertEqual(service.active(self.a.peerID), 0)

    def test_echoMismatch(self) -> None:
        self.b.setProtocolFactory(ID, lambda stream: Corrupt())
        d = self.pair.run(ping.ping(self.a, self.b.peerID))
        self.failureResultOf(d, PingError)
        self.assertEqual(self.streams(), (0, 0))

    def test_timeout(self) -> None:
        self.b.setProtocolFactory(ID, lambda stream: Silent())
        d = self.pair.run(ping.ping(self.a, self.b.peerID, timeout=5))
        self.assertNoResult(d)
        self.pair.clock.advance(5)
        self.pair.run()
        self.failureResultOf(d, TimeoutError)
        self.assertEqual(self.streams(), (0, 0))

    def test_twoStreamsPerPeer(self) -> None:
        """
        A third concurrent ping stream from one peer is reset; once one
        closes, a new one is served.
        """
        ping.install(self.b)
        streams = [self.successResultOf(self.pair.run(self.a.newStream(self.b.peerID, [ID])))
                   for _ in range(3)]
        for s in streams:
            s.write(b"p" * 32)
        self.pair.run()
        self.assertEqual([len(s._buffer) for s in streams], [32, 32, 0])
        self.assertTrue(streams[2].transport.disconnected)
        d = self.pair.run(streams[2].readExactly(32))
        self.failureResultOf(d, StreamReset)
        streams[0].closeWrite()
        self.pair.run()
        self.successResultOf(self.pair.run(ping.ping(self.a, self.b.peerID)))

    def test_countsPerPeer(self) -> None:
        service = PingService(Clock(), maxPerPeer=1)

        class S:
            def __init__(self, peer):
                self.remotePeer = peer

        first = service(S("p1"))
        self.assertIsInstance(first, PingResponder)
        self.assertNotIsInstance(service(S("p1")), PingResponder)
        self.assertIsInstance(service(S("p2")), PingResponder)
        first.makeConnection(HalfCloseTransport())
        first.connectionLost(None)
        self.assertIsInstance(service(S("p1")), PingResponder)

    def test_resetByServer(self) -> None:
        """
        A ping whose stream is reset fails with the reset.
        """

        class Reset(Protocol):
            def dataReceived(self, data):
                self.transport.abortConnection()

        self.b.setProtocolFactory(ID, lambda stream: Reset())
        d = self.pair.run(ping.ping(self.a, self.b.peerID))
        self.failureResultOf(d, StreamReset)

    def test_pipelinedAnswerBeforeClose(self) -> None:
        """
        The responder answers pings written together, and closes after the
        requester's FIN.
        """
        ping.install(self.b)
        stream = self.successResultOf(self.pair.run(self.a.newStream(self.b.peerID, [ID])))
        self.assertIsInstance(stream, StreamProtocol)
        stream.write(b"a" * 32 + b"b" * 32)
        stream.closeWrite()
        data = self.successResultOf(self.pair.run(stream.readToEnd(1000)))
        self.assertEqual(data, b"a" * 32 + b"b" * 32)
        self.assertEqual(self.streams(), (0, 0))
