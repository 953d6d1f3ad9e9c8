"""
Node configuration: fields, precedence, first start, and every way it can be wrong.
"""

import base64
import os
import stat
from pathlib import Path

import yaml
from twisted.trial.unittest import SynchronousTestCase

from tau import services
from tau.cloud import makeAdmission
from tau.config import loadConfig, publicView, shapeFile
from tau.errors import ConfigError
from tau.identity import PrivateKey

REPO = Path(__file__).resolve().parent.parent
SPEC_KEY = "CAESQAICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICgTl3Dqh9F19Wo1Rmw0x+zMuNipG07jeiXfYPW4/Js5Q="
SPEC_PEER = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"


def snapshot(root):
    """
    Every file under C{root} with its bytes, to prove nothing changed.
    """
    root = Path(root)
    if not root.exists():
        return None
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class ConfigTestsMixin:
    def setUp(self):
        self.root = Path(self.mktemp())

    def writeConfig(self, data, name="node.yaml"):
        path = Path(self.mktemp())
        path.mkdir()
        path = path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
        return path


class FirstStartTests(ConfigTestsMixin, SynchronousTestCase):
    def test_firstStartCreatesRoot(self):
        """
        A new root gets a config file holding a fresh key, mode 0600, and a
        data folder; the next load reuses that identity.
        """
        config = loadConfig(shape="full", root=self.root)
        path = shapeFile(self.root, "full")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertTrue(config.dataDir.is_dir())
        stored = yaml.safe_load(path.read_text())
        key = PrivateKey.fromProtobuf(base64.b64decode(stored["privatekey"]))
        self.assertEqual(key.peerID(), config.peerID)
        self.assertTrue(str(config.peerID).startswith("12D3KooW"))
        again = loadConfig(shape="full", root=self.root)
        self.assertEqual(again.peerID, config.peerID)

    def test_shapesGetTheirOwnIdentity(self):
        full = loadConfig(shape="full", root=self.root)
        other = self.writeConfig({"services": []})
        custom = loadConfig(shape="edge", root=self.root, configFile=other)
        self.assertNotEqual(full.peerID, custom.peerID)

    def test_noCreate(self):
        e = self.assertRaises(ConfigError, loadConfig, shape="full", root=self.root, create=False)
        self.assertIn("tau init", str(e))
        self.assertFalse(self.root.exists())

    def test_taubyteKeyAccepted(self):
        """
        A privatekey in the form Taubyte writes (base64 of the protobuf key).
        """
        path = self.writeConfig({"privatekey": SPEC_KEY})
        config = loadConfig(shape="full", root=self.root, configFile=path)
        self.assertEqual(str(config.peerID), SPEC_PEER)
        stored = yaml.safe_load(shapeFile(self.root, "full").read_text())
        self.assertEqual(stored["privatekey"], SPEC_KEY)
        self.assertEqual(loadConfig(shape="full", root=self.root).peerID, config.peerID)


class PrecedenceTests(ConfigTestsMixin, SynchronousTestCase):
    def test_commandLineOverFileOverRootOverDefaults(self):
        loadConfig(shape="full", root=self.root)
        config = loadConfig(shape="full", root=self.root)
        self.assertEqual(config.p2pListen, ("/ip4/0.0.0.0/tcp/4242",))
        self.assertEqual(config.ports["main"], 4242)
        path = self.writeConfig({"p2p-listen": ["/ip4/127.0.0.1/tcp/5000"], "ports": {"main": 5000}, "network-fqdn": "a.example.com"})
        config = loadConfig(shape="full", root=self.root, configFile=path)
        self.assertEqual(config.p2pListen, ("/ip4/127.0.0.1/tcp/5000",))
        self.assertEqual(config.networkFqdn, "a.example.com")
        config = loadConfig(
            shape="full", root=self.root, configFile=path, overrides={"p2p-listen": ["/ip6/::1/tcp/0"]}
        )
        self.assertEqual(config.p2pListen, ("/ip6/::1/tcp/0",))
        self.assertEqual(config.ports, {"main": 5000, "lite": 4247, "ipfs": 4252})
        self.assertEqual(config.sources[-1], "command line")

    def test_fullShapeFollowsTheBuild(self):
        """
        C{full} is every service this build provides but gateway.
        """
        config = loadConfig(shape="full", root=self.root)
        expected = tuple(n for n in services.available() if n != "gateway")
        self.assertEqual(config.services, expected)

    def test_dhtSettings(self):
        path = self.writeConfig({"dht": {"provider-expiry": 3600}})
        config = loadConfig(shape="full", root=self.root, configFile=path)
        self.assertEqual(
            config.dht,
            {
                "mode": "auto",
                "provider-expiry": 3600,
                "republish": 22 * 3600.0,
                "max-provider-records": 1_000_000,
                "max-provider-bytes": 128 << 20,
                "max-provider-records-per-peer": 10_000,
            },
        )

    def test_dhtProviderCaps(self):
        """
        The provider record caps: whole numbers of records, a size in bytes
        (with units) of at least 4 KiB.
        """
        caps = {"max-provider-records": 1, "max-provider-bytes": "4KiB", "max-provider-records-per-peer": 1}
        config = loadConfig(shape="full", root=self.root, configFile=self.writeConfig({"dht": caps}))
        self.assertEqual(
            {k: config.dht[k] for k in caps},
            {"max-provider-records": 1, "max-provider-bytes": 4096, "max-provider-records-per-peer": 1},
        )

    def test_taubyteProtocolsAlias(self):
        """
        Older Taubyte shape files call the services "protocols".
        """
        path = self.writeConfig({"protocols": []})
        self.assertEqual(loadConfig(shape="x", root=self.root, configFile=path).services, ())

    def test_publicViewRedactsKey(self):
        config = loadConfig(shape="full", root=self.root)
        view = publicView(config)
        self.assertEqual(view["privatekey"], "<redacted>")
        self.assertNotIn(base64.b64encode(config.privateKey.toProtobuf()).decode(), repr(view))


