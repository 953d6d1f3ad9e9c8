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
        registry.heartbeat("a", "h", b"")
        clock.advance(5)
        registry.heartbeat("b", "h", b"")
        with self.assertRaises(OverflowError) as e:
            registry.announce("c", {})
        self.assertIn("seer holds 2 nodes already", str(e.exception))
        registry.heartbeat("b", "h", b"")
        clock.advance(5)
        registry.announce("c", {})
        self.assertEqual([n.peer for n in registry.nodes()], ["b", "c"])

    def test_expiryAndVersion(self):
        """
        A node stays until ttl seconds after it was last heard; the version
        moves when nodes come, go, or change services, not on a heartbeat.
        """
        clock = Clock()
        registry = Registry(clock, 10, 5)
        registry.announce("a", {"tns": {"IP": "127.0.0.1"}})
        version = registry.version
        clock.advance(9)
        registry.heartbeat("a", "h", b"x")
        registry.announce("a", {"tns": {"IP": "127.0.0.1"}})
        self.assertEqual(registry.version, version)
        clock.advance(9.9)
        self.assertEqual([n.peer for n in registry.nodes("tns")], ["a"])
        clock.advance(0.1)
        self.assertEqual(registry.nodes(), [])
        self.assertGreater(registry.version, version)

    def test_addresses(self):
        """
        A node's addresses are its services' valid, distinct IP metas.
        """
        registry = Registry(Clock(), 10, 5)
        registry.announce("a", {"tns": {"IP": "127.0.0.1"}, "auth": {"IP": "127.0.0.1"},
                                "x": {"IP": "nowhere"}, "y": {}, "z": {"IP": "::1"}})
        self.assertEqual([str(ip) for ip in registry.node("a").addresses], ["127.0.0.1", "::1"])
