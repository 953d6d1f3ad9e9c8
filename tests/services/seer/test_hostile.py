"""
seer's DNS server under hostile input (issue 15 item 6), over real UDP and
TCP on loopback with the server's clock a L{Clock}: malformed packets get
FORMERR or NOTIMP or nothing, TCP connections that send nothing or too
much are bounded, a flood from one address is cut to its rate, and a
normal query (real C{dig}) is answered afterwards.  The parse path is
fuzzed with hypothesis.
"""

import shutil
import struct

from hypothesis import given, settings, strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.task import Clock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from tau.services.seer.dns import SeerDatagramProtocol, SeerDNSFactory, Zones
from tau.services.seer.guard import MAX_NAME, Limits, SourceLimit, formatError, readQuery
from tau.services.seer.registry import Registry
from tests.services.seer.test_dns import FQDN, TTL, Catcher, DNSTestCase, live

NAME = f"gateway.tau.{FQDN}"


def query(name=NAME, ident=77, type=dns.A):
    message = dns.Message(id=ident)
    message.addQuery(name.encode(), type)
    return message.toStr()


def header(ident=77, flags=0, qd=1, an=0, ns=0, ar=0):
    return struct.pack("!HHHHHH", ident, flags, qd, an, ns, ar)


def pointerBomb(labels=1000, questions=250):
    """
    One 64 KiB message: a name of C{labels} 63-byte labels, then
    C{questions - 1} questions pointing at it.
    """
    name = b"".join(b"\x3f" + b"a" * 63 for _ in range(labels)) + b"\x00"
    pointer = struct.pack("!HHH", 0xC000 | 12, 1, 1)
    return header(qd=questions) + name + struct.pack("!HH", 1, 1) + pointer * (questions - 1)


class HostileTestCase(DNSTestCase):
    async def setUp(self):
        await super().setUp()
        live(self.registry, "gw1", {"gateway": {"IP": "127.0.0.10"}})
        self.catcher = Catcher()
        port = reactor.listenUDP(0, self.catcher, interface="127.0.0.1")
        self.addCleanup(port.stopListening)

    def send(self, data):
        self.catcher.transport.write(data, ("127.0.0.1", self.udp.getHost().port))

    async def reply(self, packet):
        waiting = self.catcher.next()
        self.send(packet)
        reply = dns.Message()
        reply.fromStr(await waiting)
        return reply

    async def dig(self, *args, source="127.0.0.1", transport="+notcp"):
        port = self.udp if transport == "+notcp" else self.tcp
        out, err, code = await getProcessOutputAndValue(
            shutil.which("dig"), ("+time=5", "+tries=1", "-b", source, "-p", str(port.getHost().port),
                                  "@127.0.0.1", transport, *args), env={}, reactor=reactor)
        self.assertEqual(code, 0, err)
        return out.decode()

    async def stillServes(self, source="127.0.0.1", transport="+notcp"):
        """
        A normal query from real dig is answered.
        """
        out = await self.dig("+short", NAME, "A", source=source, transport=transport)
        self.assertEqual(out.split(), ["127.0.0.10"])


