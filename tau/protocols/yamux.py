"""
yamux (C{/yamux/1.0.0}): a stream multiplexer over one secured connection.

L{YamuxSession} is a L{Protocol} placed on any byte channel (usually the
application side of a TLS connection).  Every stream is a L{YamuxStream},
an L{ITransport} with push-producer and consumer flow control, so any
Twisted protocol runs on it.  The frame codec lives in
L{tau.protocols.yamuxframe}.

Flow control: each stream has a receive window (256 KiB initially, grown
like go-yamux up to L{YamuxConfig.maxWindow}) and a send window; data beyond
the send window is buffered and the stream's registered producer paused
until the peer's WindowUpdate.  A reader that pauses its stream stops the
window updates, so the peer stalls: a receiver never buffers more than one
window per stream.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost, TimeoutError
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tau.protocols.yamuxframe import (
    FLAG_ACK,
    FLAG_FIN,
    FLAG_RST,
    FLAG_SYN,
    GO_AWAY_NORMAL,
    GO_AWAY_PROTOCOL_ERROR,
    HEADER,
    INITIAL_WINDOW,
    MAX_UINT32,
    TYPE_DATA,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    FrameDecoder,
    SessionClosed,
    SessionGoingAway,
    StreamLimitExceeded,
    StreamReset,
    YamuxError,
    YamuxProtocolError,
    goAwayFrame,
    pingFrame,
    windowUpdateFrame,
)
from tau.protocols.yamuxstream import YamuxStream
from tau.ratelog import PeerLog, connectionKey
from tau.resources import ReceiveBudget

__all__ = [
    "PROTOCOL_ID",
    "YamuxConfig",
    "YamuxError",
    "YamuxProtocolError",
    "SessionClosed",
    "SessionGoingAway",
    "StreamLimitExceeded",
    "StreamReset",
    "YamuxSession",
    "YamuxStream",
]

PROTOCOL_ID = "/yamux/1.0.0"

log = Logger()
peerLog = PeerLog(log)

_pack = HEADER.pack

#: Inside L{YamuxSession.dataReceived} frames are gathered and written
#: together at the end; past this many bytes they are written at once, so a
#: burst of sending (a window update that lets a producer write megabytes)
#: reaches the transport in pieces and the transport can push back.
CORK_BYTES = 64 * 1024
#: Pongs answered while our transport pushes back, until the peer reads.
MAX_PONGS_WHILE_PAUSED = 4


@dataclass(frozen=True)
class YamuxConfig:
    """
    Limits and timers of a yamux session.

    @ivar maxInboundStreams: open streams the peer may have opened; more
        SYNs are answered with RST.
    @ivar maxOutboundStreams: open streams we may have opened;
        L{YamuxSession.openStream} raises L{StreamLimitExceeded} beyond.
    @ivar initialWindow: receive window announced for each new stream (at
        least 256 KiB, the spec's initial window).
    @ivar maxWindow: the auto-tuned receive window never exceeds this.
    @ivar maxFramePayload: largest Data payload we send.
    @ivar acceptBacklog: outbound streams that may wait for the peer's ACK;
        further streams are held back (their SYN queued) until ACKs arrive.
    @ivar keepAliveInterval: seconds between keepalive pings (the first one
        at start measures the RTT); L{None} disables keepalive.
    @ivar pingTimeout: a ping unanswered for this long fails; a keepalive
        ping that fails closes the session, unless bytes arrived in the
        last C{pingTimeout} seconds (then the pong is late behind the
        peer's data and another ping goes out).
    @ivar streamOpenTimeout: an outbound stream not acknowledged in this
        time is reset.
    @ivar streamCloseTimeout: after we sent FIN, a stream whose peer does
        not send FIN in this time is reset.
    @ivar maxReceiveBuffer: bytes received on the streams the peer opened
        and not consumed yet (the L{tau.resources.ReceiveBudget} of the
        connection); past it the streams holding the most are reset.  It
        leaves room for one stream's largest window and a few full-size
        messages.
    """

    maxInboundStreams: int = 1000
    maxOutboundStreams: int = 1000
    initialWindow: int = INITIAL_WINDOW
    maxWindow: int = 16 * 1024 * 1024
    maxFramePayload: int = 64 * 1024
    acceptBacklog: int = 256
    keepAliveInterval: float | None = 30.0
    pingTimeout: float = 10.0
    streamOpenTimeout: float | None = 75.0
    streamCloseTimeout: float | None = 300.0
    maxReceiveBuffer: int = 32 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.initialWindow < INITIAL_WINDOW:
            raise ValueError("initialWindow must be at least 256 KiB")
        if not self.initialWindow <= self.maxWindow <= MAX_UINT32:
            raise ValueError("maxWindow must be between initialWindow and 2**32-1")
        if not 0 < self.maxFramePayload <= MAX_UINT32:
            raise ValueError("maxFramePayload must be positive")
        if self.acceptBacklog < 1:
            raise ValueError("acceptBacklog must be at least 1")
        if self.maxReceiveBuffer < self.initialWindow:
            raise ValueError("maxReceiveBuffer must be at least initialWindow")


_OPEN, _CLOSING, _CLOSED = range(3)


@implementer(IPushProducer)
class YamuxSession(Protocol):
    """
    A yamux session over C{self.transport}.

    @param isClient: C{True} on the connection (security) initiator's side,
        which uses odd stream IDs.
    @param clock: the L{IReactorTime} for keepalive and timeouts.
    @param onStream: called with each inbound L{YamuxStream}; it should call
        L{YamuxStream.setProtocol} (data arriving before that is buffered
        within the window).
    @param config: a L{YamuxConfig}.
    @param peerBudget: the L{ReceiveBudget} of the peer, parent of the
        session's own (C{budget}, of C{config.maxReceiveBuffer} bytes).

    @ivar rtt: the last measured round-trip time in seconds (0 until the
        first ping is answered).
    """

    def __init__(
        self,
        isClient: bool,
        clock: IReactorTime,
        onStream: Callable[[YamuxStream], object],
        config: YamuxConfig | None = None,
        peerBudget: ReceiveBudget | None = None,
    ) -> None:
        self.isClient = isClient
        self.clock = clock
        self.onStream: Callable[[YamuxStream], object] | None = onStream
        self.config = config if config is not None else YamuxConfig()
        self.budget = ReceiveBudget(self.config.maxReceiveBuffer, peerBudget)
        self.rtt = 0.0
        self._registered = False
        self._state = _OPEN
        self._streams: dict[int, YamuxStream] = {}
        self._nextStreamID = 1 if isClient else 2
        self._inbound = 0
        self._outbound = 0
        self._unacked = 0
        self._synQueue: deque[YamuxStream] = deque()
        self._localGoAway = False
        self._remoteGoAway: int | None = None
        self._decoder: FrameDecoder | None = None
        self._dataStream: YamuxStream | None = None
        self._corked = False
        self._outbox: list[bytes] = []
        self._outboxBytes = 0
        self._transportPaused = False
        self._pongsWhilePaused = 0
        self._producers: set[YamuxStream] = set()
        self._blocked: deque[YamuxStream] = deque()
        self._pings: dict[int, tuple[float, Deferred[float], IDelayedCall]] = {}
        self._nextPingID = 0
        self._keepAliveCall: IDelayedCall | None = None
        #: clock seconds when bytes last arrived (keepalive: a peer that
        #: sends is alive even if its pong is late)
        self._lastReceived = clock.seconds()
        self._closedWaiters: list[Deferred[None]] = []
        self._closeReason: Failure | None = None

    # -- public API --------------------------------------------------------

    def openStream(self) -> YamuxStream:
        """
        Open an outbound stream.  Data written before the peer acknowledges
        it is sent right away, within the initial window.

        @raise SessionClosed: the session is closed or closing.
        @raise SessionGoingAway: after a GoAway in either direction.
        @raise StreamLimitExceeded: at C{maxOutboundStreams} open streams.
        """
        if self._state != _OPEN:
            raise SessionClosed("yamux session is closed")
        if self._localGoAway:
            raise SessionGoingAway("yamux session sent GoAway")
        if self._remoteGoAway is not None:
            raise SessionGoingAway(
                f"yamux peer sent GoAway (code {self._remoteGoAway})"
            )
        if self._outbound >= self.config.maxOutboundStreams:
            raise StreamLimitExceeded(
                f"{self._outbound} outbound streams open, the limit is "
                f"{self.config.maxOutboundStreams}"
            )
        streamID = self._nextStreamID
        if streamID > MAX_UINT32:
            raise StreamLimitExceeded("yamux stream IDs exhausted")
        self._nextStreamID += 2
        stream = YamuxStream(self, streamID, True)
        self._streams[streamID] = stream
        self._outbound += 1
        if self._unacked < self.config.acceptBacklog:
            self._sendSyn(stream)
        else:
            stream._synPending = True
            self._synQueue.append(stream)
        return stream

    def ping(self) -> Deferred[float]:
        """
        Send a ping; the Deferred fires with the round-trip time in seconds,
        or fails with L{TimeoutError} after C{config.pingTimeout} or
        L{ConnectionLost} if the session closes first.
        """
        if self._state != _OPEN:
            return _failed(SessionClosed("yamux session is closed"))
        pingID = self._nextPingID
        self._nextPingID = (pingID + 1) & MAX_UINT32
        d: Deferred[float] = Deferred()
        timeout = self.clock.callLater(self.config.pingTimeout, self._pingTimedOut, pingID)
        self._pings[pingID] = (self.clock.seconds(), d, timeout)
        self._send(pingFrame(FLAG_SYN, pingID))
        return d

    def goAway(self, code: int = GO_AWAY_NORMAL) -> None:
        """
        Tell the peer we accept no new streams (existing ones carry on).
        Afterwards inbound SYNs are reset and L{openStream} raises.
        """
        if self._localGoAway or self._state != _OPEN:
            return
        self._localGoAway = True
        self._send(goAwayFrame(code))

    def close(self) -> None:
        """
        Close the session: GoAway(normal) if not sent yet, every stream is
        lost, then the transport is closed.
        """
        if self._state != _OPEN:
            return
        self.goAway(GO_AWAY_NORMAL)
        self._shutdown(Failure(ConnectionLost("yamux session closed")))
        self._flush()
        self._loseTransport()

    def whenClosed(self) -> Deferred[None]:
        """
        A Deferred that fires (with L{None}) once the underlying connection
        is lost.
        """
        d: Deferred[None] = Deferred()
        if self._state == _CLOSED:
            d.callback(None)
        else:
            self._closedWaiters.append(d)
        return d

    @property
    def streamCount(self) -> int:
        """
        Number of open streams, both directions.
        """
        return len(self._streams)

    # -- IProtocol ---------------------------------------------------------

    def connectionMade(self) -> None:
        config = self.config
        self._decoder = FrameDecoder(self, max(config.maxWindow, INITIAL_WINDOW))
        try:
            self.transport.registerProducer(self, True)
            self._registered = True
        except RuntimeError:
            log.info("yamux: transport already has a producer; no write push-back")
        if config.keepAliveInterval is not None:
            self._keepAlive()

    def dataReceived(self, data: bytes) -> None:
        if self._state == _CLOSED:
            return
        self._lastReceived = self.clock.seconds()
        wasCorked = self._corked
        self._corked = True
        try:
            self._decoder.feed(data)
        except YamuxProtocolError as e:
            self._protocolError(str(e))
        finally:
            if not wasCorked:
                self._corked = False
                self._flush()

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        if self._state == _CLOSED:
            return
        self._outbox = []
        self._outboxBytes = 0
        self._corked = False
        self._shutdown(Failure(ConnectionLost(f"yamux connection lost: {reason.value}")))
        self._state = _CLOSED
        self._closeReason = reason
        # the callback refers to whoever owns the session (the host's
        # connection, which refers back to the session)
        self.onStream = None
        waiters, self._closedWaiters = self._closedWaiters, []
        for d in waiters:
            d.callback(None)

    # -- IPushProducer (the transport pushing back on us) ------------------

    def pauseProducing(self) -> None:
        if self._transportPaused:
            return
        self._transportPaused = True
        for stream in list(self._producers):
            stream._transportPushBack()

    def resumeProducing(self) -> None:
        if not self._transportPaused:
            return
        self._transportPaused = False
        # Streams with data held back go first, in turn, until the
        # transport pushes back again.
        blocked = self._blocked
        while blocked and not self._transportPaused:
            stream = blocked.popleft()
            stream._blockedQueued = False
            stream._flushBuffer()
        for stream in list(self._producers):
            stream._transportPushBack()

    def stopProducing(self) -> None:
        pass

    # -- IFrameHandler (called by the decoder) -----------------------------

    def frameReceived(self, type: int, flags: int, streamID: int, length: int) -> None:
        if type == TYPE_DATA or type == TYPE_WINDOW_UPDATE:
            stream = self._streams.get(streamID)
            if flags & FLAG_SYN:
                stream = self._acceptSyn(type, streamID, stream)
                if stream is not None and type == TYPE_WINDOW_UPDATE:
                    self._windowUpdate(stream, length, flags)
            elif stream is not None:
                if flags & FLAG_ACK:
                    stream._acked()
                if type == TYPE_WINDOW_UPDATE:
                    self._windowUpdate(stream, length, flags)
            if type == TYPE_DATA:
                if stream is not None and length > stream._recvCredit:
                    raise YamuxProtocolError(
                        f"stream {streamID} sent {length} bytes with a window of "
                        f"{stream._recvCredit}"
                    )
                self._dataStream = stream
            elif stream is not None:
                self._streamFlags(stream, flags)
        elif type == TYPE_PING:
            if flags & FLAG_SYN:
                # A peer that does not read its pongs (our transport
                # pushes back) gets a few more, then none until it reads:
                # they would pile up here.  A few, not none: a peer that
                # reads but is behind on a bulk transfer keeps its
                # keep-alive.
                if not self._transportPaused:
                    self._pongsWhilePaused = 0
                if self._pongsWhilePaused < MAX_PONGS_WHILE_PAUSED:
                    if self._transportPaused:
                        self._pongsWhilePaused += 1
                    self._send(pingFrame(FLAG_ACK, length))
            elif flags & FLAG_ACK:
                self._pong(length)
        else:  # TYPE_GO_AWAY
            if self._remoteGoAway is None:
                self._remoteGoAway = length
                if length == GO_AWAY_NORMAL:
                    log.debug("yamux peer {peer} sent GoAway", peer=self._peer())
                else:
                    peerLog.info(
                        self.clock,
                        "goaway error",
                        "yamux peer {peer} sent GoAway with error code {code}",
                        peer=self._peer(),
                        limitBy=connectionKey(self.transport),
                        code=length,
                    )

    def payloadReceived(self, streamID: int, data: bytes) -> None:
        stream = self._dataStream
        if stream is not None:
            stream._received(data)

    def payloadFinished(self, flags: int, streamID: int) -> None:
        stream = self._dataStream
        self._dataStream = None
        if stream is not None:
            self._streamFlags(stream, flags)

    # -- internals ---------------------------------------------------------

    def _acceptSyn(
        self, type: int, streamID: int, existing: YamuxStream | None
    ) -> YamuxStream | None:
        if existing is not None:
            raise YamuxProtocolError(f"duplicate SYN for stream {streamID}")
        if streamID == 0 or (streamID & 1) == (1 if self.isClient else 0):
            raise YamuxProtocolError(
                f"stream {streamID} opened by the peer has our parity "
                "(both endpoints are clients or servers)"
            )
        if self._state != _OPEN or self._localGoAway:
            self._send(windowUpdateFrame(FLAG_RST, streamID, 0))
            return None
        if self._inbound >= self.config.maxInboundStreams:
            peerLog.debug(
                self.clock,
                "too many streams",
                "yamux peer {peer} exceeded {limit} inbound streams; "
                "resetting stream {streamID}",
                peer=self._peer(),
                limitBy=connectionKey(self.transport),
                limit=self.config.maxInboundStreams,
                streamID=streamID,
            )
            self._send(windowUpdateFrame(FLAG_RST, streamID, 0))
            return None
        stream = YamuxStream(self, streamID, False)
        self._streams[streamID] = stream
        self._inbound += 1
        self._send(
            windowUpdateFrame(FLAG_ACK, streamID, stream._recvWindow - INITIAL_WINDOW)
        )
        try:
            self.onStream(stream)
        except Exception:
            log.failure("yamux onStream callback failed for stream {streamID}",
                        streamID=streamID)
            stream.abortConnection()
            return None
        if stream._finished:
            return None
        return stream

    def _windowUpdate(self, stream: YamuxStream, delta: int, flags: int) -> None:
        if flags & FLAG_RST or not delta:
            return
        window = stream._sendWindow + delta
        if window > MAX_UINT32:
            raise YamuxProtocolError(
                f"window update overflows the send window of stream {stream.streamID}"
            )
        stream._sendWindow = window
        if stream._sendBuffered:
            stream._flushBuffer()
        elif stream.producer is not None and not stream.streamingProducer:
            stream._schedulePull()

    def _streamFlags(self, stream: YamuxStream, flags: int) -> None:
        if stream._finished:
            return
        if flags & FLAG_RST:
            stream._remoteReset()
        elif flags & FLAG_FIN:
            stream._remoteFin()

    def _sendSyn(self, stream: YamuxStream) -> None:
        self._unacked += 1
        stream._awaitingAck = True
        stream._synPending = False
        self._send(
            windowUpdateFrame(
                FLAG_SYN, stream.streamID, stream._recvWindow - INITIAL_WINDOW
            )
        )
        timeout = self.config.streamOpenTimeout
        if timeout is not None:
            stream._timer = self.clock.callLater(timeout, stream._openTimedOut)

    def _ackDone(self) -> None:
        self._unacked -= 1
        queue = self._synQueue
        while queue and self._unacked < self.config.acceptBacklog:
            stream = queue.popleft()
            if stream._finished or not stream._synPending:
                continue
            self._sendSyn(stream)
            stream._flushBuffer()

    def _forget(self, stream: YamuxStream) -> None:
        if self._streams.pop(stream.streamID, None) is None:
            return
        if stream.outbound:
            self._outbound -= 1
        else:
            self._inbound -= 1
        self._producers.discard(stream)
        if stream._awaitingAck:
            stream._awaitingAck = False
            self._ackDone()

    def _send(self, frame: bytes) -> None:
        if self._state == _CLOSED:
            return
        if self._corked:
            self._outbox.append(frame)
            self._outboxBytes += len(frame)
            if self._outboxBytes >= CORK_BYTES:
                self._flush()
        else:
            self.transport.write(frame)

    def _sendParts(self, parts) -> None:
        if self._state == _CLOSED:
            return
        if self._corked:
            self._outbox.extend(parts)
            for part in parts:
                self._outboxBytes += len(part)
            if self._outboxBytes >= CORK_BYTES:
                self._flush()
        else:
            # One joined write: parts may be memoryviews, which only some
            # transports accept in writeSequence (TLS joins them anyway).
            self.transport.write(b"".join(parts))

    def _flush(self) -> None:
        outbox = self._outbox
        if outbox:
            self._outbox = []
            self._outboxBytes = 0
            self.transport.write(outbox[0] if len(outbox) == 1 and type(outbox[0]) is bytes else b"".join(outbox))

    def _peer(self) -> object:
        try:
            return self.transport.getPeer()
        except Exception:
            return None

    def _protocolError(self, reason: str) -> None:
        peerLog.warn(
            self.clock,
            "protocol error",
            "yamux protocol error from {peer}: {reason}; closing the session",
            peer=self._peer(),
            limitBy=connectionKey(self.transport),
            reason=reason,
        )
        if self._state != _OPEN:
            return
        self._localGoAway = True
        self._send(goAwayFrame(GO_AWAY_PROTOCOL_ERROR))
        self._shutdown(Failure(ConnectionLost(f"yamux protocol error: {reason}")))
        self._corked = False
        self._flush()
        self._loseTransport()

    def _loseTransport(self) -> None:
        """
        Close the transport.  We are its producer: a transport that still
        has a producer waits for it to go before closing (TCP, TLS), so
        unregister first.
        """
        if self._registered:
            self._registered = False
            self.transport.unregisterProducer()
        self.transport.loseConnection()

    def _shutdown(self, reason: Failure) -> None:
        """
        Stop the session: no more frames are processed, every stream and
        pending ping is lost with C{reason}.
        """
        if self._state == _OPEN:
            self._state = _CLOSING
        if self._decoder is not None:
            self._decoder.stop()
        if self._keepAliveCall is not None and self._keepAliveCall.active():
            self._keepAliveCall.cancel()
        self._keepAliveCall = None
        self._synQueue.clear()
        self._blocked.clear()
        pings, self._pings = self._pings, {}
        for sentAt, d, timeout in pings.values():
            if timeout.active():
                timeout.cancel()
            d.errback(Failure(ConnectionLost("yamux session closed before pong")))
        for stream in list(self._streams.values()):
            stream._finish(reason)

    def _pong(self, pingID: int) -> None:
        entry = self._pings.pop(pingID, None)
        if entry is None:
            return
        sentAt, d, timeout = entry
        if timeout.active():
            timeout.cancel()
        self.rtt = max(self.clock.seconds() - sentAt, 0.0)
        d.callback(self.rtt)

    def _pingTimedOut(self, pingID: int) -> None:
        entry = self._pings.pop(pingID, None)
        if entry is not None:
            entry[1].errback(Failure(TimeoutError("yamux ping timed out")))

    def _keepAlive(self) -> None:
        self._keepAliveCall = None
        if self._state != _OPEN:
            return
        d = self.ping()
        d.addCallbacks(self._keepAliveOK, self._keepAliveFailed)

    def _keepAliveOK(self, rtt: float) -> None:
        if self._state == _OPEN and self.config.keepAliveInterval is not None:
            self._keepAliveCall = self.clock.callLater(
                self.config.keepAliveInterval, self._keepAlive
            )

    def _keepAliveFailed(self, reason: Failure) -> None:
        if self._state != _OPEN:
            return
        if reason.check(TimeoutError) and self.clock.seconds() - self._lastReceived < self.config.pingTimeout:
            # Bytes came in while we waited: the peer is alive, its pong is
            # queued behind the data it sends (a bulk transfer on a loaded
            # machine takes longer than the ping timeout to drain).  Only a
            # peer silent for a whole ping timeout is given up on.
            self._keepAlive()
            return
        log.info(
            "yamux keepalive to {peer} failed: {reason}; closing the session",
            peer=self._peer(),
            reason=str(reason.value),
        )
        self._shutdown(Failure(ConnectionLost("yamux keepalive timed out")))
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            self._loseTransport()


def _failed(error: Exception) -> Deferred:
    d: Deferred = Deferred()
    d.errback(Failure(error))
    return d

