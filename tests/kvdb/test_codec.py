"""
Deltas, snapshots and messages: encoding, verification, rejection.
"""

import cbor2
from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tau.identity import PrivateKey
from tau.kvdb import codec

KEY = PrivateKey.generate()
OTHER = PrivateKey.generate()

keys = st.binary(min_size=1, max_size=40)
values = st.one_of(st.none(), st.binary(max_size=100))


class DeltaTests(SynchronousTestCase):
    @given(st.dictionaries(keys, values, min_size=1, max_size=20), st.integers(1, 1 << 40))
    def test_roundTrip(self, entries, height):
        """
        A delta decodes to what was written, its CID is dag-cbor sha2-256,
        and its writer is the signing key's PeerID.
        """
        parents = [] if height == 1 else [codec.cidOf(b"p%d" % i) for i in range(3)]
        delta = codec.makeDelta(KEY, "db", height, parents, entries.items())
        self.assertEqual(delta.cid[:2], b"\x01\x71")
        self.assertEqual(codec.cidString(delta.cid)[:4], "bafy")
        back = codec.decodeDelta(delta.cid, delta.data, "db")
        self.assertEqual(back.entries, sorted(entries.items()))
        self.assertEqual(back.parents, sorted(parents))
        self.assertEqual(back.height, height)
        self.assertEqual(back.writer, KEY.peerID())

    def test_tamperedBytes(self):
        """
        One flipped byte: the hash no longer matches (and re-hashed under
        its own CID, the signature fails).
        """
        delta = codec.makeDelta(KEY, "db", 1, [], [(b"k", b"value")])
        i = delta.data.index(b"value")
        bad = delta.data[:i] + b"valuf" + delta.data[i + 5 :]
        self.assertRaisesRegex(codec.InvalidBlock, "hash", codec.decodeDelta, delta.cid, bad)
        self.assertRaisesRegex(codec.InvalidBlock, "signature", codec.decodeDelta, codec.cidOf(bad), bad)

    def test_forgedWriter(self):
        """
        A delta claiming another writer's key, signed by ours, is refused.
        """
        delta = codec.makeDelta(KEY, "db", 1, [], [(b"k", b"v")])
        body = cbor2.loads(delta.data)
        body["pk"] = OTHER.publicKey().toProtobuf()
        data = codec.encode(body)
        self.assertRaisesRegex(codec.InvalidBlock, "bad signature", codec.decodeDelta, codec.cidOf(data), data)

    def test_wrongDatabase(self):
        delta = codec.makeDelta(KEY, "db", 1, [], [(b"k", b"v")])
        self.assertRaisesRegex(codec.InvalidBlock, "expected 'other'", codec.decodeDelta, delta.cid, delta.data, "other")

    def test_notCanonical(self):
        """
        The same value encoded another way (map keys unsorted) is refused:
        one write, one CID.
        """
        delta = codec.makeDelta(KEY, "db", 1, [], [(b"k", b"v")])
        body = cbor2.loads(delta.data)
        data = cbor2.dumps(dict(sorted(body.items(), reverse=True)))
        self.assertNotEqual(data, delta.data)
        self.assertRaisesRegex(codec.InvalidBlock, "canonical", codec.decodeDelta, codec.cidOf(data), data)

    def test_limits(self):
        self.assertRaises(codec.InvalidBlock, codec.makeDelta, KEY, "db", 1, [], [])
        self.assertRaises(codec.InvalidBlock, codec.makeDelta, KEY, "db", 1, [], [(b"", b"v")])
        self.assertRaises(codec.InvalidBlock, codec.makeDelta, KEY, "db", 1, [], [(b"k" * 5000, b"v")])
        self.assertRaises(codec.InvalidBlock, codec.makeDelta, KEY, "db", 1, [], [(b"k", b"v" * (2 << 20))])
        self.assertRaises(codec.InvalidBlock, codec.makeDelta, KEY, "a/b", 1, [], [(b"k", b"v")])
        self.assertRaises(codec.InvalidBlock, codec.makeDelta, KEY, "db", 1, [], [(b"k", b"v"), (b"k", None)])

    def test_heightOneHasNoParents(self):
        """
        Height and parents must agree: a root delta has height 1, any other
        has parents.
        """
        for height, parents in ((2, []), (1, [codec.cidOf(b"x")])):
            body = {"t": codec.DELTA, "db": "db", "h": height, "p": [codec.link(p) for p in parents], "e": [[b"k", b"v"]], "pk": KEY.publicKey().toProtobuf()}
            body["s"] = KEY.sign(codec.DELTA_CONTEXT + codec.encode(body))
            data = codec.encode(body)
            self.assertRaisesRegex(codec.InvalidBlock, "height 1", codec.decodeDelta, codec.cidOf(data), data)

    @given(st.binary(max_size=300))
    def test_fuzzDecode(self, data):
        """
        Arbitrary bytes never raise anything but InvalidBlock.
        """
        for decode in (lambda d: codec.decodeDelta(codec.cidOf(d), d), codec.decodeHeads, codec.decodePush, codec.decodePushed):
            try:
                decode(data)
            except codec.InvalidBlock:
                pass

    @given(st.recursive(st.none() | st.booleans() | st.integers(-(1 << 64), 1 << 64) | st.binary(max_size=8) | st.text(max_size=8),
                        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=4), max_leaves=20))
    def test_fuzzStructures(self, value):
        """
        Well-formed CBOR of any shape is refused with InvalidBlock unless
        it is a delta.
        """
        data = codec.encode(value)
        self.assertRaises(codec.InvalidBlock, codec.decodeDelta, codec.cidOf(data), data)
        self.assertRaises(codec.InvalidBlock, codec.decodeHeads, data)