class MalformedUDPTests(HostileTestCase):
    async def assertRCode(self, packet, rCode, ident=77):
        reply = await self.reply(packet)
        self.assertEqual((reply.id, reply.rCode, reply.answer), (ident, rCode, 1), packet[:40])

    async def test_formErr(self):
        """
        A truncated question, a label longer than what follows, a
        compression loop, a pointer past the end, counts that are not one
        question and nothing else: FORMERR with the query's id.  dig is
        answered afterwards.
        """
        whole = query()
        packets = [
            whole[:-3],                                              # truncated question
            whole[:12],                                              # no question at all
            header() + b"\x3f" + b"a" * 5,                           # label of 63, 5 bytes follow
            header() + b"\xc0\x0c" + b"\x00\x01\x00\x01",            # a name pointing at itself
            header() + b"\x01a\xc0\x0c\x00\x01\x00\x01",             # a loop through one label
            header() + b"\xc3\xff\x00\x01\x00\x01",                  # a pointer past the end
            header(qd=0xFFFF) + whole[12:],                          # huge question count
            header(qd=0) + whole[12:],
            header(qd=2) + whole[12:] + whole[12:],
            header(an=0xFFFF) + whole[12:],                          # huge answer count
            header(ns=1) + whole[12:],
            header(ar=3) + whole[12:],
            pointerBomb()[:4096],
        ]
        for packet in packets:
            await self.assertRCode(packet, dns.EFORMAT)
        await self.stillServes()

    async def test_pointerBombOverTCP(self):
        """
        The 64 KiB message of 250 questions pointing at one 1000-label
        name (half a second of twisted.names parsing) is refused on its
        header: FORMERR over TCP, and the server answers at once after.
        """
        replies = []
        done = Deferred()

        class Bomber(Protocol):
            def connectionMade(self):
                bomb = pointerBomb()
                self.transport.write(struct.pack("!H", len(bomb)) + bomb)

            def dataReceived(self, data):
                replies.append(data)
                self.transport.loseConnection()

            def connectionLost(self, reason):
                done.callback(None)

        reactor.connectTCP("127.0.0.1", self.tcp.getHost().port, ClientFactory.forProtocol(Bomber))
        await done
        reply = dns.Message()
        reply.fromStr(b"".join(replies)[2:])
        self.assertEqual(reply.rCode, dns.EFORMAT)
        await self.stillServes(transport="+tcp")

    async def test_otherOpcodesNotImplemented(self):
        """
        STATUS, NOTIFY and UPDATE get NOTIMP without being read.
        """
        for opCode in (dns.OP_STATUS, dns.OP_NOTIFY, dns.OP_UPDATE):
            await self.assertRCode(header(flags=opCode << 11, qd=0xFFFF) + b"\xff" * 30, dns.ENOTIMP)

    async def test_sizeAtTheEdge(self):
        """
        A query of exactly C{maxQuery} bytes is answered, one byte more is
        FORMERR; a name of 253 characters is answered, 254 is FORMERR.
        """
        whole = query()
        padded = whole + b"\x00" * (self.limits.maxQuery - len(whole))
        reply = await self.reply(padded)
        self.assertEqual((reply.rCode, self.addresses(reply)), (dns.OK, ["127.0.0.10"]))
        await self.assertRCode(padded + b"\x00", dns.EFORMAT)
        longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
        self.assertEqual(len(longest), MAX_NAME)
        reply = await self.reply(query(longest))
        self.assertEqual(reply.rCode, dns.EREFUSED)
        await self.assertRCode(query(longest + "d"), dns.EFORMAT)

    async def test_dropped(self):
        """
        Fewer than 12 bytes, and answers (even ones that do not parse), get
        nothing back.
        """
        self.send(b"\x00\x01\x02")
        self.send(b"\x00\x01\x80\x00" + b"\xff" * 20)
        self.send(header(flags=0x8000) + query()[12:])
        await self.stillServes()
        self.assertEqual(self.catcher.replies, [])


class ClientConnection(Protocol):
    """
    A TCP connection that sends C{data} when made.
    """

    def __init__(self, data=b""):
        self.data = data
        self.received = b""
        self.lost = Deferred()
        self.made = Deferred()

    def connectionMade(self):
        self.transport.write(self.data)
        self.made.callback(self)

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost.callback(None)


class TCPTests(HostileTestCase):
    limits = Limits(maxTCP=4, maxTCPPerSource=3, idle=10.0)

    async def connect(self, data=b"", source="127.0.0.1"):
        protocol = ClientConnection(data)
        reactor.connectTCP("127.0.0.1", self.tcp.getHost().port, ClientFactory.forProtocol(lambda: protocol),
                           bindAddress=(source, 0))
        self.addCleanup(lambda: protocol.transport.abortConnection() if protocol.transport.connected else None)
        await protocol.made
        return protocol

    async def settled(self, count):
        """
        Wait until the server holds C{count} connections.
        """
        deadline = reactor.seconds() + 5
        while len(self.factory.connections) != count:
            self.assertLess(reactor.seconds(), deadline, f"{len(self.factory.connections)} connections held")
            d = Deferred()
            reactor.callLater(0.01, d.callback, None)
            await d

    async def answer(self, protocol):
        """
        The next whole answer C{protocol} receives (within 5 seconds).
        """
        deadline = reactor.seconds() + 5
        while len(protocol.received) < 2 or len(protocol.received) < 2 + struct.unpack("!H", protocol.received[:2])[0]:
            self.assertLess(reactor.seconds(), deadline, "no answer")
            d = Deferred()
            reactor.callLater(0.01, d.callback, None)
            await d
        size = struct.unpack("!H", protocol.received[:2])[0]
        data, protocol.received = protocol.received[2:2 + size], protocol.received[2 + size:]
        return data

    async def test_lengthPastTheData(self):
        """
        A length prefix past what is sent, or the largest one with nothing
        after it: the connection is held until it has been idle C{idle}
        seconds, then closed.
        """
        short = await self.connect(struct.pack("!H", 500) + b"\x00" * 10)
        huge = await self.connect(b"\xff\xff")
        await self.settled(2)
        self.clock.advance(self.limits.idle - 0.1)
        self.assertFalse(short.lost.called or huge.lost.called)
        self.clock.advance(0.1)
        await short.lost
        await huge.lost
        self.assertEqual(short.received + huge.received, b"")
        await self.stillServes(transport="+tcp")

    async def test_garbageFrameFormErr(self):
        """
        A whole frame of garbage gets FORMERR; the connection stays for
        the next query, which is answered, and resets the idle time.
        """
        garbage = b"\x00\x07\x01\x00" + b"\xff" * 30
        protocol = await self.connect(struct.pack("!H", len(garbage)) + garbage)
        reply = dns.Message()
        reply.fromStr(await self.answer(protocol))
        self.assertEqual((reply.id, reply.rCode), (7, dns.EFORMAT))
        self.clock.advance(self.limits.idle - 1)
        protocol.transport.write(struct.pack("!H", len(query())) + query())
        reply.fromStr(await self.answer(protocol))
        self.assertEqual((reply.rCode, self.addresses(reply)), (dns.OK, ["127.0.0.10"]))
        self.clock.advance(self.limits.idle - 1)
        self.assertFalse(protocol.lost.called)

    async def test_connectionCaps(self):
        """
        Exactly C{maxTCPPerSource} connections from one address are held,
        one more is closed at once; so past C{maxTCP} from any address.
        Once one closes, dig over TCP is answered.
        """
        held = [await self.connect() for _ in range(3)]
        await self.settled(3)
        refused = await self.connect()
        await refused.lost
        other = await self.connect(source="127.0.0.2")
        await self.settled(4)
        refused = await self.connect(source="127.0.0.3")
        await refused.lost
        self.assertEqual(self.factory.tcpRefused, 2)
        self.assertFalse(any(p.lost.called for p in held + [other]))
        held[0].transport.loseConnection()
        await held[0].lost
        await self.settled(3)
        await self.stillServes(transport="+tcp")


