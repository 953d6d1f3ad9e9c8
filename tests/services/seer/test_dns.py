"""
seer's DNS over real UDP and TCP on loopback: answers with the live nodes
only, a TTL, NXDOMAIN in the zone, REFUSED outside it, and malformed
packets answered FORMERR or dropped while the server keeps serving.
"""

import shutil
import struct

from hypothesis import given, strategies as st
from twisted.internet import reactor, udp
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol, Protocol, ClientFactory
from twisted.internet.task import Clock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.names import client, dns
from twisted.trial.unittest import TestCase

from tau.services.seer.dns import SeerDNSFactory, Zones, formatError, listen, parseUDP
from tau.services.seer.registry import Registry

FQDN = "tau.example.com"
TTL = 60


class Catcher(DatagramProtocol):
    def __init__(self):
        self.replies = []
        self.waiting = None

    def datagramReceived(self, data, addr):
        self.replies.append(data)
        if self.waiting is not None:
            self.waiting, d = None, self.waiting
            d.callback(data)

    def next(self):
        self.waiting = Deferred()
        return self.waiting


class DNSTestCase(TestCase):
    async def setUp(self):
        self.clock = Clock()
        self.registry = Registry(self.clock, TTL, 100)
        self.zones = Zones(FQDN, "g." + FQDN, self.registry, TTL, 4)
        self.udp, self.tcp = await listen(reactor, SeerDNSFactory(self.zones), "udp:0:interface=127.0.0.1",
                                          "tcp:0:interface=127.0.0.1")
        self.addCleanup(self.udp.stopListening)
        self.addCleanup(self.tcp.stopListening)
        self.resolver = client.Resolver(servers=[("127.0.0.1", self.udp.getHost().port)], reactor=reactor)
        self.addCleanup(self._closeResolver)

    def _closeResolver(self):
        for p in list(self.resolver.connections):
            p.transport.loseConnection()

    def udpQuery(self, name, type=dns.A):
        return self.resolver.queryUDP([dns.Query(name, type, dns.IN)], timeout=(5,))

    def tcpQuery(self, name, type=dns.A):
        self.resolver.servers = [("127.0.0.1", self.tcp.getHost().port)]
        return self.resolver.queryTCP([dns.Query(name, type, dns.IN)], timeout=5)

    def addresses(self, message):
        return sorted(a.payload.dottedQuad() if a.type == dns.A else a.payload._address for a in message.answers)


