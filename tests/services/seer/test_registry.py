"""
seer's registry: its node limit at the edge, expiry at the TTL on a
Clock, and the version answers are cached against.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tau.services.seer.registry import Registry


class RegistryTests(SynchronousTestCase):
    def test_maxNodes(self):
        """
        Exactly max-nodes nodes are kept; one more is refused until one
        expires; a known node is always heard.
        """
        clock = Clock()
        registry = Registry(clock, 10, 2)
        registry.heartbeat("a", "h", {})
        clock.advance(5)
        registry.heartbeat("b", "h", {})
        with self.assertRaises(OverflowError) as e:
            registry.announce("c", {})
        self.assertIn("seer holds 2 nodes already", str(e.exception))
        registry.heartbeat("b", "h", {})
        clock.advance(5)
        registry.announce("c", {})
        self.assertEqual([n.peer for n in registry.nodes()], ["b", "c"])

    def test_expiryAndVersion(self):
        """
        A node stays until ttl seconds after it last told seer anything;
        the version moves when nodes become healthy or not, or a healthy
        one's services change, not on a repeated heartbeat.
        """
        clock = Clock()
        registry = Registry(clock, 10, 5)
        registry.announce("a", {"tns": {"IP": "127.0.0.1"}})
        self.assertEqual((registry.version, registry.healthy()), (0, []))
        registry.heartbeat("a", "h", {})
        version = registry.version
        self.assertGreater(version, 0)
        clock.advance(9)
        registry.heartbeat("a", "h", {})
        registry.announce("a", {"tns": {"IP": "127.0.0.1"}})
        self.assertEqual(registry.version, version)
        clock.advance(9.9)
        self.assertEqual([n.peer for n in registry.healthy("tns")], ["a"])
        clock.advance(0.1)
        self.assertEqual(registry.nodes(), [])
        self.assertGreater(registry.version, version)

    def test_healthFromHeartbeatsOnly(self):
        """
        A node that keeps announcing but stopped its heartbeats is kept
        (listed) but not healthy from ttl seconds after its last
        heartbeat; the version says so.
        """
        clock = Clock()
        registry = Registry(clock, 10, 5)
        registry.heartbeat("a", "h", {})
        clock.advance(5)
        registry.announce("a", {"gateway": {"IP": "127.0.0.1"}})
        version = registry.version
        clock.advance(4.9)
        self.assertEqual([n.peer for n in registry.healthy("gateway")], ["a"])
        clock.advance(0.1)
        self.assertEqual(registry.healthy(), [])
        self.assertEqual([n.peer for n in registry.nodes("gateway")], ["a"])
        self.assertGreater(registry.version, version)
        clock.advance(5)
        self.assertEqual(registry.nodes(), [])

    def test_addresses(self):
        """
        A node's addresses are its services' valid, distinct IP metas.
        """
        registry = Registry(Clock(), 10, 5)
        registry.announce("a", {"tns": {"IP": "127.0.0.1"}, "auth": {"IP": "127.0.0.1"},
                                "x": {"IP": "nowhere"}, "y": {}, "z": {"IP": "::1"}})
        self.assertEqual([str(ip) for ip in registry.node("a").addresses], ["127.0.0.1", "::1"])
