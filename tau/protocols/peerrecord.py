"""
Signed envelopes (libp2p RFC 0002), the signed peer records (RFC 0003)
that travel in them, this host's own signed peer record, and the binary
multiaddr codec they use (as do identify, autonat, dcutr, relay and kad
messages).

The signature of an envelope covers C{uvarint(len(domain)) domain
uvarint(len(type)) type uvarint(len(payload)) payload}.  A peer record
travels in an envelope with the domain C{libp2p-peer-record} and the raw
payload type C{03 01}.

Decoding (L{openEnvelope}, L{openPeerRecord}, L{decodeAddr}) is sans-IO and
raises only L{IdentifyError} subclasses.  identify itself, which carries
the records, is L{tau.protocols.identify}.
"""

from __future__ import annotations

from dataclasses import dataclass
from weakref import WeakKeyDictionary

import multiaddr
from cryptography.exceptions import UnsupportedAlgorithm
from google.protobuf.message import DecodeError

from tau.identity import InvalidKey, PeerID, PublicKey
from tau.pb import decodeBounded, envelope_pb2
from tau.peerstore import MAX_ADDRS, stripPeer
from tau.protocols import varint

__all__ = [
    "PEER_RECORD_DOMAIN",
    "PEER_RECORD_PAYLOAD_TYPE",
    "MAX_ENVELOPE_SIZE",
    "MAX_ADDR_SIZE",
    "IdentifyError",
    "InvalidEnvelope",
    "SignedPeerRecord",
    "decodePublicKey",
    "signatureBuffer",
    "makeEnvelope",
    "openEnvelope",
    "makePeerRecord",
    "openPeerRecord",
    "encodeAddr",
    "decodeAddr",
    "decodeAddrs",
    "ownAddrs",
    "signedPeerRecord",
]

PEER_RECORD_DOMAIN = "libp2p-peer-record"
#: The multicodec of libp2p-peer-record (0x0301) as the raw bytes go and js
#: use, not as a varint.
PEER_RECORD_PAYLOAD_TYPE = b"\x03\x01"

#: Largest envelope accepted (as large as the largest identify message,
#: L{tau.protocols.identifymsg.MAX_MESSAGE_SIZE}).
MAX_ENVELOPE_SIZE = 8192
#: Largest binary multiaddr accepted.
MAX_ADDR_SIZE = 1024


class IdentifyError(ValueError):
    """
    An identify message, envelope or peer record is malformed or refused.
    """


class InvalidEnvelope(IdentifyError):
    """
    A signed envelope (or the peer record in it) does not decode or verify.
    """


# -- signed envelopes ---------------------------------------------------------


def decodePublicKey(data: bytes) -> PublicKey:
    """
    A public key from its protobuf encoding.

    @raise IdentifyError: if it is malformed or of an unsupported kind.
    """
    try:
        return PublicKey.fromProtobuf(data)
    except (InvalidKey, UnsupportedAlgorithm) as e:
        # cryptography raises UnsupportedAlgorithm for unknown EC curves.
        raise IdentifyError(f"public key: {e}") from None


def signatureBuffer(domain: str, payloadType: bytes, payload: bytes) -> bytes:
    """
    The bytes an envelope's signature covers (RFC 0002).
    """
    d = domain.encode("utf-8")
    return b"".join(
        (
            varint.encode(len(d)),
            d,
            varint.encode(len(payloadType)),
            bytes(payloadType),
            varint.encode(len(payload)),
            bytes(payload),
        )
    )


def makeEnvelope(key, payloadType: bytes, payload: bytes, domain: str) -> bytes:
    """
    Sign C{payload} with C{key} (a L{tau.identity.PrivateKey}) for C{domain}
    and return the encoded C{Envelope}.
    """
    if not domain:
        raise ValueError("a signed envelope needs a domain")
    envelope = envelope_pb2.Envelope(
        public_key=key.publicKey().toProtobuf(),
        payload_type=bytes(payloadType),
        payload=bytes(payload),
        signature=key.sign(signatureBuffer(domain, payloadType, payload)),
    )
    return envelope.SerializeToString(deterministic=True)


def openEnvelope(
    data: bytes, domain: str, expectedType: bytes | None, maxSize: int = MAX_ENVELOPE_SIZE
) -> tuple[PublicKey, bytes]:
    """
    Decode an C{Envelope} and verify its signature for C{domain}.

    @param expectedType: the payload type required, or L{None} for any.
    @return: C{(signer's PublicKey, payload)}.
    @raise InvalidEnvelope: if it is too long, malformed, of another type,
        or the signature does not verify.
    """
    envelope = decodeBounded(envelope_pb2.Envelope, data, maxSize, InvalidEnvelope, "envelope")
    if expectedType is not None and envelope.payload_type != expectedType:
        raise InvalidEnvelope(
            f"envelope payload type {envelope.payload_type.hex()} is not {expectedType.hex()}"
        )
    if not envelope.public_key:
        raise InvalidEnvelope("envelope without a public key")
    try:
        key = decodePublicKey(envelope.public_key)
    except IdentifyError as e:
        raise InvalidEnvelope(f"envelope {e}") from None
    signed = signatureBuffer(domain, envelope.payload_type, envelope.payload)
    if not envelope.signature or not key.verify(envelope.signature, signed):
        raise InvalidEnvelope("envelope signature does not verify")
    return key, envelope.payload


