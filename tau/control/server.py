"""
Serve L{tau.control.routes} over HTTP: C{POST /api/v0/<command>}.

Like kubo, only POST is accepted and requests that carry an C{Origin}
header (a browser page) are refused, so a web page cannot drive the node
(L{tau.control.intake.check}, which runs before a body is read).  A full
disk met anywhere is answered 507.
"""

import json

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from tau.control import dht, hoarder, jobs, kvdb, listeners, pubsub, store, swarm, tns  # noqa: F401  (they register their commands)
from tau.control.intake import check, errorBody, storeFull
from tau.control.routes import COMMANDS, TAKES_BODY, APIError, BodyStream
from tau.diskfull import isFull
from tau.webflow import WriteGate

MAX_ARGS = 64


def _error(request, status, message):
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    if status == 405:
        request.setHeader(b"allow", b"POST")
    return errorBody(message)


async def _stream(request, body):
    """
    Write C{body.chunks} to C{request}, then finish it.  An error after the
    first byte propagates (the caller cuts the connection).
    """
    request.setHeader(b"content-type", body.contentType)
    pacer = WriteGate()
    request.registerProducer(pacer, True)
    try:
        async for chunk in body.chunks:
            if pacer.stopped:
                return
            request.write(chunk)
            await pacer.wait()
    finally:
        request.unregisterProducer()
    if not pacer.stopped:
        request.finish()


class ControlResource(Resource):
    """
    The whole API as one leaf resource.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, node):
        super().__init__()
        self._node = node

    def render(self, request):
        try:
            name = check(request.method, request.path, request.requestHeaders)
        except APIError as e:
            return _error(request, e.status, e.message)
        handler = COMMANDS[name]
        try:
            args = {
                k.decode("utf-8"): [v.decode("utf-8") for v in vs]
                for k, vs in (request.args or {}).items()
            }
        except UnicodeDecodeError:
            return _error(request, 400, "arguments must be UTF-8")
        if sum(len(v) for v in args.values()) > MAX_ARGS:
            return _error(request, 400, f"too many arguments (at most {MAX_ARGS})")
        if name in TAKES_BODY:
            request.content.seek(0)
            d = Deferred.fromCoroutine(handler(self._node, args, request.content))
        else:
            d = Deferred.fromCoroutine(handler(self._node, args))
        d.addCallbacks(self._done, self._failed, callbackArgs=(request,), errbackArgs=(request, name))
        finished = request.notifyFinish()
        finished.addErrback(lambda _: d.cancel())
        return NOT_DONE_YET

    def _done(self, result, request):
        if request.finished or request.channel is None:
            return
        if isinstance(result, BodyStream):
            d = Deferred.fromCoroutine(_stream(request, result))
            d.addErrback(self._streamFailed, request)
            # a client that goes away ends the stream (an endless one too)
            request.notifyFinish().addErrback(lambda _: d.cancel())
            return
        request.setHeader(b"content-type", b"application/json")
        request.write(json.dumps(result).encode("utf-8") + b"\n")
        request.finish()

    def _streamFailed(self, failure, request):
        if failure.check(CancelledError):
            return
        # The status line is gone already: cut the response short, so the
        # client sees an incomplete body rather than a truncated success.
        self.log.info("control API stream failed: {reason}", reason=failure.getErrorMessage())
        if not request.finished and request.channel is not None:
            request.channel.transport.abortConnection()

    def _failed(self, failure, request, name):
        if request.finished or request.channel is None:
            return
        if failure.check(APIError):
            body = _error(request, failure.value.status, failure.value.message)
        elif isFull(failure.value):
            self.log.info("control API command {command}: disk full ({why})", command=name, why=failure.getErrorMessage())
            body = _error(request, 507, storeFull(name, failure.getErrorMessage()))
        else:
            self.log.failure("control API command {command} failed", failure, command=name)
            body = _error(request, 500, f"{name} failed: {failure.getErrorMessage()}")
        request.write(body)
        request.finish()
