"""
The Bitswap wire format, CIDs and block prefixes.
"""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

import cid as pycid

from tau import cids
from tau.bitswap import message
from tau.bitswap.message import BLOCK, HAVE, PRESENCE_DONT_HAVE, PRESENCE_HAVE, Entry, Message, MessageError
from tau.pb import bitswap_pb2
from tests.bitswap.fakes import dagPbNode

HELLO = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
EMPTY_DIR_V0 = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"


class CIDTests(SynchronousTestCase):
    def test_prefixes(self):
        """
        The prefixes are the spec's examples: raw CIDv1 C{01 55 12 20},
        CIDv0 C{00 70 12 20}.
        """
        self.assertEqual(cids.prefixOf(pycid.from_string(HELLO)), bytes.fromhex("01551220"))
        self.assertEqual(cids.prefixOf(pycid.from_string(EMPTY_DIR_V0)), bytes.fromhex("00701220"))

    def test_cidForBlock(self):
        """
        Hashing a block under a prefix gives the CID of the spec vectors.
        """
        self.assertEqual(cids.cidText(cids.cidForBlock(bytes.fromhex("01551220"), b"hello world\n")), HELLO)
        self.assertEqual(cids.cidText(cids.cidForBlock(bytes.fromhex("00701220"), bytes.fromhex("0a020801"))), EMPTY_DIR_V0)
        v1 = cids.cidForBlock(bytes.fromhex("01701220"), bytes.fromhex("0a020801"))
        self.assertEqual(cids.cidText(v1), "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354")

    def test_binaryRoundTrip(self):
        for text in (HELLO, EMPTY_DIR_V0):
            c = pycid.from_string(text)
            self.assertEqual(cids.cidFromBytes(cids.cidToBytes(c)), c)

    def test_badCIDs(self):
        for bad in (b"", b"\x01", b"\x02\x55\x12\x20" + b"\0" * 32, cids.cidToBytes(pycid.from_string(HELLO)) + b"x", b"\x01\x55\x12\x20abc", b"\xff" * 200):
            self.assertRaises(cids.InvalidCID, cids.cidFromBytes, bad)

    def test_badPrefixes(self):
        self.assertRaises(cids.InvalidCID, cids.cidForBlock, bytes.fromhex("00551220"), b"x")  # v0 must be dag-pb
        self.assertRaises(cids.InvalidCID, cids.cidForBlock, bytes.fromhex("0155122100"), b"x")  # trailing
        self.assertRaises(cids.InvalidCID, cids.cidForBlock, bytes.fromhex("01551240"), b"x")  # sha256 is 32 bytes
        self.assertRaises(cids.UnsupportedHash, cids.cidForBlock, bytes.fromhex("01559e0120"), b"x")
        self.assertRaises(cids.InvalidCID, cids.cidForBlock, bytes.fromhex("01550003"), b"abcd")  # identity length

    def test_identity(self):
        c = cids.cidForBlock(bytes.fromhex("01550003"), b"abc")
        self.assertTrue(cids.verifyBlock(c, b"abc"))
        self.assertFalse(cids.verifyBlock(c, b"abd"))

    def test_dagPbLinks(self):
        a, b = cids.makeCID(b"a"), cids.makeCID(b"b")
        self.assertEqual(cids.dagPbLinks(dagPbNode([a, b], b"\x08\x02")), [a, b])
        self.assertEqual(cids.dagPbLinks(bytes.fromhex("0a020801")), [])
        self.assertRaises(cids.InvalidCID, cids.dagPbLinks, b"\x12\x05\x0a\x03abc")


def _sample():
    a = cids.makeCID(b"a")
    v0 = cids.makeCID(b"node", cids.DAG_PB, 0)
    return Message(
        entries=[Entry(a, 5, False, HAVE, True), Entry(v0, 1, True, BLOCK, False)],
        full=True,
        blocks=[(cids.prefixOf(a), b"a"), (cids.prefixOf(v0), b"node")],
        presences=[(a, PRESENCE_HAVE), (v0, PRESENCE_DONT_HAVE)],
        pendingBytes=1234,
    )