# -- signed peer records -------------------------------------------------------


@dataclass(frozen=True)
class SignedPeerRecord:
    """
    A verified peer record.

    @ivar addrs: the valid addresses, as multiaddr text without C{/p2p}.
    @ivar envelope: the envelope as received, to pass on unchanged.
    """

    peerID: PeerID
    seq: int
    addrs: tuple
    envelope: bytes


def makePeerRecord(key, addrs, seq: int) -> bytes:
    """
    A signed envelope with a peer record of C{key}'s peer listing C{addrs}
    (multiaddr text, without C{/p2p}).
    """
    record = envelope_pb2.PeerRecord(peer_id=key.peerID().toBytes(), seq=seq)
    for addr in addrs:
        encoded = encodeAddr(addr)
        if encoded is not None:
            record.addresses.add(multiaddr=encoded)
    return makeEnvelope(
        key,
        PEER_RECORD_PAYLOAD_TYPE,
        record.SerializeToString(deterministic=True),
        PEER_RECORD_DOMAIN,
    )


def openPeerRecord(data: bytes) -> SignedPeerRecord:
    """
    Verify and decode a signed peer record.

    @raise InvalidEnvelope: if the envelope does not verify, the record does
        not decode, or the record names another peer than its signer.
    """
    key, payload = openEnvelope(data, PEER_RECORD_DOMAIN, PEER_RECORD_PAYLOAD_TYPE)
    record = envelope_pb2.PeerRecord()
    try:
        record.ParseFromString(payload)
    except DecodeError as e:
        raise InvalidEnvelope(f"malformed peer record: {e}") from None
    try:
        peerID = PeerID.fromBytes(record.peer_id)
    except InvalidKey as e:
        raise InvalidEnvelope(f"peer record peer ID: {e}") from None
    if not peerID.matches(key):
        raise InvalidEnvelope(f"peer record of {peerID} signed by {key.peerID()}")
    addrs = decodeAddrs(a.multiaddr for a in record.addresses)
    return SignedPeerRecord(peerID, record.seq, tuple(addrs), bytes(data))


# -- multiaddrs ---------------------------------------------------------------


def encodeAddr(addr) -> bytes | None:
    """
    The binary form of a multiaddr (text or object), or L{None} if it does
    not parse.
    """
    try:
        ma = addr if isinstance(addr, multiaddr.Multiaddr) else multiaddr.Multiaddr(addr)
        return ma.to_bytes()
    except Exception:
        return None


def decodeAddr(data: bytes) -> str | None:
    """
    The text form of a binary multiaddr, or L{None} if it is not a valid
    one.  The text is encoded again and compared, because the multiaddr
    library accepts some truncated values.
    """
    if not data or len(data) > MAX_ADDR_SIZE:
        return None
    try:
        text = str(multiaddr.Multiaddr(bytes(data)))
        if multiaddr.Multiaddr(text).to_bytes() != data:
            return None
    except Exception:
        return None
    return text


def decodeAddrs(encoded) -> list[str]:
    """
    The valid, distinct addresses among the binary multiaddrs C{encoded}
    (at most L{tau.peerstore.MAX_ADDRS}), as text.
    """
    out = []
    for data in encoded:
        if len(out) >= MAX_ADDRS:
            break
        text = decodeAddr(data)
        if text is not None and text not in out:
            out.append(text)
    return out


# -- this host's own record ---------------------------------------------------


class _OwnRecord:
    def __init__(self) -> None:
        self.seq = 0
        self.addrs: tuple | None = None
        self.record: bytes | None = None


_records: WeakKeyDictionary = WeakKeyDictionary()


def ownAddrs(host) -> list[str]:
    """
    The addresses C{host} announces (or else listens on), as multiaddr text
    without C{/p2p}, each once.
    """
    getter = getattr(host, "announcedAddresses", None) or host.listenAddresses
    out = []
    for addr in getter():
        try:
            text, _ = stripPeer(addr)
        except Exception:
            continue
        if text not in out:
            out.append(text)
    return out


def signedPeerRecord(host) -> bytes:
    """
    The host's signed peer record (an envelope) of its current addresses.
    It is signed again, with a larger sequence number (nanoseconds of the
    host clock, and always more than the last one), when they change.
    """
    own = _records.get(host)
    if own is None:
        own = _records[host] = _OwnRecord()
    addrs = tuple(ownAddrs(host))
    if own.record is None or own.addrs != addrs:
        own.seq = max(int(host.clock.seconds() * 1_000_000_000), own.seq + 1)
        own.record = makePeerRecord(host.key, addrs, own.seq)
        own.addrs = addrs
    return own.record
