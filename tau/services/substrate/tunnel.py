"""
Taubyte's HTTP tunnel (go's C{p2p/streams/tunnels/http}): one HTTP
exchange over one libp2p stream, in frames of magic C{02 fc}, version 1
(L{tau.services.frames}).

The gateway sends one channel-8 frame holding the request (a CBOR map with
int keys 1-15: method, URL, headers...), the body in channel-16 frames and
an empty channel-16 close frame at its end.  The substrate answers one
channel-1 frame C{{1: headers, 2: status}}, the body in channel-16 frames,
an empty channel-16 close frame, and closes its side.  (Go ends a response
by closing the stream alone; both ends are accepted here.)

Unlike go, every frame has a limit (the head, the count of header values,
a body frame), a malformed request is answered with a framed HTTP error
(400, 413 or 431, never unframed text) and a malformed answer becomes 502
at the gateway.  Bodies are streamed both ways with back-pressure: the
substrate's handler reads the request body as it wants it (the stream is
paused past its high water mark) and its writes wait until the stream
drains; the gateway writes the answer to its HTTP client as fast as that
client reads it.
"""

import re
from dataclasses import dataclass, field

import cbor2
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionClosed, TimeoutError
from twisted.logger import Logger

from tau.services.commands import CommandError, decodeCBOR
from tau.services.frames import CLOSE, DATA, TUNNEL_MAGIC, TUNNEL_VERSION, FrameDecoder, FrameError, encodeFrame
from tau.streams import withTimeout
from tau.webflow import WriteGate

HEAD = 1
REQUEST = 8
BODY = 16

#: the largest request or response head (CBOR bytes)
MAX_HEAD = 64 * 1024
#: the most header values in one head
MAX_HEADERS = 100
#: the largest body frame accepted (go sends 4096-byte request frames and
#: one frame per Write of a response)
MAX_CHUNK = 1 << 20
#: the size of the body frames sent
CHUNK = 64 * 1024
#: seconds one end waits for the next bytes of the other, or for the other
#: to take what it sent
IDLE_TIMEOUT = 30.0

log = Logger()

#: headers of one HTTP connection, not of the exchange: never tunnelled
HOP_BY_HOP = frozenset(["connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
                        "te", "trailer", "transfer-encoding", "upgrade"])

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(r"[\r\n\x00]")


class TunnelError(ValueError):
    """
    A tunnel frame or head that is not valid; C{status} is the HTTP status
    that answers it.
    """

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


@dataclass
class TunnelRequest:
    """
    A request as it crosses the tunnel.  C{headers} maps each name (as
    sent) to its values.
    """

    method: str
    url: str
    headers: dict = field(default_factory=dict)
    host: str = ""
    contentLength: int = -1
    remoteAddr: str = ""
    proto: str = "HTTP/1.1"


def _frame(payload, channel, type=DATA):
    return encodeFrame(payload, type, channel, TUNNEL_MAGIC, TUNNEL_VERSION)


def encodeRequest(request):
    """
    The channel-8 frame of a L{TunnelRequest}, with the 15 keys go sends.
    """
    major, minor = (int(n) for n in request.proto.partition("/")[2].split("."))
    return _frame(cbor2.dumps({
        1: request.method, 2: request.url, 3: request.proto, 4: major, 5: minor,
        6: {name: list(values) for name, values in request.headers.items()},
        7: request.contentLength, 8: None, 9: False, 10: request.host,
        11: None, 12: None, 13: None, 14: request.remoteAddr, 15: request.url,
    }), REQUEST)


def encodeHead(status, headers):
    """
    The channel-1 frame of a response head.
    """
    return _frame(cbor2.dumps({1: {name: list(values) for name, values in headers.items()}, 2: status}), HEAD)


def encodeChunk(data):
    return _frame(data, BODY)


def encodeEnd():
    """
    The end of a body: an empty close frame on channel 16.
    """
    return _frame(b"", BODY, CLOSE)


def _decodeMap(payload, what):
    try:
        value = decodeCBOR(payload)
    except CommandError as e:
        raise TunnelError(f"{what}: {e}") from None
    if not isinstance(value, dict):
        raise TunnelError(f"{what} is a {type(value).__name__}, expected a map")
    return value


def _headers(value, maxHeaders):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TunnelError(f"headers are a {type(value).__name__}, expected a map")
    headers = {}
    count = 0
    for name, values in value.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise TunnelError(f"header name {name!r} is not a token")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise TunnelError(f"header {name} is not a list of text")
        count += len(values)
        if count > maxHeaders:
            raise TunnelError(f"more than {maxHeaders} header values", 431)
        for v in values:
            if _BAD_VALUE.search(v):
                raise TunnelError(f"header {name} has a line break or NUL")
        headers[name] = values
    return headers