class MessageTests(SynchronousTestCase):
    def test_heads(self):
        heads = [codec.cidOf(b"a"), codec.cidOf(b"b")]
        snap = codec.cidOf(b"s")
        self.assertEqual(codec.decodeHeads(codec.encodeHeads(heads, snap)), (sorted(heads), snap, {}))
        self.assertEqual(codec.decodeHeads(codec.encodeHeads(heads)), (sorted(heads), None, {}))
        blocks = [b"x" * 20000, b"y" * 10000, b"z" * 10000]
        # inline blocks by their CID, up to MAX_INLINE bytes
        self.assertEqual(codec.decodeHeads(codec.encodeHeads(heads, None, blocks))[2], {codec.cidOf(b): b for b in blocks[:2]})

    def test_push(self):
        heads = [codec.cidOf(b"a")]
        self.assertEqual(codec.decodePush(codec.encodePush("db", heads)), ("db", heads, None))
        self.assertEqual(codec.decodePushed(codec.encodePushed(False, "no")), (False, "no"))

    def test_badLink(self):
        data = codec.encode({"t": codec.HEADS, "heads": [cbor2.CBORTag(42, b"\x00\x01\x02")], "snap": None, "b": []})
        self.assertRaises(codec.InvalidBlock, codec.decodeHeads, data)
        data = codec.encode({"t": codec.HEADS, "heads": [cbor2.CBORTag(43, b"\x00")], "snap": None, "b": []})
        self.assertRaises(codec.InvalidBlock, codec.decodeHeads, data)


class SnapshotTests(SynchronousTestCase):
    def test_roundTrip(self):
        """
        A snapshot larger than a page is split into pages; the root verifies
        and the pages give back the state and the covered deltas.
        """
        state = [(b"k%06d" % i, None if i % 7 == 0 else b"v" * 300, i + 1, codec.cidOf(b"%d" % i)) for i in range(5000)]
        covered = [(codec.cidOf(b"%d" % i), i + 1) for i in range(5000)]
        heads = [(codec.cidOf(b"4999"), 5000)]
        root, blocks = codec.makeSnapshot(KEY, "db", heads, state, covered)
        byCID = dict(blocks)
        snap = codec.decodeSnapshot(root, byCID[root], "db")
        self.assertGreater(len(snap.state), 1)
        self.assertEqual(snap.heads, heads)
        self.assertEqual(snap.height, 5000)
        self.assertEqual([e for c in snap.state for e in codec.decodeStatePage(c, byCID[c])], state)
        self.assertEqual([e for c in snap.covered for e in codec.decodeCoveredPage(c, byCID[c])], covered)
        for c, data in blocks:
            self.assertLessEqual(len(data), codec.MAX_BLOCK)
        body = cbor2.loads(byCID[root])
        body["n"] += 1
        data = codec.encode(body)
        self.assertRaisesRegex(codec.InvalidBlock, "signature", codec.decodeSnapshot, codec.cidOf(data), data, "db")
