"""
Tests for L{tau.protocols.identify}: envelopes, peer records, the identify
codec, and identify / push between two fake hosts.
"""

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given, strategies as st
from twisted.internet.error import TimeoutError
from twisted.trial.unittest import SynchronousTestCase

from tau.identity import PeerID, PrivateKey
from tau.pb import crypto_pb2, envelope_pb2, identify_pb2
from tau.protocols import identify, varint
from tau.protocols.identify import ID, PUSH, IdentifyRejected
from tau.protocols.identifymsg import decodeIdentify, identifyMessage, identifyMessages, parseIdentify
from tau.protocols.peerrecord import (
    IdentifyError,
    InvalidEnvelope,
    decodeAddr,
    makeEnvelope,
    makePeerRecord,
    openEnvelope,
    openPeerRecord,
    signatureBuffer,
    signedPeerRecord,
)
from tests.protocols.fakehost import FakeHost, Pair

# Ed25519 key with the seed 00 01 .. 1f.
SEED = bytes(range(32))
SEED_PEER = "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"

# A peer record of the SEED key (addresses /ip4/1.2.3.4/tcp/4001 and
# /ip6/::1/udp/4001/quic-v1; js chose the seq, Date.now()) sealed by
# js-libp2p (@libp2p/peer-record 9.0.16, RecordEnvelope.seal).
JS_RECORD = bytes.fromhex(
    "0a240801122003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    "120203011a560a2600240801122003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f"
    "1ddc8664125531b810a4fcd0bfa1341a0a0a080401020304060fa11a190a1729000000000000"
    "0000000000000000000191020fa1cd032a40197fbfa5b2c44b4005efcd20c509e004b6159d8f"
    "fda52311cc6378e4c3a713c83b4cc0a489fc4bdee1e0a9ea4f88c499a29bcc827e791dbd9796"
    "77bee617a606"
)
JS_SEQ = 1795698212388
JS_ADDRS = ("/ip4/1.2.3.4/tcp/4001", "/ip6/::1/udp/4001/quic-v1")


def seedKey():
    return PrivateKey(ed25519.Ed25519PrivateKey.from_private_bytes(SEED))


def lp(*messages):
    return b"".join(varint.lpEncode(m) for m in messages)


