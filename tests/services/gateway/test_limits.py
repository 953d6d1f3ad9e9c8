"""
The gateway's limits on a public listener, each at its edge, over real
loopback TCP: header bytes and lines (431), body size (413), slow and idle
clients, connections per client address (429).  The gateway keeps serving
after each.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.services.gateway.helpers import TestSubstrate, WebsiteMetrics, cloud, curl, digest


class Raw(Protocol):
    """
    A client that sends bytes as told and keeps what comes back.
    """

    def __init__(self):
        self.received = bytearray()
        self.closed = Deferred()
        self.answered = Deferred()

    def dataReceived(self, data):
        self.received += data
        if b"\r\n\r\n" in self.received and not self.answered.called:
            self.answered.callback(bytes(self.received))

    def connectionLost(self, reason):
        if not self.answered.called:
            self.answered.callback(bytes(self.received))
        self.closed.callback(bytes(self.received))

    def status(self):
        return int(bytes(self.received).split(b" ", 2)[1])


class LimitTests(TestCase):
    timeout = 60

    async def start(self, **config):
        self.substrate = TestSubstrate(WebsiteMetrics(1.0), digest)
        self.service, _, self.url = await cloud(self, self.substrate, **config)
        self.port = self.service.ports()["http"].getHost().port

    async def connect(self):
        raw = Raw()
        await TCP4ClientEndpoint(reactor, "127.0.0.1", self.port).connect(Factory.forProtocol(lambda: raw))
        self.addCleanup(lambda: raw.transport.abortConnection() if raw.transport.connected else None)
        return raw

    async def exchange(self, data):
        raw = await self.connect()
        raw.transport.write(data)
        await raw.closed
        return raw

    async def stillServes(self):
        status, _, _ = await curl("-H", "Host: a.example.com", self.url + "/")
        self.assertEqual(status, 200)

    def request(self, padTo=None, headers=(), body=b"", extra=b""):
        lines = [b"GET / HTTP/1.1", b"Host: a.example.com", b"Connection: close", *headers]
        if body:
            lines.append(b"Content-Length: %d" % len(body))
        if padTo is not None:
            used = sum(len(line) for line in lines) + len(b"X-Pad: ")
            lines.append(b"X-Pad: " + b"p" * (padTo - used))
        return b"\r\n".join(lines) + b"\r\n\r\n" + body + extra

    async def test_headerBytes(self):
        await self.start(**{"max-header-bytes": 1024})
        raw = await self.exchange(self.request(padTo=1024))
        self.assertEqual(raw.status(), 200)
        raw = await self.exchange(self.request(padTo=1025))
        self.assertEqual(raw.status(), 431)
        self.assertIn(b"over 1024 bytes", raw.received)
        await self.stillServes()

    async def test_hugeHeadersWithCurl(self):
        """
        The default limit (16 KiB): curl sending 64 KiB of headers gets
        431.
        """
        await self.start()
        status, _, body = await curl("-H", "Host: a.example.com", "-H", "X-Big: " + "b" * 65536, self.url + "/")
        self.assertEqual(status, 431)
        await self.stillServes()

    async def test_headerLines(self):
        await self.start(**{"max-headers": 10})
        # Host and Connection are two of them
        eight = [b"X-H%d: v" % i for i in range(8)]
        raw = await self.exchange(self.request(headers=eight))
        self.assertEqual(raw.status(), 200)
        raw = await self.exchange(self.request(headers=eight + [b"X-One: more"]))
        self.assertEqual(raw.status(), 431)
        self.assertIn(b"more than 10 header lines", raw.received)
        await self.stillServes()

    async def test_bodyByContentLength(self):
        await self.start(**{"max-body": 1000})
        raw = await self.exchange(self.request(body=b"b" * 1000))
        self.assertEqual(raw.status(), 200)
        self.assertIn(b"X-Received: 1000", raw.received)
        raw = await self.exchange(self.request(body=b"b" * 1001))
        self.assertEqual(raw.status(), 413)
        # refused on its Content-Length: the substrate never heard of it
        self.assertEqual(len(self.substrate.asked), 1)
        await self.stillServes()

    async def test_chunkedBody(self):
        await self.start(**{"max-body": 1000})
        status, headers, _ = await curl("-H", "Host: a.example.com", "-H", "Transfer-Encoding: chunked",
                                        "--data-binary", "c" * 1000, self.url + "/")
        self.assertEqual(status, 200)
        self.assertEqual(headers["x-received"], "1000")
        status, _, _ = await curl("-H", "Host: a.example.com", "-H", "Transfer-Encoding: chunked",
                                  "--data-binary", "c" * 1001, self.url + "/")
        self.assertEqual(status, 413)
        await self.stillServes()

    async def test_chunkedBodyRefusedWhileForwarding(self):
        """
        A chunked body passing max-body while the request is already on its
        way to the substrate (its first MiB forwarded): the client reads
        its 413.  The end of the body used to make the tunnel answer 502
        first, synchronously, closing the connection under the client's
        still-coming bytes: a reset, and the client read nothing.
        """
        await self.start(**{"max-body": 1 << 20})
        chunk = b"%x\r\n%s\r\n" % (64 << 10, b"c" * (64 << 10))
        for i in range(10):
            raw = await self.connect()
            raw.transport.write(self.request(headers=[b"Transfer-Encoding: chunked"]) + chunk * 17 + b"0\r\n\r\n")
            await raw.closed
            self.assertEqual(raw.status(), 413, bytes(raw.received))
        await self.stillServes()

    async def test_slowHeaders(self):
        """
        A client sending its headers a line at a time, slower than
        header-timeout in all: 408 and closed.
        """
        await self.start(**{"header-timeout": 0.3})
        raw = await self.connect()
        raw.transport.write(b"GET / HTTP/1.1\r\n")
        received = await raw.closed
        self.assertIn(b" 408 ", received)
        await self.stillServes()

    async def test_idleClient(self):
        """
        A client that connects and sends nothing is dropped after
        idle-timeout.
        """
        await self.start(**{"idle-timeout": 0.3})
        raw = await self.connect()
        started = reactor.seconds()
        await raw.closed
        self.assertGreaterEqual(reactor.seconds() - started, 0.25)
        await self.stillServes()

    async def test_connectionsPerClient(self):
        await self.start(**{"max-per-client": 2})
        first, second = await self.connect(), await self.connect()
        third = await self.connect()
        await third.closed
        self.assertEqual(third.status(), 429)
        first.transport.loseConnection()
        await first.closed
        second.transport.write(self.request())
        await second.closed
        self.assertEqual(second.status(), 200)
        await self.stillServes()

    async def test_clientNotReadingItsAnswer(self):
        """
        A client that stops reading a long answer is dropped after
        idle-timeout, and the substrate's stream with it.
        """
        await self.start(**{"idle-timeout": 0.5})
        raw = await self.connect()
        raw.transport.write(self.request(headers=[b"X-Size: %d" % (64 << 20)]))
        await raw.answered
        raw.transport.pauseProducing()
        await self.substrate.streams[0].whenClosed()
        raw.transport.resumeProducing()
        received = await raw.closed
        self.assertLess(len(received), 64 << 20)
        await self.stillServes()

    async def test_keepAliveAndPipelining(self):
        """
        Three requests on one connection, the second with a body, sent at
        once: three answers, in order.
        """
        await self.start()
        first = b"GET /1 HTTP/1.1\r\nHost: a.example.com\r\n\r\n"
        second = b"POST /2 HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 5\r\n\r\nhello"
        third = b"GET /3 HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n"
        raw = await self.exchange(first + second + third)
        received = bytes(raw.received)
        self.assertEqual(received.count(b"HTTP/1.1 200 OK"), 3, received)
        self.assertIn(b"X-Received: 5", received)
        self.assertEqual([body["path"] for _, body in self.substrate.asked], ["/1", "/2", "/3"])

    async def test_absoluteForm(self):
        await self.start()
        raw = await self.exchange(b"GET http://b.example.com/x?y=1 HTTP/1.1\r\nHost: a.example.com\r\n"
                                  b"Connection: close\r\n\r\n")
        self.assertEqual(raw.status(), 200)
        self.assertEqual(self.substrate.asked[0][1], {"host": "b.example.com", "path": "/x", "method": "GET"})


class NoDelayTests(SynchronousTestCase):
    def test_noNagle(self):
        """
        A client's connection runs without Nagle: an answer written in two
        turns does not wait for the client's delayed ACK (40 ms on Linux)
        between them.
        """
        from tau.services.gateway.config import GatewayConfig
        from tau.services.gateway.http import GatewaySite

        class TCPTransport(StringTransport):
            noDelay = False

            def setTcpNoDelay(self, enabled):
                self.noDelay = enabled

        site = GatewaySite(None, GatewayConfig(), MemoryReactorClock())
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
        transport = TCPTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5000))
        channel.makeConnection(transport)
        self.assertTrue(transport.noDelay)
        channel.connectionLost(None)
