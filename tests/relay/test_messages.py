"""
Circuit relay v2 messages and vouchers: encoding, decoding, fuzzing.
"""

from hypothesis import given
from multiaddr import Multiaddr
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tau.identity import PrivateKey
from tau.pb import circuit_pb2
from tau.protocols.peerrecord import makeEnvelope
from tau.relay import messages as m
from tau.relay.client import splitCircuit

RELAY = PrivateKey.generate()
PEER = PrivateKey.generate()


class EncodingTests(SynchronousTestCase):
    def test_reserveRoundTrip(self):
        self.assertEqual(m.decodeHop(m.encodeReserve()), m.HopRequest(m.RESERVE))
        # the spec's wire form: field 1 (type) = 0, present
        self.assertEqual(m.encodeReserve(), b"\x08\x00")

    def test_connectRoundTrip(self):
        target = PEER.peerID()
        request = m.decodeHop(m.encodeConnect(target, ["/ip4/1.2.3.4/tcp/5"]))
        self.assertEqual(request, m.HopRequest(m.CONNECT, target, ("/ip4/1.2.3.4/tcp/5",)))

    def test_statusWithReservation(self):
        voucher = m.makeVoucher(RELAY, PEER.peerID(), 1_700_000_000)
        reservation = m.Reservation(
            RELAY.peerID(), 1_700_000_000, (f"/ip4/1.2.3.4/tcp/5/p2p/{RELAY.peerID()}",), voucher
        )
        data = m.encodeHopStatus(m.OK, reservation=reservation, limit=m.Limit(120, 1 << 17))
        reply = m.decodeHop(data)
        self.assertEqual(reply.status, m.OK)
        self.assertEqual(reply.limit, m.Limit(120, 1 << 17))
        parsed = m.parseReservation(RELAY.peerID(), PEER.peerID(), reply.reservation, reply.limit)
        self.assertEqual(parsed, m.Reservation(RELAY.peerID(), 1_700_000_000, reservation.addrs, voucher, reply.limit))
        self.assertEqual(parsed.circuitAddrs(), [f"/ip4/1.2.3.4/tcp/5/p2p/{RELAY.peerID()}/p2p-circuit"])

    def test_noLimitMeansNone(self):
        self.assertIsNone(m.decodeHop(m.encodeHopStatus(m.OK, limit=m.Limit(0, 0))).limit)
        self.assertIsNone(m.decodeStop(m.encodeStopConnect(PEER.peerID())).limit)

    def test_stopRoundTrip(self):
        request = m.decodeStop(m.encodeStopConnect(PEER.peerID(), m.Limit(60, 1024)))
        self.assertEqual(request, m.StopRequest(PEER.peerID(), (), m.Limit(60, 1024)))
        self.assertEqual(m.decodeStop(m.encodeStopStatus(m.CONNECTION_FAILED)).status, m.CONNECTION_FAILED)

    def test_reservationAddrsGetRelayId(self):
        """
        Addresses without /p2p get the relay's; addresses of another peer
        and circuit addresses are dropped.
        """
        other = PEER.peerID()
        pb = circuit_pb2.Reservation(expire=5)
        for text in ["/ip4/1.2.3.4/tcp/5", f"/ip4/1.2.3.4/tcp/6/p2p/{other}", f"/p2p/{RELAY.peerID()}/p2p-circuit"]:
            pb.addrs.append(Multiaddr(text).to_bytes())
        pb.addrs.append(b"\xff\xff garbage")
        parsed = m.parseReservation(RELAY.peerID(), other, pb, None)
        self.assertEqual(parsed.addrs, (f"/ip4/1.2.3.4/tcp/5/p2p/{RELAY.peerID()}",))
        self.assertEqual(parsed.voucher, b"")


class RefusalTests(SynchronousTestCase):
    def test_tooLong(self):
        with self.assertRaises(m.MessageError):
            m.decodeHop(b"\x08\x00" + b"\x00" * m.MAX_MESSAGE_SIZE)

    def test_missingType(self):
        with self.assertRaises(m.MessageError):
            m.decodeHop(b"")
        with self.assertRaises(m.MessageError):
            m.decodeStop(b"")

    def test_connectWithoutPeer(self):
        with self.assertRaises(m.MessageError) as e:
            m.decodeHop(circuit_pb2.HopMessage(type=m.CONNECT).SerializeToString())
        self.assertEqual(e.exception.status, m.MALFORMED_MESSAGE)

    def test_badPeerId(self):
        msg = circuit_pb2.HopMessage(type=m.CONNECT)
        msg.peer.id = b"\x12\x03abc"
        with self.assertRaises(m.MessageError):
            m.decodeHop(msg.SerializeToString())

    def test_unknownType(self):
        with self.assertRaises(m.MessageError) as e:
            m.decodeHop(b"\x08\x07")
        self.assertEqual(e.exception.status, m.UNEXPECTED_MESSAGE)

    def test_statusWithoutStatus(self):
        with self.assertRaises(m.MessageError):
            m.decodeHop(circuit_pb2.HopMessage(type=m.STATUS).SerializeToString())

    def test_reservationWithoutExpiry(self):
        with self.assertRaises(m.MessageError):
            m.parseReservation(RELAY.peerID(), PEER.peerID(), circuit_pb2.Reservation(), None)


