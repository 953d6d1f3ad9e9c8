"""
The C{relay} section of the node config and how a node wires the relay.
"""

from pathlib import Path

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tau import loadConfig, makeNode
from tau.config import publicView
from tau.errors import ConfigError
from tau.relay import HOP, STOP, RelayLimits
from tau.relay.config import RelaySection


class RelayConfigTests(SynchronousTestCase):
    def load(self, **fields):
        return loadConfig(shape="full", root=Path(self.mktemp()), overrides=fields)

    def test_defaults(self):
        config = self.load()
        self.assertEqual(config.relay, RelaySection.defaults)
        self.assertEqual(config.relay["service"], "auto")
        self.assertEqual(RelayLimits.fromConfig(config.relay), RelayLimits())
        self.assertEqual(publicView(config)["relay"], RelaySection.defaults)

    def test_partialOverride(self):
        config = self.load(relay={"service": "on", "data": 0})
        self.assertEqual(config.relay["service"], "on")
        self.assertEqual(config.relay["data"], 0)
        self.assertEqual(config.relay["duration"], RelaySection.defaults["duration"])

    def test_refused(self):
        for bad, where in [
            ({"service": "maybe"}, "relay.service"),
            ({"nonsense": 1}, "relay.nonsense"),
            ({"max-reservations": -1}, "relay.max-reservations"),
            ({"data": 1.5}, "relay.data"),
            ({"duration": 1 << 40}, "relay.duration"),
            ({"reservation-ttl": 0}, "relay.reservation-ttl"),
            ("on", "relay"),
        ]:
            with self.assertRaises(ConfigError, msg=bad) as e:
                self.load(relay=bad)
            self.assertIn(where, str(e.exception))


class NodeWiringTests(SynchronousTestCase):
    def node(self, shape="full", **fields):
        fields.setdefault("api-listen", "tcp:0:interface=127.0.0.1")
        config = loadConfig(shape=shape, root=Path(self.mktemp()), overrides=fields)
        return makeNode(config, reactor=MemoryReactorClock())

    def test_autoOnWhenListening(self):
        node = self.node(**{"p2p-listen": ["/ip4/127.0.0.1/tcp/0"]})
        self.assertIn(STOP, node.host.protocols())
        self.assertNotIn(HOP, node.host.protocols())
        node.relay.startService()
        self.assertTrue(node.relay.enabled)
        self.assertIn(HOP, node.host.protocols())
        node.relay.stopService()
        self.assertNotIn(HOP, node.host.protocols())

    def test_autoOffWithoutListener(self):
        node = self.node(**{"p2p-listen": []})
        node.relay.startService()
        self.assertFalse(node.relay.enabled)
        node.relay.setReachable(True)
        self.assertTrue(node.relay.enabled)
        node.relay.stopService()

    def test_autoOffForOtherShapes(self):
        """
        C{auto} relays only on a C{full} node; another shape relays when its
        config says C{on}.
        """
        node = self.node(shape="edge", services=[], **{"p2p-listen": ["/ip4/127.0.0.1/tcp/0"]})
        node.relay.startService()
        self.assertFalse(node.relay.enabled)
        node.relay.setReachable(True)
        self.assertFalse(node.relay.enabled)
        node.relay.stopService()
        node = self.node(shape="edge", services=[], relay={"service": "on"})
        node.relay.startService()
        self.assertTrue(node.relay.enabled)
        node.relay.stopService()

    def test_offAndLimits(self):
        node = self.node(relay={"service": "off", "max-circuits": 3, "duration": 60})
        node.relay.startService()
        self.assertFalse(node.relay.enabled)
        self.assertEqual(node.relay.limits.maxCircuits, 3)
        self.assertEqual(node.relay.limits.duration, 60)
        node.relay.stopService()
