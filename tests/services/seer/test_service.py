"""
seer on real hosts: nodes announce and heartbeat through L{SeerClient}
(signed, members only, about themselves only) and are answered over DNS;
the Beacon keeps a node in the answers; the config section; the service
is a factory of the registry, run by the seer shape and by full.
"""

import json
from types import SimpleNamespace

import cbor2
from hypothesis import given, settings, strategies as st

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.names import client, dns
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from tau import services
from tau.errors import ConfigError
from tau.services.commands import RemoteError
from tau.services.framework import call
from tau.services.seer import PROTOCOL
from tau.services.seer.beacon import Beacon, SeerClient, beaconOf
from tau.services.seer.commands import MAX_META, MAX_SERVICES, MAX_USAGE, signatureOf
from tau.services.seer.config import SeerConfig
from tau.services.seer.service import SeerService, zoneOf
from tau.services.seer.usage import readUsage
from tests.hosts import addressOf, startHost

FQDN = "tau.example.com"


class FixedSeer:
    """
    A L{ServiceClient} stand-in that calls one seer peer.
    """

    def __init__(self, host, peer):
        self.host, self.peer = host, peer

    def call(self, name, body=None):
        return call(self.host, self.peer, PROTOCOL, name, body)


def usageOfSize(size):
    """
    Valid usage bytes (custom values only) of exactly C{size} bytes.
    """
    lengths = [200] * 64
    i = 0
    while len(cbor2.dumps({9: {f"{n:02d}".ljust(l, "k"): 1.0 for n, l in enumerate(lengths)}})) < size:
        lengths[i % 64] += 1
        i += 1
    data = cbor2.dumps({9: {f"{n:02d}".ljust(l, "k"): 1.0 for n, l in enumerate(lengths)}})
    assert len(data) == size, len(data)
    return data


class ServiceTestCase(TestCase):
    async def setUp(self):
        self.server = await startHost(self)
        self.node = await startHost(self)
        self.stranger = await startHost(self)
        self.members = {self.server.peerID, self.node.peerID}

        async def isMember(peer):
            return peer in self.members

        config = SeerConfig(ttl=30)
        self.service = SeerService(self.server, reactor, config, isMember, FQDN, "g." + FQDN)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        await self.service.whenReady()
        for host in (self.node, self.stranger):
            await host.connect(addressOf(self.server))
        self.seer = SeerClient(self.node, None, client=FixedSeer(self.node, self.server.peerID))
        self.resolver = client.Resolver(servers=[("127.0.0.1", self.service.ports[0].getHost().port)],
                                        reactor=reactor)

    async def lookup(self, name):
        message = await self.resolver.queryUDP([dns.Query(name, dns.A, dns.IN)], timeout=(5,))
        return sorted(a.payload.dottedQuad() for a in message.answers)

    def signed(self, host, body, client="c"):
        peer = str(host.peerID)
        body.update(id=peer, client=client, signature=signatureOf(host.key, peer, client))
        return body


