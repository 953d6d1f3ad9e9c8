"""
Keys and peer IDs against published libp2p vectors.
"""

import base64

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tau.identity import InvalidKey, PeerID, PrivateKey, PublicKey

# libp2p/specs http/peer-id-auth.md, "Complete Server Initiated Handshake
# Example": the client's private key, its public key and, inside the bearer
# token the go implementation produced, its peer ID.
SPEC_CLIENT_PRIVATE = bytes.fromhex(
    "08011240" + "02" * 32 + "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394"
)
SPEC_CLIENT_PUBLIC_B64URL = "CAESIIE5dw6ofRdfVqNUZsNMfszLjYqRtO43ol32D1uPybOU"
SPEC_CLIENT_PEER = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"

# libp2p/specs peer-ids/peer-ids.md: an Ed25519 public key and its peer ID,
# and the text forms of the same IDs.
SPEC_ED25519_PUBLIC = bytes.fromhex("080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e")
SPEC_ED25519_PEER = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
SPEC_ED25519_CID = "bafzaajaiaejcahwr5d5ofrfbis4l5d6uwr57hu5tjodrypfm6yaq6dsc2r2pzyt6"
SPEC_ED25519_BASE36 = "k51qzi5uqu5dgy8qsq67hbz73jqkw87l3fgf4a91qb0d9b5173tir7n4vxk1oe"
SPEC_RSA_PEER = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
SPEC_RSA_CID = "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe"


class VectorTests(SynchronousTestCase):
    def test_privateKeyToPeerID(self):
        """
        The spec's private key gives the spec's public key and peer ID.
        """
        key = PrivateKey.fromProtobuf(SPEC_CLIENT_PRIVATE)
        self.assertEqual(str(key.peerID()), SPEC_CLIENT_PEER)
        self.assertEqual(base64.urlsafe_b64encode(key.publicKey().toProtobuf()).decode(), SPEC_CLIENT_PUBLIC_B64URL)
        self.assertEqual(key.toProtobuf(), SPEC_CLIENT_PRIVATE)

    def test_legacyPrivateKeyForm(self):
        """
        The legacy 96-byte Ed25519 form is read; a mismatched public half is not.
        """
        legacy = bytearray(SPEC_CLIENT_PRIVATE)
        legacy[3] = 0x60
        legacy += SPEC_CLIENT_PRIVATE[-32:]
        self.assertEqual(str(PrivateKey.fromProtobuf(bytes(legacy)).peerID()), SPEC_CLIENT_PEER)
        broken = bytearray(SPEC_CLIENT_PRIVATE)
        broken[-1] ^= 1
        self.assertRaises(InvalidKey, PrivateKey.fromProtobuf, bytes(broken))

    def test_publicKeyToPeerID(self):
        self.assertEqual(str(PublicKey.fromProtobuf(SPEC_ED25519_PUBLIC).peerID()), SPEC_ED25519_PEER)

    def test_textForms(self):
        """
        base58btc, CIDv1 base32 and base36 name the same peer.
        """
        peer = PeerID.fromString(SPEC_ED25519_PEER)
        self.assertEqual(PeerID.fromString(SPEC_ED25519_CID), peer)
        self.assertEqual(PeerID.fromString(SPEC_ED25519_BASE36), peer)
        self.assertEqual(peer.toCIDString(), SPEC_ED25519_CID)
        self.assertEqual(PeerID.fromString(SPEC_RSA_CID), PeerID.fromString(SPEC_RSA_PEER))
        self.assertEqual(peer.extractPublicKey(), PublicKey.fromProtobuf(SPEC_ED25519_PUBLIC))
        self.assertIsNone(PeerID.fromString(SPEC_RSA_PEER).extractPublicKey())

    def test_badPeerIDs(self):
        for text in ["", "12D3KooW", "QmNotBase58!", "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", 42]:
            self.assertRaises(InvalidKey, PeerID.fromString, text)

    def test_signAndVerify(self):
        key = PrivateKey.generate()
        sig = key.sign(b"message")
        self.assertTrue(key.publicKey().verify(sig, b"message"))
        self.assertFalse(key.publicKey().verify(sig, b"messagf"))
        self.assertFalse(key.publicKey().verify(b"short", b"message"))

    def test_refusedPrivateKeys(self):
        for data in [b"", b"\x08\x00\x12\x01x", b"\x08\x01\x12\x10" + b"x" * 16, b"garbage"]:
            self.assertRaises(InvalidKey, PrivateKey.fromProtobuf, data)


class FuzzTests(SynchronousTestCase):
    @given(st.binary(max_size=200))
    def test_publicKeyDecoderOnlyRaisesInvalidKey(self, data):
        try:
            PublicKey.fromProtobuf(data)
        except InvalidKey:
            pass

    @given(st.binary(max_size=80))
    def test_peerIDDecoderOnlyRaisesInvalidKey(self, data):
        try:
            PeerID.fromBytes(data)
        except InvalidKey:
            pass