def _text(value, key, what):
    if not isinstance(value, str):
        raise TunnelError(f"{what} key {key} is a {type(value).__name__}, expected text")
    return value


def decodeRequest(payload, maxHeaders=MAX_HEADERS):
    """
    The L{TunnelRequest} of a channel-8 payload.

    @raise TunnelError: when it is not a request (431 for too many headers).
    """
    value = _decodeMap(payload, "the request")
    method = _text(value.get(1), 1, "the request")
    if not _TOKEN.match(method):
        raise TunnelError(f"method {method!r} is not a token")
    url = _text(value.get(2), 2, "the request")
    if not url.startswith("/") or _BAD_VALUE.search(url) or " " in url:
        raise TunnelError(f"URL {url!r} is not a path")
    contentLength = value.get(7, -1)
    if not isinstance(contentLength, int) or isinstance(contentLength, bool) or contentLength < -1:
        raise TunnelError(f"content length {contentLength!r}")
    return TunnelRequest(
        method=method, url=url, headers=_headers(value.get(6), maxHeaders),
        host=_text(value.get(10, ""), 10, "the request"), contentLength=contentLength,
        remoteAddr=_text(value.get(14, ""), 14, "the request"),
        proto=_text(value.get(3, "HTTP/1.1"), 3, "the request"),
    )


def decodeHead(payload, maxHeaders=MAX_HEADERS):
    """
    C{(status, headers)} of a channel-1 payload.

    @raise TunnelError: when it is not a head, or its status is outside
        100-999 (go's frontend answers those with 500).
    """
    value = _decodeMap(payload, "the response head")
    status = value.get(2)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 999:
        raise TunnelError(f"status {status!r} outside 100-999")
    return status, _headers(value.get(1), maxHeaders)


class TunnelDecoder:
    """
    Tunnel frames out of a byte stream, as events: C{("request",
    TunnelRequest)}, C{("head", (status, headers))}, C{("chunk", bytes)},
    C{("end", None)}.  C{incoming} is the head channel it expects (8 on the
    substrate, 1 on the gateway).  After a L{TunnelError} it is spent.
    """

    def __init__(self, incoming, maxHead=MAX_HEAD, maxHeaders=MAX_HEADERS, maxChunk=MAX_CHUNK):
        self.incoming = incoming
        self.maxHeaders = maxHeaders
        self._frames = FrameDecoder(maxChunk, TUNNEL_MAGIC, TUNNEL_VERSION, channelLimits={incoming: maxHead})
        self._state = "head"

    def feed(self, data):
        try:
            frames = self._frames.feed(data)
        except FrameError as e:
            # too big: a head frame is 431, a body frame 413, whether or not
            # the head came in the same bytes
            tooBig = e.channel is not None
            headBig = tooBig and e.channel == self.incoming and self._state == "head"
            raise TunnelError(str(e), 431 if headBig else 413 if tooBig else 400) from None
        events = []
        for frame in frames:
            events.append(self._event(frame))
        return events

    def _event(self, frame):
        state = self._state
        if state == "done":
            raise TunnelError("a frame after the end of the body")
        if frame.channel == self.incoming and frame.type == DATA and state == "head":
            self._state = "body"
            if self.incoming == REQUEST:
                return ("request", decodeRequest(frame.payload, self.maxHeaders))
            return ("head", decodeHead(frame.payload, self.maxHeaders))
        if frame.channel == BODY and state == "body":
            if frame.type == DATA:
                return ("chunk", frame.payload)
            self._state = "done"
            if frame.payload:
                raise TunnelError(f"the body ended with an error: {frame.closeText()!r}")
            return ("end", None)
        raise TunnelError(f"unexpected {'close' if frame.type else 'data'} frame on channel {frame.channel} ({state})")


class _Events:
    """
    The events of one stream, read as they are wanted.
    """

    def __init__(self, stream, decoder, clock, idle):
        self.stream = stream
        self.decoder = decoder
        self.clock = clock
        self.idle = idle
        self._queue = []

    async def next(self):
        """
        The next event, or None when the stream ends cleanly.

        @raise TimeoutError: when no byte comes for C{idle} seconds.
        """
        while not self._queue:
            data = await withTimeout(self.clock, self.idle, self.stream.readSome())
            if not data:
                return None
            self._queue = self.decoder.feed(data)
        return self._queue.pop(0)


class TunnelBody:
    """
    The request body on the substrate: C{await read()} is the next chunk,
    C{b""} at its end.

    @raise TunnelError: when the gateway breaks the protocol, stops or
        resets the stream before the end of the body (400), or sends
        nothing for the idle timeout (408).
    """

    def __init__(self, events):
        self._events = events
        self.done = False

    async def read(self):
        if self.done:
            return b""
        try:
            event = await self._events.next()
        except (TunnelError, TimeoutError):
            raise
        except Exception as e:
            # the gateway reset the stream: its client went away
            raise TunnelError(f"the stream failed before the end of the body: {e}") from None
        if event is None:
            raise TunnelError("the stream ended before the end of the body")
        kind, value = event
        if kind == "end":
            self.done = True
            return b""
        return value


