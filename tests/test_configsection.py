"""
Config sections: a section registered from outside tau/config.py is read,
checked, merged and shown like the built-in ones; the auth and tns sections
through loadConfig.
"""

from twisted.trial.unittest import SynchronousTestCase

from tau import config as configModule
from tau.config import loadConfig, publicView
from tau.configsection import Section, require
from tau.services.auth.config import AuthConfig
from tau.services.tns.config import TNSConfig

from tests import test_config
from tests.test_config import ConfigTestsMixin


class BoxSection(Section):
    """
    A section as a plugin would write one: C{size} from 1 to 8, C{label}
    a string, and the merged size at most twice the label's length.
    """

    name = "test-box"
    defaults = {"size": 4, "label": "abcd"}

    def clean(self, source, value):
        if "size" in value:
            v = value["size"]
            require(source, "test-box.size", isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 8,
                    "expected a whole number from 1 to 8")
        if "label" in value:
            require(source, "test-box.label", isinstance(value["label"], str), "expected a string")
        return dict(value)

    def finish(self, source, fields, peerID):
        require(source, "test-box", fields["size"] <= 2 * len(fields["label"]), "size must not be above twice the label's length")
        return dict(fields)


class RegisteredSectionTests(ConfigTestsMixin, SynchronousTestCase):
    """
    A section added to C{tau.config.SECTIONS} from outside, with no change
    to tau/config.py.
    """

    assertRefused = test_config.BadConfigTests.assertRefused

    def setUp(self):
        super().setUp()
        self.patch(configModule, "SECTIONS", [*configModule.SECTIONS, BoxSection()])

    def test_defaultsHeldAndShown(self):
        config = loadConfig(shape="full", root=self.root)
        self.assertEqual(config.testBox, {"size": 4, "label": "abcd"})
        self.assertEqual(publicView(config)["test-box"], {"size": 4, "label": "abcd"})

    def test_limitAtItsEdge(self):
        config = loadConfig(shape="full", root=self.root, configFile=self.writeConfig({"test-box": {"size": 8}}))
        self.assertEqual(config.testBox["size"], 8)
        self.assertRefused({"test-box": {"size": 9}}, "test-box.size", ["from 1 to 8"])
        self.assertRefused({"test-box": {"size": 0}}, "test-box.size", ["from 1 to 8"])

    def test_refusedAsTheBuiltInSections(self):
        self.assertRefused({"test-box": {"colour": 1}}, "test-box.colour", ["unknown field (expected: size, label)"])
        self.assertRefused({"test-box": [1]}, "test-box", ["expected a mapping with size, label"])
        self.assertRefused({"test-bx": {}}, "test-bx", ["unknown field", "test-box"])

    def test_layersMerge(self):
        """
        The root file gives size, --config the label, the command line size
        again: each key left out keeps the value from below.
        """
        loadConfig(shape="full", root=self.root)
        rootFile = self.root / "config" / "full.yaml"
        rootFile.write_text(rootFile.read_text() + "test-box: {size: 7}\n")
        path = self.writeConfig({"test-box": {"label": "wxyz"}})
        config = loadConfig(shape="full", root=self.root, configFile=path)
        self.assertEqual(config.testBox, {"size": 7, "label": "wxyz"})
        config = loadConfig(shape="full", root=self.root, configFile=path, overrides={"test-box": {"size": 1}})
        self.assertEqual(config.testBox, {"size": 1, "label": "wxyz"})
        self.assertEqual(publicView(config)["test-box"], {"size": 1, "label": "wxyz"})

    def test_mergedValueCheckedAtItsEdge(self):
        """
        The check of the merged value names the last layer that gave the
        section: a size of twice the label's length is held, one more is
        refused.
        """
        config = loadConfig(shape="full", root=self.root, configFile=self.writeConfig({"test-box": {"label": "abc", "size": 6}}))
        self.assertEqual(config.testBox, {"size": 6, "label": "abc"})
        self.assertRefused({"test-box": {"label": "abc", "size": 7}}, "test-box", ["twice the label's length"])

    def test_evolve(self):
        config = loadConfig(shape="full", root=self.root)
        changed = config.evolve(testBox={"size": 2, "label": "a"}, perf=True)
        self.assertEqual((changed.testBox, changed.perf), ({"size": 2, "label": "a"}, True))
        self.assertEqual(config.testBox, {"size": 4, "label": "abcd"})

    def test_notRegistered(self):
        """
        Without the section, its field is unknown and nothing holds it.
        """
        self.patch(configModule, "SECTIONS", configModule.SECTIONS[:-1])
        self.assertRefused({"test-box": {"size": 1}}, "test-box", ["unknown field"])
        config = loadConfig(shape="full", root=self.root)
        self.assertRaises(AttributeError, getattr, config, "testBox")
        self.assertNotIn("test-box", publicView(config))


