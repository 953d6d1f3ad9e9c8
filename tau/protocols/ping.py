"""
ping (C{/ipfs/ping/1.0.0}).

The dialer writes 32 random bytes, the listener echoes them, and the dialer
measures the round trip; it may repeat on the same stream and closes its
write side when done.  The listener echoes until the end of the stream.
There is no framing.

L{PingResponder} is a raw protocol (no coroutine per chunk); L{install}
registers it on a host.  At most L{MAX_STREAMS_PER_PEER} ping streams per
peer are served at once: more are reset.
"""

from __future__ import annotations

import os
from functools import partial

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tau.ratelog import PeerLog
from tau.streams import withTimeout

__all__ = [
    "ID",
    "PING_SIZE",
    "MAX_STREAMS_PER_PEER",
    "PingError",
    "PingResponder",
    "PingService",
    "ping",
    "install",
]

ID = "/ipfs/ping/1.0.0"
PING_SIZE = 32
#: Concurrent inbound ping streams served per peer (the spec's limit).
MAX_STREAMS_PER_PEER = 2
#: An inbound ping stream idle this long is reset (go uses 60 s).
IDLE_TIMEOUT = 60.0

log = Logger()
peerLog = PeerLog(log)


class PingError(Exception):
    """
    The peer answered a ping with other bytes than those sent.
    """


@implementer(IHalfCloseableProtocol)
class PingResponder(Protocol):
    """
    Echo every complete 32-byte ping; close our side at the peer's end of
    stream.  Reset after C{idleTimeout} seconds without a ping.  While
    echoes wait for the peer's window (it does not read them), reading
    pauses: a peer gets at most one window of unread pongs.
    """

    def __init__(self, clock=None, idleTimeout: float | None = IDLE_TIMEOUT, onClose=None):
        self._clock = clock
        self._idleTimeout = idleTimeout
        self._onClose = onClose
        self._partial = b""
        self._timer = None

    def connectionMade(self) -> None:
        self._arm()

    def dataReceived(self, data: bytes) -> None:
        if self._partial:
            data = self._partial + data
        whole = len(data) - len(data) % PING_SIZE
        self._partial = data[whole:]
        if whole:
            self.transport.write(data[:whole] if whole != len(data) else data)
            whenDrained = getattr(self.transport, "whenDrained", None)
            drained = whenDrained() if whenDrained is not None else None
            if drained is not None and not drained.called:
                self.transport.pauseProducing()
                drained.addCallback(lambda _: self.transport.resumeProducing())
        self._arm()

    def readConnectionLost(self) -> None:
        self._cancel()
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self._cancel()
        onClose, self._onClose = self._onClose, None
        if onClose is not None:
            onClose()

    def _arm(self) -> None:
        if self._clock is None or self._idleTimeout is None:
            return
        if self._timer is not None and self._timer.active():
            self._timer.reset(self._idleTimeout)
        else:
            self._timer = self._clock.callLater(self._idleTimeout, self._idle)

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _idle(self) -> None:
        self._timer = None
        log.info("ping stream idle for {timeout}s; resetting", timeout=self._idleTimeout)
        self.transport.abortConnection()


class _Refuse(Protocol):
    """
    Reset the stream as soon as it is connected.
    """

    def connectionMade(self) -> None:
        self.transport.abortConnection()


class PingService:
    """
    The responder's protocol factory for a host: counts ping streams per
    peer and refuses (resets) those over C{maxPerPeer}.
    """

    def __init__(self, clock, maxPerPeer: int = MAX_STREAMS_PER_PEER,
                 idleTimeout: float | None = IDLE_TIMEOUT):
        self.clock = clock
        self.maxPerPeer = maxPerPeer
        self.idleTimeout = idleTimeout
        self._active: dict = {}

    def active(self, peerID) -> int:
        return self._active.get(peerID, 0)

    def __call__(self, stream) -> Protocol:
        peer = getattr(stream, "remotePeer", None)
        count = self._active.get(peer, 0)
        if count >= self.maxPerPeer:
            peerLog.debug(self.clock, "too many streams", "peer {peer} has {count} ping streams open; resetting another",
                          peer=str(peer), count=count)
            return _Refuse()
        self._active[peer] = count + 1
        return PingResponder(self.clock, self.idleTimeout, partial(self._closed, peer))

    def _closed(self, peer) -> None:
        count = self._active.get(peer, 0) - 1
        if count > 0:
            self._active[peer] = count
        else:
            self._active.pop(peer, None)


async def ping(host, peerID, count: int = 1, timeout: float | None = 10.0) -> list:
    """
    Ping C{peerID} C{count} times on one stream.

    @return: the round-trip times in seconds (measured with C{host.clock}).
    @raise PingError: when an echo differs from what was sent.
    @raise TimeoutError: when an echo takes longer than C{timeout} seconds.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    stream = await host.newStream(peerID, [ID], allowLimited=True)
    clock = host.clock
    rtts = []
    try:
        for _ in range(count):
            payload = os.urandom(PING_SIZE)
            start = clock.seconds()
            stream.write(payload)
            echo = await withTimeout(clock, timeout, stream.readExactly(PING_SIZE))
            if echo != payload:
                raise PingError(f"{peerID} answered a ping with other bytes")
            rtts.append(max(clock.seconds() - start, 0.0))
    except BaseException:
        stream.reset()
        raise
    stream.closeWrite()
    return rtts


def install(host, maxPerPeer: int = MAX_STREAMS_PER_PEER) -> PingService:
    """
    Serve ping on C{host}.
    """
    service = PingService(host.clock, maxPerPeer)
    host.setProtocolFactory(ID, service, allowLimited=True)
    return service