class EnvelopeTests(SynchronousTestCase):
    def test_signatureBufferLayout(self) -> None:
        """
        The signed buffer is uvarint-length-prefixed domain, type and
        payload (RFC 0002); the peer record type is the raw bytes 03 01.
        """
        buf = signatureBuffer("libp2p-peer-record", b"\x03\x01", b"abc")
        self.assertEqual(buf, b"\x12libp2p-peer-record" + b"\x02\x03\x01" + b"\x03abc")
        long = signatureBuffer("d", b"", b"x" * 200)
        self.assertEqual(long[:4], b"\x01d\x00\xc8")
        self.assertEqual(long[4:6], b"\x01" + b"x")

    def test_envelopeLayout(self) -> None:
        """
        Envelope fields: public_key 1, payload_type 2, payload 3, signature 5;
        the signature verifies over L{signatureBuffer}.
        """
        key = seedKey()
        data = makeEnvelope(key, b"\x03\x01", b"hello", "dom")
        pub = key.publicKey().toProtobuf()
        sig = key.sign(signatureBuffer("dom", b"\x03\x01", b"hello"))
        self.assertEqual(
            data,
            b"\x0a\x24" + pub + b"\x12\x02\x03\x01" + b"\x1a\x05hello" + b"\x2a\x40" + sig,
        )
        self.assertEqual(openEnvelope(data, "dom", b"\x03\x01"), (key.publicKey(), b"hello"))

    def test_jsRecordOpens(self) -> None:
        """
        A peer record sealed by js-libp2p verifies and decodes.
        """
        record = openPeerRecord(JS_RECORD)
        self.assertEqual(str(record.peerID), SEED_PEER)
        self.assertEqual(record.seq, JS_SEQ)
        self.assertEqual(record.addrs, JS_ADDRS)
        self.assertEqual(record.envelope, JS_RECORD)

    def test_recordBytesMatchJs(self) -> None:
        """
        Our record of the same key, seq and addresses is byte-identical to
        js-libp2p's (Ed25519 signatures are deterministic).
        """
        self.assertEqual(makePeerRecord(seedKey(), JS_ADDRS, JS_SEQ), JS_RECORD)

    def test_wrongDomainOrType(self) -> None:
        with self.assertRaises(InvalidEnvelope):
            openEnvelope(JS_RECORD, "libp2p-routing-state", b"\x03\x01")
        with self.assertRaises(InvalidEnvelope):
            openEnvelope(JS_RECORD, "libp2p-peer-record", b"\x03\x02")
        key, payload = openEnvelope(JS_RECORD, "libp2p-peer-record", None)
        self.assertEqual(str(key.peerID()), SEED_PEER)

    def test_tampered(self) -> None:
        """
        Any change to the payload breaks the signature.
        """
        env = envelope_pb2.Envelope.FromString(JS_RECORD)
        env.payload = env.payload[:-1] + bytes([env.payload[-1] ^ 1])
        with self.assertRaises(InvalidEnvelope):
            openPeerRecord(env.SerializeToString())
        env = envelope_pb2.Envelope.FromString(JS_RECORD)
        env.ClearField("signature")
        with self.assertRaises(InvalidEnvelope):
            openPeerRecord(env.SerializeToString())

    def test_recordOfAnotherPeer(self) -> None:
        """
        A record naming another peer than its signer is refused.
        """
        signer, other = PrivateKey.generate(), PrivateKey.generate()
        record = envelope_pb2.PeerRecord(peer_id=other.peerID().toBytes(), seq=1)
        data = makeEnvelope(signer, b"\x03\x01", record.SerializeToString(), "libp2p-peer-record")
        with self.assertRaises(InvalidEnvelope):
            openPeerRecord(data)

    def test_oversize(self) -> None:
        key = PrivateKey.generate()
        data = makeEnvelope(key, b"t", b"x" * 9000, "d")
        with self.assertRaises(InvalidEnvelope):
            openEnvelope(data, "d", b"t")
        self.assertEqual(openEnvelope(data, "d", b"t", maxSize=10000)[1], b"x" * 9000)

    def test_badAddressesSkipped(self) -> None:
        """
        Malformed multiaddrs in a record are dropped, the record is kept.
        """
        key = PrivateKey.generate()
        record = envelope_pb2.PeerRecord(peer_id=key.peerID().toBytes(), seq=5)
        record.addresses.add(multiaddr=b"\x04\x01")  # truncated ip4
        record.addresses.add(multiaddr=bytes.fromhex("047f000001060fa1"))
        data = makeEnvelope(key, b"\x03\x01", record.SerializeToString(), "libp2p-peer-record")
        self.assertEqual(openPeerRecord(data).addrs, ("/ip4/127.0.0.1/tcp/4001",))

    @given(st.binary(max_size=600))
    def test_fuzzEnvelope(self, data) -> None:
        """
        Garbage raises L{InvalidEnvelope} and nothing else.
        """
        try:
            openPeerRecord(data)
        except InvalidEnvelope:
            pass

    @given(
        st.binary(max_size=60),
        st.binary(max_size=4),
        st.binary(max_size=200),
        st.binary(max_size=70),
    )
    def test_fuzzEnvelopeFields(self, pub, ptype, payload, sig) -> None:
        """
        Well-framed envelopes with garbage fields raise L{InvalidEnvelope}.
        """
        for key in (pub, b"\x08\x01\x12\x20" + pub[:32].ljust(32, b"\0")):
            data = envelope_pb2.Envelope(
                public_key=key, payload_type=ptype, payload=payload, signature=sig
            ).SerializeToString()
            with self.assertRaises(InvalidEnvelope):
                openPeerRecord(data)