class ServiceSectionTests(ConfigTestsMixin, SynchronousTestCase):
    """
    The auth and tns sections, read by loadConfig: the node config holds an
    L{AuthConfig} and a L{TNSConfig}.
    """

    assertRefused = test_config.BadConfigTests.assertRefused

    def load(self, data):
        return loadConfig(shape="full", root=self.root, configFile=self.writeConfig(data))

    def test_defaults(self):
        config = loadConfig(shape="full", root=self.root)
        self.assertEqual((config.auth, config.tns), (AuthConfig(), TNSConfig()))
        view = publicView(config)
        self.assertEqual(view["tns"], {"max-keys": 100_000, "max-message": TNSConfig().maxMessage, "replicas": 1, "write-timeout": 30.0})
        self.assertEqual(view["auth"]["http-listen"], "tcp:0:interface=127.0.0.1")
        self.assertEqual(view["auth"]["max-body"], 1 << 20)

    def test_tnsLayersMerge(self):
        loadConfig(shape="full", root=self.root)
        rootFile = self.root / "config" / "full.yaml"
        rootFile.write_text(rootFile.read_text() + "tns: {replicas: 3}\n")
        config = self.load({"tns": {"write-timeout": 2}})
        self.assertEqual(config.tns, TNSConfig(replicas=3, writeTimeout=2.0))

    def test_tnsEdges(self):
        self.assertEqual(self.load({"tns": {"replicas": 1, "max-keys": 1}}).tns, TNSConfig(replicas=1, maxKeys=1))
        self.assertRefused({"tns": {"replicas": 0}}, "tns.replicas", ["expected a whole number of nodes above 0, found 0"])
        self.assertRefused({"tns": {"max-keys": 0}}, "tns.max-keys", ["expected a whole number of keys above 0, found 0"])
        self.assertRefused({"tns": {"write-timeout": 0}}, "tns.write-timeout", ["positive number of seconds"])
        self.assertRefused({"tns": {"max-key": 5}}, "tns.max-key", ["unknown field (expected: max-keys, max-message, replicas, write-timeout)"])
        self.assertRefused({"tns": 5}, "tns", ["expected a mapping with max-keys"])

    def test_authEdges(self):
        config = self.load({"auth": {"max-body": 1, "http-listen": "tcp:8443:interface=127.0.0.1"}})
        self.assertEqual(config.auth, AuthConfig(maxBody=1, httpListen="tcp:8443:interface=127.0.0.1"))
        self.assertRefused({"auth": {"max-body": 0}}, "auth.max-body", ["expected a whole number of bytes above 0, found 0"])
        self.assertRefused({"auth": {"provider-timeout": 0}}, "auth.provider-timeout", ["positive number of seconds"])
        self.assertRefused({"auth": {"github-api": "ftp://x"}}, "auth.github-api", ["http:// or https:// URL"])
        self.assertRefused({"auth": {"port": 1}}, "auth.port", ["unknown field (expected: http-listen, github-api"])
