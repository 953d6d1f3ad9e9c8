"""
L{tau.dream.universe}: names, shapes and the folder a dream is made of.
"""

import yaml
from twisted.trial.unittest import SynchronousTestCase

from tau import services
from tau.config import loadConfig
from tau.dream.universe import (MAX_NODES, SHAPE, DreamError, Layout, checkName, defaultShapes, fqdnOf,
                                parseShapes, prepareFolder, prepareNode)


class NameTests(SynchronousTestCase):
    def test_names(self):
        """
        A name is a DNS label of 1 to 32 lower-case letters, digits and -;
        its network is C{<name>.localtau}.
        """
        for good in ("a", "d1", "my-cloud", "x" * 32):
            self.assertEqual(checkName(good), good)
        for bad in ("", "x" * 33, "-a", "a-", "A", "a.b", "a_b", "a/b", "..", None):
            self.assertRaises(DreamError, checkName, bad)
        self.assertEqual(fqdnOf("my-cloud"), "my-cloud.localtau")


class ShapeTests(SynchronousTestCase):
    def test_default(self):
        """
        One node per service of L{services.KNOWN} this build provides, in
        that order (services being written join once registered).
        """
        self.assertEqual(defaultShapes(), [(s,) for s in services.KNOWN if s in services.available()])
        self.assertIn(("hoarder",), defaultShapes())
        self.patch(services, "FACTORIES", {n: f for n, f in services.FACTORIES.items() if n != "hoarder"})
        self.assertNotIn(("hoarder",), defaultShapes())
        self.assertIn(("patrick",), defaultShapes())

    def test_parse(self):
        """
        Items separated by commas are nodes; C{+} joins a node's services.
        """
        self.assertEqual(parseShapes("seer+tns, auth,gateway"), [("seer", "tns"), ("auth",), ("gateway",)])

    def test_refused(self):
        """
        No node, an unknown service, a service twice, gateway with substrate,
        more than L{MAX_NODES} nodes: refused, saying why.
        """
        for text, why in (("", "at least one"), ("tns,nosuch", "'nosuch' is not provided"),
                          ("tns+tns", "named twice"), ("gateway+substrate", "never share a node"),
                          ("tns,", "not provided"), (",".join(["tns"] * (MAX_NODES + 1)), f"at most {MAX_NODES}")):
            with self.assertRaises(DreamError) as caught:
                parseShapes(text)
            self.assertIn(why, str(caught.exception))
        self.assertEqual(len(parseShapes(",".join(["tns"] * MAX_NODES))), MAX_NODES)


class FolderTests(SynchronousTestCase):
    def test_node(self):
        """
        A node's root holds a shape file tau loads: its services, the
        dream's swarm key, network and cloud (an admission for exactly its
        services), every listener on loopback port 0; a second prepare
        keeps it (same identity).
        """
        layout = Layout(self.mktemp())
        cloudKey = prepareFolder(layout)
        self.assertEqual(prepareFolder(layout).peerID(), cloudKey.peerID())
        root = prepareNode(layout, 0, ("seer", "tns"), "t.localtau", cloudKey)
        self.assertEqual(root, layout.folder / "nodes" / "0-seer-tns")
        config = loadConfig(shape=SHAPE, root=root, create=False)
        self.assertEqual(config.services, ("seer", "tns"))
        self.assertEqual(config.networkFqdn, "t.localtau")
        self.assertEqual(config.swarmKeyPath, layout.swarmKey)
        self.assertEqual(config.apiListen, "tcp:0:interface=127.0.0.1")
        self.assertEqual(tuple(config.p2pListen), ("/ip4/127.0.0.1/tcp/0",))
        admission = config.cloud["admission"]
        self.assertEqual((admission.cloud, admission.node, admission.services),
                         (cloudKey.peerID(), config.peerID, ("seer", "tns")))
        before = (root / "config" / f"{SHAPE}.yaml").read_text()
        prepareNode(layout, 0, ("seer", "tns"), "t.localtau", cloudKey)
        self.assertEqual((root / "config" / f"{SHAPE}.yaml").read_text(), before)
        self.assertEqual(yaml.safe_load(before)["seer"]["announce-ip"], "127.0.0.1")
        self.assertEqual(oct(layout.swarmKey.stat().st_mode & 0o777), "0o600")
        self.assertEqual(oct(layout.cloudKey.stat().st_mode & 0o777), "0o600")