class AddrTests(SynchronousTestCase):
    def test_decode(self) -> None:
        self.assertEqual(decodeAddr(bytes.fromhex("047f000001060fa1")), "/ip4/127.0.0.1/tcp/4001")
        self.assertIsNone(decodeAddr(b"\x04\x01"))
        self.assertIsNone(decodeAddr(b""))
        self.assertIsNone(decodeAddr(b"\xff\xff\xff"))

    @given(st.binary(max_size=80))
    def test_fuzz(self, data) -> None:
        text = decodeAddr(data)
        if text is not None:
            self.assertIsInstance(text, str)


class MessageTests(SynchronousTestCase):
    def host(self, addrs=("/ip4/10.0.0.2/tcp/2222",), protocols=(ID, PUSH)):
        from twisted.internet.task import Clock

        clock = Clock()
        clock.advance(1000)
        host = FakeHost(clock, list(addrs))
        for p in protocols:
            host.setStreamHandler(p, None)
        return host

    def test_fields(self) -> None:
        """
        The message carries the key, binary listen addresses without /p2p,
        the protocols, the observed address, versions and a signed record.
        """
        host = self.host(addrs=["/ip4/10.0.0.2/tcp/2222/p2p/" + SEED_PEER, "/ip4/10.0.0.3/tcp/3"])

        class Conn:
            remoteAddr = "/ip4/1.2.3.4/tcp/4001"

        msg = identify_pb2.Identify.FromString(identifyMessage(host, Conn()))
        self.assertEqual(msg.publicKey, host.key.publicKey().toProtobuf())
        self.assertEqual(
            [decodeAddr(a) for a in msg.listenAddrs],
            ["/ip4/10.0.0.2/tcp/2222", "/ip4/10.0.0.3/tcp/3"],
        )
        self.assertEqual(list(msg.protocols), [ID, PUSH])
        self.assertEqual(msg.observedAddr, bytes.fromhex("0401020304060fa1"))
        self.assertEqual(msg.protocolVersion, "ipfs/0.1.0")
        self.assertEqual(msg.agentVersion, "tau/test")
        record = openPeerRecord(msg.signedPeerRecord)
        self.assertEqual(record.peerID, host.peerID)
        self.assertEqual(record.addrs, ("/ip4/10.0.0.2/tcp/2222", "/ip4/10.0.0.3/tcp/3"))
        self.assertEqual(record.seq, 1000 * 10**9)

    def test_encodingVector(self) -> None:
        """
        Field numbers and types as in the spec (proto2, fields 1-6 and 8).
        """
        msg = identify_pb2.Identify(
            publicKey=b"K",
            listenAddrs=[b"\x04\x01\x02\x03\x04"],
            protocols=["/a"],
            observedAddr=b"O",
            protocolVersion="v",
            agentVersion="g",
            signedPeerRecord=b"R",
        )
        self.assertEqual(
            msg.SerializeToString(deterministic=True).hex(),
            "0a014b" "1205" "0401020304" "1a022f61" "22014f" "2a0176" "320167" "420152",
        )
        self.assertEqual(decodeIdentify(msg.SerializeToString()), msg)

    def test_oneMessageWhenSmall(self) -> None:
        msgs = identifyMessages(self.host(), None)
        self.assertEqual(len(msgs), 1)
        self.assertTrue(identify_pb2.Identify.FromString(msgs[0]).HasField("signedPeerRecord"))

    def test_splitWhenLarge(self) -> None:
        """
        Over 2 KiB with a record: two messages, the record alone second.
        """
        protocols = [f"/proto/{i:04d}/1.0.0" for i in range(120)]
        host = self.host(protocols=protocols)
        msgs = identifyMessages(host, None)
        self.assertEqual(len(msgs), 2)
        first, second = (identify_pb2.Identify.FromString(m) for m in msgs)
        self.assertEqual(list(first.protocols), protocols)
        self.assertFalse(first.HasField("signedPeerRecord"))
        self.assertEqual(second.ListFields()[0][0].name, "signedPeerRecord")
        self.assertEqual(len(second.ListFields()), 1)
        merged = identify_pb2.Identify()
        for m in msgs:
            merged.MergeFromString(m)
        self.assertEqual(merged, identify_pb2.Identify.FromString(identifyMessage(host, None)))

    def test_trimmedToLimit(self) -> None:
        """
        Every message stays within 8 KiB: protocols are dropped if needed.
        """
        protocols = [f"/a-very-long-protocol-name/{i:04d}/" + "x" * 100 for i in range(128)]
        msgs = identifyMessages(self.host(protocols=protocols), None)
        self.assertTrue(all(len(m) <= 8192 for m in msgs), [len(m) for m in msgs])
        first = identify_pb2.Identify.FromString(msgs[0])
        self.assertTrue(0 < len(first.protocols) < 128)

    def test_recordSeqMonotonic(self) -> None:
        """
        The record is reused while the addresses are the same and signed
        again with a larger seq when they change, even if the clock did not
        move.
        """
        host = self.host()
        first = signedPeerRecord(host)
        self.assertIs(signedPeerRecord(host), first)
        host.addrs.append("/ip4/10.0.0.9/tcp/9")
        second = signedPeerRecord(host)
        self.assertEqual(openPeerRecord(second).seq, openPeerRecord(first).seq + 1)
        host.clock.advance(5)
        host.addrs.pop()
        self.assertEqual(openPeerRecord(signedPeerRecord(host)).seq, 1005 * 10**9)

    def test_parseSkipsBadFields(self) -> None:
        msg = identify_pb2.Identify(
            listenAddrs=[b"\x04\x01", bytes.fromhex("047f000001060fa1")],
            protocols=["", "/ok", "/ok", "x" * 300],
            signedPeerRecord=b"junk",
        )
        info = parseIdentify(msg)
        self.assertIsNone(info.publicKey)
        self.assertEqual(info.listenAddrs, ["/ip4/127.0.0.1/tcp/4001"])
        self.assertEqual(info.protocols, ["/ok"])
        self.assertIsNone(info.signedRecord)
        self.assertIsNotNone(info.recordError)
        self.assertIsNone(info.agentVersion)

    def test_badKey(self) -> None:
        with self.assertRaises(IdentifyError):
            parseIdentify(identify_pb2.Identify(publicKey=b"\x08\x01\x12\x01x"))

    def test_unsupportedCurve(self) -> None:
        """
        An ECDSA key on a curve cryptography does not know is refused with
        L{IdentifyError} (cryptography raises UnsupportedAlgorithm).
        """
        key = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # swap the prime256v1 OID for an unknown one of the same length
        key = key.replace(bytes.fromhex("2a8648ce3d030107"), bytes.fromhex("2b81040006000000"))
        pub = crypto_pb2.PublicKey(Type=crypto_pb2.ECDSA, Data=key).SerializeToString()
        with self.assertRaises(IdentifyError):
            parseIdentify(identify_pb2.Identify(publicKey=pub))
        data = envelope_pb2.Envelope(public_key=pub, payload_type=b"\x03\x01").SerializeToString()
        with self.assertRaises(InvalidEnvelope):
            openPeerRecord(data)

    def test_tooLong(self) -> None:
        with self.assertRaises(IdentifyError):
            decodeIdentify(identify_pb2.Identify(agentVersion="x" * 8200).SerializeToString())

    @given(st.binary(max_size=400))
    def test_fuzzDecode(self, data) -> None:
        """
        Garbage raises L{IdentifyError} and nothing else.
        """
        try:
            parseIdentify(decodeIdentify(data))
        except IdentifyError:
            pass

    @given(
        st.builds(
            identify_pb2.Identify,
            publicKey=st.binary(max_size=50),
            listenAddrs=st.lists(st.binary(max_size=30), max_size=5),
            protocols=st.lists(st.text(max_size=20), max_size=5),
            observedAddr=st.binary(max_size=30),
            protocolVersion=st.text(max_size=10),
            agentVersion=st.text(max_size=10),
            signedPeerRecord=st.binary(max_size=100),
        )
    )
    def test_fuzzFields(self, msg) -> None:
        """
        Well-framed messages with garbage fields raise only
        L{IdentifyError}.
        """
        try:
            info = parseIdentify(decodeIdentify(msg.SerializeToString()))
        except IdentifyError:
            return
        self.assertTrue(all(isinstance(a, str) for a in info.listenAddrs))


