"""
The gateway's HTTP side: a C{twisted.web} site whose requests are handed
to the gateway as soon as their headers are in, with their body streamed
(L{BodyPipe}) rather than spooled, and the limits a public listener needs.

 - Request line and headers: at most C{maxHeaders} header lines and
   C{maxHeaderBytes} bytes, in C{headerTimeout} seconds from the first
   byte; past either limit the client gets 431, past the time 408, and the
   connection is closed.  (twisted.web's own limits, 500 headers and 16 KiB
   answered 400, are set to the same values and never reached first.)
 - Body: at most C{maxBody} bytes, refused with 413 on its Content-Length
   before a byte of it is read, or once a chunked body passes it.
 - A client silent for C{idleTimeout} seconds, while it sends its request
   or between two requests, is disconnected (twisted.web's C{timeOut}).
 - At most C{maxPerClient} connections open at once from one address; one
   more is answered 429 and closed.

A body flows to the gateway as the client sends it: the pipe holds at most
L{HIGH_WATER} bytes before the client's connection is paused (TCP
back-pressure), and keeps its first C{replayBytes} so a request can be sent
again to another substrate (L{BodyPipe.rewind}).  An answer that ends
before the client sent its whole body closes the connection after it.
"""

from urllib.parse import unquote

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger
from twisted.web.http import RESPONSES, HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

#: bytes of a request body held before the client is paused
HIGH_WATER = 256 * 1024
#: seconds a refused request's client may still send (thrown away) before
#: its connection is cut
LINGER = 5.0

log = Logger()


class BodyError(Exception):
    """
    The client went away before the end of its body.
    """


class BodyPipe:
    """
    A request body as it comes: the channel L{feed}s it, the gateway
    C{await read(size)}s it (C{b""} at its end).

    @param producer: pauses and resumes the client's connection
        (C{pauseProducing}, C{resumeProducing}).
    @param replay: bytes kept from the start so L{rewind} can give them
        again.
    """

    def __init__(self, producer, replay, highWater=HIGH_WATER):
        self.producer = producer
        self.replay = replay
        self.highWater = highWater
        self._chunks = []
        self._buffered = 0
        self._kept = []
        self._keptBytes = 0
        self._position = 0  # index into _kept while replaying
        self._rewindable = True
        self.consumed = 0
        self.ended = False
        self._error = None
        self._waiter = None
        self._paused = False

    def feed(self, data):
        if self.ended or self._error is not None:
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > self.highWater and not self._paused:
            self._paused = True
            self.producer.pauseProducing()
        self._wake()

    def end(self):
        self.ended = True
        self._wake()

    def abort(self, reason="the client went away"):
        self._error = reason
        self._chunks, self._buffered = [], 0
        self._wake()

    def _wake(self):
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.callback(None)

    async def read(self, size=65536):
        """
        The next bytes of the body, at most C{size}; C{b""} at its end.

        @raise BodyError: when the client went away first.
        """
        if self._position < len(self._kept):
            data = self._kept[self._position]
            self._position += 1
            return data
        while not self._chunks:
            if self._error is not None:
                raise BodyError(self._error)
            if self.ended:
                return b""
            self._waiter = Deferred(lambda d: setattr(self, "_waiter", None))
            await self._waiter
        data = self._chunks[0]
        if len(data) > size:
            self._chunks[0] = data[size:]
            data = data[:size]
        else:
            self._chunks.pop(0)
        self._buffered -= len(data)
        self.consumed += len(data)
        if self._rewindable:
            if self._keptBytes + len(data) <= self.replay:
                self._kept.append(data)
                self._keptBytes += len(data)
                self._position = len(self._kept)
            else:
                self._rewindable = False
                self._kept, self._keptBytes, self._position = [], 0, 0
        if self._paused and self._buffered <= self.highWater // 2:
            self._paused = False
            self.producer.resumeProducing()
        return data

    def rewind(self):
        """
        Read the body again from its start: True when every byte read so
        far was kept (at most C{replay} bytes were read), else False (the
        body can no longer be sent again).
        """
        if not self._rewindable or self._error is not None:
            return False
        self._position = 0
        return True


def _answer(transport, status, message, close=True):
    body = message.encode("utf-8") + b"\n"
    head = [b"HTTP/1.1 %d %s" % (status, RESPONSES.get(status, b"Error")),
            b"Content-Type: text/plain; charset=utf-8",
            b"Content-Length: %d" % len(body)]
    if close:
        head.append(b"Connection: close")
    transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)


