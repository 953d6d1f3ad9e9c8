"""
Tests for L{tau.kad.keys}.
"""

import hashlib
import random

import cid
import multihash
from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tau.identity import PrivateKey
from tau.kad import keys
from tau.kad.keys import (
    InvalidKey,
    bucketIndex,
    commonPrefixLength,
    distance,
    isMultihash,
    kadID,
    peerKadID,
    providerKey,
    randomKeyWithPrefix,
)


class KeySpaceTests(SynchronousTestCase):
    def test_kadIDIsSha256(self):
        """
        A key's position is the big-endian integer of its sha256.
        """
        self.assertEqual(kadID(b"hello"), int(hashlib.sha256(b"hello").hexdigest(), 16))

    def test_peerPositionHashesTheMultihash(self):
        """
        A peer's position is the sha256 of its peer ID multihash bytes, not of
        its text form or its key.
        """
        peer = PrivateKey.generate().peerID()
        self.assertEqual(peerKadID(peer), kadID(peer.toBytes()))
        self.assertNotEqual(peerKadID(peer), kadID(str(peer).encode()))

    @given(st.binary(), st.binary(), st.binary())
    def test_xorMetric(self, a, b, c):
        """
        XOR distance is a metric: zero only to itself, symmetric, and
        satisfies the triangle inequality.
        """
        x, y, z = kadID(a), kadID(b), kadID(c)
        self.assertEqual(distance(x, x), 0)
        self.assertEqual(distance(x, y), distance(y, x))
        self.assertLessEqual(distance(x, z), distance(x, y) + distance(y, z))

    def test_commonPrefixLength(self):
        top = 1 << 255
        self.assertEqual(commonPrefixLength(0, top), 0)
        self.assertEqual(commonPrefixLength(0, 1), 255)
        self.assertEqual(commonPrefixLength(5, 5), 256)
        self.assertEqual(commonPrefixLength(0, 1 << 250), 5)

    def test_bucketIndexCapped(self):
        """
        Equal positions land in the last bucket, 255.
        """
        self.assertEqual(bucketIndex(7, 7), 255)
        self.assertEqual(bucketIndex(0, 1 << 200), 55)


class ProviderKeyTests(SynchronousTestCase):
    def test_cidVersionsMeet(self):
        """
        CIDv0 and CIDv1 of the same content give the same provider key: the
        multihash.
        """
        mh = multihash.digest(b"content", "sha2-256").encode()
        v0 = cid.make_cid(0, "dag-pb", mh)
        v1 = cid.make_cid(1, "dag-pb", mh)
        self.assertEqual(providerKey(v0), mh)
        self.assertEqual(providerKey(v1), mh)
        self.assertEqual(providerKey(v1.encode().decode()), mh)
        self.assertEqual(providerKey(mh), mh)

    def test_refusesNonMultihash(self):
        self.assertRaises(InvalidKey, providerKey, b"\x12\x20short")
        self.assertRaises(InvalidKey, providerKey, b"")
        self.assertRaises(InvalidKey, providerKey, "not a cid")
        self.assertRaises(InvalidKey, providerKey, 42)

    def test_refusesLongKeys(self):
        """
        go refuses provider keys longer than 80 bytes; so do we.
        """
        long = b"\x00\x51" + b"x" * 81
        self.assertTrue(isMultihash(long))
        self.assertRaises(InvalidKey, providerKey, long)

    def test_isMultihash(self):
        self.assertTrue(isMultihash(b"\x12\x02ab"))
        self.assertFalse(isMultihash(b"\x12\x02abc"))
        self.assertFalse(isMultihash(b"\x12"))
        self.assertFalse(isMultihash(b"\x80"))


class RandomKeyTests(SynchronousTestCase):
    def test_keyFallsInBucket(self):
        """
        L{randomKeyWithPrefix} finds a peer-ID-shaped key in the asked bucket.
        """
        rng = random.Random(3)
        me = kadID(b"me")
        for cpl in (0, 1, 5, 10):
            key = randomKeyWithPrefix(me, cpl, rng)
            self.assertEqual(key[:2], b"\x12\x20")
            self.assertEqual(len(key), 34)
            self.assertEqual(bucketIndex(me, kadID(key)), cpl)

    def test_givesUp(self):
        self.assertRaises(InvalidKey, randomKeyWithPrefix, 0, 200, random.Random(1), maxTries=10)
        self.assertRaises(InvalidKey, randomKeyWithPrefix, 0, 256, random.Random(1))

    def test_keyBits(self):
        self.assertEqual(keys.KEY_BITS, 256)
