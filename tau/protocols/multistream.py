"""
multistream-select 1.0 (C{/multistream/1.0.0}).

Two sans-IO machines, L{Dialer} and L{Listener}, that are fed bytes and
return the bytes to send and, once done, a L{Selected} with the chosen
protocol and the bytes that arrived after the negotiation (they belong to
the selected protocol).  L{MultistreamNegotiator} runs either machine on any
L{ITransport} and then hands the transport over to the next protocol, so
connection layers stack::

    raw TCP -> mss -> TLS -> mss -> yamux -> per-stream mss -> app protocol

Wire format: every message is C{uvarint(len(text) + 1) || text || "\\n"}, at
most 1024 bytes long including the newline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost, TimeoutError
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IProtocol,
    IReactorTime,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tau.protocols import varint
from tau.ratelog import PeerLog, connectionKey

__all__ = [
    "PROTOCOL_ID",
    "MAX_MESSAGE_LENGTH",
    "DEFAULT_MAX_NA",
    "MultistreamError",
    "NegotiationFailed",
    "Selected",
    "encodeMessage",
    "encodeLsResponse",
    "Dialer",
    "Listener",
    "MultistreamNegotiator",
]

PROTOCOL_ID = "/multistream/1.0.0"
NA = "na"
LS = "ls"

#: Largest message (text plus newline), as in go and js.
MAX_MESSAGE_LENGTH = 1024

#: How many proposals a listener answers with C{na} before giving up.
DEFAULT_MAX_NA = 100

log = Logger()
peerLog = PeerLog(log)


class MultistreamError(Exception):
    """
    The peer broke multistream-select: bad framing, an oversized message, an
    unexpected token or too many rounds.
    """


class NegotiationFailed(MultistreamError):
    """
    No common protocol: the listener answered C{na} to every proposal, or the
    dialer proposed more than the listener's limit of protocols.
    """


@dataclass(frozen=True)
class Selected:
    """
    The outcome of a negotiation.

    @ivar protocol: the protocol both sides agreed on.
    @ivar leftover: bytes received after the negotiation; they belong to
        C{protocol}.
    """

    protocol: str
    leftover: bytes


def encodeMessage(text: str) -> bytes:
    """
    Frame one multistream message.

    @raise ValueError: if the message would exceed L{MAX_MESSAGE_LENGTH}.
    """
    body = text.encode("utf-8") + b"\n"
    if len(body) > MAX_MESSAGE_LENGTH:
        raise ValueError(f"multistream message too long: {len(body)} bytes")
    return varint.encode(len(body)) + body


def encodeLsResponse(protocols: Iterable[str]) -> bytes:
    """
    Encode the answer to C{ls} the way js-libp2p does: one length-prefixed
    message whose payload is the protocols, each framed as a message,
    followed by a newline.
    """
    payload = b"".join(encodeMessage(p) for p in protocols) + b"\n"
    return varint.lpEncode(payload)


_HEADER = encodeMessage(PROTOCOL_ID)
_NA = encodeMessage(NA)


class _Reader:
    """
    Splits a byte stream into multistream messages (as text).
    """

    def __init__(self) -> None:
        self._lp = varint.LPDecoder(MAX_MESSAGE_LENGTH)

    def push(self, data: bytes) -> None:
        self._lp.push(data)

    def next(self) -> str | None:
        try:
            body = self._lp.next()
        except varint.VarintError as e:
            raise MultistreamError(f"bad message length: {e}") from None
        if body is None:
            return None
        if not body.endswith(b"\n"):
            raise MultistreamError("message does not end with a newline")
        try:
            return body[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise MultistreamError("message is not UTF-8") from None

    def leftover(self) -> bytes:
        return self._lp.takeUnconsumed()


class Dialer:
    """
    The initiator's side: propose protocols in order until one is accepted.

    Usage: send L{initialBytes}, then pass everything received to
    L{receive}, send what it returns, until it returns a L{Selected}.
    """

    def __init__(self, protocols: Sequence[str]) -> None:
        if not protocols:
            raise ValueError("Dialer needs at least one protocol to propose")
        for p in protocols:
            encodeMessage(p)  # validates the length
        self.protocols = list(protocols)
        self._reader = _Reader()
        self._index = 0
        self._gotHeader = False
        self.selected: Selected | None = None

    def initialBytes(self) -> bytes:
        """
        The header and the first proposal, to be sent in one write.
        """
        return _HEADER + encodeMessage(self.protocols[0])

    def receive(self, data: bytes) -> tuple[bytes, Selected | None]:
        """
        Process received bytes.

        @return: C{(toSend, selected)}; C{selected} is not L{None} once the
            negotiation is over, and no more bytes may be fed afterwards.

        @raise MultistreamError: on a protocol violation.
        @raise NegotiationFailed: when every proposal was refused.
        """
        if self.selected is not None:
            raise MultistreamError("negotiation already finished")
        reader = self._reader
        reader.push(data)
        out = []
        while (token := reader.next()) is not None:
            if not self._gotHeader:
                if token != PROTOCOL_ID:
                    raise MultistreamError(f"unexpected header {token[:64]!r}")
                self._gotHeader = True
                continue
            proposal = self.protocols[self._index]
            if token == proposal:
                self.selected = Selected(proposal, reader.leftover())
                return b"".join(out), self.selected
            if token != NA:
                raise MultistreamError(
                    f"unexpected answer {token[:64]!r} to proposal {proposal!r}"
                )
            self._index += 1
            if self._index >= len(self.protocols):
                raise NegotiationFailed(
                    f"remote supports none of {self.protocols!r}"
                )
            out.append(encodeMessage(self.protocols[self._index]))
        return b"".join(out), None


class Listener:
    """
    The responder's side: answer proposals until one is supported.

    @param protocols: the supported protocols, in the order C{ls} lists them.
    @param match: optional predicate for protocols not in C{protocols} (for
        example a version range); the proposal itself is selected.
    @param maxNa: how many refused proposals (and C{ls} requests) are
        tolerated before L{NegotiationFailed}.  Only the first C{ls} is
        answered with the list (later ones with C{na}): a dialer that does
        not read cannot make us queue the list a hundred times.
    @param eagerHeader: send the header before reading the dialer's one (as
        go does) instead of echoing it on receipt (as js does).
    """

    def __init__(
        self,
        protocols: Iterable[str],
        match: Callable[[str], bool] | None = None,
        maxNa: int = DEFAULT_MAX_NA,
        eagerHeader: bool = False,
    ) -> None:
        self.protocols = list(protocols)
        self._supported = frozenset(self.protocols)
        self._match = match
        self._maxNa = maxNa
        self._eagerHeader = eagerHeader
        self._reader = _Reader()
        self._gotHeader = False
        self._sentHeader = False
        self._refused = 0
        self._listed = False
        self.selected: Selected | None = None

    def initialBytes(self) -> bytes:
        """
        The bytes to send as soon as the connection is up: the header if
        C{eagerHeader}, else nothing.
        """
        if self._eagerHeader and not self._sentHeader:
            self._sentHeader = True
            return _HEADER
        return b""

    def _supports(self, proposal: str) -> bool:
        if proposal in self._supported:
            return True
        return self._match is not None and bool(self._match(proposal))

    def receive(self, data: bytes) -> tuple[bytes, Selected | None]:
        """
        Process received bytes.

        @return: C{(toSend, selected)} as for L{Dialer.receive}.  When
            C{selected} is set, C{toSend} ends with the echo of the protocol
            and the application data sent with the proposal (lazy select) is
            in C{selected.leftover}.

        @raise MultistreamError: on a protocol violation.
        @raise NegotiationFailed: after more than C{maxNa} refusals.
        """
        if self.selected is not None:
            raise MultistreamError("negotiation already finished")
        reader = self._reader
        reader.push(data)
        out = []
        while (token := reader.next()) is not None:
            if not self._gotHeader:
                if token != PROTOCOL_ID:
                    raise MultistreamError(f"unexpected header {token[:64]!r}")
                self._gotHeader = True
                if not self._sentHeader:
                    self._sentHeader = True
                    out.append(_HEADER)
                continue
            if token != NA and token != LS and self._supports(token):
                out.append(encodeMessage(token))
                self.selected = Selected(token, reader.leftover())
                return b"".join(out), self.selected
            self._refused += 1
            if self._refused > self._maxNa:
                raise NegotiationFailed(
                    f"dialer made more than {self._maxNa} unsupported proposals"
                )
            if token == LS and not self._listed:
                self._listed = True
                out.append(encodeLsResponse(self.protocols))
            else:
                out.append(_NA)
        return b"".join(out), None


_NEGOTIATING, _NEGOTIATED, _SWITCHED, _FAILED = range(4)


@implementer(IHalfCloseableProtocol)
class MultistreamNegotiator(Protocol):
    """
    Run a L{Dialer} or L{Listener} over any transport, then hand the
    transport to the selected protocol.

    L{whenNegotiated} fires with C{(protocolId, leftover)}.  The caller then
    calls L{switchProtocol} with the next protocol and those leftover bytes:
    the negotiator calls its C{makeConnection} with the same transport,
    feeds it the leftover bytes plus anything received in between, and from
    then on forwards every event (C{dataReceived}, C{readConnectionLost},
    C{connectionLost}).  A close that arrived before the switch is replayed
    after it, so a peer that writes and closes at once loses nothing.

    On failure the Deferred errbacks (L{MultistreamError},
    L{NegotiationFailed}, L{TimeoutError} or the connection loss) and the
    transport is aborted (or closed if it cannot abort).
    """

    def __init__(
        self,
        machine: Dialer | Listener,
        clock: IReactorTime | None = None,
        timeout: float | None = None,
    ) -> None:
        self.machine = machine
        self._clock = clock
        self._timeout = timeout
        self._timeoutCall: IDelayedCall | None = None
        self._state = _NEGOTIATING
        self._waiting: list[Deferred[tuple[str, bytes]]] = []
        self._result: tuple[str, bytes] | Failure | None = None
        self._pending: list[bytes] = []
        self._readLost = False
        self._lostReason: Failure | None = None
        self.protocol: IProtocol | None = None

    @classmethod
    def dialer(
        cls,
        protocols: Sequence[str],
        clock: IReactorTime | None = None,
        timeout: float | None = None,
    ) -> MultistreamNegotiator:
        return cls(Dialer(protocols), clock, timeout)

    @classmethod
    def listener(
        cls,
        protocols: Iterable[str],
        match: Callable[[str], bool] | None = None,
        clock: IReactorTime | None = None,
        timeout: float | None = None,
        **kwargs,
    ) -> MultistreamNegotiator:
        return cls(Listener(protocols, match, **kwargs), clock, timeout)

    # -- public API --------------------------------------------------------

    def whenNegotiated(self) -> Deferred[tuple[str, bytes]]:
        """
        A Deferred firing with C{(protocolId, leftoverBytes)}.  Each call
        returns a new Deferred; the leftover bytes are meant for the one
        caller that switches protocols.
        """
        d: Deferred[tuple[str, bytes]] = Deferred()
        if self._result is None:
            self._waiting.append(d)
        elif isinstance(self._result, Failure):
            d.errback(self._result)
        else:
            d.callback(self._result)
        return d

    def switchWhenNegotiated(
        self, makeProtocol: Callable[[str], IProtocol]
    ) -> Deferred[IProtocol]:
        """
        Once negotiated, build the next protocol with
        C{makeProtocol(protocolId)} and L{switchProtocol} to it (with the
        leftover bytes).  The Deferred fires with that protocol, or fails
        like L{whenNegotiated}; if C{makeProtocol} raises, the transport is
        aborted.
        """

        def switch(result: tuple[str, bytes]) -> IProtocol:
            protocolId, leftover = result
            try:
                protocol = makeProtocol(protocolId)
            except BaseException:
                self._abortTransport()
                raise
            self.switchProtocol(protocol, leftover)
            return protocol

        return self.whenNegotiated().addCallback(switch)

    def switchProtocol(self, protocol: IProtocol, leftover: bytes = b"") -> None:
        """
        Hand the transport to C{protocol} (see the class docstring).
        """
        if self._state != _NEGOTIATED:
            raise RuntimeError("switchProtocol needs a finished negotiation")
        self._state = _SWITCHED
        self.protocol = protocol
        protocol.makeConnection(self.transport)
        data = leftover + b"".join(self._pending) if self._pending else leftover
        self._pending = []
        if data:
            protocol.dataReceived(data)
        if self._readLost and self._lostReason is None:
            self._forwardReadLost()
        if self._lostReason is not None:
            protocol.connectionLost(self._lostReason)

    # -- IProtocol ---------------------------------------------------------

    def connectionMade(self) -> None:
        initial = self.machine.initialBytes()
        if initial:
            self.transport.write(initial)
        if self._clock is not None and self._timeout is not None:
            self._timeoutCall = self._clock.callLater(self._timeout, self._timedOut)

    def dataReceived(self, data: bytes) -> None:
        state = self._state
        if state == _SWITCHED:
            self.protocol.dataReceived(data)
            return
        if state == _NEGOTIATED:
            self._pending.append(data)
            return
        if state == _FAILED:
            return
        try:
            toSend, selected = self.machine.receive(data)
        except MultistreamError as e:
            peerLog.info(
                self._clock,
                "failed",
                "multistream negotiation with {peer} failed: {reason}",
                peer=self._peer(),
                limitBy=connectionKey(self.transport),
                reason=str(e),
            )
            self._fail(Failure(e))
            return
        if toSend:
            self.transport.write(toSend)
        if selected is not None:
            self._state = _NEGOTIATED
            self._cancelTimeout()
            self._succeed((selected.protocol, selected.leftover))

    def readConnectionLost(self) -> None:
        if self._state == _SWITCHED:
            self._forwardReadLost()
        elif self._state == _NEGOTIATED:
            self._readLost = True
        elif self._state == _NEGOTIATING:
            self._fail(
                Failure(ConnectionDone("peer closed during multistream negotiation"))
            )

    def writeConnectionLost(self) -> None:
        if self._state == _SWITCHED:
            p = IHalfCloseableProtocol(self.protocol, None)
            if p is not None:
                p.writeConnectionLost()

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self._cancelTimeout()
        if self._state == _SWITCHED:
            self.protocol.connectionLost(reason)
        elif self._state == _NEGOTIATED:
            self._lostReason = reason
        elif self._state == _NEGOTIATING:
            self._state = _FAILED
            if not reason.check(ConnectionLost, ConnectionDone):
                reason = Failure(ConnectionLost(str(reason.value)))
            self._deliver(reason)

    # -- internals ---------------------------------------------------------

    def _forwardReadLost(self) -> None:
        p = IHalfCloseableProtocol(self.protocol, None)
        if p is not None:
            p.readConnectionLost()
        else:
            # Like a TCP transport with a protocol that does not do
            # half-close: the connection goes away.
            self.transport.loseConnection()

    def _peer(self) -> object:
        try:
            return self.transport.getPeer()
        except Exception:
            return None

    def _timedOut(self) -> None:
        self._timeoutCall = None
        if self._state == _NEGOTIATING:
            peerLog.info(
                self._clock,
                "timed out",
                "multistream negotiation with {peer} timed out after {timeout}s",
                peer=self._peer(),
                limitBy=connectionKey(self.transport),
                timeout=self._timeout,
            )
            self._fail(Failure(TimeoutError("multistream negotiation timed out")))

    def _cancelTimeout(self) -> None:
        if self._timeoutCall is not None:
            if self._timeoutCall.active():
                self._timeoutCall.cancel()
            self._timeoutCall = None

    def _abortTransport(self) -> None:
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            self.transport.loseConnection()

    def _fail(self, reason: Failure) -> None:
        self._state = _FAILED
        self._cancelTimeout()
        self._abortTransport()
        self._deliver(reason)

    def _succeed(self, result: tuple[str, bytes]) -> None:
        self._deliver(result)

    def _deliver(self, result: tuple[str, bytes] | Failure) -> None:
        if self._result is not None:
            return
        self._result = result
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)
