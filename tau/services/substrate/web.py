"""
The substrate's own HTTP listener (C{substrate.http-listen}): the same
requests a gateway tunnels, answered by Host header, for a node without a
gateway in front of it.

A request body is kept up to the site's C{maxBody} bytes; past it (as
announced or as sent) the request is answered 413 without running
anything, and the connection closed.
"""

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from tau.services.substrate.tunnel import requestOf
from tau.webflow import WriteGate
from tau.weblimits import LimitedSite

#: the size of the body chunks a handler reads
CHUNK = 64 * 1024

log = Logger()


class ClientGone(Exception):
    """
    The HTTP client went away before its answer was written.
    """


class _Body:
    """
    The body twisted.web kept, read as the tunnel's body is.
    """

    def __init__(self, content):
        self._content = content
        content.seek(0)

    async def read(self):
        return self._content.read(CHUNK)


class _Response:
    """
    A handler's response (C{head}, C{await write}, C{finish}) written to a
    C{twisted.web} request at the pace its client reads.
    """

    def __init__(self, request):
        self.request = request
        self.status = None
        self.gone = False
        self._gate = None
        self._length = None
        request.notifyFinish().addErrback(self._lost)

    def _lost(self, failure):
        self.gone = True
        if self._gate is not None:
            self._gate.stopProducing()

    def head(self, status, headers=None):
        if self.status is not None:
            raise RuntimeError("the head was sent already")
        self.status = status
        self.request.setResponseCode(status)
        for name, values in (headers or {}).items():
            self.request.responseHeaders.setRawHeaders(name, values)
            if name.lower() == "content-length":
                self._length = values[0]

    async def write(self, data):
        if self.status is None:
            self.head(200)
        if self.gone:
            raise ClientGone()
        if self._gate is None:
            self._gate = WriteGate()
            self.request.registerProducer(self._gate, True)
        self.request.write(data)
        await self._gate.wait()
        if self.gone or self._gate.stopped:
            raise ClientGone()

    def finish(self):
        if self.gone:
            return
        if self.status is None:
            self.head(200)
        if self._gate is not None:
            self.request.unregisterProducer()
        elif self.request.method == b"HEAD" and self._length is not None:
            # twisted.web would say 0 for a HEAD with no body written
            self.request.setHeader(b"content-length", self._length.encode("latin-1"))
        self.request.finish()


class SubstrateResource(Resource):
    """
    Every path of every host: C{await handler(request, body, response)}
    (a L{tau.services.substrate.tunnel.serveTunnel} handler) answers it.
    """

    isLeaf = True

    def __init__(self, handler):
        super().__init__()
        self.handler = handler

    def render(self, request):
        d = Deferred.fromCoroutine(self._render(request))
        d.addErrback(lambda f: log.failure("substrate HTTP answer failed", f))
        return NOT_DONE_YET

    async def _render(self, request):
        response = _Response(request)
        if request.tooLarge:
            request.setHeader(b"connection", b"close")
            data = f"request body too large: limit {request.channel.site.maxBody} bytes\n".encode()
            response.head(413, {"Content-Type": ["text/plain; charset=utf-8"], "Content-Length": [str(len(data))]})
            await response.write(data)
            response.finish()
            return
        try:
            await self.handler(requestOf(request), _Body(request.content), response)
        except ClientGone:
            return
        except Exception:
            log.failure("substrate: answering {host}{path} failed", host=request.getHeader(b"host"), path=request.path)
            if response.status is not None:
                request.loseConnection()
                return
            response.head(500, {"Content-Type": ["text/plain; charset=utf-8"]})
            await response.write(b"internal error\n")
        response.finish()


class SubstrateSite(LimitedSite):
    """
    The direct HTTP site: C{maxBody} bytes of request body at most.
    """

    def __init__(self, handler, maxBody):
        super().__init__(SubstrateResource(handler), maxBody)
