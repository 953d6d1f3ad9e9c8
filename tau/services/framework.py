"""
Taubyte's command streams on a libp2p host: a service's router, and a call
to one peer.

One stream carries one exchange (go's C{p2p/streams/command}): the caller
writes one command frame and does not half-close, the service answers one
frame and closes its side, the caller resets the stream.  Every service
answers C{ping} with C{{"time": seconds}}.

Unlike go (no server timeout, a handler panic kills the node) a router
bounds what a caller can hold: the command's size, the time to send it,
the time its handler may take, and the exchanges one peer may have open
at once.  A failing handler is answered as go's router answers it and the
service carries on.

A handler may keep the stream after its answer (go's C{DefineStream}
"upgrade", e.g. substrate's C{proxy-http} then the HTTP tunnel) by
returning an L{Upgrade}: the answer is written, the stream is not closed,
and the continuation owns it from then on.
"""

from dataclasses import dataclass

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import TimeoutError
from twisted.logger import Logger

from tau.services.commands import (
    CommandError,
    decodeCommand,
    decodeResponse,
    encodeCommand,
    encodeErrorResponse,
    encodeResponse,
    payloadOf,
)
from tau.services.frames import CLOSE, FrameDecoder, FrameError
from tau.streams import withTimeout

#: the largest command or answer payload by default (bytes)
MAX_MESSAGE = 4 << 20
#: seconds a caller has to send its command, and a call to be answered
EXCHANGE_TIMEOUT = 10.0
#: seconds a handler may take
HANDLER_TIMEOUT = 30.0
#: exchanges one peer may have open with one service at once
MAX_PER_PEER = 8
#: upgraded streams (continuations running) one peer may hold at once
MAX_UPGRADED_PER_PEER = 256

log = Logger()


class Refused(Exception):
    """
    What a handler raises to answer C{{"error": its text}} as it is,
    without the router's C{executing command ... failed:} prefix (e.g.
    substrate's L{tau.services.substrate.NOT_SERVED}).
    """


class ServiceError(Exception):
    """
    A call failed before an answer came: no stream, a timeout, a frame
    or answer that is not valid.
    """


async def readFrame(stream, decoder):
    """
    The first frame on C{stream}.

    @raise FrameError: when the bytes are not a frame the decoder accepts.
    @raise ServiceError: when the stream ends first.
    """
    while True:
        data = await stream.readSome()
        if not data:
            raise ServiceError(f"the stream ended after {decoder.pending} bytes, before a whole frame")
        frames = decoder.feed(data)
        if frames:
            return frames[0]


@dataclass(frozen=True)
class Upgrade:
    """
    What a handler returns to keep the stream: C{answer} (a dict with text
    keys, or None) is written as usual, then C{await continuation(stream)}
    runs with the stream, which it must end (close or reset).  The
    handler's timeout does not cover the continuation; a continuation that
    fails has the stream reset.
    """

    answer: object
    continuation: object


