"""
The pubsub wire format: RPC codec limits, StrictSign, message ids.
"""

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tau.identity import PeerID, PrivateKey, _encodePublic
from tau.pb import crypto_pb2, rpc_pb2
from tau.pubsub.message import (
    MAX_CONTROL_ENTRIES,
    MAX_MESSAGES,
    MAX_RPC,
    MAX_SUBSCRIPTIONS,
    MAX_TOPIC_LENGTH,
    RPC,
    SIGNING_PREFIX,
    InvalidMessage,
    Prune,
    RPCError,
    checkMessage,
    decodeRPC,
    encodeRPC,
    goMsgID,
    idForms,
    jsMsgID,
    signMessage,
)

KEY = PrivateKey.generate()
SEQ = (1).to_bytes(8, "big")


def wire(message):
    pb = rpc_pb2.Message()
    pb.CopyFrom(message.toProtobuf())
    return pb


class SigningTests(SynchronousTestCase):
    def test_roundTrip(self):
        m = signMessage(KEY, "t", b"hello", SEQ)
        self.assertIsNone(m.key, "an Ed25519 id inlines the key: no key field")
        got = checkMessage(wire(m), KEY.peerID())
        self.assertEqual((got.topic, got.data, got.source, got.seqno), ("t", b"hello", KEY.peerID(), SEQ))
        self.assertEqual(got.msgID, KEY.peerID().toBytes() + SEQ)
        self.assertEqual(got.receivedFrom, KEY.peerID())

    def test_signatureCoversPrefixAndFields(self):
        m = signMessage(KEY, "t", b"hello", SEQ)
        pb = m.toProtobuf()
        pb.ClearField("signature")
        signed = SIGNING_PREFIX + pb.SerializeToString(deterministic=True)
        self.assertTrue(KEY.publicKey().verify(m.signature, signed))

    def test_tampered(self):
        m = signMessage(KEY, "t", b"hello", SEQ)
        for field, value in (("data", b"hellO"), ("topic", "u"), ("seqno", (2).to_bytes(8, "big"))):
            pb = wire(m)
            setattr(pb, field, value)
            self.assertRaises(InvalidMessage, checkMessage, pb, None)

    def test_otherSigner(self):
        other = PrivateKey.generate()
        m = signMessage(other, "t", b"x", SEQ)
        pb = wire(m)
        setattr(pb, "from", KEY.peerID().toBytes())
        self.assertRaises(InvalidMessage, checkMessage, pb, None)

    def test_keyOfAnotherPeer(self):
        m = signMessage(KEY, "t", b"x", SEQ)
        pb = wire(m)
        pb.key = PrivateKey.generate().publicKey().toProtobuf()
        with self.assertRaises(InvalidMessage) as e:
            checkMessage(pb, None)
        self.assertIn("not the key", str(e.exception))

    def test_missingFields(self):
        m = signMessage(KEY, "t", b"x", SEQ)
        for field in ("from", "seqno", "signature", "topic"):
            pb = wire(m)
            pb.ClearField(field)
            self.assertRaises(InvalidMessage, checkMessage, pb, None)

    def test_seqnoLength(self):
        m = signMessage(KEY, "t", b"x", b"\x01" * 4)
        self.assertRaises(InvalidMessage, checkMessage, wire(m), None)

    def test_dataLimit(self):
        m = signMessage(KEY, "t", b"x" * 101, SEQ)
        self.assertRaises(InvalidMessage, checkMessage, wire(m), None, maxData=100)
        checkMessage(wire(m), None, maxData=101)

    def test_badTopic(self):
        m = signMessage(KEY, "t", b"x", SEQ)
        pb = wire(m)
        pb.topic = "x" * (MAX_TOPIC_LENGTH + 1)
        self.assertRaises(InvalidMessage, checkMessage, pb, None)
        raw = pb.SerializeToString()
        # a topic that is not UTF-8 (proto2 hands it over as bytes)
        bad = rpc_pb2.Message()
        bad.ParseFromString(raw.replace(b"x" * (MAX_TOPIC_LENGTH + 1), b"\xff" * (MAX_TOPIC_LENGTH + 1)))
        self.assertRaises(InvalidMessage, checkMessage, bad, None)

    def test_rsaSignerWithKeyField(self):
        """
        A peer whose id is a hash (RSA) sends its key in the key field.
        """
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        keyBytes = _encodePublic(crypto_pb2.RSA, der)
        from tau.identity import PublicKey

        peer = PeerID.fromPublicKey(PublicKey.fromProtobuf(keyBytes))
        pb = rpc_pb2.Message(data=b"rsa", seqno=SEQ, topic="t")
        setattr(pb, "from", peer.toBytes())
        pb.signature = private.sign(SIGNING_PREFIX + pb.SerializeToString(deterministic=True), padding.PKCS1v15(), hashes.SHA256())
        noKey = rpc_pb2.Message()
        noKey.CopyFrom(pb)
        self.assertRaises(InvalidMessage, checkMessage, noKey, None)
        pb.key = keyBytes
        got = checkMessage(pb, None)
        self.assertEqual(got.source, peer)
        self.assertEqual(jsMsgID(got), keyBytes + SEQ)

    def test_ecdsaBadSignature(self):
        private = ec.generate_private_key(ec.SECP256R1())
        der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        keyBytes = _encodePublic(crypto_pb2.ECDSA, der)
        from tau.identity import PublicKey

        peer = PeerID.fromPublicKey(PublicKey.fromProtobuf(keyBytes))
        pb = rpc_pb2.Message(data=b"e", seqno=SEQ, topic="t", key=keyBytes, signature=b"\x30\x00")
        setattr(pb, "from", peer.toBytes())
        self.assertRaises(InvalidMessage, checkMessage, pb, None)

    def test_msgIDs(self):
        m = signMessage(KEY, "t", b"x", SEQ)
        self.assertEqual(goMsgID(m), KEY.peerID().toBytes() + SEQ)
        # js: protobuf(public key) || seqno; the identity multihash is 00 24 || key
        self.assertEqual(jsMsgID(m), KEY.publicKey().toProtobuf() + SEQ)
        self.assertEqual(goMsgID(m), b"\x00\x24" + jsMsgID(m))
        self.assertEqual(idForms(goMsgID(m)), [goMsgID(m), jsMsgID(m)])
        self.assertEqual(idForms(jsMsgID(m)), [jsMsgID(m), goMsgID(m)])
        self.assertEqual(idForms(b"short"), [b"short"])
        self.assertEqual(idForms(b"garbage!" + SEQ), [b"garbage!" + SEQ])


