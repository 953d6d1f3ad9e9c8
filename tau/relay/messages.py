"""
The messages of circuit relay v2 (libp2p/specs relay/circuit-v2.md), sans-IO.

L{decodeHop} and L{decodeStop} turn wire bytes into L{HopRequest} /
L{StopRequest} / L{StatusReply} values checked for what each message type
needs, raising only L{MessageError}; the C{encode*} functions build the
bytes.  Reservation vouchers are signed envelopes (libp2p RFC 0002) with the
domain L{VOUCHER_DOMAIN} and the raw payload type L{VOUCHER_PAYLOAD_TYPE}.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from tau.identity import InvalidKey, PeerID
from tau.pb import circuit_pb2
from tau.protocols.peerrecord import InvalidEnvelope, decodeAddr, encodeAddr, makeEnvelope, openEnvelope

HOP = "/libp2p/circuit/relay/0.2.0/hop"
STOP = "/libp2p/circuit/relay/0.2.0/stop"

#: Largest hop or stop message accepted (go-libp2p's limit).
MAX_MESSAGE_SIZE = 4096
#: Most addresses kept from a C{Peer} or C{Reservation}.
MAX_ADDRS = 32

VOUCHER_DOMAIN = "libp2p-relay-rsvp"
#: The multicodec libp2p-relay-rsvp (0x0302) as raw bytes, as go and js use.
VOUCHER_PAYLOAD_TYPE = b"\x03\x02"

# Status codes.
OK = circuit_pb2.OK
RESERVATION_REFUSED = circuit_pb2.RESERVATION_REFUSED
RESOURCE_LIMIT_EXCEEDED = circuit_pb2.RESOURCE_LIMIT_EXCEEDED
PERMISSION_DENIED = circuit_pb2.PERMISSION_DENIED
CONNECTION_FAILED = circuit_pb2.CONNECTION_FAILED
NO_RESERVATION = circuit_pb2.NO_RESERVATION
MALFORMED_MESSAGE = circuit_pb2.MALFORMED_MESSAGE
UNEXPECTED_MESSAGE = circuit_pb2.UNEXPECTED_MESSAGE

# Message types.
RESERVE = circuit_pb2.HopMessage.RESERVE
CONNECT = circuit_pb2.HopMessage.CONNECT
STATUS = circuit_pb2.HopMessage.STATUS
STOP_CONNECT = circuit_pb2.StopMessage.CONNECT
STOP_STATUS = circuit_pb2.StopMessage.STATUS

_UINT32 = (1 << 32) - 1


def statusName(code: int) -> str:
    """
    C{"NO_RESERVATION"} for 204, or the number for a code we do not know.
    """
    try:
        return circuit_pb2.Status.Name(code)
    except ValueError:
        return str(code)


class MessageError(ValueError):
    """
    A hop or stop message that is malformed, or not the one expected.

    @ivar status: the status to answer with (L{MALFORMED_MESSAGE} or
        L{UNEXPECTED_MESSAGE}).
    """

    def __init__(self, message: str, status: int = MALFORMED_MESSAGE):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limit:
    """
    The limits of a relayed connection: seconds and bytes per direction;
    0 means none.
    """

    duration: int = 0
    data: int = 0

    def __bool__(self) -> bool:
        return bool(self.duration or self.data)


@dataclass(frozen=True)
class Reservation:
    """
    A reservation as the relay granted it.

    @ivar expire: Unix time (seconds) it ends at, on the relay's clock.
    @ivar addrs: the relay's addresses, each ending in C{/p2p/<relay>}.
    @ivar voucher: the signed envelope as received (C{b""} when absent).
    @ivar limit: the L{Limit} of connections relayed to us, or None when the
        relay applies none.
    """

    relay: PeerID
    expire: int
    addrs: tuple = ()
    voucher: bytes = b""
    limit: Limit | None = None

    def circuitAddrs(self) -> list[str]:
        """
        The addresses to announce to be reached through this relay:
        C{<relay addr>/p2p/<relay>/p2p-circuit}.
        """
        return [f"{addr}/p2p-circuit" for addr in self.addrs]


@dataclass(frozen=True)
class HopRequest:
    """
    A RESERVE or CONNECT.  C{peer}: the target of a CONNECT.
    """

    type: int
    peer: PeerID | None = None
    addrs: tuple = ()


@dataclass(frozen=True)
class StopRequest:
    """
    A stop CONNECT: C{peer} wants to reach us, under C{limit}.
    """

    peer: PeerID
    addrs: tuple = ()
    limit: Limit | None = None


@dataclass(frozen=True)
class StatusReply:
    """
    A STATUS answer, with the reservation of a RESERVE and the limit.
    """

    status: int
    reservation: object = None  # circuit_pb2.Reservation or None
    limit: Limit | None = None
    extra: dict = field(default_factory=dict)


# -- encoding -----------------------------------------------------------------


def _setLimit(target, limit: Limit | None) -> None:
    if limit:
        target.duration = min(int(limit.duration), _UINT32)
        target.data = int(limit.data)


def encodeReserve() -> bytes:
    return circuit_pb2.HopMessage(type=RESERVE).SerializeToString()


def encodeConnect(peer: PeerID, addrs=()) -> bytes:
    msg = circuit_pb2.HopMessage(type=CONNECT)
    msg.peer.id = peer.toBytes()
    for addr in addrs:
        encoded = encodeAddr(addr)
        if encoded is not None:
            msg.peer.addrs.append(encoded)
    return msg.SerializeToString()


def encodeHopStatus(status: int, *, reservation: Reservation | None = None, limit: Limit | None = None) -> bytes:
    msg = circuit_pb2.HopMessage(type=STATUS, status=status)
    if reservation is not None:
        msg.reservation.expire = reservation.expire
        for addr in reservation.addrs:
            encoded = encodeAddr(addr)
            if encoded is not None:
                msg.reservation.addrs.append(encoded)
        if reservation.voucher:
            msg.reservation.voucher = reservation.voucher
    if limit:
        _setLimit(msg.limit, limit)
    return msg.SerializeToString()


def encodeStopConnect(peer: PeerID, limit: Limit | None = None) -> bytes:
    msg = circuit_pb2.StopMessage(type=STOP_CONNECT)
    msg.peer.id = peer.toBytes()
    if limit:
        _setLimit(msg.limit, limit)
    return msg.SerializeToString()


def encodeStopStatus(status: int) -> bytes:
    return circuit_pb2.StopMessage(type=STOP_STATUS, status=status).SerializeToString()


# -- decoding -----------------------------------------------------------------


def _parse(cls, data: bytes):
    if len(data) > MAX_MESSAGE_SIZE:
        raise MessageError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_SIZE}")
    msg = cls()
    try:
        msg.ParseFromString(bytes(data))
    except DecodeError as e:
        raise MessageError(f"malformed message: {e}") from None
    if not msg.HasField("type"):
        raise MessageError("message without a type")
    return msg


def _peer(msg) -> tuple[PeerID, tuple]:
    if not msg.HasField("peer") or not msg.peer.id:
        raise MessageError("message without a peer")
    try:
        peer = PeerID.fromBytes(msg.peer.id)
    except (InvalidKey, ValueError) as e:
        raise MessageError(f"bad peer id: {e}") from None
    addrs = []
    for raw in msg.peer.addrs[:MAX_ADDRS]:
        text = decodeAddr(raw)
        if text is not None:
            addrs.append(text)
    return peer, tuple(addrs)


def _limit(msg) -> Limit | None:
    if not msg.HasField("limit"):
        return None
    limit = Limit(duration=msg.limit.duration, data=msg.limit.data)
    return limit if limit else None


def decodeHop(data: bytes) -> HopRequest | StatusReply:
    """
    A hop message: a L{HopRequest} (RESERVE, CONNECT) or a L{StatusReply}.

    @raise MessageError: too long, malformed, an unknown type, a CONNECT
        without a valid peer, a STATUS without a status.
    """
    msg = _parse(circuit_pb2.HopMessage, data)
    if msg.type == RESERVE:
        return HopRequest(RESERVE)
    if msg.type == CONNECT:
        peer, addrs = _peer(msg)
        return HopRequest(CONNECT, peer, addrs)
    if msg.type == STATUS:
        if not msg.HasField("status"):
            raise MessageError("STATUS without a status")
        return StatusReply(
            msg.status,
            reservation=msg.reservation if msg.HasField("reservation") else None,
            limit=_limit(msg),
        )
    raise MessageError(f"unknown hop message type {msg.type}", UNEXPECTED_MESSAGE)


def decodeStop(data: bytes) -> StopRequest | StatusReply:
    """
    A stop message: a L{StopRequest} (CONNECT) or a L{StatusReply}.

    @raise MessageError: as L{decodeHop}.
    """
    msg = _parse(circuit_pb2.StopMessage, data)
    if msg.type == STOP_CONNECT:
        peer, addrs = _peer(msg)
        return StopRequest(peer, addrs, _limit(msg))
    if msg.type == STOP_STATUS:
        if not msg.HasField("status"):
            raise MessageError("STATUS without a status")
        return StatusReply(msg.status)
    raise MessageError(f"unknown stop message type {msg.type}", UNEXPECTED_MESSAGE)


# -- vouchers -----------------------------------------------------------------


def makeVoucher(relayKey, peer: PeerID, expiration: int) -> bytes:
    """
    A voucher signed by C{relayKey}: the relay promises C{peer} a slot until
    C{expiration} (Unix seconds).
    """
    payload = circuit_pb2.Voucher(
        relay=relayKey.peerID().toBytes(), peer=peer.toBytes(), expiration=int(expiration)
    ).SerializeToString(deterministic=True)
    return makeEnvelope(relayKey, VOUCHER_PAYLOAD_TYPE, payload, VOUCHER_DOMAIN)


@dataclass(frozen=True)
class Voucher:
    relay: PeerID
    peer: PeerID
    expiration: int


def openVoucher(data: bytes) -> Voucher:
    """
    Verify a voucher: its signature, and that the signer is the relay it
    names.

    @raise MessageError: when it does not verify or decode.
    """
    try:
        key, payload = openEnvelope(data, VOUCHER_DOMAIN, VOUCHER_PAYLOAD_TYPE, MAX_MESSAGE_SIZE)
    except InvalidEnvelope as e:
        raise MessageError(f"voucher: {e}") from None
    msg = circuit_pb2.Voucher()
    try:
        msg.ParseFromString(payload)
        relay = PeerID.fromBytes(msg.relay)
        peer = PeerID.fromBytes(msg.peer)
    except (DecodeError, InvalidKey, ValueError) as e:
        raise MessageError(f"voucher payload: {e}") from None
    if not relay.matches(key):
        raise MessageError(f"voucher of relay {relay} signed by {key.peerID()}")
    return Voucher(relay, peer, msg.expiration)


def parseReservation(relay: PeerID, self_: PeerID, pb, limit: Limit | None) -> Reservation:
    """
    The L{Reservation} of a RESERVE answer's C{reservation} field, with its
    addresses made to end in C{/p2p/<relay>} and its voucher checked.

    @raise MessageError: no expiry, or a voucher that does not verify or
        names another relay or peer.
    """
    if pb is None or not pb.HasField("expire"):
        raise MessageError("reservation without an expiry")
    addrs = []
    suffix = f"/p2p/{relay}"
    for raw in pb.addrs[:MAX_ADDRS]:
        text = decodeAddr(raw)
        if text is None or "/p2p-circuit" in text:
            continue
        if "/p2p/" in text and not text.endswith(suffix):
            continue
        if not text.endswith(suffix):
            text += suffix
        if text not in addrs:
            addrs.append(text)
    voucher = bytes(pb.voucher) if pb.HasField("voucher") else b""
    if voucher:
        v = openVoucher(voucher)
        if v.relay != relay or v.peer != self_:
            raise MessageError(f"voucher for {v.peer} at {v.relay}, expected {self_} at {relay}")
    return Reservation(relay, int(pb.expire), tuple(addrs), voucher, limit)
