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
"""

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

log = Logger()


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


class CommandRouter:
    """
    The commands of one service protocol, served on a host's streams.

    @param protocolID: e.g. C{/tns/v1}.
    @param clock: IReactorTime.
    """

    def __init__(self, protocolID, clock, *, maxMessage=MAX_MESSAGE, timeout=EXCHANGE_TIMEOUT,
                 handlerTimeout=HANDLER_TIMEOUT, maxPerPeer=MAX_PER_PEER):
        self.protocolID = protocolID
        self.clock = clock
        self.maxMessage = maxMessage
        self.timeout = timeout
        self.handlerTimeout = handlerTimeout
        self.maxPerPeer = maxPerPeer
        self._handlers = {"ping": self._ping}
        self._any = None
        self._open = {}

    def define(self, name, handler):
        """
        Serve command C{name} with C{async def handler(peer, body)}: C{body}
        a dict with text keys, the answer a dict with text keys or None.
        An exception is answered as an error naming it.
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
        host.setStreamHandler(self.protocolID, self.serve)

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
            await self._exchange(stream, peer)
        finally:
            self._open[peer] -= 1
            if not self._open[peer]:
                del self._open[peer]

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
        try:
            answer = await running
            reply = encodeResponse(answer)
        except Exception as e:
            log.debug("{protocol}: {command} from {peer} failed: {why}", protocol=self.protocolID,
                      command=name, peer=str(peer), why=repr(e))
            reply = encodeErrorResponse(f'router: executing command "{name}" failed: {e}')
        if len(reply) > self.maxMessage + 14:
            reply = encodeErrorResponse(f'router: executing command "{name}" failed: answer of {len(reply)} bytes, limit {self.maxMessage}')
        self._answer(stream, reply)

    def _answer(self, stream, frame):
        stream.write(frame)
        stream.closeWrite()


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
    """

    def __init__(self, handlers, peerID):
        self.handlers = handlers
        self.peerID = peerID

    async def peers(self):
        return [self.peerID]

    async def call(self, name, body=None, *, peers=None):
        name, body = decodeCommand(payloadOf(encodeCommand(name, body)))
        handler = self.handlers.get(name)
        if handler is None:
            frame = encodeErrorResponse(f'router: command "{name}" not registered')
        else:
            try:
                frame = encodeResponse(await handler(self.peerID, body))
            except Exception as e:
                frame = encodeErrorResponse(f'router: executing command "{name}" failed: {e}')
        return decodeResponse(payloadOf(frame))