class CodecTests(SynchronousTestCase):
    def test_roundTrip(self):
        m = signMessage(KEY, "t", b"x", SEQ)
        peer = PrivateKey.generate().peerID()
        rpc = RPC(
            subscriptions=[(True, "a"), (False, "b")],
            messages=[m],
            ihave=[("a", [b"id1", b"id2"])],
            iwant=[b"id3"],
            graft=["a"],
            prune=[Prune("b", [(peer, None)], 60), Prune("c")],
        )
        got = decodeRPC(encodeRPC(rpc))
        self.assertEqual(got.subscriptions, rpc.subscriptions)
        self.assertEqual(got.ihave, rpc.ihave)
        self.assertEqual(got.iwant, rpc.iwant)
        self.assertEqual(got.graft, rpc.graft)
        self.assertEqual(got.prune, rpc.prune)
        self.assertEqual(checkMessage(got.messages[0], None).data, b"x")

    def test_tooLarge(self):
        self.assertRaises(RPCError, decodeRPC, b"\x00" * (MAX_RPC + 1))

    def test_countLimits(self):
        pb = rpc_pb2.RPC()
        for i in range(MAX_SUBSCRIPTIONS + 1):
            pb.subscriptions.add(subscribe=True, topicid=str(i))
        self.assertRaises(RPCError, decodeRPC, pb.SerializeToString())
        pb = rpc_pb2.RPC()
        for i in range(MAX_MESSAGES + 1):
            pb.publish.add(data=b"")
        self.assertRaises(RPCError, decodeRPC, pb.SerializeToString())
        pb = rpc_pb2.RPC()
        for i in range(MAX_CONTROL_ENTRIES + 1):
            pb.control.graft.add(topicID="t")
        self.assertRaises(RPCError, decodeRPC, pb.SerializeToString())

    def test_badEntriesSkipped(self):
        pb = rpc_pb2.RPC()
        pb.subscriptions.add(subscribe=True, topicid="")
        pb.subscriptions.add(subscribe=True, topicid="ok")
        pb.control.prune.add(topicID="p").peers.add(peerID=b"not a peer id")
        pb.control.ihave.add(topicID="t", messageIDs=[b"", b"x" * 1000, b"good"])
        got = decodeRPC(pb.SerializeToString())
        self.assertEqual(got.subscriptions, [(True, "ok")])
        self.assertEqual(got.prune, [Prune("p", [], None)])
        self.assertEqual(got.ihave, [("t", [b"good"])])

    def test_garbage(self):
        self.assertRaises(RPCError, decodeRPC, b"\xff\xff\xff")

    @given(st.binary(max_size=2048))
    def test_fuzzBytes(self, data):
        try:
            rpc = decodeRPC(data)
        except RPCError:
            return
        for wireMessage in rpc.messages:
            try:
                checkMessage(wireMessage, None)
            except InvalidMessage:
                pass

    @given(
        st.lists(st.tuples(st.booleans(), st.text(min_size=1, max_size=20)), max_size=5),
        st.lists(st.binary(min_size=1, max_size=40), max_size=5),
        st.lists(st.text(min_size=1, max_size=20), max_size=5),
        st.integers(min_value=0, max_value=1 << 40),
        st.data(),
    )
    def test_fuzzMutations(self, subs, ids, grafts, backoff, data):
        """
        A valid RPC round-trips; every byte flip of it decodes or raises
        RPCError, and its messages check or raise InvalidMessage.
        """
        m = signMessage(KEY, "t", b"payload", SEQ)
        rpc = RPC(subscriptions=subs, messages=[m], ihave=[("t", ids)] if ids else [], iwant=ids, graft=grafts,
                  prune=[Prune("t", [], backoff)])
        encoded = encodeRPC(rpc)
        got = decodeRPC(encoded)
        self.assertEqual(got.subscriptions, subs)
        self.assertEqual(got.graft, grafts)
        position = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
        flip = data.draw(st.integers(min_value=1, max_value=255))
        mutated = bytearray(encoded)
        mutated[position] ^= flip
        try:
            decoded = decodeRPC(bytes(mutated))
        except RPCError:
            return
        for wireMessage in decoded.messages:
            try:
                checked = checkMessage(wireMessage, None)
            except InvalidMessage:
                continue
            # a message that still checks is the one that was signed
            self.assertEqual((checked.data, checked.topic, checked.seqno), (b"payload", "t", SEQ))