class TunnelResponse:
    """
    The answer on the substrate: C{head(status, headers)} once, then C{await
    write(data)} (waits while the gateway does not read, at most the idle
    timeout: then L{TimeoutError}), then C{finish()}.
    """

    def __init__(self, stream, clock, idle=IDLE_TIMEOUT, chunk=CHUNK):
        self.stream = stream
        self.clock = clock
        self.idle = idle
        self.chunk = chunk
        self.status = None
        self.finished = False

    def head(self, status, headers=None):
        if self.status is not None:
            raise RuntimeError("the head was sent already")
        self.status = status
        self.stream.write(encodeHead(status, headers or {}))

    async def write(self, data):
        if self.status is None:
            self.head(200)
        view = memoryview(data)
        for start in range(0, len(view), self.chunk):
            self.stream.write(encodeChunk(bytes(view[start:start + self.chunk])))
            await withTimeout(self.clock, self.idle, self.stream.drain())

    def finish(self):
        if self.status is None:
            self.head(200)
        self.finished = True
        self.stream.write(encodeEnd())
        self.stream.closeWrite()


async def serveTunnel(stream, handler, clock, *, idle=IDLE_TIMEOUT, maxHead=MAX_HEAD, maxHeaders=MAX_HEADERS,
                      maxChunk=MAX_CHUNK):
    """
    Serve one tunnelled request on C{stream}: C{await handler(request,
    body, response)} with a L{TunnelRequest}, a L{TunnelBody} and a
    L{TunnelResponse}.  A malformed request is answered with its status, a
    gateway silent for C{idle} seconds with 408; a handler that fails is
    answered 500.  A stream that ends or is reset before the request ends
    quietly.  After the head was sent, any of these resets the stream.
    """
    events = _Events(stream, TunnelDecoder(REQUEST, maxHead, maxHeaders, maxChunk), clock, idle)
    response = TunnelResponse(stream, clock, idle)
    try:
        try:
            try:
                event = await events.next()
            except ConnectionClosed:
                # reset before any request: a gateway that chose another
                # substrate (go resets the streams it did not pick)
                return
            if event is None:
                return
            await handler(event[1], TunnelBody(events), response)
        except TimeoutError as e:
            raise TunnelError(f"idle: {e}", 408) from None
        if not response.finished:
            response.finish()
    except TunnelError as e:
        log.info("tunnel from {peer}: {error}", peer=stream.remotePeer, error=str(e))
        _fail(stream, response, e.status, str(e))
    except Exception:
        log.failure("tunnel handler failed for {peer}", peer=stream.remotePeer)
        _fail(stream, response, 500, "internal error")


def _fail(stream, response, status, text):
    if response.status is not None:
        stream.reset()
        return
    response.head(status, {"Content-Type": ["text/plain; charset=utf-8"]})
    stream.write(encodeChunk(text.encode("utf-8")))
    response.finish()


def requestOf(request):
    """
    The L{TunnelRequest} of a C{twisted.web} request.
    """
    headers = {}
    for name, values in request.requestHeaders.getAllRawHeaders():
        if name.lower().decode("latin-1") not in HOP_BY_HOP:
            headers[name.decode("latin-1")] = [v.decode("latin-1") for v in values]
    length = request.getHeader(b"content-length")
    peer = request.getClientAddress()
    return TunnelRequest(
        method=request.method.decode("latin-1"), url=request.uri.decode("latin-1"), headers=headers,
        host=(request.getHeader(b"host") or b"").decode("latin-1"),
        contentLength=int(length) if length is not None and length.isdigit() else -1,
        remoteAddr=f"{getattr(peer, 'host', '')}:{getattr(peer, 'port', '')}",
        proto=request.clientproto.decode("latin-1"),
    )


async def _sendBody(request, stream, chunk, body):
    if body is None:
        content = request.content
        content.seek(0)

        async def read(size):
            return content.read(size)
    else:
        read = body.read
    while True:
        data = await read(chunk)
        if not data:
            break
        stream.write(encodeChunk(data))
        await stream.drain()
    stream.write(encodeEnd())
    # nothing more comes from this side: half-close with the end (in the
    # same write), so once the answer ends with the substrate's close the
    # stream is over both ways and the reset after it costs no frame
    stream.closeWrite()