class BadConfigTests(ConfigTestsMixin, SynchronousTestCase):
    """
    Each wrong value: one ConfigError naming the file, the field and what is
    expected, and nothing on disk changed.
    """

    def assertRefused(self, data, field, words, shape="full", existing=False):
        if existing:
            loadConfig(shape="full", root=self.root)
        before = snapshot(self.root)
        path = self.writeConfig(data)
        e = self.assertRaises(ConfigError, loadConfig, shape=shape, root=self.root, configFile=path)
        self.assertEqual(e.source, str(path))
        self.assertEqual(e.field, field)
        for word in words:
            self.assertIn(word, str(e))
        self.assertTrue(str(e).startswith(f"{path}: "))
        self.assertEqual(snapshot(self.root), before)

    def test_badMultiaddr(self):
        self.assertRefused({"p2p-listen": ["/ip4/300.1.1.1/tcp/1"]}, "p2p-listen[0]", ["not a multiaddr"])
        self.assertRefused({"p2p-listen": ["/ip4/1.2.3.4/udp/1"]}, "p2p-listen[0]", ["/tcp/PORT"], existing=True)
        self.assertRefused({"p2p-announce": ["nonsense"]}, "p2p-announce[0]", ["not a multiaddr"])
        self.assertRefused({"peers": ["/ip4/1.2.3.4/tcp/1"]}, "peers[0]", ["/p2p/PEERID"])

    def test_unknownService(self):
        self.assertRefused({"services": ["seer", "bogus"]}, "services[1]", ["unknown service 'bogus'", "tns"])

    def test_gatewayAndSubstrate(self):
        """
        Never both on one node (reported even before either is provided).
        """
        self.patch(services, "FACTORIES", {"gateway": "x:y", "substrate": "x:y"})
        self.assertRefused({"services": ["gateway", "substrate"]}, "services", ["gateway and substrate"])

    def test_serviceNotProvided(self):
        """
        A service Taubyte has but this build does not provide is refused,
        never ignored.
        """
        self.patch(services, "FACTORIES", {n: f for n, f in services.FACTORIES.items() if n != "hoarder"})
        self.assertRefused({"services": ["hoarder"]}, "services[0]", ["not provided by this version"])

    def test_unreadableKey(self):
        self.assertRefused({"privatekey": "not base64!"}, "privatekey", ["unreadable key"])
        self.assertRefused({"privatekey": base64.b64encode(b"\x08\x00\x12\x01x").decode()}, "privatekey", ["unreadable key"])
        self.assertRefused({"privatekey": 42}, "privatekey", ["base64"])

    def test_wrongTypes(self):
        self.assertRefused({"p2p-listen": "/ip4/1.2.3.4/tcp/1"}, "p2p-listen", ["expected a list"])
        self.assertRefused({"p2p-listen": [5]}, "p2p-listen[0]", ["expected a string"])
        self.assertRefused({"ports": {"main": "x"}}, "ports.main", ["port number"])
        self.assertRefused({"ports": {"main": 70000}}, "ports.main", ["port number"])
        self.assertRefused({"ports": {"mian": 1}}, "ports.mian", ["unknown port"])
        self.assertRefused({"location": {"lat": "north"}}, "location", ["lat and long"])
        self.assertRefused({"location": {"lat": 91, "long": 0}}, "location.lat", ["latitude"])
        self.assertRefused({"network-fqdn": "not a domain"}, "network-fqdn", ["domain name"])
        self.assertRefused({"domains": {"whitelist": []}}, "domains.whitelist", ["unknown field"])
        self.assertRefused({"services": "seer"}, "services", ["expected a list"])
        self.assertRefused({"connections": {"low": -1}}, "connections.low", ["whole number"])
        self.assertRefused({"dht": {"mode": "both"}}, "dht.mode", ["auto, server or client"])
        self.assertRefused({"dht": {"republish": 0}}, "dht.republish", ["positive number"])

    def test_perfAndApiToken(self):
        """
        perf and api-token: off unless set, true or false only.
        """
        config = loadConfig(shape="full", root=self.root)
        self.assertEqual((config.perf, config.apiToken), (False, False))
        config = loadConfig(shape="full", root=self.root, overrides={"perf": True, "api-token": True})
        self.assertEqual((config.perf, config.apiToken), (True, True))
        self.assertRefused({"perf": "yes"}, "perf", ["true or false"])
        self.assertRefused({"api-token": 1}, "api-token", ["true or false"])

    def test_secretFiles(self):
        """
        The files holding a secret: the root's shape file (its key), a
        config file that gives a privatekey, the swarm key in use.
        """
        loadConfig(shape="full", root=self.root)
        rootFile = self.root / "config" / "full.yaml"
        key = self.writeConfig("/key/swarm/psk/1.0.0/\n/base16/\n" + "ab" * 32 + "\n", name="swarm.key")
        key = key.resolve()
        plain = self.writeConfig({"swarmkey": str(key)})
        config = loadConfig(shape="full", root=self.root, configFile=plain)
        self.assertEqual(config.secretFiles, (rootFile, key))
        keyed = self.writeConfig({"privatekey": yaml.safe_load(rootFile.read_text())["privatekey"]})
        config = loadConfig(shape="full", root=self.root, configFile=keyed)
        self.assertEqual(config.secretFiles, (rootFile, keyed))

    def test_dhtProviderCapsRefused(self):
        self.assertRefused({"dht": {"max-provider-records": 0}}, "dht.max-provider-records", ["whole number", "above 0"])
        self.assertRefused({"dht": {"max-provider-records-per-peer": 1.5}}, "dht.max-provider-records-per-peer", ["whole number"])
        self.assertRefused({"dht": {"max-provider-bytes": 4095}}, "dht.max-provider-bytes", ["at least 4 KiB"])
        self.assertRefused({"dht": {"max-provider-bytes": "lots"}}, "dht.max-provider-bytes", ["invalid size"])

    def test_unknownField(self):
        self.assertRefused({"p2p-lisen": []}, "p2p-lisen", ["unknown field", "p2p-listen"])

    def test_apiListenLoopbackOnly(self):
        self.assertRefused({"api-listen": "tcp:5001"}, "api-listen", ["loopback"])
        self.assertRefused({"api-listen": "tcp:5001:interface=0.0.0.0"}, "api-listen", ["loopback"])
        self.assertRefused({"api-listen": "ssl:5001"}, "api-listen", ["tcp: or unix:"])

    def test_swarmKeyMissingOrBad(self):
        self.assertRefused({"swarmkey": "nope/swarm.key"}, "swarmkey", ["cannot read"])
        bad = self.writeConfig("/key/swarm/psk/1.0.0/\n/base16/\nzz\n", name="swarm.key")
        self.assertRefused({"swarmkey": str(bad)}, "swarmkey", [str(bad)])

    def test_swarmKeyRelativeToConfigFile(self):
        path = self.writeConfig({"swarmkey": "swarm.key"})
        (path.parent / "swarm.key").write_text("/key/swarm/psk/1.0.0/\n/base16/\n" + "ab" * 32 + "\n")
        config = loadConfig(shape="full", root=self.root, configFile=path)
        self.assertEqual(config.swarmKey, bytes.fromhex("ab" * 32))

    def test_notYAML(self):
        self.assertRefused("p2p-listen: [unclosed", None, ["not valid YAML", "line"])
        self.assertRefused("- a list\n- of things\n", None, ["mapping"])

    def test_missingFile(self):
        e = self.assertRaises(ConfigError, loadConfig, shape="full", root=self.root, configFile="/nonexistent/x.yaml")
        self.assertIn("cannot read", str(e))
        self.assertFalse(self.root.exists())

    def test_customShapeNeedsServices(self):
        e = self.assertRaises(ConfigError, loadConfig, shape="edge", root=self.root)
        self.assertIn("not a built-in shape", str(e))
        self.assertFalse(self.root.exists())

    def test_badShapeName(self):
        e = self.assertRaises(ConfigError, loadConfig, shape="../etc", root=self.root)
        self.assertEqual(e.field, "shape")

    def test_rootFileWithoutKey(self):
        path = shapeFile(self.root, "full")
        path.parent.mkdir(parents=True)
        path.write_text("p2p-listen: [/ip4/0.0.0.0/tcp/1]\n")
        before = snapshot(self.root)
        e = self.assertRaises(ConfigError, loadConfig, shape="full", root=self.root)
        self.assertEqual(e.field, "privatekey")
        self.assertEqual(snapshot(self.root), before)


