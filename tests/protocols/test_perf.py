"""
Tests for L{tau.protocols.perf}.
"""

import struct

from twisted.internet.error import TimeoutError
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides, implementer

from tau.protocols import perf
from tau.protocols.perf import ID, PerfClient, PerfError, PerfServer, PerfService
from tau.protocols.yamux import StreamReset
from tests.protocols.fakehost import Pair

KiB = 1024
MiB = 1024 * KiB


class AbortableTransport(StringTransport):
    def __init__(self):
        super().__init__()
        self.aborted = False
        self.written = 0

    def write(self, data):
        self.written += len(data)

    def abortConnection(self):
        self.aborted = True


class ServerTests(SynchronousTestCase):
    def test_headerInPieces(self) -> None:
        """
        The 8-byte header may arrive in pieces and with upload bytes.
        """
        server = PerfServer()
        server.makeConnection(AbortableTransport())
        header = struct.pack(">Q", 1234)
        server.dataReceived(header[:3])
        self.assertIsNone(server.requested)
        server.dataReceived(header[3:] + b"x" * 10)
        self.assertEqual((server.requested, server.received), (1234, 10))
        server.dataReceived(b"y" * 100)
        self.assertEqual(server.received, 110)

    def test_sendsAfterEOF(self) -> None:
        """
        Nothing is sent before the upload ends; then exactly the requested
        bytes, and the stream is closed.
        """
        transport = AbortableTransport()
        server = PerfServer(chunkSize=64 * KiB)
        server.makeConnection(transport)
        server.dataReceived(struct.pack(">Q", 200 * KiB + 5))
        self.assertEqual(transport.written, 0)
        server.readConnectionLost()
        self.assertEqual(transport.written, 200 * KiB + 5)
        self.assertTrue(transport.disconnecting)
        self.assertIsNone(transport.producer)

    def test_tooLarge(self) -> None:
        transport = AbortableTransport()
        server = PerfService(maxDownload=1000)(None)
        server.makeConnection(transport)
        server.dataReceived(struct.pack(">Q", 1001))
        self.assertTrue(transport.aborted)

    def test_maxUint64Refused(self) -> None:
        transport = AbortableTransport()
        server = PerfServer()
        server.makeConnection(transport)
        server.dataReceived(b"\xff" * 8)
        self.assertTrue(transport.aborted)

    def test_eofBeforeHeader(self) -> None:
        transport = AbortableTransport()
        server = PerfServer()
        server.makeConnection(transport)
        server.dataReceived(b"\0\0\0")
        server.readConnectionLost()
        self.assertTrue(transport.aborted)
        self.assertEqual(transport.written, 0)

    def test_pausedProducer(self) -> None:
        """
        The sender stops when paused and goes on when resumed.
        """
        transport = AbortableTransport()

        def write(data):
            transport.written += len(data)
            transport.producer.pauseProducing()

        transport.write = write
        server = PerfServer(chunkSize=64 * KiB)
        server.makeConnection(transport)
        server.dataReceived(struct.pack(">Q", 3 * 64 * KiB))
        server.readConnectionLost()
        self.assertEqual(transport.written, 64 * KiB)
        transport.producer.resumeProducing()
        self.assertEqual(transport.written, 128 * KiB)
        transport.producer.resumeProducing()
        self.assertEqual(transport.written, 192 * KiB)
        self.assertIsNone(transport.producer)
        self.assertTrue(transport.disconnecting)

    def test_chunkSizeBounds(self) -> None:
        self.assertRaises(ValueError, PerfService, chunkSize=100)
        self.assertRaises(ValueError, PerfService, chunkSize=1 * MiB)


class PerfEndToEndTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pair = Pair()
        self.a, self.b = self.pair.a, self.pair.b
        self.servers = []
        service = perf.install(self.b)

        def factory(stream):
            server = service(stream)
            self.servers.append(server)
            return server

        self.b.setProtocolFactory(ID, factory)

    def streams(self):
        return (self.pair.client.streamCount, self.pair.server.streamCount)

    def perf(self, upload, download, **kw):
        return self.pair.run(perf.perf(self.a, self.b.peerID, upload, download, **kw), step=0.001)

    def test_exactCounts(self) -> None:
        """
        The server reads exactly the upload and the client exactly the
        download (sizes not multiples of the chunk, larger than a window).
        """
        result = self.successResultOf(self.perf(1 * MiB + 3, 3 * MiB + 7))
        [server] = self.servers
        self.assertEqual((server.requested, server.received), (3 * MiB + 7, 1 * MiB + 3))
        self.assertEqual(result["upload"][0], 1 * MiB + 3)
        self.assertEqual(result["download"][0], 3 * MiB + 7)
        self.assertGreater(result["upload"][1], 0)
        self.assertGreater(result["download"][1], 0)
        self.assertEqual(self.streams(), (0, 0))

    def test_zero(self) -> None:
        result = self.successResultOf(self.perf(0, 0))
        self.assertEqual(result["upload"][0], 0)
        self.assertEqual(result["download"][0], 0)
        self.assertEqual(self.servers[0].received, 0)
        self.assertEqual(self.streams(), (0, 0))

    def test_small(self) -> None:
        result = self.successResultOf(self.perf(1, 2, chunkSize=1024))
        self.assertEqual((result["upload"][0], result["download"][0]), (1, 2))
        self.assertEqual(self.servers[0].received, 1)

    def test_uploadOnly(self) -> None:
        self.successResultOf(self.perf(256 * KiB, 0, chunkSize=256 * KiB))
        self.assertEqual(self.servers[0].received, 256 * KiB)

    def test_refused(self) -> None:
        service = PerfService(maxDownload=1000)
        self.b.setProtocolFactory(ID, service)
        self.failureResultOf(self.perf(10, 1001), StreamReset)
        self.assertEqual(self.streams(), (0, 0))
        self.successResultOf(self.perf(10, 1000))

    def test_shortAnswer(self) -> None:
        """
        A server that sends fewer bytes than asked makes the client fail.
        """

        class Short(Protocol):
            def dataReceived(self, data):
                pass

            def readConnectionLost(self):
                self.transport.write(b"x" * 10)
                self.transport.loseConnection()

        def factory(stream):
            p = Short()
            directlyProvides(p, IHalfCloseableProtocol)
            return p

        self.b.setProtocolFactory(ID, factory)
        self.failureResultOf(self.perf(5, 11), PerfError)

    def test_longAnswer(self) -> None:
        class Long(Protocol):
            def dataReceived(self, data):
                self.transport.write(b"x" * 20)

        self.b.setProtocolFactory(ID, lambda stream: Long())
        self.failureResultOf(self.perf(5, 11), PerfError)
        self.assertEqual(self.streams(), (0, 0))

    def test_timeout(self) -> None:
        @implementer(IHalfCloseableProtocol)
        class Silent(Protocol):
            def readConnectionLost(self):
                pass

        self.b.setProtocolFactory(ID, lambda stream: Silent())
        d = self.pair.run(perf.perf(self.a, self.b.peerID, 10, 10, timeout=30))
        self.assertNoResult(d)
        self.pair.clock.advance(30)
        self.pair.run()
        self.failureResultOf(d, TimeoutError)
        self.assertEqual(self.streams(), (0, 0))

    def test_clientValidates(self) -> None:
        self.assertRaises(ValueError, PerfClient, Clock(), -1, 0)
        self.assertRaises(ValueError, PerfClient, Clock(), 0, 1 << 64)