class VoucherTests(SynchronousTestCase):
    def test_roundTrip(self):
        voucher = m.openVoucher(m.makeVoucher(RELAY, PEER.peerID(), 123))
        self.assertEqual(voucher, m.Voucher(RELAY.peerID(), PEER.peerID(), 123))

    def test_envelopeDomainAndType(self):
        """
        The envelope carries the payload type 03 02 and verifies only for
        the libp2p-relay-rsvp domain.
        """
        from tau.pb import envelope_pb2
        from tau.protocols.peerrecord import InvalidEnvelope, openEnvelope

        data = m.makeVoucher(RELAY, PEER.peerID(), 123)
        envelope = envelope_pb2.Envelope.FromString(data)
        self.assertEqual(envelope.payload_type, b"\x03\x02")
        with self.assertRaises(InvalidEnvelope):
            openEnvelope(data, "libp2p-peer-record", None)

    def test_tampered(self):
        from tau.pb import envelope_pb2

        envelope = envelope_pb2.Envelope.FromString(m.makeVoucher(RELAY, PEER.peerID(), 123))
        payload = circuit_pb2.Voucher.FromString(envelope.payload)
        payload.expiration = 124
        envelope.payload = payload.SerializeToString()
        with self.assertRaises(m.MessageError):
            m.openVoucher(envelope.SerializeToString())

    def test_signedByAnotherKey(self):
        """
        A voucher naming relay R but signed by someone else is refused.
        """
        payload = circuit_pb2.Voucher(relay=RELAY.peerID().toBytes(), peer=PEER.peerID().toBytes(), expiration=1)
        data = makeEnvelope(PEER, m.VOUCHER_PAYLOAD_TYPE, payload.SerializeToString(), m.VOUCHER_DOMAIN)
        with self.assertRaises(m.MessageError):
            m.openVoucher(data)

    def test_reservationForSomeoneElse(self):
        pb = circuit_pb2.Reservation(expire=5, voucher=m.makeVoucher(RELAY, RELAY.peerID(), 5))
        with self.assertRaises(m.MessageError):
            m.parseReservation(RELAY.peerID(), PEER.peerID(), pb, None)


class SplitCircuitTests(SynchronousTestCase):
    def test_full(self):
        r, p = RELAY.peerID(), PEER.peerID()
        self.assertEqual(
            splitCircuit(f"/ip4/1.2.3.4/tcp/5/p2p/{r}/p2p-circuit/p2p/{p}"),
            (f"/ip4/1.2.3.4/tcp/5/p2p/{r}", r, p),
        )
        self.assertEqual(splitCircuit(f"/p2p/{r}/p2p-circuit"), (f"/p2p/{r}", r, None))

    def test_refused(self):
        r, p = RELAY.peerID(), PEER.peerID()
        for bad in [
            "/ip4/1.2.3.4/tcp/5",
            "/ip4/1.2.3.4/tcp/5/p2p-circuit",
            f"/p2p/{r}/p2p-circuit/p2p/{p}/p2p-circuit/p2p/{r}",
            f"/p2p/{r}/p2p-circuit/ip4/1.2.3.4",
        ]:
            with self.assertRaises(ValueError, msg=bad):
                splitCircuit(bad)


def _fields():
    """
    Protobuf-ish bytes: random tags with random payloads, so most inputs get
    past the first byte.
    """
    key = st.integers(1, 6).flatmap(lambda n: st.sampled_from([n << 3, (n << 3) | 2, (n << 3) | 5, (n << 3) | 1]))
    lp = st.binary(max_size=80).map(lambda b: bytes([len(b)]) + b)
    return st.lists(st.tuples(key, st.one_of(st.binary(max_size=9), lp)), max_size=8).map(
        lambda items: b"".join(bytes([k]) + v for k, v in items)
    )


class FuzzTests(SynchronousTestCase):
    @given(st.one_of(st.binary(max_size=200), _fields()))
    def test_hopNeverRaisesOthers(self, data):
        try:
            result = m.decodeHop(data)
        except m.MessageError as e:
            self.assertIn(e.status, (m.MALFORMED_MESSAGE, m.UNEXPECTED_MESSAGE))
            return
        self.assertIsInstance(result, (m.HopRequest, m.StatusReply))
        if isinstance(result, m.StatusReply) and result.reservation is not None:
            try:
                m.parseReservation(RELAY.peerID(), PEER.peerID(), result.reservation, result.limit)
            except m.MessageError:
                pass

    @given(st.one_of(st.binary(max_size=200), _fields()))
    def test_stopNeverRaisesOthers(self, data):
        try:
            result = m.decodeStop(data)
        except m.MessageError:
            return
        self.assertIsInstance(result, (m.StopRequest, m.StatusReply))

    @given(st.binary(max_size=300))
    def test_voucherNeverRaisesOthers(self, data):
        try:
            m.openVoucher(data)
        except m.MessageError:
            pass

    @given(st.integers(0, 1 << 32), st.integers(0, (1 << 64) - 1))
    def test_limitRoundTrip(self, duration, data):
        limit = m.Limit(duration, data)
        reply = m.decodeHop(m.encodeHopStatus(m.OK, limit=limit))
        if limit:
            self.assertEqual(reply.limit, m.Limit(min(duration, (1 << 32) - 1), data))
        else:
            self.assertIsNone(reply.limit)