class SampleShapeTests(ConfigTestsMixin, SynchronousTestCase):
    """
    etc/ holds full, gateway and one shape per service, all valid.
    """

    def test_everyShapeHasASample(self):
        names = {p.stem for p in (REPO / "etc").glob("*.yaml")}
        self.assertEqual(names, {"full", "gateway", *services.KNOWN})

    def test_samplesLoadOrNameTheMissingService(self):
        for path in sorted((REPO / "etc").glob("*.yaml")):
            shape = path.stem
            root = Path(self.mktemp())
            chosen = services.builtinShapes()[shape]
            if all(n in services.FACTORIES for n in chosen):
                config = loadConfig(shape=shape, root=root, configFile=path)
                self.assertEqual(config.networkFqdn, "cloud.example.com")
            else:
                e = self.assertRaises(ConfigError, loadConfig, shape=shape, root=root, configFile=path)
                self.assertIn("not provided by this version", str(e))
                self.assertFalse(root.exists())


class CloudConfigTests(ConfigTestsMixin, SynchronousTestCase):
    """
    The cloud section (cloud.key, cloud.admission) and kvdb.writer-quota.
    """

    assertRefused = BadConfigTests.assertRefused

    def setUp(self):
        super().setUp()
        self.cloud = PrivateKey.generate()
        self.node = PrivateKey.fromProtobuf(base64.b64decode(SPEC_KEY))

    def fields(self, signer=None, node=None, key=None):
        admission = makeAdmission(signer or self.cloud, (node or self.node).peerID(), ["tns"])
        return {"privatekey": SPEC_KEY, "cloud": {"key": str((key or self.cloud).peerID()), "admission": admission.text()}}

    def test_admitted(self):
        config = loadConfig(shape="full", root=self.root, configFile=self.writeConfig(self.fields()))
        self.assertEqual(config.cloud["key"], self.cloud.peerID())
        self.assertEqual(config.cloud["admission"].services, ("tns",))
        self.assertEqual(config.kvdb["writer-quota"], 1 << 30)
        view = publicView(config)
        self.assertEqual(view["cloud"]["key"], str(self.cloud.peerID()))

    def test_admissionOfAnotherNode(self):
        self.assertRefused(self.fields(node=PrivateKey.generate()), "cloud.admission", ["not this node", SPEC_PEER])

    def test_admissionSignedByAnotherKey(self):
        self.assertRefused(self.fields(key=PrivateKey.generate()), "cloud.admission", ["not by cloud.key"])

    def test_admissionWithoutKey(self):
        data = self.fields()
        del data["cloud"]["key"]
        self.assertRefused(data, "cloud.admission", ["needs cloud.key"])

    def test_badAdmissionOrKey(self):
        self.assertRefused({"cloud": {"admission": "AAAA"}}, "cloud.admission", ["unreadable admission"])
        self.assertRefused({"cloud": {"key": "nope"}}, "cloud.key", ["PeerId of the cloud's key"])
        self.assertRefused({"cloud": {"members": []}}, "cloud.members", ["unknown field"])

    def test_writerQuota(self):
        config = loadConfig(shape="full", root=self.root, configFile=self.writeConfig({"kvdb": {"writer-quota": "10MiB"}}))
        self.assertEqual(config.kvdb["writer-quota"], 10 << 20)
        self.assertEqual(loadConfig(shape="full", root=self.root, configFile=self.writeConfig({"kvdb": {"writer-quota": 1}})).kvdb["writer-quota"], 1)
        self.assertRefused({"kvdb": {"writer-quota": 0}}, "kvdb.writer-quota", ["above 0 bytes"])
        self.assertRefused({"kvdb": {"writer-quota": "lots"}}, "kvdb.writer-quota", ["invalid size"])
