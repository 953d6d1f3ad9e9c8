"""
The C{substrate} section of a node config, and where the compiled modules
are kept.
"""

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tau import loadConfig
from tau.errors import ConfigError
from tau.services.substrate.config import SubstrateConfig, SubstrateSection
from tau.services.substrate.service import moduleCacheOf


class ConfigTests(SynchronousTestCase):
    def test_defaults(self):
        """
        No direct HTTP, the default cache folder, an 8 MiB request body and
        no private network reachable by functions.
        """
        config = SubstrateConfig.check("n.yaml", None)
        self.assertEqual(config, SubstrateConfig())
        self.assertEqual((config.httpListen, config.moduleCache, config.maxRequestBody, config.httpClientAllow,
                          config.subscribeAll), (None, None, 8 << 20, (), True))

    def test_given(self):
        config = SubstrateConfig.check("n.yaml", {
            "http-listen": "tcp:8080:interface=127.0.0.1", "module-cache": "cache/modules",
            "max-request-body": "1MiB", "max-module": 1000, "workers": 8, "pool-size": 2, "pool-total": 10,
            "http-client-allow": ["10.1.2.3/8", "fd00::/8", "192.168.1.1"], "subscribe-all": False})
        self.assertEqual(config, SubstrateConfig("tcp:8080:interface=127.0.0.1", "cache/modules", 1 << 20, 1000, 8,
                                                 2, 10, ("10.0.0.0/8", "fd00::/8", "192.168.1.1/32"), False))
        self.assertEqual(SubstrateSection().show(config)["http-client-allow"],
                         ["10.0.0.0/8", "fd00::/8", "192.168.1.1/32"])

    def test_errors(self):
        for value, field, text in [
            ({"http-listen": "nonsense:1"}, "substrate.http-listen", "is not an endpoint string"),
            ({"http-listen": 8080}, "substrate.http-listen", "expected an endpoint string"),
            ({"module-cache": 3}, "substrate.module-cache", "expected a folder path"),
            ({"max-request-body": "lots"}, "substrate.max-request-body", "invalid size"),
            ({"max-module": 0}, "substrate.max-module", "above 0"),
            ({"workers": 0}, "substrate.workers", "above 0"),
            ({"pool-size": True}, "substrate.pool-size", "above 0"),
            ({"http-client-allow": "10.0.0.0/8"}, "substrate.http-client-allow", "expected a list of CIDRs"),
            ({"http-client-allow": ["10.0.0.0/8", "nope"]}, "substrate.http-client-allow[1]", "expected a CIDR"),
            ({"subscribe-all": "yes"}, "substrate.subscribe-all", "expected true or false"),
            ({"port": 1}, "substrate.port", "unknown field"),
        ]:
            e = self.assertRaises(ConfigError, SubstrateConfig.check, "n.yaml", value)
            self.assertIn(field, str(e))
            self.assertIn(text, str(e))

    def test_moduleCache(self):
        """
        The cache is under the shape's data folder unless given; a relative
        folder is under the node's root.
        """
        root = Path(self.mktemp()).resolve()
        config = loadConfig(shape="substrate", root=root)
        self.assertEqual(moduleCacheOf(config), root / "storage" / "substrate" / "substrate-modules")
        config = loadConfig(shape="substrate", root=root, overrides={"substrate": {"module-cache": "mods"}})
        self.assertEqual(moduleCacheOf(config), root / "mods")
        config = loadConfig(shape="substrate", root=root, overrides={"substrate": {"module-cache": "/var/mods"}})
        self.assertEqual(moduleCacheOf(config), Path("/var/mods"))