class AnswerTests(DNSTestCase):
    async def setUp(self):
        await super().setUp()
        self.registry.announce("gw1", {"gateway": {"IP": "127.0.0.10"}})
        self.registry.announce("gw2", {"gateway": {"IP": "127.0.0.11"}, "tns": {"IP": "127.0.0.11"}})
        self.registry.announce("sub", {"substrate": {"IP": "127.0.0.20"}})
        self.registry.announce("six", {"tns": {"IP": "::1"}})

    async def test_serviceOverUDP(self):
        """
        C{<service>.tau.<fqdn>} is answered, authoritatively, with the
        nodes that announced the service, and the configured TTL.
        """
        message = await self.udpQuery(f"tns.tau.{FQDN}")
        self.assertEqual(self.addresses(message), ["127.0.0.11"])
        self.assertTrue(message.auth)
        self.assertEqual([a.ttl for a in message.answers], [TTL])

    async def test_serviceOverTCP(self):
        """
        The same answers over TCP, AAAA for IPv6 nodes.
        """
        message = await self.tcpQuery(f"tns.tau.{FQDN}", dns.AAAA)
        self.assertEqual([a.payload.address for a in message.answers], [dns.Record_AAAA("::1").address])
        message = await self.tcpQuery(f"gateway.tau.{FQDN}")
        self.assertEqual(self.addresses(message), ["127.0.0.10", "127.0.0.11"])

    async def test_generatedGoesToGateways(self):
        """
        A generated project name under C{g.<fqdn>} gets the gateways, and
        the substrates when no gateway is alive.
        """
        message = await self.udpQuery(f"abcd1234.g.{FQDN}")
        self.assertEqual(self.addresses(message), ["127.0.0.10", "127.0.0.11"])
        self.registry.announce("gw1", {})
        self.registry.announce("gw2", {})
        message = await self.udpQuery(f"abcd1234.g.{FQDN}")
        self.assertEqual(self.addresses(message), ["127.0.0.20"])

    async def test_generatedSuffixOutsideFqdn(self):
        """
        Generated names may live under their own suffix
        (domains.generated): they are in seer's zone and answered.
        """
        self.zones.generated = ".e.ftll.ink"
        message = await self.udpQuery("abcd1234.e.ftll.ink")
        self.assertEqual((message.rCode, self.addresses(message)), (dns.OK, ["127.0.0.10", "127.0.0.11"]))
        message = await self.udpQuery("e.ftll.ink")
        self.assertEqual(message.rCode, dns.EREFUSED)

    async def test_silentNodeDropsWithinTTL(self):
        """
        A node that stops telling seer is answered until C{ttl} seconds
        after it last did, and not at the TTL.
        """
        self.clock.advance(TTL - 1)
        self.registry.heartbeat("gw1", "host", b"")
        message = await self.udpQuery(f"gateway.tau.{FQDN}")
        self.assertEqual(self.addresses(message), ["127.0.0.10", "127.0.0.11"])
        self.clock.advance(1)
        message = await self.udpQuery(f"gateway.tau.{FQDN}")
        self.assertEqual(self.addresses(message), ["127.0.0.10"])

    async def test_maxAnswers(self):
        """
        One answer gives at most C{maxAnswers} addresses.
        """
        for i in range(6):
            self.registry.announce(f"gw-{i}", {"gateway": {"IP": f"127.0.1.{i}"}})
        message = await self.udpQuery(f"gateway.tau.{FQDN}")
        self.assertEqual(len(message.answers), 4)

    async def test_nxdomainInZone(self):
        """
        A name in the zone that names nothing is NXDOMAIN.
        """
        message = await self.udpQuery(f"nothing.{FQDN}")
        self.assertEqual((message.rCode, message.auth), (dns.ENAME, 1))

    async def test_refusedOutsideZone(self):
        """
        A name outside the zone (even one that ends like it) is REFUSED,
        over UDP and TCP.
        """
        for name in ("example.org", "xtau.example.com", "tau.example.com.org"):
            message = await self.udpQuery(name)
            self.assertEqual(message.rCode, dns.EREFUSED, name)
        message = await self.tcpQuery("example.org")
        self.assertEqual(message.rCode, dns.EREFUSED)


class DigTests(DNSTestCase):
    """
    What dig (another DNS implementation) reads from seer.
    """

    async def setUp(self):
        await super().setUp()
        self.registry.announce("gw1", {"gateway": {"IP": "127.0.0.10"}})
        self.registry.announce("gw2", {"gateway": {"IP": "127.0.0.11"}})

    async def dig(self, *args):
        out, err, code = await getProcessOutputAndValue(
            shutil.which("dig"), ("+time=5", "+tries=1", "@127.0.0.1", *args), env={}, reactor=reactor)
        self.assertEqual(code, 0, err)
        return out.decode()

    async def test_digUDPAndTCP(self):
        """
        dig over UDP and TCP: the gateways with the TTL and the aa flag;
        NXDOMAIN in the zone, REFUSED outside.
        """
        for transport in ("+notcp", "+tcp"):
            port = self.udp if transport == "+notcp" else self.tcp
            port = str(port.getHost().port)
            out = await self.dig("-p", port, transport, "+noall", "+answer", f"gateway.tau.{FQDN}", "A")
            self.assertEqual(sorted(line.split() for line in out.splitlines()), [
                [f"gateway.tau.{FQDN}.", str(TTL), "IN", "A", "127.0.0.10"],
                [f"gateway.tau.{FQDN}.", str(TTL), "IN", "A", "127.0.0.11"],
            ])
            out = await self.dig("-p", port, transport, f"gateway.tau.{FQDN}", "A")
            self.assertIn("flags: qr aa;", out)
            out = await self.dig("-p", port, transport, f"nothing.{FQDN}")
            self.assertIn("status: NXDOMAIN", out)
            out = await self.dig("-p", port, transport, "example.org")
            self.assertIn("status: REFUSED", out)