class FloodTests(HostileTestCase):
    limits = Limits(rate=5, burst=5)

    async def test_ratePerSource(self):
        """
        One address gets C{burst} answers at once, then C{rate} a second
        (by the server's clock); past it queries are dropped, and another
        address is still answered.
        """
        for i in range(5):
            reply = await self.reply(query(ident=i))
            self.assertEqual(reply.id, i)
        self.send(query(ident=5))
        self.send(b"\xff" * 40)
        await self.stillServes(source="127.0.0.2")
        self.assertEqual(len(self.catcher.replies), 5)
        self.assertEqual(self.factory.sources.refused, 2)
        self.clock.advance(0.2)
        reply = await self.reply(query(ident=6))
        self.assertEqual(reply.id, 6)

    async def test_tcpOverRateClosed(self):
        """
        A TCP connection whose address is past its rate is closed.
        """
        for i in range(5):
            await self.reply(query(ident=i))
        protocol = ClientConnection(struct.pack("!H", len(query())) + query())
        reactor.connectTCP("127.0.0.1", self.tcp.getHost().port, ClientFactory.forProtocol(lambda: protocol))
        await protocol.lost
        self.assertEqual(protocol.received, b"")


class SourceLimitTests(SynchronousTestCase):
    def test_bucket(self):
        """
        C{burst} at once, then one per C{1/rate} seconds; addresses apart;
        the oldest address forgotten past C{maxSources}; rate 0 is no
        limit.
        """
        clock = Clock()
        limit = SourceLimit(clock, 10, 3, 2)
        self.assertEqual([limit.allow("a") for _ in range(4)], [True, True, True, False])
        self.assertTrue(limit.allow("b"))
        clock.advance(0.099)
        self.assertFalse(limit.allow("a"))
        clock.advance(0.001)
        self.assertTrue(limit.allow("a"))
        self.assertFalse(limit.allow("a"))
        limit.allow("c")
        # b was the oldest: forgotten, it starts with a full bucket again
        self.assertEqual([limit.allow("b") for _ in range(4)], [True, True, True, False])
        unlimited = SourceLimit(clock, 0, 0, 1)
        self.assertTrue(all(unlimited.allow("a") for _ in range(100)))


class FakeUDP:
    def __init__(self):
        self.sent = []

    def write(self, data, addr):
        self.sent.append(data)


labels = st.lists(st.one_of(
    st.binary(min_size=0, max_size=70).map(lambda b: bytes([len(b) % 256]) + b),
    st.integers(0, 0x3FFF).map(lambda o: struct.pack("!H", 0xC000 | o)),
    st.binary(min_size=1, max_size=3)), max_size=8).map(b"".join)


