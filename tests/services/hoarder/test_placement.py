"""
Rendezvous placement: Taubyte's score, the tie rule, the targets, and the
property that makes it cheap: a member that goes moves only what it held.
"""

import xxhash
from hypothesis import given, strategies as st
from twisted.trial.unittest import TestCase

from tau.services.hoarder import placement
from tau.services.hoarder.placement import instanceTarget, owners, ranked, score, stashTarget

peers = st.lists(st.text(alphabet="abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ123456789", min_size=1,
                         max_size=12), min_size=1, max_size=12, unique=True)


class ScoreTests(TestCase):
    def test_xxhash64(self):
        """
        The score is xxhash64 (seed 0) of hash, a zero byte, and the peer
        id text.
        """
        self.assertEqual(xxhash.xxh64_intdigest(b""), 0xEF46DB3751D8E999)
        self.assertEqual(score("QmHash", "12D3KooWpeer"), xxhash.xxh64_intdigest(b"QmHash\x0012D3KooWpeer"))
        self.assertNotEqual(score("ab", "c"), score("a", "bc"))

    def test_highestWins(self):
        members = ["p%d" % i for i in range(10)]
        best = max(members, key=lambda p: score("item", p))
        self.assertEqual(ranked("item", members)[0], best)
        self.assertEqual(owners("item", members, 1), [best])

    def test_tieToLowerPeer(self):
        self.patch(placement, "score", lambda hash, peer: 7)
        self.assertEqual(owners("item", ["c", "a", "b"], 2), ["a", "b"])

    def test_targets(self):
        self.assertEqual([instanceTarget(n) for n in range(6)], [1, 1, 2, 3, 3, 3])
        self.assertEqual([stashTarget(n) for n in range(5)], [1, 1, 2, 2, 2])
        self.assertEqual(stashTarget(5, 4), 4)
        self.assertEqual(owners("item", ["a"], 0), [])

    @given(peers, st.text(max_size=20), st.integers(1, 4))
    def test_goneMemberMovesOnlyItsItems(self, members, item, target):
        """
        Owners are C{min(target, members)} of the members; when a member
        that is not an owner goes, the owners stay; when an owner goes, the
        others stay owners.
        """
        chosen = owners(item, members, target)
        self.assertEqual(len(chosen), min(target, len(members)))
        self.assertTrue(set(chosen) <= set(members))
        for gone in members:
            after = owners(item, [m for m in members if m != gone], target)
            if gone not in chosen:
                self.assertEqual(after, chosen)
            else:
                self.assertTrue(set(chosen) - {gone} <= set(after))