class MalformedTests(DNSTestCase):
    async def setUp(self):
        await super().setUp()
        self.registry.announce("gw1", {"gateway": {"IP": "127.0.0.10"}})
        self.catcher = Catcher()
        self.port = reactor.listenUDP(0, self.catcher, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)

    def send(self, data):
        self.catcher.transport.write(data, ("127.0.0.1", self.udp.getHost().port))

    async def stillServes(self):
        message = await self.udpQuery(f"gateway.tau.{FQDN}")
        self.assertEqual(self.addresses(message), ["127.0.0.10"])

    async def reply(self, packet):
        waiting = self.catcher.next()
        self.send(packet)
        reply = dns.Message()
        reply.fromStr(await waiting)
        return reply

    async def test_garbageGetsFormErr(self):
        """
        A query whose header is whole but whose question is garbage or
        truncated gets FORMERR with its id.
        """
        query = dns.Message(id=77)
        query.addQuery(f"gateway.tau.{FQDN}".encode())
        whole = query.toStr()
        for packet in (whole[:12] + b"\xff" * 40, whole[:-3], whole[:12]):
            reply = await self.reply(packet)
            self.assertEqual((reply.id, reply.rCode, reply.answer), (77, dns.EFORMAT, 1))
        await self.stillServes()

    async def test_hugeCounts(self):
        """
        Counts far above what the packet holds: the question it does hold
        is answered (twisted.names reads what is there), nothing more.
        """
        query = dns.Message(id=78)
        query.addQuery(f"gateway.tau.{FQDN}".encode())
        whole = query.toStr()
        reply = await self.reply(whole[:4] + b"\xff\xff" * 4 + whole[12:])
        self.assertEqual((reply.id, reply.rCode), (78, dns.OK))
        self.assertEqual(self.addresses(reply), ["127.0.0.10"])
        await self.stillServes()

    async def test_shortOrAnswerDropped(self):
        """
        Fewer than 12 bytes, or an answer that does not parse, get nothing
        back; the server keeps serving.
        """
        self.send(b"\x00\x01\x02")
        self.send(b"\x00\x01\x80\x00" + b"\xff" * 20)
        await self.stillServes()
        self.assertEqual(len(self.catcher.replies), 0)

    async def test_noQuestionFormErr(self):
        """
        A query with no question gets FORMERR.
        """
        waiting = self.catcher.next()
        self.send(dns.Message(id=9).toStr())
        reply = dns.Message()
        reply.fromStr(await waiting)
        self.assertEqual((reply.id, reply.rCode), (9, dns.EFORMAT))

    async def test_tcpGarbage(self):
        """
        Garbage on a TCP connection never stops the server.
        """
        done = Deferred()

        class Junk(Protocol):
            def connectionMade(self):
                self.transport.write(struct.pack("!H", 30) + b"\xff" * 30 + struct.pack("!H", 5) + b"\x00" * 5)
                reactor.callLater(0.05, self.transport.loseConnection)

            def connectionLost(self, reason):
                done.callback(None)

        factory = ClientFactory.forProtocol(Junk)
        reactor.connectTCP("127.0.0.1", self.tcp.getHost().port, factory)
        await done
        message = await self.tcpQuery(f"gateway.tau.{FQDN}")
        self.assertEqual(self.addresses(message), ["127.0.0.10"])


class ParsingTests(TestCase):
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
            self.assertEqual((message.id, message.rCode, message.answer), (struct.unpack("!H", data[:2])[0], dns.EFORMAT, 1))

    @given(st.text(max_size=40))
    def test_parseUDPAnyText(self, text):
        """
        Any text is either a UDP endpoint or a ValueError.
        """
        try:
            port, interface = parseUDP(text)
        except ValueError:
            return
        self.assertTrue(0 <= port <= 65535)
        self.assertTrue(text.startswith("udp:"))

    def test_parseUDP(self):
        self.assertEqual(parseUDP("udp:53"), (53, ""))
        self.assertEqual(parseUDP("udp:65535:interface=::1"), (65535, "::1"))
        for bad in ("udp:65536", "tcp:53", "udp:x", "udp:53:interface=nowhere", "udp:53:bind=127.0.0.1", "udp"):
            self.assertRaises(ValueError, parseUDP, bad)


class ListenTests(TestCase):
    async def test_tcpBusy(self):
        """
        When TCP cannot listen, the UDP port is closed again and the
        error is the caller's.
        """
        busy = reactor.listenTCP(0, ClientFactory(), interface="127.0.0.1")
        self.addCleanup(busy.stopListening)
        zones = Zones(FQDN, "g." + FQDN, Registry(Clock(), TTL, 10), TTL, 4)
        def udpPorts():
            return {r for r in reactor.getReaders() if isinstance(r, udp.Port)}

        before = udpPorts()
        with self.assertRaises(CannotListenError):
            await listen(reactor, SeerDNSFactory(zones), "udp:0:interface=127.0.0.1",
                         f"tcp:{busy.getHost().port}:interface=127.0.0.1")
        self.assertEqual(udpPorts(), before)
