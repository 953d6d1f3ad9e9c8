"""
AutoNAT v1 messages (libp2p/specs autonat/autonat-v1.md), sans-IO.

A stream carries one length-prefixed C{Message} each way: the requester
sends C{DIAL} with its peer ID and the addresses to dial back, the server
answers C{DIAL_RESPONSE} with a status and, on success, the address it
reached.  L{decodeMessage} turns wire bytes into a L{DialRequest} or a
L{DialResponse} and raises only L{AutoNATProtocolError}.
"""

from __future__ import annotations

from dataclasses import dataclass, field


from tau.identity import InvalidKey, PeerID
from tau.pb import autonat_pb2, decodeBounded
from tau.protocols.peerrecord import decodeAddr, encodeAddr

__all__ = [
    "PROTOCOL_ID",
    "MAX_MESSAGE_SIZE",
    "MAX_REQUEST_ADDRS",
    "MAX_STATUS_TEXT",
    "OK",
    "E_DIAL_ERROR",
    "E_DIAL_REFUSED",
    "E_BAD_REQUEST",
    "E_INTERNAL_ERROR",
    "AutoNATProtocolError",
    "DialRequest",
    "DialResponse",
    "statusName",
    "encodeDial",
    "encodeResponse",
    "decodeMessage",
]

PROTOCOL_ID = "/libp2p/autonat/1.0.0"

#: Largest message accepted (go-libp2p's limit).
MAX_MESSAGE_SIZE = 4096
#: Most addresses kept from a request; the rest are ignored.
MAX_REQUEST_ADDRS = 64
#: Longest status text kept from a response.
MAX_STATUS_TEXT = 256

OK = autonat_pb2.Message.OK
E_DIAL_ERROR = autonat_pb2.Message.E_DIAL_ERROR
E_DIAL_REFUSED = autonat_pb2.Message.E_DIAL_REFUSED
E_BAD_REQUEST = autonat_pb2.Message.E_BAD_REQUEST
E_INTERNAL_ERROR = autonat_pb2.Message.E_INTERNAL_ERROR

_STATUSES = frozenset((OK, E_DIAL_ERROR, E_DIAL_REFUSED, E_BAD_REQUEST, E_INTERNAL_ERROR))


class AutoNATProtocolError(ValueError):
    """
    An AutoNAT message we refuse: too long, undecodable, of an unknown
    type, or missing the part its type needs.
    """


def statusName(status: int) -> str:
    """
    C{"E_DIAL_ERROR"} for 100, or the number for a status we do not know.
    """
    try:
        return autonat_pb2.Message.ResponseStatus.Name(status)
    except ValueError:
        return str(status)


@dataclass(frozen=True)
class DialRequest:
    """
    A C{DIAL}: C{peerID} is None when the requester left it out; C{addrs}
    are the valid multiaddrs (text), at most L{MAX_REQUEST_ADDRS}.
    """

    peerID: PeerID | None
    addrs: tuple = field(default_factory=tuple)


@dataclass(frozen=True)
class DialResponse:
    """
    A C{DIAL_RESPONSE}: C{addr} (text) is the address dialed, when given.
    """

    status: int
    text: str = ""
    addr: str | None = None

    @property
    def statusName(self) -> str:
        return statusName(self.status)


def encodeDial(peerID: PeerID, addrs) -> bytes:
    """
    A C{DIAL} asking to be dialed back at C{addrs} (multiaddr text);
    addresses that do not parse are left out.
    """
    msg = autonat_pb2.Message(type=autonat_pb2.Message.DIAL)
    msg.dial.peer.id = peerID.toBytes()
    for addr in addrs:
        encoded = encodeAddr(addr)
        if encoded is not None:
            msg.dial.peer.addrs.append(encoded)
    return msg.SerializeToString(deterministic=True)


def encodeResponse(status: int, text: str = "", addr: str | None = None) -> bytes:
    """
    A C{DIAL_RESPONSE}.
    """
    msg = autonat_pb2.Message(type=autonat_pb2.Message.DIAL_RESPONSE)
    msg.dialResponse.status = status
    if text:
        msg.dialResponse.statusText = text[:MAX_STATUS_TEXT]
    if addr is not None:
        encoded = encodeAddr(addr)
        if encoded is not None:
            msg.dialResponse.addr = encoded
    return msg.SerializeToString(deterministic=True)


def decodeMessage(data: bytes) -> DialRequest | DialResponse:
    """
    Decode one AutoNAT message.

    @raise AutoNATProtocolError: if it is too long or malformed, of an
        unknown type, a C{DIAL} without peer info, a C{DIAL_RESPONSE}
        without a known status, or carries a peer ID that does not decode.
    """
    msg = decodeBounded(autonat_pb2.Message, data, MAX_MESSAGE_SIZE, AutoNATProtocolError, "autonat message")
    if not msg.HasField("type"):
        raise AutoNATProtocolError("autonat message without a type")
    if msg.type == autonat_pb2.Message.DIAL:
        if not msg.HasField("dial") or not msg.dial.HasField("peer"):
            raise AutoNATProtocolError("DIAL without peer info")
        peer = msg.dial.peer
        peerID = None
        if peer.HasField("id"):
            try:
                peerID = PeerID.fromBytes(peer.id)
            except (InvalidKey, ValueError) as e:
                raise AutoNATProtocolError(f"DIAL with a bad peer ID: {e}") from None
        addrs = []
        for raw in peer.addrs:
            if len(addrs) >= MAX_REQUEST_ADDRS:
                break
            text = decodeAddr(raw)
            if text is not None and text not in addrs:
                addrs.append(text)
        return DialRequest(peerID, tuple(addrs))
    if msg.type == autonat_pb2.Message.DIAL_RESPONSE:
        if not msg.HasField("dialResponse"):
            raise AutoNATProtocolError("DIAL_RESPONSE without a response")
        response = msg.dialResponse
        if not response.HasField("status") or response.status not in _STATUSES:
            raise AutoNATProtocolError("DIAL_RESPONSE without a known status")
        addr = decodeAddr(response.addr) if response.HasField("addr") else None
        return DialResponse(response.status, response.statusText[:MAX_STATUS_TEXT], addr)
    raise AutoNATProtocolError(f"unknown autonat message type {msg.type}")
