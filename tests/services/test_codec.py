"""
Taubyte's frames and command messages: the spec sheet's hex vectors, the
limits at their edges, and fuzzing.
"""

import struct

import cbor2
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from tau.services import commands, frames
from tau.services.commands import CommandError, RemoteError
from tau.services.frames import CLOSE, DATA, Frame, FrameDecoder, FrameError


def h(text):
    return bytes.fromhex(text.replace(" ", "").replace("|", ""))


class VectorTests(TestCase):
    """
    The hex of ../shared/specs/taubyte-streams.md, sections 2 and 3.
    """

    def test_packerGolden(self):
        wire = h("abcd 0700 00 0500000000000000 00 68656c6c6f")
        self.assertEqual(frames.encodeFrame(b"hello", magic=h("abcd"), version=7), wire)
        decoder = FrameDecoder(16, magic=h("abcd"), version=7)
        self.assertEqual(decoder.feed(wire), [Frame(DATA, 0, b"hello")])

    def test_ping(self):
        wire = h("01ec 0100 00 0a00000000000000 00 | a2 10 64 70696e67 18 40 a0")
        self.assertEqual(commands.encodeCommand("ping", {}), wire)
        [frame] = FrameDecoder(1024).feed(wire)
        self.assertEqual(commands.decodeCommand(frame.payload), ("ping", {}))

    def test_tnsFetch(self):
        wire = h("01ec010000150000000000000000 | a2 10 65 6665746368 18 40 a1 64 70617468 82 6161 6162")
        self.assertEqual(commands.encodeCommand("fetch", {"path": ["a", "b"]}), wire)
        [frame] = FrameDecoder(1024).feed(wire)
        self.assertEqual(commands.decodeCommand(frame.payload), ("fetch", {"path": ["a", "b"]}))

    def test_timeResponse(self):
        wire = h("01ec0100000b0000000000000000 | a1 64 74696d65 1a 6553f100")
        self.assertEqual(commands.encodeResponse({"time": 1700000000}), wire)
        [frame] = FrameDecoder(1024).feed(wire)
        self.assertEqual(commands.decodeResponse(frame.payload), {"time": 1700000000})

    def test_nullResponse(self):
        wire = h("01ec010000010000000000000000 | f6")
        self.assertEqual(commands.encodeResponse(None), wire)
        [frame] = FrameDecoder(1024).feed(wire)
        self.assertIsNone(commands.decodeResponse(frame.payload))

    def test_errorResponse(self):
        [frame] = FrameDecoder(1024).feed(commands.encodeErrorResponse('router: command "x" not registered'))
        e = self.assertRaises(RemoteError, commands.decodeResponse, frame.payload)
        self.assertEqual(str(e), 'router: command "x" not registered')

    def test_floatIsFloat64(self):
        # go's fxamacker writes float64 always (fb), never the shortest
        self.assertEqual(commands.encodeResponse({"x": 1.5})[14:], h("a1 61 78 fb 3ff8000000000000"))


class FrameTests(TestCase):
    def header(self, magic=b"\x01\xec", version=1, type=DATA, length=0, channel=0):
        return struct.pack("<2sHBqB", magic, version, type, length, channel)

    def test_byteByByte(self):
        wire = frames.encodeFrame(b"abc") + frames.encodeFrame(b"", CLOSE)
        decoder = FrameDecoder(16)
        out = []
        for i in range(len(wire)):
            out += decoder.feed(wire[i:i + 1])
        self.assertEqual(out, [Frame(DATA, 0, b"abc"), Frame(CLOSE, 0, b"")])
        self.assertEqual(decoder.pending, 0)

    def test_payloadAtLimit(self):
        self.assertEqual(FrameDecoder(8).feed(frames.encodeFrame(b"x" * 8)), [Frame(DATA, 0, b"x" * 8)])

    def test_payloadPastLimit(self):
        # refused from the header alone, before any payload is buffered
        e = self.assertRaises(FrameError, FrameDecoder(8).feed, self.header(length=9))
        self.assertIn("data frame of 9 bytes, limit 8", str(e))

    def test_negativeLength(self):
        e = self.assertRaises(FrameError, FrameDecoder(8).feed, self.header(length=-1))
        self.assertIn("negative frame length -1", str(e))

    def test_hugeLength(self):
        e = self.assertRaises(FrameError, FrameDecoder(1 << 20).feed, self.header(length=(1 << 63) - 1))
        self.assertIn("limit", str(e))

    def test_badMagicVersionType(self):
        for header, reason in ((self.header(magic=b"\x01\xed"), "bad magic 01ed"),
                               (self.header(version=2), "bad version 2"),
                               (self.header(type=2), "bad frame type 2")):
            e = self.assertRaises(FrameError, FrameDecoder(8).feed, header)
            self.assertIn(reason, str(e))

    def test_closeTextLimit(self):
        decoder = FrameDecoder(8)
        [frame] = decoder.feed(frames.encodeFrame(b"e" * frames.MAX_CLOSE_TEXT, CLOSE))
        self.assertEqual(frame.closeText(), "e" * frames.MAX_CLOSE_TEXT)
        e = self.assertRaises(FrameError, FrameDecoder(8).feed, self.header(type=CLOSE, length=frames.MAX_CLOSE_TEXT + 1))
        self.assertIn("close frame of 65537 bytes", str(e))
        self.assertRaises(ValueError, frames.encodeFrame, b"e" * (frames.MAX_CLOSE_TEXT + 1), CLOSE)

    def test_closeTextNotUTF8(self):
        [frame] = FrameDecoder(8).feed(frames.encodeFrame(b"\xff", CLOSE))
        self.assertRaises(FrameError, frame.closeText)

    def test_spentAfterError(self):
        decoder = FrameDecoder(8)
        self.assertRaises(FrameError, decoder.feed, self.header(version=9))
        self.assertRaises(FrameError, decoder.feed, frames.encodeFrame(b"ok"))

    @given(st.lists(st.binary(max_size=40), max_size=6), st.integers(1, 30))
    def test_roundTrip(self, payloads, cut):
        wire = b"".join(frames.encodeFrame(p) for p in payloads)
        decoder = FrameDecoder(40)
        out = []
        for i in range(0, len(wire), cut):
            out += decoder.feed(wire[i:i + cut])
        self.assertEqual([f.payload for f in out], payloads)

    @given(st.binary(max_size=200))
    def test_garbageNeverCrashes(self, data):
        decoder = FrameDecoder(64)
        try:
            for frame in decoder.feed(data):
                self.assertLessEqual(len(frame.payload), frames.MAX_CLOSE_TEXT)
        except FrameError:
            pass


