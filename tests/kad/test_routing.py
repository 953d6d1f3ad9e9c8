"""
Tests for L{tau.kad.routing.RoutingTable}.
"""

import random

from twisted.trial.unittest import SynchronousTestCase

from tau.kad.keys import bucketIndex, kadID, peerKadID
from tau.kad.routing import RoutingTable
from tests.kad.helpers import peerWithCpl, peers


class RoutingTableTests(SynchronousTestCase):
    def setUp(self):
        self.me = peers(1, seed=99)[0]
        self.rng = random.Random(5)
        self.table = RoutingTable(self.me, k=4, maxFailures=2, staleAfter=100.0)

    def fill(self, cpl, n, now=0.0):
        added = [peerWithCpl(self.me, cpl, self.rng) for _ in range(n)]
        for p in added:
            self.table.add(p, True, now)
        return added

    def test_addAndBuckets(self):
        a = self.fill(0, 2)
        b = self.fill(3, 1)
        self.assertEqual(len(self.table), 3)
        self.assertEqual(self.table.bucketSizes(), {0: 2, 3: 1})
        for p in a + b:
            self.assertIn(p, self.table)

    def test_clientModeRefused(self):
        """
        A client-mode peer is never added; a peer that switches to client
        mode is removed.
        """
        (p,) = peers(1)
        self.assertFalse(self.table.add(p, False, 0.0))
        self.assertNotIn(p, self.table)
        self.table.add(p, True, 0.0)
        self.assertIn(p, self.table)
        self.table.add(p, False, 1.0)
        self.assertNotIn(p, self.table)

    def test_selfRefused(self):
        self.assertFalse(self.table.add(self.me, True, 0.0))
        self.assertEqual(len(self.table), 0)

    def test_fullBucketUsesReplacementCache(self):
        """
        A healthy full bucket keeps its peers; newcomers wait in the
        replacement cache, which is bounded.
        """
        first = self.fill(2, 4)
        extra = self.fill(2, 6)
        self.assertEqual(set(self.table.peers()), set(first))
        self.assertEqual(self.table.replacements(2), extra[-4:])

    def test_failuresEvictAndPromote(self):
        """
        After C{maxFailures} failed requests a peer is evicted and the most
        recently seen replacement takes its place.
        """
        first = self.fill(1, 4)
        extra = self.fill(1, 2, now=5.0)
        victim = first[0]
        self.assertFalse(self.table.markFailed(victim, 6.0))
        self.assertIn(victim, self.table)
        self.assertTrue(self.table.markFailed(victim, 7.0))
        self.assertNotIn(victim, self.table)
        self.assertIn(extra[-1], self.table)
        self.assertEqual(self.table.replacements(1), extra[:1])

    def test_successResetsFailures(self):
        (p,) = self.fill(1, 1)
        self.table.markFailed(p, 1.0)
        self.table.add(p, True, 2.0)
        self.table.markFailed(p, 3.0)
        self.assertIn(p, self.table)

    def test_failedPeerReplacedByNewcomer(self):
        """
        A full bucket makes room for a newcomer by dropping a peer that
        failed.
        """
        first = self.fill(1, 4)
        self.table.markFailed(first[2], 1.0)
        (new,) = self.fill(1, 1, now=2.0)
        self.assertIn(new, self.table)
        self.assertNotIn(first[2], self.table)

    def test_stalePeerReplacedByNewcomer(self):
        first = self.fill(1, 4, now=0.0)
        self.table.add(first[0], True, 150.0)
        self.table.add(first[1], True, 150.0)
        self.table.add(first[3], True, 150.0)
        (new,) = self.fill(1, 1, now=150.0)
        self.assertIn(new, self.table)
        self.assertNotIn(first[2], self.table)

    def test_removePromotes(self):
        first = self.fill(0, 4)
        (extra,) = self.fill(0, 1)
        self.assertTrue(self.table.remove(first[1]))
        self.assertIn(extra, self.table)
        self.assertFalse(self.table.remove(first[1]))

    def test_failingReplacementDropped(self):
        self.fill(0, 4)
        (extra,) = self.fill(0, 1)
        self.table.markFailed(extra, 1.0)
        self.assertEqual(self.table.replacements(0), [])

    def test_closestOrdering(self):
        """
        L{RoutingTable.closest} returns the peers nearest by XOR, nearest
        first, as a brute force sort would.
        """
        table = RoutingTable(self.me, k=20)
        everyone = peers(300, seed=7)
        for p in everyone:
            table.add(p, True, 0.0)
        key = b"some key"
        target = kadID(key)
        expected = sorted(table.peers(), key=lambda p: peerKadID(p) ^ target)[:10]
        self.assertEqual(table.closest(key, 10, now=0.0), expected)
        self.assertEqual(table.closest(target, 10, now=0.0), expected)
        self.assertEqual(
            table.closest(key, 10, now=0.0, exclude={expected[0]}),
            sorted(table.peers(), key=lambda p: peerKadID(p) ^ target)[1:11],
        )

    def test_usefulness(self):
        """
        Only peers that answered within C{staleAfter} and have not failed
        since are handed out; our own lookups may still use the others.
        """
        old, failed, fresh = self.fill(0, 1, now=0.0) + self.fill(1, 1, now=0.0) + self.fill(2, 1, now=90.0)
        self.table.markFailed(failed, 95.0)
        self.assertEqual(self.table.closest(b"k", 10, now=150.0), [fresh])
        self.assertEqual(set(self.table.closest(b"k", 10, freshOnly=False)), {old, failed, fresh})
        self.assertEqual(set(self.table.stalePeers(150.0)), {old, failed})
        self.assertRaises(ValueError, self.table.closest, b"k", 10)

    def test_refreshBookkeeping(self):
        """
        Buckets up to one past the deepest populated one need a refresh once
        C{interval} has passed without a lookup in them; a lookup for a key in
        a bucket counts as its refresh; random keys land in their bucket.
        """
        table = RoutingTable(self.me, k=4, now=0.0)
        for p in [peerWithCpl(self.me, 3, self.rng)]:
            table.add(p, True, 0.0)
        self.assertEqual(table.bucketsNeedingRefresh(10.0, 600.0), [])
        self.assertEqual(table.bucketsNeedingRefresh(600.0, 600.0), [0, 1, 2, 3, 4])
        key = table.randomKey(2, self.rng)
        self.assertEqual(bucketIndex(table.selfKadID, kadID(key)), 2)
        table.markRefreshed(key, 600.0)
        self.assertEqual(table.bucketsNeedingRefresh(700.0, 600.0), [0, 1, 3, 4])

    def test_refreshCapped(self):
        """
        Buckets deeper than C{maxCpl} (15 by default, as go) are left to the
        lookup of our own ID.
        """
        table = RoutingTable(self.me, k=4)
        table.add(peerWithCpl(self.me, 5, self.rng), True, 0.0)
        self.assertEqual(table.bucketsNeedingRefresh(1000.0, 600.0, maxCpl=2), [0, 1, 2])
