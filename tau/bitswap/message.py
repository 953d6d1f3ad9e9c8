"""
Bitswap messages: the protobuf of ipfs/specs BITSWAP.md as plain objects,
with the limits tau enforces on what peers send.

L{decode} turns one length-prefixed frame into a L{Message} whose CIDs are
parsed (py-cid objects) and whose blocks are still unverified
C{(prefix, data)} pairs; the receiver hashes them (L{tau.cids}).
Anything malformed or over a limit raises L{MessageError}, and nothing else.
"""

from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from tau import cids
from tau.pb import bitswap_pb2
from tau.protocols import varint

PROTOCOL_120 = "/ipfs/bitswap/1.2.0"
PROTOCOL_110 = "/ipfs/bitswap/1.1.0"
PROTOCOL_100 = "/ipfs/bitswap/1.0.0"
PROTOCOL_LEGACY = "/ipfs/bitswap"

#: What we offer on our outbound streams, best first.
PROTOCOLS = [PROTOCOL_120, PROTOCOL_110, PROTOCOL_100]
#: What we accept inbound.
INBOUND_PROTOCOLS = [PROTOCOL_120, PROTOCOL_110, PROTOCOL_100, PROTOCOL_LEGACY]

#: Largest message (one length-prefixed frame) read or written.
MAX_MESSAGE = 4 << 20
#: Largest block accepted (the spec's minimum to support).
MAX_BLOCK = 2 << 20
#: Most wantlist entries in one message (boxo and helia keep 1024 per peer).
MAX_ENTRIES = 1024
#: Most block presences in one message.
MAX_PRESENCES = 4096

BLOCK = 0
HAVE = 1
DONT_HAVE = 1  # presence type
PRESENCE_HAVE = 0
PRESENCE_DONT_HAVE = 1

_V0_PREFIX = bytes([0x00, 0x70, 0x12, 0x20])


class MessageError(ValueError):
    """
    A Bitswap message that is malformed or breaks a limit.
    """


@dataclass
class Entry:
    """
    One wantlist entry.

    @ivar cid: the wanted CID (py-cid object).
    @ivar wantType: L{BLOCK} or L{HAVE}.
    """

    cid: object
    priority: int = 1
    cancel: bool = False
    wantType: int = BLOCK
    sendDontHave: bool = False


@dataclass
class Message:
    """
    One Bitswap message.

    @ivar blocks: C{(prefix, data)} pairs, unverified when decoded (and
        C{data} then a read-only memoryview of the message).
    @ivar presences: C{(cid, PRESENCE_HAVE | PRESENCE_DONT_HAVE)} pairs.
    """

    entries: list = field(default_factory=list)
    full: bool = False
    blocks: list = field(default_factory=list)
    presences: list = field(default_factory=list)
    pendingBytes: int = 0

    def empty(self):
        return not (self.entries or self.full or self.blocks or self.presences)

    def blockBytes(self):
        return sum(len(data) for _, data in self.blocks)


def _cid(data, what):
    try:
        return cids.cidFromBytes(data)
    except cids.InvalidCID as e:
        raise MessageError(f"bad CID in {what}: {e}") from None