class CommandRouter:
    """
    The commands of one service protocol, served on a host's streams.

    @param protocolID: e.g. C{/tns/v1}.
    @param clock: IReactorTime.
    @param maxPerPeer: exchanges under way at once per peer.
    @param maxUpgradedPerPeer: streams kept after an L{Upgrade} at once per
        peer.
    @param maxInbound: the host's cap on this protocol's inbound streams
        per peer (None: the host's default); a service whose commands
        upgrade sets it to hold both counts.
    """

    def __init__(self, protocolID, clock, *, maxMessage=MAX_MESSAGE, timeout=EXCHANGE_TIMEOUT,
                 handlerTimeout=HANDLER_TIMEOUT, maxPerPeer=MAX_PER_PEER,
                 maxUpgradedPerPeer=MAX_UPGRADED_PER_PEER, maxInbound=None):
        self.protocolID = protocolID
        self.clock = clock
        self.maxMessage = maxMessage
        self.timeout = timeout
        self.handlerTimeout = handlerTimeout
        self.maxPerPeer = maxPerPeer
        self.maxUpgradedPerPeer = maxUpgradedPerPeer
        self.maxInbound = maxInbound
        self._handlers = {"ping": self._ping}
        self._any = None
        self._open = {}
        self._upgraded = {}

    def define(self, name, handler):
        """
        Serve command C{name} with C{async def handler(peer, body)}: C{body}
        a dict with text keys, the answer a dict with text keys or None, or
        an L{Upgrade} to keep the stream after the answer.  An exception is
        answered as an error naming it.
        """
        self._handlers[name] = handler

    def defineAny(self, handler):
        """
        Serve every command, whatever its name (C{ping} included), with
        C{async def handler(peer, body)}, as Taubyte's substrate-p2p stream
        does (the name is the user's command; the body says what to run).
        """
        self._any = handler

    def commands(self):
        return sorted(self._handlers)

    def install(self, host):
        """
        Serve the protocol on C{host}.
        """
        if self.maxInbound is None:
            host.setStreamHandler(self.protocolID, self.serve)
        else:
            host.setStreamHandler(self.protocolID, self.serve, maxInbound=self.maxInbound)

    def uninstall(self, host):
        host.removeHandler(self.protocolID)

    async def _ping(self, peer, body):
        return {"time": int(self.clock.seconds())}

    async def serve(self, stream):
        peer = stream.remotePeer
        if self._open.get(peer, 0) >= self.maxPerPeer:
            log.debug("{protocol}: {peer} has {count} exchanges open, refusing another",
                      protocol=self.protocolID, peer=str(peer), count=self.maxPerPeer)
            self._answer(stream, encodeErrorResponse(f"too many exchanges at once (limit {self.maxPerPeer})"))
            return
        self._open[peer] = self._open.get(peer, 0) + 1
        try:
            continuation = await self._exchange(stream, peer)
        finally:
            _release(self._open, peer)
        if continuation is not None:
            # counted apart: a gateway tunnels many requests at once
            try:
                await continuation(stream)
            except Exception:
                log.failure("{protocol}: the stream after the answer failed for {peer}",
                            protocol=self.protocolID, peer=str(peer))
                stream.reset()
            finally:
                _release(self._upgraded, peer)

    async def _exchange(self, stream, peer):
        decoder = FrameDecoder(self.maxMessage)
        try:
            frame = await withTimeout(self.clock, self.timeout, readFrame(stream, decoder))
            if frame.type == CLOSE:
                raise CommandError(f"a close frame instead of a command ({frame.closeText()!r})")
            name, body = decodeCommand(frame.payload)
        except (FrameError, CommandError, ServiceError, TimeoutError) as e:
            log.debug("{protocol}: bad command from {peer}: {why}", protocol=self.protocolID, peer=str(peer), why=str(e))
            self._answer(stream, encodeErrorResponse(f"router: decoding command failed: {e}"))
            return
        handler = self._any or self._handlers.get(name)
        if handler is None:
            self._answer(stream, encodeErrorResponse(f'router: command "{name}" not registered'))
            return
        running = Deferred.fromCoroutine(withTimeout(self.clock, self.handlerTimeout, handler(peer, body)))
        # a caller that goes away takes its handler with it
        stream.whenClosed().addCallback(lambda _: running.cancel())
        continuation = None
        try:
            answer = await running
            if isinstance(answer, Upgrade):
                if self._upgraded.get(peer, 0) >= self.maxUpgradedPerPeer:
                    raise ServiceError(f"too many streams kept at once (limit {self.maxUpgradedPerPeer})")
                answer, continuation = answer.answer, answer.continuation
            reply = encodeResponse(answer)
        except Refused as e:
            reply, continuation = encodeErrorResponse(str(e)), None
        except Exception as e:
            log.debug("{protocol}: {command} from {peer} failed: {why}", protocol=self.protocolID,
                      command=name, peer=str(peer), why=repr(e))
            reply, continuation = encodeErrorResponse(f'router: executing command "{name}" failed: {e}'), None
        if len(reply) > self.maxMessage + 14:
            reply, continuation = encodeErrorResponse(
                f'router: executing command "{name}" failed: answer of {len(reply)} bytes, limit {self.maxMessage}'), None
        if continuation is None:
            self._answer(stream, reply)
            return None
        self._upgraded[peer] = self._upgraded.get(peer, 0) + 1
        stream.write(reply)
        return continuation

    def _answer(self, stream, frame):
        stream.write(frame)
        stream.closeWrite()


def _release(counts, peer):
    counts[peer] -= 1
    if not counts[peer]:
        del counts[peer]


async def call(host, peer, protocolID, name, body=None, *, timeout=EXCHANGE_TIMEOUT, maxMessage=MAX_MESSAGE):
    """
    Send command C{name} with C{body} to C{peer}'s C{protocolID} and return
    its answer (a dict, or None).

    @raise tau.services.commands.RemoteError: the service answered an error.
    @raise ServiceError: no answer: no stream, a timeout, bad bytes.
    """
    command = encodeCommand(name, body)

    async def exchange():
        stream = await host.newStream(peer, [protocolID], timeout=timeout)
        try:
            stream.write(command)
            frame = await readFrame(stream, FrameDecoder(maxMessage))
        finally:
            stream.reset()
        if frame.type == CLOSE:
            raise ServiceError(f"{protocolID} {name}: the service closed the stream: {frame.closeText()!r}")
        return frame

    try:
        frame = await withTimeout(host.clock, timeout, exchange())
    except (FrameError, CommandError, TimeoutError) as e:
        raise ServiceError(f"{protocolID} {name} to {peer}: {e}") from None
    except (ServiceError, CancelledError):
        raise
    except Exception as e:
        raise ServiceError(f"{protocolID} {name} to {peer}: {e.__class__.__name__}: {e}") from None
    try:
        return decodeResponse(frame.payload)
    except CommandError as e:
        raise ServiceError(f"{protocolID} {name} to {peer}: {e}") from None


class LocalCalls:
    """
    Calls to a service this node runs (C{handlers}: its router's), answered
    as over a stream (the command and the answer go through CBOR, an error
    is a L{tau.services.commands.RemoteError} with the router's text), with
    the interface of L{tau.services.discovery.ServiceClient}.

    @param ready: C{ready() -> Deferred} firing once the service serves
        (its C{whenReady}); a call made before waits for it, as a call over
        the network finds no handler until then.
    """

    def __init__(self, handlers, peerID, ready=None):
        self.handlers = handlers
        self.peerID = peerID
        self.ready = ready

    async def peers(self):
        return [self.peerID]

    async def call(self, name, body=None, *, peers=None):
        name, body = decodeCommand(payloadOf(encodeCommand(name, body)))
        handler = self.handlers.get(name)
        if handler is None:
            frame = encodeErrorResponse(f'router: command "{name}" not registered')
        else:
            try:
                if self.ready is not None:
                    await self.ready()
                frame = encodeResponse(await handler(self.peerID, body))
            except Exception as e:
                frame = encodeErrorResponse(f'router: executing command "{name}" failed: {e}')
        return decodeResponse(payloadOf(frame))
