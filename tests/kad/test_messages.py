"""
Tests for L{tau.kad.messages}: decoding with limits and peer entries.
"""

import random

import multiaddr
from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tau.kad.messages import (
    MAX_ADDRS_PER_PEER,
    MAX_KEY_SIZE,
    MAX_PROVIDER_ADDR_SIZE,
    KadProtocolError,
    Message,
    Record,
    decodeMessage,
    encodeMessage,
    parsePeers,
    peerEntry,
    providerAddrs,
)
from tests.kad.helpers import peers


class DecodeTests(SynchronousTestCase):
    def test_roundTrip(self):
        a, b = peers(2)
        m = Message(
            type=Message.GET_PROVIDERS,
            key=b"\x12\x20" + b"k" * 32,
            closerPeers=[peerEntry(a, [b"\x04\x7f\x00\x00\x01"])],
            providerPeers=[peerEntry(b)],
            record=Record(key=b"/pk/x", value=b"v", timeReceived=b"2024-01-01T00:00:00Z"),
        )
        self.assertEqual(decodeMessage(encodeMessage(m)), m)

    def test_putValueIsTypeZero(self):
        """
        PUT_VALUE (0) is the proto3 default and not on the wire; it decodes.
        """
        m = decodeMessage(encodeMessage(Message(type=Message.PUT_VALUE, key=b"/pk/x")))
        self.assertEqual(m.type, Message.PUT_VALUE)

    def test_unknownType(self):
        """
        An unknown type is refused rather than read as PUT_VALUE.
        """
        self.assertRaises(KadProtocolError, decodeMessage, b"\x08\x63")

    def test_goWireBytes(self):
        """
        A FIND_NODE as go encodes it: type 4, key.
        """
        m = decodeMessage(bytes.fromhex("0804120568656c6c6f"))
        self.assertEqual((m.type, m.key), (Message.FIND_NODE, b"hello"))

    def test_oversized(self):
        self.assertRaises(KadProtocolError, decodeMessage, b"\x08\x04" + b"\x00" * 100, maxSize=50)
        data = encodeMessage(Message(type=Message.FIND_NODE, key=b"k" * (MAX_KEY_SIZE + 1)))
        self.assertRaises(KadProtocolError, decodeMessage, data)

    @given(st.binary(max_size=512))
    def test_garbage(self, data):
        """
        Whatever the bytes, decoding returns a message or raises
        L{KadProtocolError}, nothing else.
        """
        try:
            m = decodeMessage(data)
        except KadProtocolError:
            return
        self.assertIsInstance(m, Message)
        parsePeers(m.closerPeers, 20)

    @given(st.lists(st.tuples(st.sampled_from([0x08, 0x12, 0x1a, 0x42, 0x4a, 0x50]), st.binary(max_size=40))))
    def test_structuredGarbage(self, fields):
        """
        Plausible field tags followed by random bytes: same guarantee.
        """
        data = b"".join(bytes([tag, len(v)]) + v for tag, v in fields)
        try:
            m = decodeMessage(data)
        except KadProtocolError:
            return
        parsePeers(m.closerPeers, 20)
        parsePeers(m.providerPeers, 20)


class ParsePeersTests(SynchronousTestCase):
    def test_junkSkipped(self):
        """
        Undecodable IDs, excluded IDs and repeats are dropped and counted.
        """
        a, b, me = peers(3)
        entries = [
            Message.Peer(id=b"junk"),
            peerEntry(a, [b"/a"]),
            peerEntry(me),
            peerEntry(a),
            Message.Peer(id=b""),
            peerEntry(b),
        ]
        got, skipped = parsePeers(entries, 20, exclude={me})
        self.assertEqual([p.peerID for p in got], [a, b])
        self.assertEqual(got[0].addrs, (b"/a",))
        self.assertEqual(skipped, 4)

    def test_limit(self):
        many = peers(50)
        got, skipped = parsePeers([peerEntry(p) for p in many], 20)
        self.assertEqual([p.peerID for p in got], many[:20])
        self.assertEqual(skipped, 30)

    def test_addressesBounded(self):
        (a,) = peers(1)
        addrs = [b""] + [b"x" * 2000] + [bytes([i]) for i in range(100)]
        got, _ = parsePeers([peerEntry(a, addrs)], 1)
        self.assertLessEqual(len(got[0].addrs), MAX_ADDRS_PER_PEER)
        self.assertTrue(all(0 < len(x) <= 1024 for x in got[0].addrs))

    def test_identityPeerIDs(self):
        """
        Ed25519 (identity multihash) peer IDs are accepted; an identity
        multihash of something that is not a key is junk.
        """
        from tau.identity import PrivateKey

        real = PrivateKey.generate().peerID()
        fake = b"\x00\x05hello"
        got, skipped = parsePeers([peerEntry(real), Message.Peer(id=fake)], 20)
        self.assertEqual([p.peerID for p in got], [real])
        self.assertEqual(skipped, 1)

    @given(st.integers(0, 10), st.binary(max_size=60))
    def test_identityKeyFuzz(self, keyType, data):
        """
        Identity peer IDs wrapping any key type and key bytes are either
        accepted or skipped: nothing else escapes.
        """
        from tau.protocols import varint

        # PublicKey{Type, Data}, written by hand to allow unknown types.
        key = b"\x08" + varint.encode(keyType) + b"\x12" + varint.lpEncode(data)
        if len(key) > 42:
            return
        entry = Message.Peer(id=b"\x00" + bytes([len(key)]) + key)
        got, skipped = parsePeers([entry], 20)
        self.assertEqual(len(got) + skipped, 1)

    def test_randomIDs(self):
        rng = random.Random(0)
        entries = [Message.Peer(id=rng.randbytes(rng.randrange(40))) for _ in range(200)]
        got, skipped = parsePeers(entries, 20)
        self.assertEqual(len(got) + skipped, 200)


def ma(text):
    return multiaddr.Multiaddr(text).to_bytes()


class ProviderAddrsTests(SynchronousTestCase):
    """
    What an ADD_PROVIDER entry's addresses leave in the provider record.
    """

    def test_unparseableDropped(self):
        good = ma("/ip4/127.0.0.1/tcp/4001")
        self.assertEqual(providerAddrs([b"\xff" * 1024, good[:-1], b"", good, good], 8), (good,))

    def test_sizeEdge(self):
        # /unix/<path>: 4 bytes of codes and length, then the path.
        at = ma("/unix/" + "a" * (MAX_PROVIDER_ADDR_SIZE - 4))
        over = ma("/unix/" + "b" * (MAX_PROVIDER_ADDR_SIZE - 3))
        self.assertEqual((len(at), len(over)), (MAX_PROVIDER_ADDR_SIZE, MAX_PROVIDER_ADDR_SIZE + 1))
        self.assertEqual(providerAddrs([over, at], 8), (at,))

    def test_limit(self):
        addrs = [ma(f"/ip4/127.0.0.1/tcp/{port}") for port in range(1, 17)]
        self.assertEqual(providerAddrs(addrs, 8), tuple(addrs[:8]))
