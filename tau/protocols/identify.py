"""
identify (C{/ipfs/id/1.0.0}) and identify push (C{/ipfs/id/push/1.0.0}):
the streams, and what they teach the peerstore.

identify: the requester opens a stream and sends nothing; the responder
writes one or more length-prefixed C{Identify} protobufs and closes its
write side; the requester reads them until the end of the stream (at most
L{MAX_MESSAGES}, each at most
L{tau.protocols.identifymsg.MAX_MESSAGE_SIZE} bytes) and merges them.

push: the sender opens a stream, writes the message(s) and closes; the
receiver merges the fields present and leaves the others alone.

The message itself (built, decoded, parsed) is L{tau.protocols.identifymsg};
signed envelopes, peer records and the binary multiaddr codec are
L{tau.protocols.peerrecord}.  Failures are L{IdentifyError} subclasses.

Use L{install} to serve both protocols on a host and identify every new
connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from weakref import WeakKeyDictionary

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from tau.identity import PeerID, PublicKey
from tau.oneshot import OneShot
from tau.pb import identify_pb2
from tau.protocols import varint
from tau.protocols.identifymsg import MAX_MESSAGE_SIZE, decodeIdentify, identifyMessages, parseIdentify
from tau.protocols.multistream import MultistreamNegotiator
from tau.protocols.peerrecord import IdentifyError, SignedPeerRecord
from tau.ratelog import PeerLog
from tau.streams import StreamProtocol, StreamTooLong, withTimeout

__all__ = [
    "ID",
    "PUSH",
    "MAX_MESSAGES",
    "IdentifyError",
    "IdentifyRejected",
    "IdentifyResult",
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

#: Most identify messages accepted on one stream.
MAX_MESSAGES = 10

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


class IdentifyRejected(IdentifyError):
    """
    A well-formed identify answer that we refuse: no public key, or the key
    of another peer.
    """


# -- per-host state -----------------------------------------------------------


class _HostState:
    def __init__(self) -> None:
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