class CommandTests(ServiceTestCase):
    async def test_announceThenDNS(self):
        """
        A node that announces gateway with its IP is answered for
        C{gateway.tau.<fqdn>} and listed, with its heartbeat's usage.
        """
        self.assertEqual(await self.seer.announce({"gateway": {"IP": "127.0.0.42"}}), ["gateway"])
        answer = await self.seer.heartbeat(b"\xa0", "node-1")
        self.assertEqual(answer, {"Updated Usage": str(self.node.peerID)})
        self.assertEqual(await self.lookup(f"gateway.tau.{FQDN}"), ["127.0.0.42"])
        self.assertEqual(await self.seer.nodes(), [str(self.node.peerID)])
        self.assertEqual(await self.seer.nodes("gateway"), [str(self.node.peerID)])
        self.assertEqual(await self.seer.nodes("tns"), [])
        info = await call(self.node, self.server.peerID, PROTOCOL, "heartbeat",
                          {"action": "info", "id": str(self.node.peerID)})
        usage = json.loads(info["usage"])
        self.assertEqual((usage["Id"], usage["Name"], usage["Type"], usage["Address"], usage["TotalMem"]),
                         (str(self.node.peerID), "node-1", ["gateway"], "127.0.0.42", 0))

    async def test_refused(self):
        """
        Not heard: a node outside the cloud, a signature that is not the
        node's, a node speaking for another one, too many services, too
        much usage.  Nothing of them is answered.
        """
        cases = [
            (self.stranger, self.signed(self.stranger, {"services": []}), "only the nodes of this cloud"),
            (self.node, dict(self.signed(self.node, {"services": []}), signature=b"x" * 64), "signature: not"),
            (self.node, self.signed(self.server, {"services": []}), "a node speaks for itself only"),
            (self.node, self.signed(self.node, {"services": [{"Type": f"s{i}", "Meta": {}}
                                                             for i in range(MAX_SERVICES + 1)]}),
             f"at most {MAX_SERVICES}"),
        ]
        for host, body, why in cases:
            with self.assertRaises(RemoteError) as e:
                await call(host, self.server.peerID, PROTOCOL, "announce", body)
            self.assertIn(why, str(e.exception))
        with self.assertRaises(RemoteError) as e:
            await self.seer.heartbeat(b"x" * (MAX_USAGE + 1), "h")
        self.assertIn(f"at most {MAX_USAGE} bytes", str(e.exception))
        with self.assertRaises(RemoteError) as e:
            await self.seer.heartbeat(b"\xa1\x03\x61x", "h")
        self.assertIn("usage: part 3 is not a map", str(e.exception))
        # a usage of exactly MAX_USAGE bytes is heard
        largest = usageOfSize(MAX_USAGE)
        await self.seer.heartbeat(largest, "h")
        self.assertEqual(await self.lookup(f"tau.{FQDN}"), [])

    async def test_limitsAtTheEdge(self):
        """
        Exactly C{MAX_SERVICES} services are heard.
        """
        services_ = {f"s{i}": {"IP": "127.0.0.5"} for i in range(MAX_SERVICES)}
        self.assertEqual(len(await self.seer.announce(services_)), MAX_SERVICES)
        await self.seer.heartbeat(b"\xa0", "h")
        self.assertEqual(await self.lookup(f"s0.tau.{FQDN}"), ["127.0.0.5"])

    async def test_metaAtTheEdge(self):
        """
        Exactly C{MAX_META} characters of Meta in one announce are heard,
        one more is refused.
        """
        services_ = {f"s{i}": {f"k{j}": "v" * 254 for j in range(MAX_META // 8192)} for i in range(32)}
        total = sum(len(k) + len(v) for meta in services_.values() for k, v in meta.items())
        services_["s0"]["k0"] += "v" * (MAX_META - total)
        self.assertEqual(len(await self.seer.announce(services_)), 32)
        services_["s0"]["k1"] += "v"
        with self.assertRaises(RemoteError) as e:
            await self.seer.announce(services_)
        self.assertIn(f"at most {MAX_META} characters of Meta", str(e.exception))


class GeoTests(ServiceTestCase):
    async def test_setAndQuery(self):
        """
        A node placed in Paris is found within 350 km of London and not
        within 340 km (they are 343.6 km apart); query-all lists it.
        """
        self.assertEqual(await self.seer.locate(48.8566, 2.3522), {})
        me = str(self.node.peerID)
        near = await self.seer.near(51.5074, -0.1278, 350_000)
        self.assertEqual(list(near), [me])
        self.assertAlmostEqual(near[me][4][1], 48.8566)
        self.assertIsInstance(near[me][1], int)
        self.assertEqual(await self.seer.near(51.5074, -0.1278, 340_000), {})
        everyone = await call(self.node, self.server.peerID, PROTOCOL, "geo", {"action": "query-all"})
        self.assertEqual(list(everyone["peers"]), [me])

    async def test_refused(self):
        """
        Out of range places, negative distances and strangers are refused.
        """
        for body, why in [
            ({"action": "set", "location": {1: 91, 2: 0}}, "latitude within -90..90"),
            ({"action": "set", "location": {1: 0, 2: -180.5}}, "longitude within -180..180"),
            ({"action": "set", "location": [1, 2]}, "location: a map"),
            ({"action": "query", "from": {1: 0, 2: 0}, "distance": -1}, "distance: a number of metres"),
            ({"action": "nope"}, "action: unknown 'nope'"),
        ]:
            with self.assertRaises(RemoteError) as e:
                await call(self.node, self.server.peerID, PROTOCOL, "geo", body)
            self.assertIn(why, str(e.exception))
        with self.assertRaises(RemoteError) as e:
            await call(self.stranger, self.server.peerID, PROTOCOL, "geo", {"action": "set", "location": {1: 0, 2: 0}})
        self.assertIn("only the nodes of this cloud", str(e.exception))
        # the edges themselves are places
        await self.seer.locate(90, -180)


class BeaconTests(TestCase):
    def test_rounds(self):
        """
        The beacon announces then heartbeats at once and every interval.
        """
        calls = []

        class Recorder:
            async def announce(self, services):
                calls.append(("announce", services))

            async def heartbeat(self, usage, hostname):
                calls.append(("heartbeat", usage))

            async def locate(self, lat, long):
                calls.append(("locate", (lat, long)))

        clock = Clock()
        async def measure():
            return b"\xa0"

        beacon = Beacon(Recorder(), {"gateway": {"IP": "127.0.0.1"}}, 10, clock, measure, {"lat": 1.5, "long": 2.5})
        beacon.startService()
        self.addCleanup(beacon.stopService)
        self.assertEqual(calls, [("announce", {"gateway": {"IP": "127.0.0.1"}}), ("heartbeat", b"\xa0"),
                                 ("locate", (1.5, 2.5))])
        clock.advance(9.9)
        self.assertEqual(len(calls), 3)
        clock.advance(0.1)
        self.assertEqual(len(calls), 6)


class ConfigTests(TestCase):
    def test_defaults(self):
        self.assertEqual(SeerConfig.check("n.yaml", None), SeerConfig())
        given = {"dns-udp": "udp:53:interface=::1",
                 "dns-tcp": "tcp:53:interface=127.0.0.1", "ttl": 5, "max-nodes": 3, "max-answers": 2}
        self.assertEqual(SeerConfig.check("n.yaml", given),
                         SeerConfig("udp:53:interface=::1", "tcp:53:interface=127.0.0.1", 5, 3, 2))
        self.assertEqual(SeerConfig.check("n.yaml", {"ttl": 2**31 - 1}).ttl, 2**31 - 1)
        self.assertEqual(SeerConfig.check("n.yaml", {"announce-ip": "::1"}).announceIP, "::1")
        limits = SeerConfig.check("n.yaml", {"rate-limit": 0, "max-tcp": 1, "tcp-idle": 1}).limits()
        self.assertEqual((limits.rate, limits.maxTCP, limits.idle), (0, 1, 1))
        self.assertEqual(SeerConfig().limits().rate, 1000)

    def test_noBeaconWithoutAddress(self):
        """
        A node with no seer.announce-ip does not tell seer.
        """
        config = SimpleNamespace(seer=SeerConfig(), services=("tns",))
        self.assertIsNone(beaconOf(None, None, config, reactor))

    def test_errors(self):
        for value, text in [
            ({"ttl": 0}, "seer.ttl: expected a whole number of seconds above 0 up to 2147483647, found 0"),
            ({"ttl": 2**31}, "seer.ttl: expected a whole number of seconds above 0 up to 2147483647, found 2147483648"),
            ({"max-nodes": True}, "seer.max-nodes: expected a whole number of nodes above 0, found True"),
            ({"dns-udp": "tcp:53"}, "seer.dns-udp: expected udp:PORT or udp:PORT:interface=IP, found 'tcp:53'"),
            ({"dns-tcp": "udp:53"}, "seer.dns-tcp: expected a tcp: endpoint string"),
            ({"dns-tcp": "unix:/x"}, "seer.dns-tcp: expected a tcp: endpoint string, found 'unix:/x'"),
            ({"announce-ip": "here"}, "seer.announce-ip: expected an IP address or \"\", found 'here'"),
            ({"rate-limit": -1}, "seer.rate-limit: expected a whole number of queries a second, 0 or more, found -1"),
            ({"rate-limit": 1.5}, "seer.rate-limit: expected a whole number of queries a second"),
            ({"max-tcp": 0}, "seer.max-tcp: expected a whole number of connections above 0, found 0"),
            ({"tcp-idle": 0}, "seer.tcp-idle: expected a whole number of seconds above 0, found 0"),
        ]:
            with self.assertRaises(ConfigError) as e:
                SeerConfig.check("n.yaml", value)
            self.assertIn(text, str(e.exception))


class ZoneTests(TestCase):
    def test_zoneOf(self):
        """
        seer's zone is the node's network-fqdn (localhost when unset) and
        its generated domains domains.generated (g.<fqdn> when unset).
        """
        self.assertEqual(zoneOf(SimpleNamespace(networkFqdn="Tau.Example.com", domains={})),
                         ("tau.example.com", "g.tau.example.com"))
        self.assertEqual(zoneOf(SimpleNamespace(networkFqdn="tau.example.com", domains={"generated": "e.ftll.ink."})),
                         ("tau.example.com", "e.ftll.ink"))
        self.assertEqual(zoneOf(SimpleNamespace(networkFqdn="", domains={})), ("localhost", "g.localhost"))


class RegistrationTests(TestCase):
    def test_shapes(self):
        """
        seer is a service of this build: its own shape and full run it.
        """
        self.assertIn("seer", services.available())
        self.assertIn("seer", services.builtinShapes()["full"])
        self.assertEqual(services.factoryFor("seer").__module__, "tau.services.seer.service")


class UsageTests(TestCase):
    def test_readUsage(self):
        """
        The spec sheet's keys, from /proc texts and a folder's disk;
        iowait under the text "27"; parts that cannot be read left out.
        """
        proc = FilePath(self.mktemp())
        proc.makedirs()
        proc.child("stat").setContent(b"cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 1 2 3 4 5 6 7 8 9 10\ncpu1 0 0 0 0 0 0 0 0 0 0\n")
        proc.child("meminfo").setContent(b"MemTotal: 100 kB\nMemFree: 40 kB\nMemAvailable: 60 kB\n")
        read = cbor2.loads(readUsage(proc.path, proc.path))
        self.assertEqual(read[3], {11: 0, 12: 102400, 13: 40960})
        self.assertEqual(read[5]["27"], 5)
        self.assertEqual((read[5][21], read[5][22], read[5][23], read[5][32]), (55, 2, 1, 10))
        self.assertEqual(set(read[7]), {14, 15, 16, 17})
        proc.child("self").makedirs()
        proc.child("self").child("status").setContent(b"Name: tau\nVmRSS:\t  12 kB\n")
        self.assertEqual(cbor2.loads(readUsage(proc.path, proc.path))[3][11], 12288)
        self.assertEqual(set(cbor2.loads(readUsage(proc.path, proc.child("none").path))), {7})

    @settings(max_examples=100, deadline=None)
    @given(st.text(max_size=80), st.text(max_size=80))
    def test_anyProcText(self, stat, meminfo):
        """
        Whatever /proc holds, the usage is read (the parts that parse).
        """
        proc = FilePath(self.mktemp())
        proc.makedirs()
        proc.child("stat").setContent(stat.encode("utf-8"))
        proc.child("meminfo").setContent(meminfo.encode("utf-8"))
        self.assertIn(7, cbor2.loads(readUsage(proc.path, proc.path)))