def _pbEncode(m, protocolID=message.PROTOCOL_120):
    """
    C{m} serialized by protobuf itself: what L{message.encode} must equal.
    """
    pb = bitswap_pb2.Message()
    if m.entries or m.full:
        pb.wantlist.full = m.full
        for e in m.entries:
            entry = pb.wantlist.entries.add()
            entry.block = cids.cidToBytes(e.cid)
            entry.priority = e.priority
            entry.cancel = e.cancel
            entry.wantType = e.wantType
            entry.sendDontHave = e.sendDontHave
    legacy = protocolID == message.PROTOCOL_100
    for prefix, data in m.blocks:
        if legacy:
            if prefix == bytes.fromhex("00701220"):
                pb.blocks.append(data)
        else:
            block = pb.payload.add()
            block.prefix = prefix
            block.data = data
    if protocolID == message.PROTOCOL_120:
        for c, kind in m.presences:
            presence = pb.blockPresences.add()
            presence.cid = cids.cidToBytes(c)
            presence.type = kind
        if m.pendingBytes:
            pb.pendingBytes = m.pendingBytes
    return pb.SerializeToString()


_cidsStrategy = st.builds(
    lambda data, raw: cids.makeCID(data) if raw else cids.makeCID(data, cids.DAG_PB, 0),
    st.binary(max_size=8),
    st.booleans(),
)
_blockData = st.one_of(st.binary(max_size=64), st.integers(0, 3).map(lambda n: bytes([n]) * (message.PASS_THROUGH + n * 1000)))
_messages = st.builds(
    lambda entries, full, blocks, presences, pending: Message(
        entries=entries, full=full, blocks=[(cids.prefixOf(c), d) for c, d in blocks], presences=presences, pendingBytes=pending
    ),
    st.lists(st.builds(Entry, _cidsStrategy, st.integers(0, 2**31 - 1), st.booleans(), st.sampled_from([BLOCK, HAVE]), st.booleans()), max_size=4),
    st.booleans(),
    st.lists(st.tuples(_cidsStrategy, _blockData), max_size=4),
    st.lists(st.tuples(_cidsStrategy, st.sampled_from([PRESENCE_HAVE, PRESENCE_DONT_HAVE])), max_size=4),
    st.integers(0, 2**31 - 1),
)