def responder(*payloads, close=True):
    """
    An identify handler that writes C{payloads} (raw bytes) and closes.
    """

    async def handler(stream):
        for p in payloads:
            stream.write(p)
        if close:
            stream.closeWrite()

    return handler


def message(host, **fields):
    msg = identify_pb2.Identify(publicKey=host.key.publicKey().toProtobuf(), **fields)
    return msg.SerializeToString()


class IdentifyEndToEndTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pair = Pair()
        self.pair.clock.advance(1000)
        self.a, self.b = self.pair.a, self.pair.b
        identify.install(self.a)
        identify.install(self.b)

    def identify(self, host, conn):
        d = self.pair.run(identify.identify(host, conn))
        return d

    def test_identify(self) -> None:
        """
        a learns b's key, protocols, addresses (from the signed record),
        versions, and its own address as b sees it.
        """
        self.b.setStreamHandler("/x/1.0.0", responder())
        result = self.successResultOf(self.identify(self.a, self.pair.connA))
        b = self.b.peerID
        self.assertEqual(result.peerID, b)
        self.assertEqual(result.observedAddr, "/ip4/10.0.0.1/tcp/1111")
        self.assertEqual(result.protocols, [ID, PUSH, "/x/1.0.0"])
        self.assertEqual(result.agentVersion, "tau/test")
        self.assertEqual(result.protocolVersion, "ipfs/0.1.0")
        self.assertEqual(result.signedRecord.addrs, ("/ip4/10.0.0.2/tcp/2222",))
        self.assertEqual(result.messages, 1)
        store = self.a.peerstore
        self.assertEqual(store.addrs(b), ["/ip4/10.0.0.2/tcp/2222"])
        self.assertEqual(store.protocols(b), {ID, PUSH, "/x/1.0.0"})
        self.assertEqual(store.publicKey(b), self.b.key.publicKey())
        self.assertEqual(store.get(b).agentVersion, "tau/test")
        self.assertEqual(store.get(b).observedAddr, "/ip4/10.0.0.1/tcp/1111")
        # the stream is closed on both ends
        self.assertEqual((self.pair.client.streamCount, self.pair.server.streamCount), (0, 0))

    def test_identifyOtherWay(self) -> None:
        result = self.successResultOf(self.identify(self.b, self.pair.connB))
        self.assertEqual(result.peerID, self.a.peerID)
        self.assertEqual(result.observedAddr, "/ip4/10.0.0.2/tcp/2222")
        self.assertEqual(self.b.peerstore.addrs(self.a.peerID), ["/ip4/10.0.0.1/tcp/1111"])

    def test_addressTTL(self) -> None:
        self.successResultOf(self.identify(self.a, self.pair.connA))
        self.pair.clock.advance(identify.CONNECTED_ADDR_TTL + 1)
        self.assertEqual(self.a.peerstore.addrs(self.b.peerID), [])

    def test_installIdentifiesConnections(self) -> None:
        """
        L{install} registers a connection observer; L{whenIdentified} gives
        its result.
        """
        d = identify.whenIdentified(self.a, self.pair.connA)
        for observer in self.a._observers:
            observer(self.pair.connA)
        self.pair.run()
        self.assertEqual(self.successResultOf(d).peerID, self.b.peerID)
        self.assertEqual(
            self.successResultOf(identify.whenIdentified(self.a, self.pair.connA)).peerID,
            self.b.peerID,
        )

    def test_recordPreferred(self) -> None:
        """
        Addresses from a valid signed record win over listenAddrs.
        """
        record = makePeerRecord(self.b.key, ["/ip4/9.9.9.9/tcp/9"], 7)
        self.b.setStreamHandler(ID, responder(lp(message(
            self.b,
            listenAddrs=[bytes.fromhex("047f000001060fa1")],
            signedPeerRecord=record,
        ))))
        result = self.successResultOf(self.identify(self.a, self.pair.connA))
        self.assertEqual(result.listenAddrs, ["/ip4/127.0.0.1/tcp/4001"])
        self.assertEqual(self.a.peerstore.addrs(self.b.peerID), ["/ip4/9.9.9.9/tcp/9"])

    def test_olderRecordIgnored(self) -> None:
        """
        A record with a lower seq than one seen before does not replace it.
        """
        for seq, addr in [(7, "/ip4/9.9.9.9/tcp/9"), (6, "/ip4/6.6.6.6/tcp/6")]:
            record = makePeerRecord(self.b.key, [addr], seq)
            self.b.setStreamHandler(ID, responder(lp(message(self.b, signedPeerRecord=record))))
            self.successResultOf(self.identify(self.a, self.pair.connA))
        self.assertEqual(self.a.peerstore.addrs(self.b.peerID), ["/ip4/9.9.9.9/tcp/9"])

    def test_recordOfOtherPeerIgnored(self) -> None:
        """
        A valid record of a third peer is not used for b's addresses.
        """
        third = PrivateKey.generate()
        record = makePeerRecord(third, ["/ip4/9.9.9.9/tcp/9"], 7)
        self.b.setStreamHandler(ID, responder(lp(message(
            self.b, listenAddrs=[bytes.fromhex("047f000001060fa1")], signedPeerRecord=record
        ))))
        self.successResultOf(self.identify(self.a, self.pair.connA))
        self.assertEqual(self.a.peerstore.addrs(self.b.peerID), ["/ip4/127.0.0.1/tcp/4001"])

    def test_multipleMessagesMerged(self) -> None:
        protocols = [f"/proto/{i:04d}/1.0.0" for i in range(120)]
        for p in protocols:
            self.b.setStreamHandler(p, responder())
        result = self.successResultOf(self.identify(self.a, self.pair.connA))
        self.assertEqual(result.messages, 2)
        self.assertEqual(len(result.protocols), 122)
        self.assertIsNotNone(result.signedRecord)

    def assertRejected(self, handler, error=IdentifyError):
        self.b.setStreamHandler(ID, handler)
        failure = self.failureResultOf(self.identify(self.a, self.pair.connA), error)
        self.assertNotIn(self.b.peerID, self.a.peerstore)
        self.assertEqual((self.pair.client.streamCount, self.pair.server.streamCount), (0, 0))
        return failure

    def test_rejectMissingKey(self) -> None:
        msg = identify_pb2.Identify(protocols=["/x"]).SerializeToString()
        self.assertRejected(responder(lp(msg)), IdentifyRejected)

    def test_rejectKeyOfAnotherPeer(self) -> None:
        other = PrivateKey.generate()
        msg = identify_pb2.Identify(publicKey=other.publicKey().toProtobuf()).SerializeToString()
        self.assertRejected(responder(lp(msg)), IdentifyRejected)

    def test_rejectOversize(self) -> None:
        msg = message(self.b, agentVersion="x" * 8200)
        self.assertRejected(responder(lp(msg)))

    def test_rejectOversizePrefixEarly(self) -> None:
        """
        The length prefix alone is enough to refuse; the body never comes.
        """
        self.assertRejected(responder(varint.encode(100000), close=False))

    def test_rejectTooManyMessages(self) -> None:
        msg = message(self.b)
        self.assertRejected(responder(lp(*[msg] * 11)))

    def test_tenMessagesAccepted(self) -> None:
        msgs = [message(self.b, protocols=[f"/p/{i}"]) for i in range(10)]
        self.b.setStreamHandler(ID, responder(lp(*msgs)))
        result = self.successResultOf(self.identify(self.a, self.pair.connA))
        self.assertEqual(result.protocols, [f"/p/{i}" for i in range(10)])

    def test_rejectGarbage(self) -> None:
        self.assertRejected(responder(lp(b"\xff\xff\xff")))

    def test_truncated(self) -> None:
        """
        A stream that ends inside a message fails.
        """
        self.b.setStreamHandler(ID, responder(lp(message(self.b))[:-3]))
        self.failureResultOf(self.identify(self.a, self.pair.connA))

    def test_timeout(self) -> None:
        self.b.setStreamHandler(ID, responder(close=False))
        d = self.identify(self.a, self.pair.connA)
        self.assertNoResult(d)
        self.pair.clock.advance(identify.TIMEOUT)
        self.pair.run()
        self.failureResultOf(d, TimeoutError)
        self.assertEqual((self.pair.client.streamCount, self.pair.server.streamCount), (0, 0))


class PushTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pair = Pair()
        self.a, self.b = self.pair.a, self.pair.b
        identify.install(self.a)
        identify.install(self.b)
        self.successResultOf(self.pair.run(identify.identify(self.a, self.pair.connA)))

    def test_push(self) -> None:
        """
        After b's addresses and protocols change, its push updates a.
        """
        self.b.addrs = ["/ip4/10.0.0.2/tcp/3333"]
        self.b.setStreamHandler("/new/1.0.0", responder())
        self.successResultOf(self.pair.run(identify.push(self.b, self.a.peerID)))
        store = self.a.peerstore
        self.assertEqual(store.addrs(self.b.peerID), ["/ip4/10.0.0.2/tcp/3333"])
        self.assertIn("/new/1.0.0", store.protocols(self.b.peerID))
        self.assertEqual((self.pair.client.streamCount, self.pair.server.streamCount), (0, 0))

    def pushRaw(self, *payloads):
        async def send():
            stream = await self.b.newStream(self.a.peerID, [PUSH])
            for p in payloads:
                stream.write(p)
            stream.closeWrite()

        self.successResultOf(self.pair.run(send()))

    def test_partialPush(self) -> None:
        """
        Fields missing from a push are left as they were.
        """
        msg = identify_pb2.Identify(protocols=["/only/1.0.0"]).SerializeToString()
        self.pushRaw(lp(msg))
        store = self.a.peerstore
        rec = store.get(self.b.peerID)
        self.assertEqual(store.protocols(self.b.peerID), {"/only/1.0.0"})
        self.assertEqual(store.addrs(self.b.peerID), ["/ip4/10.0.0.2/tcp/2222"])
        self.assertEqual(rec.agentVersion, "tau/test")
        self.assertEqual(rec.protocolVersion, "ipfs/0.1.0")
        self.assertEqual(self.a.failures, [])

    def test_pushAgentOnly(self) -> None:
        msg = identify_pb2.Identify(agentVersion="other/2").SerializeToString()
        self.pushRaw(lp(msg))
        rec = self.a.peerstore.get(self.b.peerID)
        self.assertEqual((rec.agentVersion, rec.protocolVersion), ("other/2", "ipfs/0.1.0"))
        self.assertIn(ID, rec.protocols)

    def test_pushWithKeyOfAnotherPeer(self) -> None:
        """
        A push carrying another peer's key changes nothing and the stream
        is reset.
        """
        other = PrivateKey.generate()
        msg = identify_pb2.Identify(
            publicKey=other.publicKey().toProtobuf(), protocols=["/evil"]
        ).SerializeToString()
        self.pushRaw(lp(msg))
        self.assertNotIn("/evil", self.a.peerstore.protocols(self.b.peerID))
        [failure] = self.a.failures
        failure.trap(IdentifyRejected)
        self.assertEqual((self.pair.client.streamCount, self.pair.server.streamCount), (0, 0))

    def test_pushGarbage(self) -> None:
        self.pushRaw(lp(b"\xff"))
        [failure] = self.a.failures
        failure.trap(IdentifyError)
        self.assertIn(ID, self.a.peerstore.protocols(self.b.peerID))


class PeerIDFixtureTests(SynchronousTestCase):
    def test_seedPeer(self) -> None:
        self.assertEqual(seedKey().peerID(), PeerID.fromString(SEED_PEER))
