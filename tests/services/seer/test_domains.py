"""
Projects' domains in seer's answers, over real UDP: generated names that
tns serves, custom names whose TXT token auth verifies, REFUSED or
NXDOMAIN otherwise; verdicts kept for the TTL on a Clock, and bounded.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.names import authority, client, dns, server
from twisted.trial.unittest import TestCase

from tau.services.seer import domains as domainsModule
from tau.services.seer.dns import SeerDNSFactory, Zones, listen
from tau.services.seer.domains import ProjectDomains
from tau.services.seer.registry import Registry
from tau.services.seer.service import systemTXT
from tau.project.lookups import hostProjects

FQDN = "tau.example.com"
TTL = 60
PROJECT = "QmProjectAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
GENERATED = f"abc123.g.{FQDN}"
CUSTOM = "shop.example.org"


class FakeTNS:
    """
    tns's key tree for C{hosts}, each served by a website of C{PROJECT}.
    """

    def __init__(self, hosts):
        self.hosts = set(hosts)
        self.fetches = 0
        self.closed = False

    async def fetch(self, path):
        self.fetches += 1
        if path[:2] == ["http", "websites"] and ".".join(reversed(path[2:-1])) in self.hosts:
            return [f"branches/main/projects/{PROJECT}/websites/site1"]
        if path == ["projects", PROJECT, "branches", "main", "current"]:
            return "commit1"
        return None

    async def projectsServing(self, host):
        # what the tns client does, on this key tree
        return await hostProjects(lambda path: self.fetch(path), host)

    def close(self):
        self.closed = True


class FakeAuth:
    def __init__(self):
        self.asked = []

    async def verifyDomain(self, fqdn, project, token):
        self.asked.append((fqdn, project, token))
        return token == f"good-{fqdn}-{project}"


class DomainTests(TestCase):
    async def setUp(self):
        self.clock = Clock()
        self.tns = FakeTNS({GENERATED, CUSTOM, "other.example.org"})
        self.auth = FakeAuth()
        self.records = {f"{PROJECT[:8]}.{CUSTOM}": ["junk", f"good-{CUSTOM}-{PROJECT}"],
                        f"{PROJECT[:8]}.other.example.org": ["bad"]}

        async def txt(name):
            return self.records.get(name, [])

        self.registry = Registry(self.clock, TTL, 100)
        self.registry.announce("gw", {"gateway": {"IP": "127.0.0.10"}})
        self.registry.heartbeat("gw", "host", {})
        self.domains = ProjectDomains("g." + FQDN, self.tns, self.auth, txt, self.clock, TTL)
        zones = Zones(FQDN, "g." + FQDN, self.registry, TTL, 16, self.domains)
        self.udp, self.tcp = await listen(reactor, SeerDNSFactory(zones, self.clock), "udp:0:interface=127.0.0.1",
                                          "tcp:0:interface=127.0.0.1")
        self.addCleanup(self.udp.stopListening)
        self.addCleanup(self.tcp.stopListening)
        self.resolver = client.Resolver(servers=[("127.0.0.1", self.udp.getHost().port)], reactor=reactor)

    def query(self, name):
        return self.resolver.queryUDP([dns.Query(name, dns.A, dns.IN)], timeout=(5,))

    async def answer(self, name):
        message = await self.query(name)
        return message.rCode, [a.payload.dottedQuad() for a in message.answers]

    async def test_generated(self):
        """
        A generated name tns serves gets the gateways; one it does not
        is NXDOMAIN.
        """
        self.assertEqual(await self.answer(GENERATED), (dns.OK, ["127.0.0.10"]))
        self.assertEqual(await self.answer(f"nope.g.{FQDN}"), (dns.ENAME, []))

    async def test_custom(self):
        """
        A custom name tns serves whose TXT token auth verifies gets the
        gateways; with no valid token, or that tns does not serve, it is
        REFUSED.
        """
        self.assertEqual(await self.answer(CUSTOM), (dns.OK, ["127.0.0.10"]))
        self.assertIn((CUSTOM, PROJECT, f"good-{CUSTOM}-{PROJECT}"), self.auth.asked)
        self.assertEqual(await self.answer("other.example.org"), (dns.EREFUSED, []))
        self.assertEqual(await self.answer("unknown.example.net"), (dns.EREFUSED, []))

    async def test_keptForTTL(self):
        """
        A verdict is kept until the TTL: tns is not asked again before,
        and is at it (a domain dropped from tns stops being answered).
        """
        self.assertEqual(await self.answer(CUSTOM), (dns.OK, ["127.0.0.10"]))
        fetches = self.tns.fetches
        self.tns.hosts.discard(CUSTOM)
        self.clock.advance(TTL - 1)
        self.assertEqual(await self.answer(CUSTOM), (dns.OK, ["127.0.0.10"]))
        self.assertEqual(self.tns.fetches, fetches)
        self.clock.advance(1)
        self.assertEqual(await self.answer(CUSTOM), (dns.EREFUSED, []))

    async def test_failingCheck(self):
        """
        A check that fails (tns unreachable) is not served and not kept.
        """
        async def broken(path):
            raise ConnectionError("no tns")

        fetch, self.tns.fetch = self.tns.fetch, broken
        self.assertEqual(await self.answer(GENERATED), (dns.ENAME, []))
        self.tns.fetch = fetch
        self.assertEqual(await self.answer(GENERATED), (dns.OK, ["127.0.0.10"]))

    async def test_keptBound(self):
        """
        At most MAX_KEPT verdicts are kept: exactly that many are, one
        more is checked every time.
        """
        self.patch(domainsModule, "MAX_KEPT", 2)
        for name in (GENERATED, CUSTOM, "x.g." + FQDN):
            await self.domains.served(name)
        fetches = self.tns.fetches
        await self.domains.served(GENERATED)
        await self.domains.served(CUSTOM)
        self.assertEqual(self.tns.fetches, fetches)
        await self.domains.served("x.g." + FQDN)
        self.assertGreater(self.tns.fetches, fetches)

    async def test_pendingLimit(self):
        """
        At most MAX_PENDING names are checked at once: one more is not
        served, and is once one finishes.
        """
        self.patch(domainsModule, "MAX_PENDING", 1)
        gate = Deferred()

        async def slow(path):
            await gate
            return await FakeTNS.fetch(self.tns, path)

        fetch, self.tns.fetch = self.tns.fetch, slow
        first = Deferred.fromCoroutine(self.domains.served(CUSTOM))
        self.assertFalse(await self.domains.served(GENERATED))
        gate.callback(None)
        self.assertTrue(await first)
        self.tns.fetch = fetch
        self.assertTrue(await self.domains.served(GENERATED))

    async def test_close(self):
        """
        Closing forgets every verdict (a project's domain is asked again)
        and leaves the tns client, which is the node's, open.
        """
        self.assertTrue(await self.domains.served(GENERATED))
        fetches = self.tns.fetches
        self.assertTrue(await self.domains.served(GENERATED))
        self.assertEqual(self.tns.fetches, fetches)
        self.domains.close()
        self.assertTrue(await self.domains.served(GENERATED))
        self.assertGreater(self.tns.fetches, fetches)
        self.assertFalse(self.tns.closed)


class SystemTXTTests(TestCase):
    async def test_txt(self):
        """
        systemTXT reads a name's TXT texts (joined strings) from a DNS
        server; a name with none, or NXDOMAIN, gives none.
        """

        class Static(authority.FileAuthority):
            def loadFile(self, filename):
                pass

        zone = Static(None)
        zone.soa = (b"example.org", dns.Record_SOA(mname=b"ns.example.org", rname=b"root.example.org"))
        zone.records = {
            b"example.org": [zone.soa[1]],
            b"abcdefgh.shop.example.org": [dns.Record_TXT(b"to", b"ken"), dns.Record_TXT(b"other")],
            b"bare.example.org": [dns.Record_A("127.0.0.1")],
        }
        port = reactor.listenUDP(0, dns.DNSDatagramProtocol(server.DNSServerFactory(authorities=[zone])),
                                 interface="127.0.0.1")
        self.addCleanup(port.stopListening)

        def makeResolver(reactor):
            return client.Resolver(servers=[("127.0.0.1", port.getHost().port)], reactor=reactor)

        txt = systemTXT(reactor, makeResolver)
        self.assertEqual(sorted(await txt("abcdefgh.shop.example.org")), ["other", "token"])
        self.assertEqual(await txt("bare.example.org"), [])
        self.assertEqual(await txt("none.example.org"), [])
