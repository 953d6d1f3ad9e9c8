"""
Kademlia wire messages: decoding with limits, and peer entries.

A stream carries varint-length-prefixed protobuf L{Message}s; the framing
(with L{MAX_MESSAGE_SIZE} as the C{readLP} limit) is the network layer's job.
Everything decoded from a peer goes through L{decodeMessage}, which raises
only L{KadProtocolError}, and peer entries through L{parsePeers}, which drops
junk instead of failing the whole answer.
"""

from dataclasses import dataclass

from google.protobuf.message import DecodeError

from tau.identity import InvalidKey, PeerID
from tau.pb.kad_pb2 import Message, Record
from tau.protocols.peerrecord import decodeAddr

__all__ = [
    "PROTOCOL_ID",
    "MAX_MESSAGE_SIZE",
    "MAX_KEY_SIZE",
    "MAX_ADDRS_PER_PEER",
    "MAX_ADDR_SIZE",
    "MAX_PROVIDER_ADDR_SIZE",
    "Message",
    "Record",
    "KadProtocolError",
    "PeerInfo",
    "decodeMessage",
    "encodeMessage",
    "parsePeers",
    "providerAddrs",
    "peerEntry",
    "TYPE_NAMES",
]

PROTOCOL_ID = "/ipfs/kad/1.0.0"

#: go's network.MessageSizeMax; the C{readLP} limit for kad streams.
MAX_MESSAGE_SIZE = 4 << 20

#: The longest key of any message (values: C{/pk/...}, C{/ipns/...}).
MAX_KEY_SIZE = 1024

#: What we keep of one peer entry's addresses; the rest is ignored.
MAX_ADDRS_PER_PEER = 32
MAX_ADDR_SIZE = 1024
#: The longest address kept with a provider record (a C{/dns} name of 253
#: bytes with its port fits).
MAX_PROVIDER_ADDR_SIZE = 300

TYPE_NAMES = {
    Message.PUT_VALUE: "PUT_VALUE",
    Message.GET_VALUE: "GET_VALUE",
    Message.ADD_PROVIDER: "ADD_PROVIDER",
    Message.GET_PROVIDERS: "GET_PROVIDERS",
    Message.FIND_NODE: "FIND_NODE",
    Message.PING: "PING",
}


class KadProtocolError(ValueError):
    """
    A peer sent a kad message we refuse: undecodable, of an unknown type, with
    an oversized key, or a response that does not match the request.  The
    network layer resets the stream and logs this.
    """


@dataclass(frozen=True)
class PeerInfo:
    """
    A peer and the multiaddrs (binary form) we learnt for it, possibly none.
    """

    peerID: PeerID
    addrs: tuple = ()

    def __repr__(self):
        return f"PeerInfo({self.peerID}, {len(self.addrs)} addrs)"


def decodeMessage(data, maxSize=MAX_MESSAGE_SIZE):
    """
    Decode one kad message.

    @raise KadProtocolError: if C{data} is not a kad message we accept.
    """
    if len(data) > maxSize:
        raise KadProtocolError(f"kad message of {len(data)} bytes exceeds {maxSize}")
    message = Message()
    try:
        message.ParseFromString(bytes(data))
    except (DecodeError, RecursionError) as e:
        raise KadProtocolError(f"undecodable kad message: {e}") from None
    if message.type not in TYPE_NAMES:
        raise KadProtocolError(f"unknown kad message type {message.type}")
    if len(message.key) > MAX_KEY_SIZE:
        raise KadProtocolError(f"kad key of {len(message.key)} bytes exceeds {MAX_KEY_SIZE}")
    if message.HasField("record") and len(message.record.key) > MAX_KEY_SIZE:
        raise KadProtocolError("kad record key too long")
    return message


def encodeMessage(message):
    """
    The wire bytes of C{message} (without the length prefix).
    """
    return message.SerializeToString()


# Decoding a peer ID costs a multihash parse and, for inlined keys, a public
# key load; answers repeat the same peers all the time.
_peerCache = {}
_PEER_CACHE_SIZE = 8192


def _peerID(data):
    peer = _peerCache.get(data)
    if peer is None:
        peer = PeerID.fromBytes(data)
        if len(_peerCache) >= _PEER_CACHE_SIZE:
            _peerCache.clear()
        _peerCache[data] = peer
    return peer


def parsePeers(entries, limit, exclude=()):
    """
    Turn the C{Peer} entries of a message into L{PeerInfo}s, skipping junk.

    Entries with an undecodable ID, IDs in C{exclude} and repeats are skipped;
    only the first C{limit} good entries are kept; addresses are cut to
    L{MAX_ADDRS_PER_PEER}, each at most L{MAX_ADDR_SIZE} bytes.

    @return: C{(peers, skipped)}: the list of L{PeerInfo} and how many entries
        were dropped.
    """
    peers = []
    seen = set()
    for entry in entries:
        if len(peers) >= limit:
            break
        try:
            peer = _peerID(entry.id)
        except InvalidKey:
            continue
        if peer in seen or peer in exclude:
            continue
        seen.add(peer)
        addrs = tuple(
            bytes(a) for a in entry.addrs[:MAX_ADDRS_PER_PEER] if 0 < len(a) <= MAX_ADDR_SIZE
        )
        peers.append(PeerInfo(peer, addrs))
    return peers, len(entries) - len(peers)


def providerAddrs(addrs, limit, maxSize=MAX_PROVIDER_ADDR_SIZE):
    """
    The addresses of an ADD_PROVIDER entry worth storing: those that parse as
    multiaddrs (and encode back to the same bytes), of at most C{maxSize}
    bytes, without repeats; the first C{limit} of them.
    """
    kept = []
    for data in addrs[:MAX_ADDRS_PER_PEER]:
        if len(kept) >= limit:
            break
        data = bytes(data)
        if len(data) <= maxSize and data not in kept and decodeAddr(data) is not None:
            kept.append(data)
    return tuple(kept)


def peerEntry(peer, addrs=(), connection=Message.NOT_CONNECTED):
    """
    A C{Message.Peer} for C{peer} (a L{PeerID}) with C{addrs} (bytes).
    """
    return Message.Peer(id=peer.toBytes(), addrs=list(addrs), connection=connection)