class GatewayRequest(Request):
    """
    A request handed to the site's C{handler(request, body)} once its
    headers are in (a request without a body: once it is whole).
    """

    defaultContentType = None
    body = None
    #: the client's connection was lost
    gone = False
    _started = False
    _received = 0

    def gotLength(self, length):
        site = self.channel.site
        self.content = None
        if length is not None and length > site.config.maxBody:
            self.channel.refuse(413, f"a body of {length} bytes, limit {site.config.maxBody}")
            return
        self.body = BodyPipe(self.channel.transport, site.config.replayBytes)

    def handleContentChunk(self, data):
        channel = self.channel
        if self.body is None or channel is None:
            # (None: answered and done, while the rest of the client's
            # bytes are still being decoded: thrown away)
            return
        self._received += len(data)
        limit = channel.site.config.maxBody
        if self._received > limit:
            if not self.startedWriting and not self.finished:
                # refused before the body is ended: the handler's own answer
                # to the end of its body (synchronous) is then dropped, and
                # does not close the connection under the client's bytes
                channel.refuse(413, f"a body of more than {limit} bytes")
            else:
                self.body.abort(f"a body of more than {limit} bytes")
                channel.transport.abortConnection()
            return
        self.body.feed(data)

    def _begin(self, command, path, version):
        if not path.startswith(b"/") and b"://" in path[:10]:
            # absolute form (RFC 9112 3.2.2): its authority is the host
            scheme, _, rest = path.partition(b"://")
            authority, slash, rest = rest.partition(b"/")
            path = slash + rest if slash else b"/"
            if path.startswith(b"?"):
                path = b"/" + path
            self.requestHeaders.setRawHeaders(b"host", [authority])
        self.method, self.uri, self.clientproto = command, path, version
        self.path = path.split(b"?", 1)[0]
        self.args = {}
        self.site = self.channel.site
        self.prepath, self.postpath = [], []
        self._started = True
        self.site.begin(self)

    def headersIn(self, command, path, version):
        """
        The request line and headers are in and a body follows: start.
        """
        if self.body is not None and not self._started:
            self._begin(command, path, version)

    def requestReceived(self, command, path, version):
        if self.body is None:
            self.body = BodyPipe(self.channel.transport, 0)
        self.body.end()
        if not self._started:
            self._begin(command, path, version)

    def targetPath(self):
        """
        The request's path, percent-decoded, without its query (go's
        C{URL.Path}).
        """
        return unquote(self.path.decode("latin-1"))

    def _refused(self):
        return self.channel is not None and self.channel._refused

    def write(self, data):
        if self._refused():
            # the channel answered already (L{GatewayChannel.refuse}) and
            # lingers: this request's own answer is dropped; the
            # connection's end ends it
            return
        if not self.startedWriting and not self.body.ended:
            # answered before the whole body came: the rest of it cannot
            # be told from a next request
            self.channel.persistent = False
            self.responseHeaders.setRawHeaders(b"connection", [b"close"])
        super().write(data)

    def finish(self):
        if self._refused():
            return
        if not self.body.ended:
            self.channel.abandon()
        super().finish()

    def connectionLost(self, reason):
        self.gone = True
        if self.body is not None:
            self.body.abort()
        super().connectionLost(reason)


