"""
One yamux stream: an L{ITransport} for the application protocol on top of
a L{tau.protocols.yamux.YamuxSession}.

Import L{YamuxStream} from L{tau.protocols.yamux}; streams are only made by
the session.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionAborted, ConnectionDone, TimeoutError
from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IHalfCloseableProtocol,
    IProducer,
    IProtocol,
    IPushProducer,
    ITransport,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tau.protocols.yamuxframe import (
    FLAG_FIN,
    FLAG_RST,
    HEADER,
    TYPE_DATA,
    VERSION,
    StreamReset,
    windowUpdateFrame,
)
from tau.ratelog import PeerLog, connectionKey

if TYPE_CHECKING:
    from tau.protocols.yamux import YamuxSession

__all__ = ["YamuxStream"]

log = Logger()
peerLog = PeerLog(log)

_pack = HEADER.pack

#: Most bytes sent in one transport write before checking whether the
#: transport pushed back.
_BURST = 256 * 1024


@implementer(ITransport, IPushProducer, IConsumer)
class YamuxStream:
    """
    A yamux stream.

    As a transport: L{write} sends within the peer's window and buffers the
    rest; L{loseConnection} half-closes (FIN) once the buffer is sent;
    L{abortConnection} resets (RST).  The remote's FIN calls
    C{readConnectionLost()} on a protocol providing
    L{IHalfCloseableProtocol}; C{connectionLost(reason)} comes once both
    sides sent FIN (L{ConnectionDone}), on a reset (L{StreamReset} from the
    peer, L{ConnectionAborted} from us) or when the session goes away.

    As a push producer (for the reading side): while paused, received data
    is buffered and no window updates are sent, so the peer stalls after
    one window.  L{stopProducing} resets the stream.

    On a stream the peer opened, received bytes not consumed yet count in
    the session's receive budget (L{tau.resources.ReceiveBudget}): those
    buffered here, and those the protocol on top declares with L{reserve}
    and L{release}.  A stream that would exceed it, or holds the most when
    another would, is reset.  Streams we open are not counted: how many
    there are and how much their readers ask for is our choice.

    As a consumer: a registered streaming producer is paused while written
    data waits for send window (or the session's transport pushes back); a
    pull producer is asked for more whenever the window has room.

    @ivar streamID: the yamux stream ID.
    @ivar outbound: C{True} if we opened the stream.
    @ivar protocol: the application protocol, or L{None} until
        L{setProtocol}.
    """

    def __init__(self, session: YamuxSession, streamID: int, outbound: bool) -> None:
        config = session.config
        self.session = session
        self.streamID = streamID
        self.outbound = outbound
        self.protocol: IProtocol | None = None
        self.producer: IProducer | None = None
        self.streamingProducer = False
        self._maxFrame = config.maxFramePayload
        self._finished = False
        self._finishReason: Failure | None = None
        # sending
        self._sendWindow = 256 * 1024
        self._sendBuffer: deque = deque()
        self._sendBuffered = 0
        self._drainWaiters: list[Deferred[None]] = []
        self._finishWaiters: list[Deferred[None]] = []
        self._synPending = False
        self._awaitingAck = False
        self._finQueued = False
        self._localClosed = False
        self._producerPaused = False
        self._blockedQueued = False
        self._pullCall: IDelayedCall | None = None
        self._timer: IDelayedCall | None = None
        self._closeTimer: IDelayedCall | None = None
        # receiving
        self._recvWindow = config.initialWindow
        self._recvCredit = config.initialWindow
        self._recvBuffer: list[bytes] = []
        self._recvBuffered = 0
        self._readPaused = False
        self._budget = None if outbound else session.budget
        self._overBudget = False
        self._remoteClosed = False
        self._remoteFinDelivered = False
        self._lastUpdate = session.clock.seconds()

    def __repr__(self) -> str:
        return f"<YamuxStream {self.streamID} {'out' if self.outbound else 'in'}>"

    # -- attaching a protocol ----------------------------------------------

    def setProtocol(self, protocol: IProtocol) -> None:
        """
        Attach C{protocol} (or replace the current one): call its
        C{makeConnection(self)}, then deliver data and a FIN that arrived
        before it was attached.
        """
        self.protocol = protocol
        protocol.makeConnection(self)
        if self._finished:
            self.protocol = None
            protocol.connectionLost(self._finishReason)
            return
        self._drain()

    # -- ITransport --------------------------------------------------------

    @property
    def disconnecting(self) -> bool:
        return self._finQueued or self._finished

    @property
    def disconnected(self) -> bool:
        return self._finished

    def write(self, data: bytes) -> None:
        """
        Send C{data}; what does not fit the peer's window is buffered.
        Ignored after L{loseConnection} or once the stream is closed.
        """
        if isinstance(data, str):
            raise TypeError("Data must be bytes, not str")
        if self._finQueued or self._finished or not data:
            return
        n = len(data)
        window = self._sendWindow
        if (
            n <= window
            and n <= self._maxFrame
            and not self._sendBuffered
            and not self._synPending
            and not self.session._transportPaused
        ):
            # The common case: one frame, header and payload in one write
            # (joined once, by the session).
            self._sendWindow = window - n
            self.session._sendParts((_pack(VERSION, TYPE_DATA, 0, self.streamID, n), data))
            return
        self._sendBuffer.append(data)
        self._sendBuffered += n
        self._flushBuffer()

    def writeSequence(self, iovec) -> None:
        self.write(b"".join(iovec))

    def loseConnection(self) -> None:
        """
        Half-close: send FIN once the buffered data is sent.  Reading goes
        on until the peer's FIN.
        """
        if self._finQueued or self._finished:
            return
        self._finQueued = True
        if not self._sendBuffered and not self._synPending:
            self._sendFin()

    loseWriteConnection = loseConnection

    def whenFinished(self) -> Deferred[None]:
        """
        A Deferred that fires once the stream is over (closed both ways or
        reset), after its protocol's C{connectionLost}.
        """
        d: Deferred[None] = Deferred()
        if self._finished:
            d.callback(None)
        else:
            self._finishWaiters.append(d)
        return d

    def whenDrained(self) -> Deferred[None]:
        """
        A Deferred that fires once nothing written waits for the peer's
        window any more (at once if nothing does), or the stream closed.
        """
        d: Deferred[None] = Deferred()
        if self._sendBuffered and not self._finished:
            self._drainWaiters.append(d)
        else:
            d.callback(None)
        return d

    def abortConnection(self) -> None:
        """
        Reset the stream (RST), dropping buffered data both ways.
        """
        if self._finished:
            return
        if not self._synPending:
            self.session._send(windowUpdateFrame(FLAG_RST, self.streamID, 0))
        self._finish(Failure(ConnectionAborted("yamux stream reset locally")))

    def getPeer(self):
        return self.session.transport.getPeer()

    def getHost(self):
        return self.session.transport.getHost()

    # -- IConsumer ---------------------------------------------------------

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        if self.producer is not None:
            raise RuntimeError(
                f"Cannot register producer {producer!r}, because producer "
                f"{self.producer!r} was never unregistered."
            )
        if self._finished:
            producer.stopProducing()
            return
        self.producer = producer
        self.streamingProducer = bool(streaming)
        self._producerPaused = False
        self.session._producers.add(self)
        if streaming:
            self._updateProducer()
        else:
            self._schedulePull()

    def unregisterProducer(self) -> None:
        self.producer = None
        self._producerPaused = False
        self.session._producers.discard(self)
        if self._pullCall is not None:
            if self._pullCall.active():
                self._pullCall.cancel()
            self._pullCall = None

    # -- IPushProducer (reading side) --------------------------------------

    def pauseProducing(self) -> None:
        self._readPaused = True

    def resumeProducing(self) -> None:
        if not self._readPaused:
            return
        self._readPaused = False
        self._drain()

    def stopProducing(self) -> None:
        self.abortConnection()

    # -- receive budget ----------------------------------------------------

    def reserve(self, n: int) -> bool:
        """
        The protocol holds C{n} more received bytes (a buffer, a message
        being filled); they count in the connection's and the peer's
        receive budgets until L{release}d or the stream is closed.

        @return: False when the stream is closed or was reset for it (the
            protocol should not keep the bytes).
        """
        if self._finished or self._overBudget:
            return False
        return self._budget is None or self._budget.charge(self, n)

    def release(self, n: int) -> None:
        """
        The protocol let go of C{n} bytes it L{reserve}d.
        """
        if self._budget is not None:
            self._budget.release(self, n)

    def overBudget(self, budget) -> None:
        """
        Called by a receive budget when this stream holds the most of it
        and it is exceeded: drop what is buffered here and take no more at
        once, and reset the stream in the next reactor turn.  Not at once:
        the protocol's C{connectionLost} would run inside the call that
        charged the budget (maybe another stream's C{dataReceived}), and
        the tracebacks it makes would keep that call's frames and their
        buffers alive.
        """
        log.info(
            "yamux stream {streamID} from {peer} holds {size} bytes of the {limit} of the {name} receive budget; resetting",
            streamID=self.streamID,
            peer=self.session._peer(),
            size=budget.held(self),
            limit=budget.limit,
            name=budget.name,
        )
        self._overBudget = True
        self._budget.drop(self)
        self._recvBuffer = []
        self._recvBuffered = 0
        self.session.clock.callLater(0, self.abortConnection)

    # -- called by the session ---------------------------------------------

    def _received(self, data: bytes) -> None:
        if self._finished or self._remoteClosed or self._overBudget:
            return
        self._recvCredit -= len(data)
        if self._readPaused or self.protocol is None or self._recvBuffered:
            if self._budget is not None and not self._budget.charge(self, len(data)):
                return
            self._recvBuffer.append(data)
            self._recvBuffered += len(data)
            return
        self._deliver(data)
        if not self._finished:
            self._maybeUpdateWindow()

    def _remoteFin(self) -> None:
        if self._remoteClosed:
            return
        self._remoteClosed = True
        if self.protocol is not None and not self._readPaused and not self._recvBuffered:
            self._deliverFin()

    def _remoteReset(self) -> None:
        self._finish(Failure(StreamReset("yamux stream reset by peer")))

    def _acked(self) -> None:
        if self._awaitingAck:
            self._awaitingAck = False
            self._cancelTimer()
            self.session._ackDone()

    def _openTimedOut(self) -> None:
        self._timer = None
        if self._awaitingAck and not self._finished:
            peerLog.info(
                self.session.clock,
                "open not acknowledged",
                "yamux stream {streamID} to {peer} not acknowledged in time; resetting",
                streamID=self.streamID,
                peer=self.session._peer(),
                limitBy=connectionKey(self.session.transport),
            )
            self.session._send(windowUpdateFrame(FLAG_RST, self.streamID, 0))
            self._finish(Failure(TimeoutError("yamux stream open timed out")))

    def _closeTimedOut(self) -> None:
        self._closeTimer = None
        if not self._finished:
            peerLog.info(
                self.session.clock,
                "no FIN",
                "yamux stream {streamID}: no FIN from {peer} after ours; resetting",
                streamID=self.streamID,
                peer=self.session._peer(),
                limitBy=connectionKey(self.session.transport),
            )
            self.session._send(windowUpdateFrame(FLAG_RST, self.streamID, 0))
            self._finish(Failure(TimeoutError("yamux stream close timed out")))

    def _flushBuffer(self) -> None:
        """
        Send buffered data within the window, in bursts, until the session's
        transport pushes back; then FIN if one is queued.
        """
        if self._synPending or self._finished:
            return
        session = self.session
        if self._sendBuffered and self._sendWindow:
            buf = self._sendBuffer
            maxFrame = self._maxFrame
            sid = self.streamID
            while self._sendBuffered and self._sendWindow:
                if session._transportPaused:
                    if not self._blockedQueued:
                        self._blockedQueued = True
                        session._blocked.append(self)
                    break
                parts = []
                burst = min(self._sendWindow, self._sendBuffered, _BURST)
                remaining = burst
                while remaining:
                    k = min(remaining, maxFrame)
                    parts.append(_pack(VERSION, TYPE_DATA, 0, sid, k))
                    need = k
                    while need:
                        chunk = buf[0]
                        size = len(chunk)
                        if size <= need:
                            buf.popleft()
                            parts.append(chunk)
                            need -= size
                        else:
                            view = memoryview(chunk)
                            parts.append(view[:need])
                            buf[0] = view[need:]
                            need = 0
                    remaining -= k
                self._sendBuffered -= burst
                self._sendWindow -= burst
                session._sendParts(parts)
                if self._finished:
                    return
        if self._sendBuffered:
            self._updateProducer()
            return
        if self._drainWaiters:
            self._drained()
            if self._sendBuffered or self._finished:
                # a waiter wrote again (and maybe closed) from its callback:
                # that data is queued and goes first, the FIN after it
                return
        if self._finQueued and not self._localClosed:
            self._sendFin()
        if self.producer is not None:
            if self.streamingProducer:
                self._updateProducer()
            else:
                self._schedulePull()

    def _finish(self, reason: Failure) -> None:
        """
        The stream is over: forget it and tell the protocol.
        """
        if self._finished:
            return
        self._finished = True
        self._finishReason = reason
        self._cancelTimer()
        if self._closeTimer is not None:
            if self._closeTimer.active():
                self._closeTimer.cancel()
            self._closeTimer = None
        if self._pullCall is not None:
            if self._pullCall.active():
                self._pullCall.cancel()
            self._pullCall = None
        self._sendBuffer.clear()
        self._sendBuffered = 0
        self._drained()
        self._recvBuffer = []
        self._recvBuffered = 0
        if self._budget is not None:
            self._budget.drop(self)
        self.session._forget(self)
        producer, self.producer = self.producer, None
        if producer is not None:
            try:
                producer.stopProducing()
            except Exception:
                log.failure("stopProducing failed on stream {streamID}",
                            streamID=self.streamID)
        protocol, self.protocol = self.protocol, None
        if protocol is not None:
            # no reference back: what the protocol holds goes with it
            try:
                protocol.connectionLost(reason)
            except Exception:
                log.failure("connectionLost failed on yamux stream {streamID}",
                            streamID=self.streamID)
        waiters, self._finishWaiters = self._finishWaiters, []
        for d in waiters:
            d.callback(None)

    # -- internals ---------------------------------------------------------

    def _drained(self) -> None:
        waiters, self._drainWaiters = self._drainWaiters, []
        for d in waiters:
            d.callback(None)

    def _cancelTimer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _deliver(self, data: bytes) -> None:
        try:
            self.protocol.dataReceived(data)
        except Exception:
            log.failure(
                "protocol {protocol} failed on yamux stream {streamID}; resetting",
                protocol=self.protocol,
                streamID=self.streamID,
            )
            self.abortConnection()

    def _drain(self) -> None:
        """
        Deliver what was buffered while paused or before a protocol was
        attached, then a pending FIN, then grant window.
        """
        if self.protocol is None or self._finished or self._readPaused or self._overBudget:
            return
        if self._recvBuffered:
            data = b"".join(self._recvBuffer)
            self._recvBuffer = []
            if self._budget is not None:
                self._budget.release(self, self._recvBuffered)
            self._recvBuffered = 0
            self._deliver(data)
            if self._finished or self._readPaused or self._recvBuffered:
                return
        if self._remoteClosed:
            if not self._remoteFinDelivered:
                self._deliverFin()
        else:
            self._maybeUpdateWindow()

    def _deliverFin(self) -> None:
        self._remoteFinDelivered = True
        halfCloseable = IHalfCloseableProtocol(self.protocol, None)
        if halfCloseable is not None:
            try:
                halfCloseable.readConnectionLost()
            except Exception:
                log.failure("readConnectionLost failed on yamux stream {streamID}",
                            streamID=self.streamID)
                self.abortConnection()
                return
        if self._localClosed and not self._finished:
            self._finish(Failure(ConnectionDone("yamux stream closed")))

    def _sendFin(self) -> None:
        self._localClosed = True
        self.session._send(windowUpdateFrame(FLAG_FIN, self.streamID, 0))
        if self._remoteFinDelivered:
            self._finish(Failure(ConnectionDone("yamux stream closed")))
            return
        timeout = self.session.config.streamCloseTimeout
        if timeout is not None and self._closeTimer is None:
            self._closeTimer = self.session.clock.callLater(timeout, self._closeTimedOut)

    def _maybeUpdateWindow(self) -> None:
        if self._remoteClosed or self._finished:
            return
        window = self._recvWindow
        delta = window - self._recvCredit - self._recvBuffered
        if delta < (window >> 1):
            return
        session = self.session
        now = session.clock.seconds()
        rtt = session.rtt
        maxWindow = session.config.maxWindow
        if rtt > 0 and window < maxWindow and now - self._lastUpdate < 4 * rtt:
            # Updates come faster than 4 RTTs: the window limits throughput.
            window = min(window * 2, maxWindow)
            self._recvWindow = window
            delta = window - self._recvCredit - self._recvBuffered
        self._lastUpdate = now
        self._recvCredit += delta
        session._send(windowUpdateFrame(0, self.streamID, delta))

    def _transportPushBack(self) -> None:
        """
        The session's transport paused or resumed.
        """
        if self.streamingProducer:
            self._updateProducer()
        elif not self.session._transportPaused:
            self._schedulePull()

    def _updateProducer(self) -> None:
        producer = self.producer
        if producer is None or not self.streamingProducer:
            return
        shouldPause = bool(self._sendBuffered) or self.session._transportPaused
        if shouldPause != self._producerPaused:
            self._producerPaused = shouldPause
            if shouldPause:
                producer.pauseProducing()
            else:
                producer.resumeProducing()

    def _schedulePull(self) -> None:
        if self._pullCall is None and self.producer is not None and not self._finished:
            self._pullCall = self.session.clock.callLater(0, self._pull)

    def _pull(self) -> None:
        self._pullCall = None
        producer = self.producer
        if producer is None or self.streamingProducer or self._finished:
            return
        if self._sendBuffered or self._synPending or not self._sendWindow:
            return  # _flushBuffer reschedules once there is room
        if self.session._transportPaused:
            return  # the session reschedules when the transport resumes
        producer.resumeProducing()
        if self.producer is producer and not self._sendBuffered and self._sendWindow:
            self._schedulePull()