class ParseFuzzTests(SynchronousTestCase):
    def check(self, data, outcome):
        message, reply = outcome
        if len(data) < 12 or data[2] & 0x80:
            self.assertEqual((message, reply), (None, None))
            return
        if reply is not None:
            self.assertIsNone(message)
            parsed = dns.Message()
            parsed.fromStr(reply)
            self.assertEqual((parsed.id, parsed.answer), (struct.unpack("!H", data[:2])[0], 1))
            self.assertIn(parsed.rCode, (dns.EFORMAT, dns.ENOTIMP))
            return
        self.assertEqual(len(message.queries), 1)
        self.assertLessEqual(len(message.queries[0].name.name), MAX_NAME)

    @settings(max_examples=500, deadline=None)
    @given(st.binary(max_size=600))
    def test_anyBytes(self, data):
        """
        Any bytes: dropped (short, or an answer), an error answer with the
        packet's id, or one question no longer than a name may be.
        """
        self.check(data, readQuery(data))

    @settings(max_examples=500, deadline=None)
    @given(st.integers(0, 0xFFFF), st.integers(0, 0x7FFF), st.sampled_from([0, 1, 1, 1, 2, 0xFFFF]),
           st.sampled_from([0, 0, 1]), st.sampled_from([0, 0, 1, 2, 3]), labels,
           st.binary(max_size=8))
    def test_questionShapes(self, ident, flags, qd, an, ar, name, tail):
        """
        A header that claims a question followed by labels, pointers and
        junk: the same outcomes, never an exception.
        """
        data = header(ident, flags, qd, an, 0, ar) + name + tail
        self.check(data, readQuery(data))

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=300) | labels.map(lambda n: header(flags=0x0100) + n + b"\x00\x01\x00\x01"))
    def test_serverPath(self, data):
        """
        Through the UDP protocol and the server factory: whatever comes
        in, what goes out (if anything) is one DNS answer.
        """
        registry = Registry(Clock(), TTL, 10)
        live(registry, "gw1", {"gateway": {"IP": "127.0.0.10"}})
        factory = SeerDNSFactory(Zones(FQDN, "g." + FQDN, registry, TTL, 4), Clock())
        protocol = SeerDatagramProtocol(factory)
        protocol.transport = FakeUDP()
        protocol.datagramReceived(data, ("127.0.0.1", 5353))
        self.assertLessEqual(len(protocol.transport.sent), 1)
        for sent in protocol.transport.sent:
            reply = dns.Message()
            reply.fromStr(sent)
            self.assertEqual(reply.answer, 1)

    @given(st.binary(max_size=64))
    def test_formatErrorAnyBytes(self, data):
        """
        Any bytes: either nothing (short, or an answer) or a FORMERR answer
        with the packet's id.
        """
        reply = formatError(data)
        if len(data) < 12 or data[2] & 0x80:
            self.assertIsNone(reply)
        else:
            message = dns.Message()
            message.fromStr(reply)
            self.assertEqual((message.id, message.rCode, message.answer),
                             (struct.unpack("!H", data[:2])[0], dns.EFORMAT, 1))


class StreamProtocolTests(SynchronousTestCase):
    def setUp(self):
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        self.clock = Clock()
        registry = Registry(self.clock, TTL, 10)
        live(registry, "gw1", {"gateway": {"IP": "127.0.0.10"}})
        self.factory = SeerDNSFactory(Zones(FQDN, "g." + FQDN, registry, TTL, 4), self.clock, Limits(idle=5.0))
        self.protocol = self.factory.buildProtocol(None)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.9", 5353))
        self.protocol.makeConnection(self.transport)

    def test_unreadAnswersStopReading(self):
        """
        The connection is the producer of its answers: when they pile up
        (the transport pauses it), queries stop being read; they are read
        again once the answers drained.
        """
        self.assertIs(self.transport.producer, self.protocol)
        self.assertTrue(self.transport.streaming)
        self.protocol.pauseProducing()
        self.assertEqual(self.transport.producerState, "paused")
        self.protocol.resumeProducing()
        self.assertEqual(self.transport.producerState, "producing")

    def test_idleAndCounts(self):
        """
        A whole query is answered and resets the idle time; the connection
        is counted for its address until it is lost.
        """
        self.assertEqual(self.factory.tcpSources, {"127.0.0.9": 1})
        self.clock.advance(4)
        self.protocol.dataReceived(struct.pack("!H", len(query())) + query())
        reply = dns.Message()
        reply.fromStr(self.transport.value()[2:])
        self.assertEqual(reply.rCode, dns.OK)
        self.clock.advance(4)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(self.transport.disconnecting)
        self.protocol.connectionLost(None)
        self.assertEqual((self.factory.tcpSources, self.factory.connections), ({}, []))