def _pbVarint(view, pos, end):
    """
    A protobuf varint (at most ten bytes, not necessarily minimal) at
    C{pos}: C{(value, next position)}.
    """
    value = shift = 0
    while shift < 70:
        if pos >= end:
            raise MessageError("undecodable message: truncated varint")
        b = view[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
    raise MessageError("undecodable message: varint longer than ten bytes")


def _skipField(view, pos, end, wire):
    """
    The position after the value of a field of wire type C{wire} at C{pos}.
    """
    if wire == 0:
        return _pbVarint(view, pos, end)[1]
    if wire == 1:
        pos += 8
    elif wire == 5:
        pos += 4
    elif wire == 2:
        n, pos = _pbVarint(view, pos, end)
        pos += n
    else:
        raise MessageError(f"undecodable message: wire type {wire}")
    if pos > end:
        raise MessageError("undecodable message: truncated field")
    return pos


def _payloadBlock(view, pos, end, maxBlock):
    """
    The C{(prefix, data)} of a C{Message.Block} in C{view[pos:end]}.
    """
    prefix = data = view[pos:pos]
    while pos < end:
        key, pos = _pbVarint(view, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 2 and field in (1, 2):
            n, pos = _pbVarint(view, pos, end)
            stop = pos + n
            if stop > end:
                raise MessageError("undecodable message: truncated block")
            if field == 1:
                prefix = view[pos:stop]
            else:
                data = view[pos:stop]
            pos = stop
        else:
            pos = _skipField(view, pos, end, wire)
    if len(data) > maxBlock:
        raise MessageError(f"block of {len(data)} bytes, limit {maxBlock}")
    prefix = bytes(prefix)
    try:
        cids.parsePrefix(prefix)
    except cids.InvalidCID as e:
        raise MessageError(f"bad block prefix: {e}") from None
    return prefix, data


def decode(data, maxBlock=MAX_BLOCK, maxEntries=MAX_ENTRIES):
    """
    Parse one message.  The data of its blocks are read-only memoryviews
    of C{data}, not copies (C{data} may be a bytearray that nobody changes
    afterwards).

    The blocks (up to 4 MiB of the message) are cut out of C{data} here;
    the rest (wantlist, presences, pendingBytes, unknown fields) is small
    and parsed by protobuf.

    @raise MessageError: on malformed protobuf, a bad CID or prefix, an
        unknown want or presence type, a block over C{maxBlock} bytes or
        more than C{maxEntries} wantlist entries.
    """
    if len(data) > MAX_MESSAGE:
        raise MessageError(f"message of {len(data)} bytes, limit {MAX_MESSAGE}")
    # read-only views: a bytearray handed in is not changed afterwards
    view = memoryview(data).toreadonly()
    out = Message()
    rest = bytearray()
    pos, end = 0, len(view)
    while pos < end:
        start = pos
        key, pos = _pbVarint(view, pos, end)
        field, wire = key >> 3, key & 7
        if field in (2, 3) and wire == 2:
            n, pos = _pbVarint(view, pos, end)
            stop = pos + n
            if stop > end:
                raise MessageError("undecodable message: truncated block")
            if field == 2:
                if n > maxBlock:
                    raise MessageError(f"block of {n} bytes, limit {maxBlock}")
                out.blocks.append((_V0_PREFIX, view[pos:stop]))
            else:
                out.blocks.append(_payloadBlock(view, pos, stop, maxBlock))
            pos = stop
        elif field == 0:
            raise MessageError("undecodable message: field number 0")
        else:
            pos = _skipField(view, pos, end, wire)
            rest += view[start:pos]
    pb = bitswap_pb2.Message()
    try:
        pb.ParseFromString(bytes(rest))
    except (DecodeError, RuntimeError, ValueError) as e:
        raise MessageError(f"undecodable message: {e}") from None
    if pb.HasField("wantlist"):
        wl = pb.wantlist
        if len(wl.entries) > maxEntries:
            raise MessageError(f"{len(wl.entries)} wantlist entries, limit {maxEntries}")
        out.full = wl.full
        for e in wl.entries:
            if e.wantType not in (BLOCK, HAVE):
                raise MessageError(f"unknown want type {e.wantType}")
            out.entries.append(Entry(_cid(e.block, "wantlist"), e.priority, e.cancel, e.wantType, e.sendDontHave))
    if len(pb.blockPresences) > MAX_PRESENCES:
        raise MessageError(f"{len(pb.blockPresences)} block presences, limit {MAX_PRESENCES}")
    for p in pb.blockPresences:
        if p.type not in (PRESENCE_HAVE, PRESENCE_DONT_HAVE):
            raise MessageError(f"unknown presence type {p.type}")
        out.presences.append((_cid(p.cid, "block presence"), p.type))
    out.pendingBytes = max(0, pb.pendingBytes)
    return out


def encode(message, protocolID=PROTOCOL_120):
    """
    Serialize C{message} for a peer speaking C{protocolID}: 1.0.0 carries
    blocks in the legacy field (CIDv0 blocks only) and no presences, 1.1.0
    no presences.
    """
    return b"".join(encodeParts(message, protocolID))


#: Blocks at least this long are passed on by L{encodeParts} as they are,
#: not copied into the framing around them.
PASS_THROUGH = 4096

_LEGACY_BLOCK_TAG = b"\x12"  # field 2, length-delimited
_PAYLOAD_TAG = b"\x1a"  # field 3, length-delimited
_PREFIX_TAG = b"\x0a"  # Block.prefix: field 1
_DATA_TAG = b"\x12"  # Block.data: field 2


def encodeParts(message, protocolID=PROTOCOL_120):
    """
    L{encode}, as a list of byte strings to be written one after the other:
    the data of big blocks is not copied (a message of blocks is up to 4
    MiB), only the framing around it is made.  Fields go in field-number
    order, as protobuf writes them.
    """
    head = bitswap_pb2.Message()
    if message.entries or message.full:
        head.wantlist.full = message.full
        for e in message.entries:
            entry = head.wantlist.entries.add()
            entry.block = cids.cidToBytes(e.cid)
            entry.priority = e.priority
            entry.cancel = e.cancel
            entry.wantType = e.wantType
            entry.sendDontHave = e.sendDontHave
    parts = []
    pending = bytearray(head.SerializeToString())
    legacy = protocolID in (PROTOCOL_100, PROTOCOL_LEGACY)
    for prefix, data in message.blocks:
        n = len(data)
        if legacy:
            if prefix != _V0_PREFIX:
                continue
            pending += _LEGACY_BLOCK_TAG
            pending += varint.encode(n)
        else:
            # proto3 leaves empty fields out
            framedPrefix = _PREFIX_TAG + varint.encode(len(prefix)) + prefix if prefix else b""
            dataHeader = _DATA_TAG + varint.encode(n) if n else b""
            pending += _PAYLOAD_TAG
            pending += varint.encode(len(framedPrefix) + len(dataHeader) + n)
            pending += framedPrefix
            pending += dataHeader
        if n >= PASS_THROUGH:
            parts.append(bytes(pending))
            parts.append(data)
            pending = bytearray()
        else:
            pending += data
    if protocolID == PROTOCOL_120 and (message.presences or message.pendingBytes):
        tail = bitswap_pb2.Message()
        for c, kind in message.presences:
            presence = tail.blockPresences.add()
            presence.cid = cids.cidToBytes(c)
            presence.type = kind
        if message.pendingBytes:
            tail.pendingBytes = min(message.pendingBytes, (1 << 31) - 1)
        pending += tail.SerializeToString()
    if pending or not parts:
        parts.append(bytes(pending))
    return parts


def entryOverhead(c):
    """
    A generous estimate of the encoded size of one wantlist entry or
    presence for C{c}.
    """
    return len(cids.cidToBytes(c)) + 16
