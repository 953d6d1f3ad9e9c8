"""
Tests for L{tau.tokens.TokenBuckets} and L{tau.addrs.sourceOf}, what
per-peer and per-machine rate limits are built on.
"""

from twisted.trial.unittest import SynchronousTestCase

from tau.addrs import sourceOf
from tau.tokens import TokenBuckets


class TokenBucketsTests(SynchronousTestCase):
    def test_burstThenRate(self):
        buckets = TokenBuckets(burst=3, rate=2.0)
        self.assertEqual([buckets.take("a", 0.0) for _ in range(4)], [True, True, True, False])
        self.assertTrue(buckets.take("b", 0.0))
        self.assertFalse(buckets.take("a", 0.4))
        self.assertTrue(buckets.take("a", 0.5))
        self.assertFalse(buckets.take("a", 0.5))
        # Refilled to the burst, never beyond.
        self.assertEqual([buckets.take("a", 100.0) for _ in range(4)], [True, True, True, False])

    def test_boundedKeys(self):
        """
        A new key beyond C{maxKeys} forgets the keys whose buckets are full
        again, or else the older half; the others keep their state.
        """
        buckets = TokenBuckets(burst=1, rate=1.0, maxKeys=4)
        for key in "abcd":
            buckets.take(key, 0.0)
        buckets.take("e", 0.5)
        self.assertEqual(len(buckets), 3)
        self.assertFalse(buckets.take("c", 0.5))
        buckets.take("f", 2.0)
        self.assertEqual(len(buckets), 4)
        # c, d and e are full again by now: forgotten, f stays.
        buckets.take("g", 2.0)
        self.assertEqual(len(buckets), 2)
        self.assertFalse(buckets.take("f", 2.0))


class SourceTests(SynchronousTestCase):
    def test_sourceOf(self):
        self.assertEqual(sourceOf("192.0.2.7"), "192.0.2.7")
        self.assertEqual(sourceOf("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64")
        self.assertEqual(sourceOf("fe80::1%eth0"), "fe80::/64")
        self.assertIsNone(sourceOf("example.com"))
