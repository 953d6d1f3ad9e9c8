"""
seer's DNS over real UDP and TCP on loopback: answers with the healthy
nodes only, a TTL, NXDOMAIN in the zone, REFUSED outside it.  Hostile
input (malformed packets, TCP connections that send nothing or too much,
a flood from one address) is in L{tests.services.seer.test_hostile}.
"""

import shutil

from hypothesis import given, strategies as st
from twisted.internet import reactor, udp
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import ClientFactory, DatagramProtocol
from twisted.internet.task import Clock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.names import client, dns
from twisted.trial.unittest import TestCase

from tau.services.seer.dns import SeerDNSFactory, Zones, listen, parseUDP
from tau.services.seer.guard import Limits
from tau.services.seer.registry import Registry

FQDN = "tau.example.com"
TTL = 60
#: a heartbeat's usage, as the registry keeps it (its content does not matter here)
USAGE = {}


def live(registry, peer, services):
    """
    Node C{peer} announces C{services} and sends a heartbeat.
    """
    registry.announce(peer, services)
    registry.heartbeat(peer, "host", USAGE)


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
    limits = Limits()

    async def setUp(self):
        self.clock = Clock()
        self.registry = Registry(self.clock, TTL, 100)
        self.zones = Zones(FQDN, "g." + FQDN, self.registry, TTL, 4)
        # the server's rates and idle connections follow the test's clock
        self.factory = SeerDNSFactory(self.zones, self.clock, self.limits)
        self.udp, self.tcp = await listen(reactor, self.factory, "udp:0:interface=127.0.0.1",
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
        live(self.registry, "gw1", {"gateway": {"IP": "127.0.0.10"}})
        live(self.registry, "gw2", {"gateway": {"IP": "127.0.0.11"}, "tns": {"IP": "127.0.0.11"}})
        live(self.registry, "sub", {"substrate": {"IP": "127.0.0.20"}})
        live(self.registry, "six", {"tns": {"IP": "::1"}})

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
        A generated project name under C{g.<fqdn>} gets the healthy
        gateways, and the substrates when no healthy gateway has an
        address.
        """
        message = await self.udpQuery(f"abcd1234.g.{FQDN}")
        self.assertEqual(self.addresses(message), ["127.0.0.10", "127.0.0.11"])
        self.registry.announce("gw1", {"gateway": {}})
        self.registry.announce("gw2", {"tns": {"IP": "127.0.0.11"}})
        message = await self.udpQuery(f"abcd1234.g.{FQDN}")
        self.assertEqual(self.addresses(message), ["127.0.0.20"])

    async def test_silentGatewaysGiveWayToSubstrates(self):
        """
        Gateways whose heartbeats stopped (even if they announce) give way
        to the substrates within the TTL; they are back with a heartbeat.
        """
        self.clock.advance(TTL - 1)
        for peer in ("gw1", "gw2"):
            self.registry.announce(peer, self.registry.node(peer).services)
        self.registry.heartbeat("sub", "host", USAGE)
        message = await self.udpQuery(f"abcd1234.g.{FQDN}")
        self.assertEqual(self.addresses(message), ["127.0.0.10", "127.0.0.11"])
        self.clock.advance(1)
        message = await self.udpQuery(f"abcd1234.g.{FQDN}")
        self.assertEqual(self.addresses(message), ["127.0.0.20"])
        self.registry.heartbeat("gw2", "host", USAGE)
        message = await self.udpQuery(f"abcd1234.g.{FQDN}")
        self.assertEqual(self.addresses(message), ["127.0.0.11"])

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
        self.registry.heartbeat("gw1", "host", USAGE)
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
            live(self.registry, f"gw-{i}", {"gateway": {"IP": f"127.0.1.{i}"}})
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
        live(self.registry, "gw1", {"gateway": {"IP": "127.0.0.10"}})
        live(self.registry, "gw2", {"gateway": {"IP": "127.0.0.11"}})

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


class ParsingTests(TestCase):
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
        factory = SeerDNSFactory(zones, Clock())
        def udpPorts():
            return {r for r in reactor.getReaders() if isinstance(r, udp.Port)}

        before = udpPorts()
        with self.assertRaises(CannotListenError):
            await listen(reactor, factory, "udp:0:interface=127.0.0.1",
                         f"tcp:{busy.getHost().port}:interface=127.0.0.1")
        self.assertEqual(udpPorts(), before)
