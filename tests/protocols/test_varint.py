"""
Tests for L{tau.protocols.varint}.
"""

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tau.protocols import varint
from tau.protocols.varint import LPDecoder, VarintError, decode, encode, lpEncode

# (value, minimal encoding) from the multiformats unsigned-varint README.
VECTORS = [
    (0, "00"),
    (1, "01"),
    (127, "7f"),
    (128, "8001"),
    (255, "ff01"),
    (300, "ac02"),
    (16384, "808001"),
    (2**63 - 1, "ffffffffffffffff7f"),
]


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """
    Split C{data} at the (sorted, deduplicated) positions in C{cuts}.
    """
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


class EncodeTests(SynchronousTestCase):
    def test_vectors(self) -> None:
        for value, hexed in VECTORS:
            self.assertEqual(encode(value).hex(), hexed, value)

    def test_negative(self) -> None:
        self.assertRaises(VarintError, encode, -1)

    def test_tooLarge(self) -> None:
        self.assertRaises(VarintError, encode, 2**63)

    def test_isValueError(self) -> None:
        """
        Callers that only know about ValueError still catch varint errors.
        """
        self.assertTrue(issubclass(VarintError, ValueError))

    @given(st.integers(min_value=0, max_value=varint.MAX_VALUE))
    def test_roundTrip(self, n: int) -> None:
        data = encode(n)
        self.assertLessEqual(len(data), varint.MAX_VARINT_BYTES)
        self.assertEqual(decode(data), (n, len(data)))


class DecodeTests(SynchronousTestCase):
    def test_vectors(self) -> None:
        for value, hexed in VECTORS:
            data = bytes.fromhex(hexed)
            self.assertEqual(decode(data), (value, len(data)))

    def test_offset(self) -> None:
        """
        Decoding starts at C{offset}; the returned offset is absolute.
        """
        self.assertEqual(decode(b"\xff\xac\x02\x05", 1), (300, 3))
        self.assertEqual(decode(b"\xff\xac\x02\x05", 3), (5, 4))

    def test_incomplete(self) -> None:
        self.assertIsNone(decode(b""))
        self.assertIsNone(decode(b"\x80"))
        self.assertIsNone(decode(b"\xff\xff\xff"))
        self.assertIsNone(decode(b"\x01", 1))

    def test_nonMinimal(self) -> None:
        self.assertRaises(VarintError, decode, b"\x80\x00")
        self.assertRaises(VarintError, decode, b"\x81\x00")
        self.assertRaises(VarintError, decode, b"\xff\x80\x00")

    def test_tooLong(self) -> None:
        """
        Nine bytes is the maximum; a ninth byte with the continuation bit is
        rejected without waiting for a tenth.
        """
        self.assertRaises(VarintError, decode, b"\xff" * 9 + b"\x01")
        self.assertRaises(VarintError, decode, b"\xff" * 9)
        self.assertEqual(decode(b"\xff" * 8 + b"\x7f"), (2**63 - 1, 9))

    def test_maxValue(self) -> None:
        self.assertEqual(decode(b"\x80\x01", maxValue=128), (128, 2))
        self.assertRaises(VarintError, decode, b"\x81\x01", maxValue=128)
        self.assertRaises(VarintError, decode, b"\x05", maxValue=4)

    def test_maxValueEarly(self) -> None:
        """
        A varint that is certain to exceed the limit is rejected before it
        is complete.
        """
        self.assertRaises(VarintError, decode, b"\xff\xff", maxValue=1024)

    @given(st.binary(max_size=20), st.integers(min_value=0, max_value=2**70))
    def test_garbage(self, data: bytes, limit: int) -> None:
        """
        Any input either decodes, is incomplete or raises L{VarintError}.
        """
        try:
            result = decode(data, 0, limit)
        except VarintError:
            return
        if result is not None:
            value, end = result
            self.assertLessEqual(value, limit)
            self.assertEqual(encode(value), data[:end])


class LPTests(SynchronousTestCase):
    def test_lpEncode(self) -> None:
        self.assertEqual(lpEncode(b""), b"\x00")
        self.assertEqual(lpEncode(b"abc"), b"\x03abc")
        self.assertEqual(lpEncode(b"x" * 300)[:2], b"\xac\x02")

    def test_feedWhole(self) -> None:
        d = LPDecoder(100)
        self.assertEqual(d.feed(lpEncode(b"one") + lpEncode(b"") + lpEncode(b"3")),
                         [b"one", b"", b"3"])
        self.assertEqual(d.unconsumed(), b"")

    def test_feedByteByByte(self) -> None:
        d = LPDecoder(1000)
        wire = lpEncode(b"a" * 200) + lpEncode(b"b")
        out = []
        for i in range(len(wire)):
            out.extend(d.feed(wire[i : i + 1]))
        self.assertEqual(out, [b"a" * 200, b"b"])

    def test_oversize(self) -> None:
        """
        An announced length above the limit fails before the payload
        arrives, and the decoder stays failed.
        """
        d = LPDecoder(10)
        self.assertEqual(d.feed(lpEncode(b"x" * 10)), [b"x" * 10])
        self.assertRaises(VarintError, d.feed, b"\x0b")
        self.assertRaises(VarintError, d.feed, b"\x01a")

    def test_stopBetweenMessages(self) -> None:
        """
        A consumer may take one message and leave the rest, e.g. to hand
        it to another protocol.
        """
        d = LPDecoder(100)
        d.push(lpEncode(b"hello") + b"raw bytes")
        self.assertEqual(d.next(), b"hello")
        self.assertEqual(d.unconsumed(), b"raw bytes")
        self.assertEqual(d.takeUnconsumed(), b"raw bytes")
        self.assertEqual(d.unconsumed(), b"")
        self.assertIsNone(d.next())

    def test_manySmallMessages(self) -> None:
        """
        Many messages in one chunk come out in order (and in linear time).
        """
        d = LPDecoder(10)
        wire = b"".join(lpEncode(bytes([i % 256])) for i in range(50000))
        out = d.feed(wire)
        self.assertEqual(len(out), 50000)
        self.assertEqual(out[-1], bytes([49999 % 256]))

    @given(
        st.lists(st.binary(max_size=300), max_size=10),
        st.lists(st.integers(min_value=0, max_value=10000), max_size=8),
    )
    def test_anyChunking(self, messages: list[bytes], cuts: list[int]) -> None:
        wire = b"".join(lpEncode(m) for m in messages)
        d = LPDecoder(300)
        out = []
        for piece in chunked(wire, cuts):
            out.extend(d.feed(piece))
        self.assertEqual(out, messages)
        self.assertEqual(d.unconsumed(), b"")

    @given(st.lists(st.binary(max_size=40), max_size=6))
    def test_garbage(self, pieces: list[bytes]) -> None:
        d = LPDecoder(16)
        try:
            for piece in pieces:
                for message in d.feed(piece):
                    self.assertLessEqual(len(message), 16)
        except VarintError:
            pass