class MessageTests(SynchronousTestCase):
    @given(_messages, st.sampled_from([message.PROTOCOL_120, message.PROTOCOL_110, message.PROTOCOL_100]))
    def test_encodeIsProtobufs(self, m, protocolID):
        """
        The encoding, built around the block data without copying it, is
        byte for byte protobuf's own; big blocks are parts of their own.
        """
        parts = message.encodeParts(m, protocolID)
        self.assertEqual(b"".join(parts), _pbEncode(m, protocolID))
        self.assertEqual(message.encode(m, protocolID), _pbEncode(m, protocolID))
        for _, data in m.blocks:
            if len(data) >= message.PASS_THROUGH and protocolID != message.PROTOCOL_100:
                self.assertTrue(any(part is data for part in parts))

    @given(_messages)
    def test_decodeProtobufs(self, m):
        """
        Whatever protobuf encodes decodes to the message, from bytes or a
        bytearray; block data are read-only views of the message.
        """
        encoded = _pbEncode(m)
        for data in (encoded, bytearray(encoded)):
            decoded = message.decode(data)
            self.assertEqual(decoded, m)
            for _, block in decoded.blocks:
                self.assertIsInstance(block, memoryview)
                self.assertTrue(block.readonly)

    def test_anyFieldOrder(self):
        """
        Fields in any order, and unknown fields (in the message and in a
        block), decode as protobuf reads them.
        """
        m = _sample()
        pb = bitswap_pb2.Message()
        pb.ParseFromString(message.encode(m))
        unknown = b"\x98\x01\x07"  # field 19, varint 7
        # the second block, with two unknown varint fields before its own
        body = b"\x28\x05\x58\x01" + pb.payload[1].SerializeToString()
        blockField = b"\x1a" + bytes([len(body)]) + body
        first = bitswap_pb2.Message()
        first.payload.add().CopyFrom(pb.payload[0])
        wantsAndPresences = bitswap_pb2.Message()
        wantsAndPresences.wantlist.CopyFrom(pb.wantlist)
        wantsAndPresences.blockPresences.extend(pb.blockPresences)
        wantsAndPresences.pendingBytes = pb.pendingBytes
        data = blockField + unknown + wantsAndPresences.SerializeToString() + first.SerializeToString()
        decoded = message.decode(data)
        self.assertEqual(decoded.entries, m.entries)
        self.assertEqual(decoded.presences, m.presences)
        self.assertEqual(decoded.pendingBytes, m.pendingBytes)
        self.assertEqual(decoded.blocks, [m.blocks[1], m.blocks[0]])

    def test_truncated(self):
        """
        A message cut anywhere inside a block is refused.
        """
        a = cids.makeCID(b"a" * 100)
        data = message.encode(Message(blocks=[(cids.prefixOf(a), b"a" * 100)]))
        for cut in range(1, len(data)):
            self.assertRaises(MessageError, message.decode, data[:cut])

    def test_roundTrip(self):
        m = _sample()
        self.assertEqual(message.decode(message.encode(m)), m)

    def test_v110NoPresences(self):
        """
        1.1.0 peers get blocks in C{payload} but no presences.
        """
        m = message.decode(message.encode(_sample(), message.PROTOCOL_110))
        self.assertEqual(m.presences, [])
        self.assertEqual(len(m.blocks), 2)

    def test_v100LegacyBlocks(self):
        """
        1.0.0 peers get CIDv0 blocks in the legacy field, decoded with the
        CIDv0 prefix.
        """
        pb = bitswap_pb2.Message()
        pb.ParseFromString(message.encode(_sample(), message.PROTOCOL_100))
        self.assertEqual(list(pb.blocks), [b"node"])
        self.assertEqual(len(pb.payload), 0)
        m = message.decode(pb.SerializeToString())
        self.assertEqual(m.blocks, [(bytes.fromhex("00701220"), b"node")])

    def test_blockTooLarge(self):
        a = cids.makeCID(b"a")
        big = Message(blocks=[(cids.prefixOf(a), b"x" * (message.MAX_BLOCK + 1))])
        self.assertRaises(MessageError, message.decode, message.encode(big))
        ok = Message(blocks=[(cids.prefixOf(a), b"x" * message.MAX_BLOCK)])
        self.assertEqual(len(message.decode(message.encode(ok)).blocks[0][1]), message.MAX_BLOCK)

    def test_tooManyEntries(self):
        entries = [Entry(cids.makeCID(str(i).encode())) for i in range(message.MAX_ENTRIES + 1)]
        self.assertRaises(MessageError, message.decode, message.encode(Message(entries=entries)))

    def test_unknownWantType(self):
        pb = bitswap_pb2.Message()
        e = pb.wantlist.entries.add()
        e.block = cids.cidToBytes(cids.makeCID(b"a"))
        e.wantType = 7
        self.assertRaises(MessageError, message.decode, pb.SerializeToString())

    def test_badCIDInWantlist(self):
        pb = bitswap_pb2.Message()
        pb.wantlist.entries.add().block = b"\x01\x55\x12"
        self.assertRaises(MessageError, message.decode, pb.SerializeToString())

    @given(st.binary(max_size=512))
    def test_garbage(self, data):
        """
        Any bytes decode or raise L{MessageError}, nothing else.
        """
        try:
            message.decode(data)
        except MessageError:
            pass

    @given(st.binary(min_size=1, max_size=300))
    def test_mutatedMessage(self, noise):
        """
        A valid message with bytes flipped decodes or raises L{MessageError}.
        """
        good = bytearray(message.encode(_sample()))
        for i, b in enumerate(noise):
            good[(i * 7 + b) % len(good)] ^= b
        try:
            message.decode(bytes(good))
        except MessageError:
            pass

    @given(st.binary(max_size=64), st.binary(max_size=64))
    def test_prefixGarbage(self, prefix, data):
        try:
            cids.cidForBlock(prefix, data)
        except cids.InvalidCID:
            pass

    @given(st.binary(max_size=200))
    def test_dagPbGarbage(self, data):
        try:
            cids.dagPbLinks(data)
        except cids.InvalidCID:
            pass