class GatewayChannel(HTTPChannel):
    """
    The limits of the module docstring, on one client connection.
    """

    _refused = False
    _abandoned = False
    _timer = None
    _phase = "idle"
    _address = None

    def connectionMade(self):
        super().connectionMade()
        # no Nagle: an answer written in two turns (its head, then its last
        # bytes) must not wait for the client's delayed ACK of the first
        noDelay = getattr(self.transport, "setTcpNoDelay", None)
        if noDelay is not None:
            noDelay(True)
        if ISSLTransport.providedBy(self.transport):
            return  # counted by the TLS listener (tls.SNIProtocol)
        self._address = getattr(self.transport.getPeer(), "host", None)
        if not self.site.enter(self._address):
            self._address = None
            log.info("gateway: {client} has {count} connections open, refusing another", client=str(self.transport.getPeer()),
                     count=self.site.config.maxPerClient)
            self.refuse(429, "too many connections from your address")

    def connectionLost(self, reason):
        self._disarm()
        if self._address is not None:
            self.site.leave(self._address)
            self._address = None
        super().connectionLost(reason)

    def _disarm(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def dataReceived(self, data):
        if self._refused or self._abandoned:
            return
        if self._phase == "idle" and data:
            self._phase = "headers"
            self._disarm()
            self._timer = self.callLater(self.site.config.headerTimeout, self._late)
        super().dataReceived(data)

    def _late(self):
        self._timer = None
        log.info("gateway: {client} too slow sending its request headers, cut", client=str(self.transport.getPeer()))
        self.refuse(408, "the request headers came too slowly")

    def lineReceived(self, line):
        if self._refused:
            return
        if self._receivedHeaderSize + len(line) > self.site.config.maxHeaderBytes:
            self.refuse(431, f"request line and headers over {self.site.config.maxHeaderBytes} bytes")
            return
        return super().lineReceived(line)

    def lineLengthExceeded(self, line):
        self.refuse(431, f"request line and headers over {self.site.config.maxHeaderBytes} bytes")

    def headerReceived(self, line):
        if self._refused:
            return False
        if self._receivedHeaderCount >= self.site.config.maxHeaders:
            self.refuse(431, f"more than {self.site.config.maxHeaders} header lines")
            return False
        return super().headerReceived(line)

    def allHeadersReceived(self):
        self._disarm()
        self._phase = "body"
        super().allHeadersReceived()
        if not self._refused and self.length != 0:
            self.requests[-1].headersIn(self._command, self._path, self._version)

    def rawDataReceived(self, data):
        if self._refused or self._abandoned:
            return
        super().rawDataReceived(data)

    def allContentReceived(self):
        self._phase = "handling"
        super().allContentReceived()

    def requestDone(self, request):
        self._phase = "idle"
        super().requestDone(request)

    def abandon(self):
        """
        The request was answered before its whole body came: what else the
        client sends is thrown away, and the connection closed after the
        answer.
        """
        self.persistent = False
        self._abandoned = True

    def refuse(self, status, message):
        """
        Answer C{status} now, outside any request, throw away what the
        client still sends, and close (half-close first, so the client
        reads the answer while it still sends; cut after L{LINGER}
        seconds).
        """
        if self._refused:
            return
        self._refused = True
        self.persistent = False
        self._disarm()
        for request in self.requests:
            if request.body is not None:
                request.body.abort(f"refused: {message}")
        _answer(self.transport, status, message)
        if ISSLTransport.providedBy(self.transport) or not hasattr(self.transport, "loseWriteConnection"):
            self.transport.loseConnection()
        else:
            self.transport.loseWriteConnection()
        self._timer = self.callLater(LINGER, self.transport.abortConnection)


class GatewaySite(Site):
    """
    The gateway's HTTP site: each request goes to C{handler(request,
    body)} (an async function answering it) with its L{BodyPipe}.

    @param config: L{tau.services.gateway.config.GatewayConfig}.
    """

    noisy = False
    protocol = GatewayChannel
    requestFactory = GatewayRequest

    def __init__(self, handler, config, reactor):
        super().__init__(Resource(), reactor=reactor, timeout=config.idleTimeout)
        self.handler = handler
        self.config = config
        self._clients = {}
        self.pending = set()

    def buildProtocol(self, addr):
        channel = super().buildProtocol(addr)
        # twisted.web's own limits, never reached before ours
        channel.maxHeaders = self.config.maxHeaders + 1
        channel.totalHeadersSize = self.config.maxHeaderBytes + 1
        channel.MAX_LENGTH = self.config.maxHeaderBytes
        return channel

    def enter(self, address):
        count = self._clients.get(address, 0)
        if count >= self.config.maxPerClient:
            return False
        self._clients[address] = count + 1
        return True

    def leave(self, address):
        count = self._clients.get(address, 0) - 1
        if count > 0:
            self._clients[address] = count
        else:
            self._clients.pop(address, None)

    def begin(self, request):
        d = Deferred.fromCoroutine(self.handler(request, request.body))
        self.pending.add(d)
        d.addErrback(self._failed, request)
        d.addBoth(lambda _: self.pending.discard(d))

    def _failed(self, failure, request):
        if failure.check(CancelledError):
            # the gateway stops: the request cannot be answered
            if not request.finished and not request.gone:
                request.channel.transport.abortConnection()
            return
        log.failure("gateway: handling {method} {uri} failed", failure, method=request.method, uri=request.uri)
        if request.finished or request.gone:
            return
        if request.startedWriting:
            request.loseConnection()
            return
        request.setResponseCode(500)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.write(b"internal error\n")
        request.finish()

    def log(self, request):
        pass
