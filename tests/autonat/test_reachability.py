"""
The reachability machine.
"""

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tau.autonat.reachability import MAX_CONFIDENCE, PRIVATE, PUBLIC, STATUSES, UNKNOWN, Reachability


class ReachabilityTests(SynchronousTestCase):
    def test_startsUnknown(self):
        r = Reachability()
        self.assertEqual((r.status, r.confidence), (UNKNOWN, 0))

    def test_onePublicIsEnough(self):
        r = Reachability()
        self.assertTrue(r.observe(PUBLIC))
        self.assertEqual((r.status, r.confidence), (PUBLIC, 0))

    def test_onePrivateFromUnknown(self):
        r = Reachability()
        self.assertTrue(r.observe(PRIVATE))
        self.assertEqual(r.status, PRIVATE)

    def test_confidenceGrowsToMax(self):
        r = Reachability()
        for _ in range(10):
            r.observe(PRIVATE)
        self.assertEqual((r.status, r.confidence), (PRIVATE, MAX_CONFIDENCE))
        self.assertTrue(r.confident)

    def test_confidentPublicResistsPrivate(self):
        """
        A confident public node needs MAX_CONFIDENCE + 1 failed dial-backs
        in a row to become private: one may fail for other reasons.
        """
        r = Reachability()
        for _ in range(4):
            r.observe(PUBLIC)
        self.assertEqual(r.confidence, MAX_CONFIDENCE)
        changes = [r.observe(PRIVATE) for _ in range(MAX_CONFIDENCE + 1)]
        self.assertEqual(changes, [False] * MAX_CONFIDENCE + [True])
        self.assertEqual((r.status, r.confidence), (PRIVATE, 0))

    def test_publicFlipsAtOnce(self):
        r = Reachability(PRIVATE, MAX_CONFIDENCE)
        self.assertTrue(r.observe(PUBLIC))
        self.assertEqual((r.status, r.confidence), (PUBLIC, 0))

    def test_unknownErodesConfidence(self):
        r = Reachability(PUBLIC, 2)
        self.assertFalse(r.observe(UNKNOWN))
        self.assertFalse(r.observe(UNKNOWN))
        self.assertEqual((r.status, r.confidence), (PUBLIC, 0))
        self.assertTrue(r.observe(UNKNOWN))
        self.assertEqual(r.status, UNKNOWN)
        self.assertFalse(r.observe(UNKNOWN))
        self.assertEqual(r.confidence, 0)

    def test_badInput(self):
        self.assertRaises(ValueError, Reachability, "maybe")
        self.assertRaises(ValueError, Reachability().observe, "maybe")

    @given(st.lists(st.sampled_from(STATUSES), max_size=60))
    def test_invariants(self, observations):
        r = Reachability()
        for observation in observations:
            before = r.status
            changed = r.observe(observation)
            self.assertEqual(changed, r.status != before)
            self.assertIn(r.status, STATUSES)
            self.assertTrue(0 <= r.confidence <= MAX_CONFIDENCE)
            if changed:
                self.assertEqual(r.status, observation)
                self.assertEqual(r.confidence, 0)
            if observation == PUBLIC:
                self.assertEqual(r.status, PUBLIC)