class Unanswered(Exception):
    """
    The substrate failed before the head of its answer (L{forward} with
    C{failover}); nothing was written to the client.  C{status} is what
    would answer it: 502, or 504 for a silent substrate.
    """

    def __init__(self, message, status=502):
        super().__init__(message)
        self.status = status


def answerError(request, status):
    """
    Answer C{request} (nothing written yet) with a plain 502 or 504.
    """
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.write(b"gateway timeout\n" if status == 504 else b"bad gateway\n")
    request.finish()


async def forward(request, stream, clock, *, idle=IDLE_TIMEOUT, maxHead=MAX_HEAD, maxHeaders=MAX_HEADERS,
                  maxChunk=MAX_CHUNK, chunk=CHUNK, body=None, failover=False):
    """
    Forward the C{twisted.web} C{request} over C{stream} (a tunnel to a
    substrate) and write the answer to it, finishing it.  A malformed or
    missing answer becomes 502 before the head, a substrate silent for
    C{idle} seconds 504; after the head, either drops the client's
    connection, as does a client that reads nothing of the answer for
    C{idle} seconds.  The stream is reset when this returns (after a
    complete answer, at the end of the reactor turn, once the substrate's
    close that came with it was read).

    @param body: the request body as it comes, an object with C{async
        read(size) -> bytes} (C{b""} at its end); None: C{request.content}
        (a body twisted.web received whole).
    @param failover: raise L{Unanswered} instead of answering 502 or 504
        when the answer fails before its head, so the caller can ask
        another substrate.
    """
    stream.write(encodeRequest(requestOf(request)))
    sending = Deferred.fromCoroutine(_sendBody(request, stream, chunk, body))
    # a body that fails (its client gone, or over a limit) ends the exchange:
    # the reset stream also ends the answer below
    sending.addErrback(lambda f: stream.reset())
    gone = []
    request.notifyFinish().addErrback(lambda f: (gone.append(f), stream.reset()))
    events = _Events(stream, TunnelDecoder(HEAD, maxHead, maxHeaders, maxChunk), clock, idle)
    gate = WriteGate()
    started = ended = False
    written, length = 0, None
    try:
        while True:
            try:
                event = await events.next()
            except TunnelError as e:
                raise _Bad(str(e)) from None
            except TimeoutError as e:
                raise _Bad(f"idle: {e}", 504) from None
            except Exception as e:
                raise _Bad(f"the stream failed: {e}") from None
            if event is None:
                raise _Bad("the stream ended before the end of the answer")
            kind, value = event
            if kind == "head":
                status, headers = value
                request.setResponseCode(status)
                for name, values in headers.items():
                    if name.lower() not in HOP_BY_HOP:
                        request.responseHeaders.setRawHeaders(name, values)
                length = _announced(request, status)
                request.registerProducer(gate, True)
                started = True
            elif kind == "chunk":
                written += len(value)
                if length is not None and written > length:
                    raise _Bad(f"more than the {length} bytes of its Content-Length")
                request.write(value)
                try:
                    await withTimeout(clock, idle, gate.wait())
                except TimeoutError:
                    # a client that stops reading its answer is dropped
                    log.info("tunnel to {peer}: the client read nothing for {idle} seconds, dropped",
                             peer=stream.remotePeer, idle=idle)
                    request.unregisterProducer()
                    request.channel.transport.abortConnection()
                    return
                if gate.stopped or gone:
                    return
            else:
                if length is not None and written != length:
                    raise _Bad(f"{written} bytes where its Content-Length says {length}")
                request.unregisterProducer()
                request.finish()
                ended = True
                return
    except _Bad as e:
        if gone:
            return
        log.info("tunnel to {peer}: {error}", peer=stream.remotePeer, error=str(e))
        if started:
            request.unregisterProducer()
            request.loseConnection()
        elif failover:
            raise Unanswered(str(e), e.status) from None
        else:
            answerError(request, e.status)
    finally:
        sending.cancel()
        if ended:
            # the substrate's close comes with its end (the same read, just
            # after it): once it is in, the stream is over both ways and the
            # reset costs nothing; one that does not close is reset all the same
            clock.callLater(0, stream.reset)
        else:
            stream.reset()


def _announced(request, status):
    """
    The body length the answer's Content-Length announces (None when it
    has none, or no body follows), which the body must match: more would
    be read by the client as its next response.

    @raise _Bad: when it is not one number.
    """
    values = request.responseHeaders.getRawHeaders(b"content-length")
    if values is None or request.method == b"HEAD" or status in (204, 304) or status < 200:
        return None
    if len(set(values)) != 1 or not values[0].isdigit():
        raise _Bad(f"Content-Length {values!r}")
    return int(values[0])


class _Bad(Exception):
    """
    The substrate's answer cannot be forwarded; C{status} answers it.
    """

    def __init__(self, message, status=502):
        super().__init__(message)
        self.status = status
