"""
identify (C{/ipfs/id/1.0.0}), identify push (C{/ipfs/id/push/1.0.0}),
signed envelopes and signed peer records.

identify: the requester opens a stream and sends nothing; the responder
writes one or more length-prefixed C{Identify} protobufs and closes its
write side; the requester reads them until the end of the stream (at most
L{MAX_MESSAGES}, each at most L{MAX_MESSAGE_SIZE} bytes) and merges them.
A reply that carries a signed peer record and exceeds L{LEGACY_MESSAGE_SIZE}
is sent as two messages, the record alone in the second (as go does).

push: the sender opens a stream, writes the message(s) and closes; the
receiver merges the fields present and leaves the others alone.

Signed envelopes (libp2p RFC 0002): the signature covers
C{uvarint(len(domain)) domain uvarint(len(type)) type uvarint(len(payload))
payload}.  A peer record (RFC 0003) travels in an envelope with the domain
C{libp2p-peer-record} and the raw payload type C{03 01}.

Wire-level decoding (L{decodeIdentify}, L{parseIdentify}, L{openEnvelope},
L{openPeerRecord}) is sans-IO and raises only L{IdentifyError} subclasses.

Use L{install} to serve both protocols on a host and identify every new
connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from weakref import WeakKeyDictionary

import multiaddr
from cryptography.exceptions import UnsupportedAlgorithm
from google.protobuf.message import DecodeError
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from tau.identity import InvalidKey, PeerID, PublicKey
from tau.oneshot import OneShot
from tau.pb import envelope_pb2, identify_pb2
from tau.peerstore import MAX_ADDRS, MAX_AGENT_LENGTH, MAX_PROTOCOL_LENGTH, MAX_PROTOCOLS, stripPeer
from tau.protocols import varint
from tau.protocols.multistream import MultistreamNegotiator
from tau.ratelog import PeerLog
from tau.streams import StreamProtocol, StreamTooLong, withTimeout

__all__ = [
    "ID",
    "PUSH",
    "PROTOCOL_VERSION",
    "PEER_RECORD_DOMAIN",
    "PEER_RECORD_PAYLOAD_TYPE",
    "MAX_MESSAGE_SIZE",
    "MAX_MESSAGES",
    "IdentifyError",
    "IdentifyRejected",
    "InvalidEnvelope",
    "IdentifyInfo",
    "IdentifyResult",
    "SignedPeerRecord",
    "signatureBuffer",
    "makeEnvelope",
    "openEnvelope",
    "makePeerRecord",
    "openPeerRecord",
    "signedPeerRecord",
    "identifyMessage",
    "identifyMessages",
    "decodeIdentify",
    "parseIdentify",
    "handleIdentify",
    "identify",
    "whenIdentified",
    "handlePush",
    "push",
    "pushAll",
    "install",
]

ID = "/ipfs/id/1.0.0"
PUSH = "/ipfs/id/push/1.0.0"
PROTOCOL_VERSION = "ipfs/0.1.0"

PEER_RECORD_DOMAIN = "libp2p-peer-record"
#: The multicodec of libp2p-peer-record (0x0301) as the raw bytes go and js
#: use, not as a varint.
PEER_RECORD_PAYLOAD_TYPE = b"\x03\x01"

#: Largest identify message accepted or sent (go and js use the same).
MAX_MESSAGE_SIZE = 8192
#: Most identify messages accepted on one stream.
MAX_MESSAGES = 10
#: A reply larger than this that carries a signed record is split in two.
LEGACY_MESSAGE_SIZE = 2048
#: Largest envelope accepted.
MAX_ENVELOPE_SIZE = MAX_MESSAGE_SIZE
#: Largest binary multiaddr accepted.
MAX_ADDR_SIZE = 1024

#: Lifetime of the addresses learned from a connected peer (go's
#: ConnectedAddrTTL is "until disconnected"; two hours bounds it).
CONNECTED_ADDR_TTL = 2 * 3600.0
#: How long identify (or a push) may take.
TIMEOUT = 30.0
#: identify (and identify push) streams one peer may have open to us at
#: once (js-libp2p allows one)
MAX_INBOUND_STREAMS = 4
#: Peers whose latest signed record sequence number is remembered.
MAX_RECORD_PEERS = 10_000

log = Logger()
peerLog = PeerLog(log)


class IdentifyError(ValueError):
    """
    An identify message, envelope or peer record is malformed or refused.
    """


class IdentifyRejected(IdentifyError):
    """
    A well-formed identify answer that we refuse: no public key, or the key
    of another peer.
    """


class InvalidEnvelope(IdentifyError):
    """
    A signed envelope (or the peer record in it) does not decode or verify.
    """


# -- signed envelopes ---------------------------------------------------------


def _publicKey(data: bytes) -> PublicKey:
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
    if len(data) > maxSize:
        raise InvalidEnvelope(f"envelope of {len(data)} bytes exceeds {maxSize}")
    envelope = envelope_pb2.Envelope()
    try:
        envelope.ParseFromString(bytes(data))
    except DecodeError as e:
        raise InvalidEnvelope(f"malformed envelope: {e}") from None
    if expectedType is not None and envelope.payload_type != expectedType:
        raise InvalidEnvelope(
            f"envelope payload type {envelope.payload_type.hex()} is not {expectedType.hex()}"
        )
    if not envelope.public_key:
        raise InvalidEnvelope("envelope without a public key")
    try:
        key = _publicKey(envelope.public_key)
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
    addrs = _decodeAddrs(a.multiaddr for a in record.addresses)
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


def _decodeAddrs(encoded) -> list[str]:
    out = []
    for data in encoded:
        if len(out) >= MAX_ADDRS:
            break
        text = decodeAddr(data)
        if text is not None and text not in out:
            out.append(text)
    return out


# -- per-host state -----------------------------------------------------------


class _HostState:
    def __init__(self) -> None:
        self.seq = 0
        self.recordAddrs: tuple | None = None
        self.record: bytes | None = None
        # peer -> (seq, addrs) of the newest signed record seen
        self.peerRecords: dict = {}
        # connection -> OneShot of its identify result
        self.identified: WeakKeyDictionary = WeakKeyDictionary()


_states: WeakKeyDictionary = WeakKeyDictionary()


def _state(host) -> _HostState:
    state = _states.get(host)
    if state is None:
        state = _states[host] = _HostState()
    return state


def _ownAddrs(host) -> list[str]:
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
    state = _state(host)
    addrs = tuple(_ownAddrs(host))
    if state.record is None or state.recordAddrs != addrs:
        state.seq = max(int(host.clock.seconds() * 1_000_000_000), state.seq + 1)
        state.record = makePeerRecord(host.key, addrs, state.seq)
        state.recordAddrs = addrs
    return state.record


# -- building messages --------------------------------------------------------


def _buildIdentify(host, connection) -> identify_pb2.Identify:
    msg = identify_pb2.Identify()
    msg.publicKey = host.key.publicKey().toProtobuf()
    for addr in _ownAddrs(host)[:MAX_ADDRS]:
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
    if len(data) > MAX_MESSAGE_SIZE:
        raise IdentifyError(f"identify message of {len(data)} bytes exceeds {MAX_MESSAGE_SIZE}")
    msg = identify_pb2.Identify()
    try:
        msg.ParseFromString(bytes(data))
    except DecodeError as e:
        raise IdentifyError(f"malformed identify message: {e}") from None
    return msg


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
        info.publicKey = _publicKey(msg.publicKey)
    info.listenAddrs = _decodeAddrs(msg.listenAddrs)
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


# -- streams ------------------------------------------------------------------


async def _readMessages(stream) -> tuple[identify_pb2.Identify, int]:
    """
    Read LP identify messages until the end of the stream and merge them.
    """
    merged = identify_pb2.Identify()
    count = 0
    while True:
        try:
            data = await stream.readLP(MAX_MESSAGE_SIZE, allowEOF=True)
        except StreamTooLong as e:
            raise IdentifyError(f"identify message too long: {e}") from None
        except varint.VarintError as e:
            raise IdentifyError(f"bad identify message length: {e}") from None
        if data is None:
            return merged, count
        count += 1
        if count > MAX_MESSAGES:
            raise IdentifyError(f"more than {MAX_MESSAGES} identify messages")
        merged.MergeFrom(decodeIdentify(data))


async def _openStream(host, connection, protocols, timeout):
    """
    A negotiated L{StreamProtocol} on C{connection} itself.
    """
    transport = connection.openStream()
    transport.remotePeer = connection.remotePeer
    transport.connection = connection
    negotiator = MultistreamNegotiator.dialer(list(protocols), host.clock, timeout)
    transport.setProtocol(negotiator)
    protocolID, leftover = await negotiator.whenNegotiated()
    transport.protocolID = protocolID
    stream = StreamProtocol(protocolID, connection.remotePeer, connection)
    negotiator.switchProtocol(stream, leftover)
    return stream


@dataclass
class IdentifyResult:
    """
    What identify learned of a peer.

    @ivar addrs: the addresses stored in the peerstore (from the signed
        record when there is a valid one, else the listen addresses).
    @ivar observedAddr: our address as the peer sees it (text), or None.
    """

    peerID: PeerID
    publicKey: PublicKey
    protocols: list
    listenAddrs: list
    addrs: list
    observedAddr: str | None
    protocolVersion: str
    agentVersion: str
    signedRecord: SignedPeerRecord | None
    messages: int


def _recordAddrs(host, peerID, record):
    """
    The addresses of the newest signed record of C{peerID} (C{record} or
    one seen before), or None.
    """
    state = _state(host)
    known = state.peerRecords.get(peerID)
    if record is not None and record.peerID == peerID:
        if known is None or record.seq >= known[0]:
            if known is None and len(state.peerRecords) >= MAX_RECORD_PEERS:
                state.peerRecords.pop(next(iter(state.peerRecords)))
            state.peerRecords.pop(peerID, None)
            known = state.peerRecords[peerID] = (record.seq, list(record.addrs))
        else:
            log.info(
                "ignoring a signed record of {peer} older than the one known ({seq} < {known})",
                peer=str(peerID),
                seq=record.seq,
                known=known[0],
            )
    return None if known is None else list(known[1])


def _checkKey(info, peerID):
    if info.publicKey is not None and not peerID.matches(info.publicKey):
        raise IdentifyRejected(
            f"identify from {peerID} carries the key of {info.publicKey.peerID()}"
        )


def _apply(host, peerID, info, full):
    """
    Store what C{info} says of C{peerID}.  C{full}: an identify answer
    (replace everything) rather than a push (only the fields present).
    """
    store = host.peerstore
    if info.publicKey is not None:
        store.setPublicKey(peerID, info.publicKey)
    if info.signedRecord is not None and info.signedRecord.peerID != peerID:
        peerLog.info(host.clock, "foreign record", "dropping a signed record of {other} sent by {peer}",
                     other=str(info.signedRecord.peerID), peer=str(peerID))
        info.signedRecord = None
    addrs = None
    if info.signedRecord is not None or info.listenAddrs or full:
        addrs = _recordAddrs(host, peerID, info.signedRecord)
        if addrs is None:
            addrs = info.listenAddrs
        store.setAddrs(peerID, addrs, CONNECTED_ADDR_TTL)
    if full or info.protocols:
        store.setProtocols(peerID, info.protocols)
    rec = store.get(peerID)
    if full or info.agentVersion is not None or info.protocolVersion is not None:
        agent = info.agentVersion if info.agentVersion is not None or full else rec.agentVersion
        version = (
            info.protocolVersion if info.protocolVersion is not None or full else rec.protocolVersion
        )
        store.setAgent(peerID, agent or "", version or "")
    if info.observedAddr is not None:
        store.record(peerID).observedAddr = info.observedAddr
    return addrs


async def handleIdentify(host, stream) -> None:
    """
    The C{/ipfs/id/1.0.0} responder: write our identify message(s), close.
    """
    for message in identifyMessages(host, stream.connection):
        stream.writeLP(message)
    stream.closeWrite()


async def identify(host, target, timeout: float | None = TIMEOUT) -> IdentifyResult:
    """
    Identify a peer and store what it says in C{host.peerstore}.

    @param target: a connection (a new stream is opened on it) or an
        already negotiated C{/ipfs/id/1.0.0} L{StreamProtocol}.
    @raise IdentifyError: if the answer is malformed, too large, in too
        many messages, or rejected (L{IdentifyRejected}: no public key, or
        the key of another peer than the connection's); the stream is reset.
    """
    if isinstance(target, StreamProtocol):
        stream = target
    else:
        stream = await _openStream(host, target, [ID], timeout)
    peerID = stream.remotePeer
    try:
        merged, count = await withTimeout(host.clock, timeout, _readMessages(stream))
        info = parseIdentify(merged)
        if info.publicKey is None:
            raise IdentifyRejected(f"identify from {peerID} without a public key")
        _checkKey(info, peerID)
    except BaseException:
        stream.reset()
        raise
    stream.closeWrite()
    if info.recordError is not None:
        peerLog.info(host.clock, "invalid record", "invalid signed peer record from {peer}: {reason}",
                     peer=str(peerID), reason=info.recordError)
    addrs = _apply(host, peerID, info, full=True)
    return IdentifyResult(
        peerID=peerID,
        publicKey=info.publicKey,
        protocols=info.protocols,
        listenAddrs=info.listenAddrs,
        addrs=addrs,
        observedAddr=info.observedAddr,
        protocolVersion=info.protocolVersion or "",
        agentVersion=info.agentVersion or "",
        signedRecord=info.signedRecord,
        messages=count,
    )


def whenIdentified(host, connection) -> Deferred:
    """
    A Deferred firing with the L{IdentifyResult} of C{connection} once the
    identify started by L{install} for it is done (or failing like it).
    """
    state = _state(host)
    shot = state.identified.get(connection)
    if shot is None:
        shot = state.identified[connection] = OneShot()
    return shot.whenFired()


def _identifyConnection(host, connection) -> Deferred:
    state = _state(host)
    shot = state.identified.get(connection)
    if shot is None:
        shot = state.identified[connection] = OneShot()
    d = Deferred.fromCoroutine(identify(host, connection))

    def failed(failure):
        log.info(
            "identify of {peer} failed: {reason}",
            peer=str(connection.remotePeer),
            reason=failure.getErrorMessage() or failure.type.__name__,
        )
        return failure

    d.addErrback(failed)
    d.addBoth(shot.fire)
    return d


async def handlePush(host, stream, timeout: float | None = TIMEOUT) -> None:
    """
    The C{/ipfs/id/push/1.0.0} receiver: merge the fields present into the
    peerstore; missing fields are left as they are.

    @raise IdentifyError: on a malformed push or a key of another peer (the
        host then resets the stream).
    """
    peerID = stream.remotePeer
    merged, count = await withTimeout(host.clock, timeout, _readMessages(stream))
    info = parseIdentify(merged)
    _checkKey(info, peerID)
    if info.recordError is not None:
        peerLog.info(host.clock, "invalid record", "invalid signed peer record pushed by {peer}: {reason}",
                     peer=str(peerID), reason=info.recordError)
    _apply(host, peerID, info, full=False)
    stream.closeWrite()


async def push(host, peerID, timeout: float | None = TIMEOUT) -> None:
    """
    Push our identify message to C{peerID} (after our addresses or
    protocols changed).
    """
    stream = await host.newStream(peerID, [PUSH], allowLimited=True)
    for message in identifyMessages(host, stream.connection):
        stream.writeLP(message)
    stream.closeWrite()


async def _pushOn(host, connection, timeout: float | None = TIMEOUT) -> None:
    """
    Push our identify message on C{connection} (never dialing).
    """
    stream = await _openStream(host, connection, [PUSH], timeout)
    for message in identifyMessages(host, connection):
        stream.writeLP(message)
    stream.closeWrite()


def pushAll(host) -> None:
    """
    Push our identify message to every connected peer that serves push
    (after our addresses or protocols changed); failures are only logged.
    """
    for peerID in host.connectedPeers():
        connection = host.connectionTo(peerID)
        if connection is None or not host.peerstore.supports(peerID, PUSH):
            continue
        d = Deferred.fromCoroutine(_pushOn(host, connection))
        d.addErrback(
            lambda f, peer=peerID: log.debug(
                "identify push to {peer} failed: {reason}", peer=str(peer), reason=f.getErrorMessage()
            )
        )


def install(host, identifyConnections: bool = True) -> None:
    """
    Serve identify and identify push on C{host}; with
    C{identifyConnections}, identify every new connection (needs
    C{host.addConnectionObserver}); see L{whenIdentified}.
    """
    host.setStreamHandler(ID, partial(handleIdentify, host), allowLimited=True, maxInbound=MAX_INBOUND_STREAMS)
    host.setStreamHandler(PUSH, partial(handlePush, host), allowLimited=True, maxInbound=MAX_INBOUND_STREAMS)
    if hasattr(host, "addChangeObserver"):
        host.addChangeObserver(partial(pushAll, host))
    if identifyConnections:
        host.addConnectionObserver(partial(_identifyConnection, host))
