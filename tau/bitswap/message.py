"""
Bitswap messages: the protobuf of ipfs/specs BITSWAP.md as plain objects,
with the limits tau enforces on what peers send.

L{decode} turns one length-prefixed frame into a L{Message} whose CIDs are
parsed (py-cid objects) and whose blocks are still unverified
C{(prefix, data)} pairs; the receiver hashes them (L{tau.bitswap.cids}).
Anything malformed or over a limit raises L{MessageError}, and nothing else.
"""

from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from tau.bitswap import cids
from tau.pb import bitswap_pb2

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

    @ivar blocks: C{(prefix, data)} pairs, unverified when decoded.
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


def decode(data, maxBlock=MAX_BLOCK, maxEntries=MAX_ENTRIES):
    """
    Parse one message.

    @raise MessageError: on malformed protobuf, a bad CID or prefix, an
        unknown want or presence type, a block over C{maxBlock} bytes or
        more than C{maxEntries} wantlist entries.
    """
    if len(data) > MAX_MESSAGE:
        raise MessageError(f"message of {len(data)} bytes, limit {MAX_MESSAGE}")
    pb = bitswap_pb2.Message()
    try:
        pb.ParseFromString(bytes(data))
    except (DecodeError, RuntimeError, ValueError) as e:
        raise MessageError(f"undecodable message: {e}") from None
    out = Message()
    if pb.HasField("wantlist"):
        wl = pb.wantlist
        if len(wl.entries) > maxEntries:
            raise MessageError(f"{len(wl.entries)} wantlist entries, limit {maxEntries}")
        out.full = wl.full
        for e in wl.entries:
            if e.wantType not in (BLOCK, HAVE):
                raise MessageError(f"unknown want type {e.wantType}")
            out.entries.append(Entry(_cid(e.block, "wantlist"), e.priority, e.cancel, e.wantType, e.sendDontHave))
    for data in pb.blocks:
        if len(data) > maxBlock:
            raise MessageError(f"block of {len(data)} bytes, limit {maxBlock}")
        out.blocks.append((_V0_PREFIX, bytes(data)))
    for b in pb.payload:
        if len(b.data) > maxBlock:
            raise MessageError(f"block of {len(b.data)} bytes, limit {maxBlock}")
        try:
            cids.parsePrefix(b.prefix)
        except cids.InvalidCID as e:
            raise MessageError(f"bad block prefix: {e}") from None
        out.blocks.append((bytes(b.prefix), bytes(b.data)))
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
    pb = bitswap_pb2.Message()
    if message.entries or message.full:
        pb.wantlist.full = message.full
        for e in message.entries:
            entry = pb.wantlist.entries.add()
            entry.block = cids.cidToBytes(e.cid)
            entry.priority = e.priority
            entry.cancel = e.cancel
            entry.wantType = e.wantType
            entry.sendDontHave = e.sendDontHave
    legacy = protocolID in (PROTOCOL_100, PROTOCOL_LEGACY)
    for prefix, data in message.blocks:
        if legacy:
            if prefix == _V0_PREFIX:
                pb.blocks.append(data)
        else:
            block = pb.payload.add()
            block.prefix = prefix
            block.data = data
    if protocolID == PROTOCOL_120:
        for c, kind in message.presences:
            presence = pb.blockPresences.add()
            presence.cid = cids.cidToBytes(c)
            presence.type = kind
        if message.pendingBytes:
            pb.pendingBytes = min(message.pendingBytes, (1 << 31) - 1)
    return pb.SerializeToString()


def entryOverhead(c):
    """
    A generous estimate of the encoded size of one wantlist entry or
    presence for C{c}.
    """
    return len(cids.cidToBytes(c)) + 16
