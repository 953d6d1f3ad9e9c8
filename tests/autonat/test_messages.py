"""
AutoNAT messages: encoding, decoding and its limits.
"""

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tau.autonat import messages
from tau.autonat.messages import (
    E_DIAL_ERROR,
    OK,
    AutoNATProtocolError,
    DialRequest,
    DialResponse,
    decodeMessage,
    encodeDial,
    encodeResponse,
)
from tau.identity import PrivateKey
from tau.pb import autonat_pb2

PEER = PrivateKey.generate().peerID()


class RoundTripTests(SynchronousTestCase):
    def test_dial(self):
        addrs = ["/ip4/1.2.3.4/tcp/4001", "/ip6/::1/tcp/4002"]
        decoded = decodeMessage(encodeDial(PEER, addrs + ["not an address"]))
        self.assertEqual(decoded, DialRequest(PEER, tuple(addrs)))

    def test_response(self):
        decoded = decodeMessage(encodeResponse(OK, "", "/ip4/1.2.3.4/tcp/4001"))
        self.assertEqual(decoded, DialResponse(OK, "", "/ip4/1.2.3.4/tcp/4001"))
        self.assertEqual(decoded.statusName, "OK")
        decoded = decodeMessage(encodeResponse(E_DIAL_ERROR, "dial failed"))
        self.assertEqual(decoded, DialResponse(E_DIAL_ERROR, "dial failed", None))

    def test_wireBytes(self):
        """
        A DIAL is the spec's protobuf: type 0, dial.peer.id and addrs.
        """
        data = encodeDial(PEER, ["/ip4/1.2.3.4/tcp/4001"])
        msg = autonat_pb2.Message()
        msg.ParseFromString(data)
        self.assertEqual(data[:2], b"\x08\x00")
        self.assertEqual(msg.dial.peer.id, PEER.toBytes())
        self.assertEqual(list(msg.dial.peer.addrs), [bytes.fromhex("0401020304060fa1")])


class DecodeErrorTests(SynchronousTestCase):
    def assertRefused(self, data):
        self.assertRaises(AutoNATProtocolError, decodeMessage, data)

    def test_tooLong(self):
        msg = autonat_pb2.Message(type=autonat_pb2.Message.DIAL)
        msg.dial.peer.id = PEER.toBytes()
        msg.dial.peer.addrs.extend([b"\x04\x01\x02\x03\x04\x06\x0f\xa1"] * 500)
        self.assertRefused(msg.SerializeToString())

    def test_noType(self):
        self.assertRefused(b"")

    def test_garbage(self):
        self.assertRefused(b"\xff\xff\xff")

    def test_dialWithoutPeer(self):
        self.assertRefused(autonat_pb2.Message(type=autonat_pb2.Message.DIAL).SerializeToString())

    def test_badPeerID(self):
        msg = autonat_pb2.Message(type=autonat_pb2.Message.DIAL)
        msg.dial.peer.id = b"\x99\x99"
        self.assertRefused(msg.SerializeToString())

    def test_responseWithoutStatus(self):
        msg = autonat_pb2.Message(type=autonat_pb2.Message.DIAL_RESPONSE)
        msg.dialResponse.statusText = "x"
        self.assertRefused(msg.SerializeToString())

    def test_unknownStatus(self):
        # 7 is no ResponseStatus: proto2 keeps it as an unknown field.
        self.assertRefused(bytes.fromhex("0801") + bytes.fromhex("1a020807"))

    def test_manyAddressesKeptBounded(self):
        msg = autonat_pb2.Message(type=autonat_pb2.Message.DIAL)
        msg.dial.peer.id = PEER.toBytes()
        for port in range(1, 200):
            msg.dial.peer.addrs.append(bytes.fromhex("0401020304") + b"\x06" + port.to_bytes(2, "big"))
        decoded = decodeMessage(msg.SerializeToString())
        self.assertEqual(len(decoded.addrs), messages.MAX_REQUEST_ADDRS)


class FuzzTests(SynchronousTestCase):
    @given(st.binary(max_size=5000))
    def test_decodeRaisesOnlyProtocolErrors(self, data):
        try:
            decoded = decodeMessage(data)
        except AutoNATProtocolError:
            return
        self.assertIsInstance(decoded, (DialRequest, DialResponse))
        if isinstance(decoded, DialRequest):
            self.assertLessEqual(len(decoded.addrs), messages.MAX_REQUEST_ADDRS)

    @given(
        st.lists(
            st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.integers(1, 65535)),
            max_size=20,
        )
    )
    def test_dialRoundTrip(self, entries):
        addrs = list(dict.fromkeys(f"/ip4/{a}.{b}.{c}.{d}/tcp/{p}" for a, b, c, d, p in entries))
        self.assertEqual(decodeMessage(encodeDial(PEER, addrs)), DialRequest(PEER, tuple(addrs)))

    @given(st.sampled_from([0, 100, 101, 200, 300]), st.text(max_size=300))
    def test_responseRoundTrip(self, status, text):
        decoded = decodeMessage(encodeResponse(status, text))
        self.assertEqual((decoded.status, decoded.text), (status, text[: messages.MAX_STATUS_TEXT]))