class CommandTests(TestCase):
    def test_nullBody(self):
        self.assertEqual(commands.decodeCommand(cbor2.dumps({16: "ping", 64: None})), ("ping", {}))
        self.assertEqual(commands.decodeCommand(cbor2.dumps({16: "ping"})), ("ping", {}))

    def test_extraKeysIgnored(self):
        self.assertEqual(commands.decodeCommand(cbor2.dumps({16: "ping", 64: {"a": 1}, 99: "x"})), ("ping", {"a": 1}))

    def test_refused(self):
        cases = [
            (b"", "not CBOR"),
            (b"\xff", "not CBOR"),
            (cbor2.dumps(["ping"]), "expected a map"),
            (cbor2.dumps({64: {}}), "no name"),
            (cbor2.dumps({16: 7, 64: {}}), "no name"),
            (cbor2.dumps({16: "x", 64: [1]}), "the body is a list"),
            (cbor2.dumps({16: "x", 64: {1: 2}}), "not text"),
            (cbor2.dumps({16: "x"}) + b"\x00", "1 bytes after the CBOR item"),
            (h("a2 10 61 78 18 40 a1 61 61 c1 1a 00000001"), "datetime is not accepted"),  # tag 1
            (h("a2 10 61 78 18 40 a1 61 61 f7"), "undefinedtype is not accepted"),
            (h("a2 10 61 78 18 40 a1 61 61 c2 49 010000000000000000"), "out of the 64-bit range"),  # 2**64 bignum
            (h("a2 10 61 78 18 40 a1 61 61 d8 63 01"), "tag 99"),
            (h("a2 10 61 78 10 61 79"), "duplicate"),
            (h("a2 10 62 c328 18 40 f6"), "not CBOR"),  # invalid UTF-8
        ]
        for payload, reason in cases:
            e = self.assertRaises(CommandError, commands.decodeCommand, payload)
            self.assertIn(reason.lower(), str(e).lower(), payload.hex())

    def nested(self, depth):
        value = {}
        for _ in range(depth):
            value = {"a": value}
        return value

    def test_depthAtLimit(self):
        # the command map is level 1 and its body level 2: 30 more levels fit
        name, body = commands.decodeCommand(cbor2.dumps({16: "x", 64: self.nested(30)}))
        self.assertEqual(name, "x")
        self.assertRaises(CommandError, commands.decodeCommand, cbor2.dumps({16: "x", 64: self.nested(32)}))

    def test_itemsAtLimit(self):
        at = cbor2.dumps({16: "x", 64: {"l": [0] * commands.MAX_ITEMS}})
        self.assertEqual(len(commands.decodeCommand(at)[1]["l"]), commands.MAX_ITEMS)
        past = cbor2.dumps({16: "x", 64: {"l": [0] * (commands.MAX_ITEMS + 1)}})
        e = self.assertRaises(CommandError, commands.decodeCommand, past)
        self.assertIn("131073 items", str(e))

    def test_encodeRefusesNonTextKeys(self):
        self.assertRaises(CommandError, commands.encodeCommand, "x", {1: 2})
        self.assertRaises(CommandError, commands.encodeResponse, [1])

    values = st.recursive(
        st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.floats(allow_nan=False)
        | st.text(max_size=8) | st.binary(max_size=8),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4),
        max_leaves=12,
    )

    @given(st.text(min_size=1, max_size=10), st.dictionaries(st.text(max_size=6), values, max_size=5))
    def test_roundTrip(self, name, body):
        [frame] = FrameDecoder(1 << 16).feed(commands.encodeCommand(name, body))
        self.assertEqual(commands.decodeCommand(frame.payload), (name, body))

    @given(st.binary(max_size=120))
    def test_garbageGivesCommandError(self, data):
        for decode in (commands.decodeCommand, commands.decodeResponse):
            try:
                decode(data)
            except (CommandError, RemoteError):
                pass
