"""
The C{Identify} message: ours built (split in two as go does when the
signed record makes it long), a peer's decoded, bounded and parsed into an
L{IdentifyInfo}.  Sans-IO; decoding raises only L{IdentifyError}
subclasses.  The streams that carry it (identify, identify push) are
L{tau.protocols.identify}; the signed peer record in it is
L{tau.protocols.peerrecord}.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.logger import Logger

from tau.identity import PublicKey
from tau.pb import decodeBounded, identify_pb2
from tau.peerstore import MAX_ADDRS, MAX_AGENT_LENGTH, MAX_PROTOCOL_LENGTH, MAX_PROTOCOLS
from tau.protocols.peerrecord import (
    IdentifyError,
    InvalidEnvelope,
    SignedPeerRecord,
    decodeAddr,
    decodeAddrs,
    decodePublicKey,
    encodeAddr,
    openPeerRecord,
    ownAddrs,
    signedPeerRecord,
)

__all__ = [
    "PROTOCOL_VERSION",
    "MAX_MESSAGE_SIZE",
    "LEGACY_MESSAGE_SIZE",
    "IdentifyInfo",
    "identifyMessage",
    "identifyMessages",
    "decodeIdentify",
    "parseIdentify",
]

PROTOCOL_VERSION = "ipfs/0.1.0"

#: Largest identify message accepted or sent (go and js use the same).
MAX_MESSAGE_SIZE = 8192
#: A reply larger than this that carries a signed record is split in two.
LEGACY_MESSAGE_SIZE = 2048

log = Logger()


# -- building messages --------------------------------------------------------


def _buildIdentify(host, connection) -> identify_pb2.Identify:
    msg = identify_pb2.Identify()
    msg.publicKey = host.key.publicKey().toProtobuf()
    for addr in ownAddrs(host)[:MAX_ADDRS]:
        encoded = encodeAddr(addr)
        if encoded is not None:
            msg.listenAddrs.append(encoded)
    msg.protocols.extend(
        p for p in list(host.protocols())[:MAX_PROTOCOLS] if len(p) <= MAX_PROTOCOL_LENGTH
    )
    remote = getattr(connection, "remoteAddr", None)
    if remote:
        encoded = encodeAddr(remote)
        if encoded is not None:
            msg.observedAddr = encoded
    msg.protocolVersion = PROTOCOL_VERSION
    msg.agentVersion = host.agentVersion[:MAX_AGENT_LENGTH]
    msg.signedPeerRecord = signedPeerRecord(host)
    return msg


def _fit(msg: identify_pb2.Identify) -> bytes:
    """
    Encode C{msg}, dropping protocols and then addresses from the end until
    it fits in L{MAX_MESSAGE_SIZE}.
    """
    data = msg.SerializeToString(deterministic=True)
    if len(data) <= MAX_MESSAGE_SIZE:
        return data
    log.warn(
        "identify message of {size} bytes is too long; dropping protocols and addresses",
        size=len(data),
    )
    while len(data) > MAX_MESSAGE_SIZE and (msg.protocols or msg.listenAddrs):
        if msg.protocols:
            del msg.protocols[-1]
        else:
            del msg.listenAddrs[-1]
        data = msg.SerializeToString(deterministic=True)
    return data


def identifyMessage(host, connection) -> bytes:
    """
    The complete C{Identify} message that C{host} sends on C{connection}
    (whose C{remoteAddr} becomes the observed address).
    """
    return _buildIdentify(host, connection).SerializeToString(deterministic=True)


def identifyMessages(host, connection) -> list[bytes]:
    """
    The C{Identify} message(s) to write: one, or two when the signed record
    makes it longer than L{LEGACY_MESSAGE_SIZE} (the record alone goes
    second).  Each is at most L{MAX_MESSAGE_SIZE} bytes.
    """
    msg = _buildIdentify(host, connection)
    data = msg.SerializeToString(deterministic=True)
    if len(data) <= LEGACY_MESSAGE_SIZE:
        return [data]
    record = msg.signedPeerRecord
    msg.ClearField("signedPeerRecord")
    out = [_fit(msg)]
    second = identify_pb2.Identify(signedPeerRecord=record).SerializeToString(deterministic=True)
    if len(second) <= MAX_MESSAGE_SIZE:
        out.append(second)
    return out


# -- decoding messages --------------------------------------------------------


def decodeIdentify(data: bytes) -> identify_pb2.Identify:
    """
    Decode one C{Identify} message.

    @raise IdentifyError: if it is too long or malformed.
    """
    return decodeBounded(identify_pb2.Identify, data, MAX_MESSAGE_SIZE, IdentifyError, "identify message")


@dataclass
class IdentifyInfo:
    """
    The fields of a (merged) C{Identify} message, decoded and bounded.
    Fields absent from the message are L{None} (lists: empty).
    """

    publicKey: PublicKey | None = None
    listenAddrs: list = field(default_factory=list)
    protocols: list = field(default_factory=list)
    observedAddr: str | None = None
    protocolVersion: str | None = None
    agentVersion: str | None = None
    signedRecord: SignedPeerRecord | None = None
    recordError: str | None = None


def parseIdentify(msg: identify_pb2.Identify) -> IdentifyInfo:
    """
    Decode the fields of C{msg}.  Malformed addresses and protocols are
    skipped; an invalid signed record is dropped (its error is kept in
    C{recordError}).

    @raise IdentifyError: when the public key is present but invalid.
    """
    info = IdentifyInfo()
    if msg.HasField("publicKey"):
        info.publicKey = decodePublicKey(msg.publicKey)
    info.listenAddrs = decodeAddrs(msg.listenAddrs)
    protocols = []
    for p in msg.protocols:
        if len(protocols) >= MAX_PROTOCOLS:
            break
        if 0 < len(p) <= MAX_PROTOCOL_LENGTH and p not in protocols:
            protocols.append(p)
    info.protocols = protocols
    if msg.HasField("observedAddr"):
        info.observedAddr = decodeAddr(msg.observedAddr)
    if msg.HasField("protocolVersion"):
        info.protocolVersion = msg.protocolVersion[:MAX_AGENT_LENGTH]
    if msg.HasField("agentVersion"):
        info.agentVersion = msg.agentVersion[:MAX_AGENT_LENGTH]
    if msg.HasField("signedPeerRecord"):
        try:
            info.signedRecord = openPeerRecord(msg.signedPeerRecord)
        except InvalidEnvelope as e:
            info.recordError = str(e)
    return info
