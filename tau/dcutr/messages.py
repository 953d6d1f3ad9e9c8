"""
DCUtR messages (libp2p/specs relay/DCUtR.md), sans-IO.

One stream carries length-prefixed C{HolePunch} messages: C{CONNECT} with
the sender's observed (public) addresses, both ways, then C{SYNC} from the
side that opened the stream.  L{decodeMessage} raises only
L{DCUtRProtocolError}.
"""

from __future__ import annotations

from dataclasses import dataclass, field


from tau.pb import decodeBounded, holepunch_pb2
from tau.protocols.peerrecord import decodeAddr, encodeAddr

__all__ = [
    "PROTOCOL_ID",
    "MAX_MESSAGE_SIZE",
    "MAX_OBS_ADDRS",
    "CONNECT",
    "SYNC",
    "DCUtRProtocolError",
    "HolePunch",
    "encodeConnect",
    "encodeSync",
    "decodeMessage",
]

PROTOCOL_ID = "/libp2p/dcutr"

#: Largest message accepted, length prefix excluded (the spec's 4 KiB).
MAX_MESSAGE_SIZE = 4096
#: Most addresses one C{CONNECT} may carry; one with more is refused.
MAX_OBS_ADDRS = 32

CONNECT = holepunch_pb2.HolePunch.CONNECT
SYNC = holepunch_pb2.HolePunch.SYNC
_NAMES = {CONNECT: "CONNECT", SYNC: "SYNC"}


class DCUtRProtocolError(ValueError):
    """
    A DCUtR message we refuse: too long, undecodable, without a known type,
    or with too many addresses.
    """


@dataclass(frozen=True)
class HolePunch:
    """
    A decoded message: C{type} is L{CONNECT} or L{SYNC}; C{addrs} the
    addresses that decode (multiaddr text, duplicates dropped).
    """

    type: int
    addrs: tuple = field(default_factory=tuple)

    @property
    def typeName(self) -> str:
        return _NAMES[self.type]


def _encode(kind, addrs=()):
    msg = holepunch_pb2.HolePunch(type=kind)
    for addr in addrs:
        if len(msg.ObsAddrs) >= MAX_OBS_ADDRS:
            break
        encoded = encodeAddr(addr)
        if encoded is not None:
            msg.ObsAddrs.append(encoded)
    data = msg.SerializeToString(deterministic=True)
    while len(data) > MAX_MESSAGE_SIZE:
        # never send what the peer must refuse: drop addresses from the end
        del msg.ObsAddrs[-1]
        data = msg.SerializeToString(deterministic=True)
    return data


def encodeConnect(addrs) -> bytes:
    """
    A C{CONNECT} carrying C{addrs} (multiaddr text; ones that do not parse
    are left out, and at most L{MAX_OBS_ADDRS} that fit in
    L{MAX_MESSAGE_SIZE} are kept, in order).
    """
    return _encode(CONNECT, addrs)


def encodeSync() -> bytes:
    """
    A C{SYNC} (no addresses).
    """
    return _encode(SYNC)


def decodeMessage(data: bytes) -> HolePunch:
    """
    Decode one C{HolePunch}.

    @raise DCUtRProtocolError: when it is longer than L{MAX_MESSAGE_SIZE},
        does not decode, has no known type, or carries more than
        L{MAX_OBS_ADDRS} addresses.
    """
    msg = decodeBounded(holepunch_pb2.HolePunch, data, MAX_MESSAGE_SIZE, DCUtRProtocolError, "dcutr message")
    if not msg.HasField("type") or msg.type not in _NAMES:
        # proto2 keeps an unknown enum value as an unknown field
        raise DCUtRProtocolError("dcutr message without a known type")
    if len(msg.ObsAddrs) > MAX_OBS_ADDRS:
        raise DCUtRProtocolError(f"dcutr message with {len(msg.ObsAddrs)} addresses (at most {MAX_OBS_ADDRS})")
    addrs = []
    for raw in msg.ObsAddrs:
        text = decodeAddr(raw)
        if text is not None and text not in addrs:
            addrs.append(text)
    return HolePunch(msg.type, tuple(addrs))
