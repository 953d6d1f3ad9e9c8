"""
DCUtR messages: the wire form, and what is refused at the limits.
"""

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tau.dcutr import messages as m
from tau.pb import holepunch_pb2
from tau.protocols.peerrecord import encodeAddr


def raw(kind=m.CONNECT, addrs=(), extra=b""):
    msg = holepunch_pb2.HolePunch(type=kind)
    msg.ObsAddrs.extend(addrs)
    return msg.SerializeToString() + extra


class MessageTests(SynchronousTestCase):
    def test_connectRoundTrip(self):
        """
        A CONNECT carries its addresses in order; duplicates are dropped
        on decoding.
        """
        addrs = ["/ip4/11.0.1.2/tcp/4001", "/ip6/2001:db8::1/tcp/4001", "/ip4/11.0.1.2/tcp/4001"]
        decoded = m.decodeMessage(m.encodeConnect(addrs))
        self.assertEqual(decoded.type, m.CONNECT)
        self.assertEqual(decoded.typeName, "CONNECT")
        self.assertEqual(decoded.addrs, tuple(addrs[:2]))

    def test_syncWire(self):
        """
        SYNC is type 300 (varint ac 02) with no addresses, as go and js send it.
        """
        self.assertEqual(m.encodeSync(), b"\x08\xac\x02")
        self.assertEqual(m.decodeMessage(b"\x08\xac\x02"), m.HolePunch(m.SYNC, ()))

    def test_connectWire(self):
        """
        CONNECT is type 100 and each address is field 2 in binary form.
        """
        addr = encodeAddr("/ip4/11.0.0.1/tcp/1")
        self.assertEqual(m.encodeConnect(["/ip4/11.0.0.1/tcp/1"]), b"\x08\x64\x12" + bytes([len(addr)]) + addr)

    def test_badAddressesLeftOut(self):
        """
        Addresses that do not parse are not sent, and not kept when received.
        """
        self.assertEqual(m.decodeMessage(m.encodeConnect(["nonsense", "/ip4/11.0.0.1/tcp/1"])).addrs, ("/ip4/11.0.0.1/tcp/1",))
        self.assertEqual(m.decodeMessage(raw(addrs=[b"\xff\xff", encodeAddr("/ip4/11.0.0.1/tcp/1")])).addrs, ("/ip4/11.0.0.1/tcp/1",))

    def test_sizeLimitEdge(self):
        """
        A message of exactly MAX_MESSAGE_SIZE bytes is decoded; one byte
        more is refused for its size.
        """
        base = raw(m.SYNC)
        # pad with an unknown length-delimited field 15: tag 0x7a, 2-byte length
        padding = m.MAX_MESSAGE_SIZE - len(base) - 3
        exact = base + b"\x7a" + bytes([0x80 | (padding & 0x7F), padding >> 7]) + b"\0" * padding
        self.assertEqual(len(exact), m.MAX_MESSAGE_SIZE)
        self.assertEqual(m.decodeMessage(exact).type, m.SYNC)
        e = self.assertRaises(m.DCUtRProtocolError, m.decodeMessage, exact + b"\0")
        self.assertIn("exceeds 4096", str(e))

    def test_addressCountEdge(self):
        """
        MAX_OBS_ADDRS addresses are accepted, one more is refused as too many.
        """
        addrs = [encodeAddr(f"/ip4/11.0.0.{i}/tcp/1") for i in range(m.MAX_OBS_ADDRS + 1)]
        self.assertEqual(len(m.decodeMessage(raw(addrs=addrs[:-1])).addrs), m.MAX_OBS_ADDRS)
        e = self.assertRaises(m.DCUtRProtocolError, m.decodeMessage, raw(addrs=addrs))
        self.assertIn("33 addresses", str(e))

    def test_encodeKeepsWithinLimits(self):
        """
        We never send more than MAX_OBS_ADDRS addresses, nor more than
        MAX_MESSAGE_SIZE bytes, however many we are given.
        """
        many = [f"/ip4/11.0.{i // 256}.{i % 256}/tcp/{i}" for i in range(100)]
        self.assertEqual(len(m.decodeMessage(m.encodeConnect(many)).addrs), m.MAX_OBS_ADDRS)
        long = [f"/dns4/{'x' * 200}{i}.example/tcp/1" for i in range(30)]
        data = m.encodeConnect(long)
        self.assertLessEqual(len(data), m.MAX_MESSAGE_SIZE)
        self.assertEqual(m.decodeMessage(data).addrs, tuple(long[: len(m.decodeMessage(data).addrs)]))

    def test_typeRequired(self):
        """
        A message without a type, or with one we do not know, is refused.
        """
        for data in (b"", holepunch_pb2.HolePunch().SerializeToString(), b"\x08\x01"):
            e = self.assertRaises(m.DCUtRProtocolError, m.decodeMessage, data)
            self.assertIn("known type", str(e))

    def test_malformed(self):
        e = self.assertRaises(m.DCUtRProtocolError, m.decodeMessage, b"\x12\x05ab")
        self.assertIn("malformed", str(e))

    @given(st.binary(max_size=5000))
    def test_anyBytes(self, data):
        """
        Any bytes decode to a message or raise DCUtRProtocolError.
        """
        try:
            msg = m.decodeMessage(data)
        except m.DCUtRProtocolError:
            return
        self.assertIn(msg.type, (m.CONNECT, m.SYNC))
        self.assertLessEqual(len(msg.addrs), m.MAX_OBS_ADDRS)

    @given(st.lists(st.tuples(st.integers(0, 255), st.integers(1, 65535)), max_size=40))
    def test_roundTripAny(self, pairs):
        addrs = list(dict.fromkeys(f"/ip4/11.0.0.{a}/tcp/{p}" for a, p in pairs))
        self.assertEqual(m.decodeMessage(m.encodeConnect(addrs)).addrs, tuple(addrs[: m.MAX_OBS_ADDRS]))
