"""
How the control API takes a request in, before a command sees it.

 - The request line and headers are checked as soon as they are in
   (L{check}: Origin, path, command, method; then a body sent to a command
   that takes none, a body larger than the free space of the data
   folder).  A refused request with a body is answered at once: its body
   is read and thrown away, never spooled, and the connection closed.
 - A body of C{SPOOL_MIN} bytes or more, or of unknown length (chunked),
   waits in an anonymous file in the node's data folder (beside the store
   that takes it), not in the system's temporary folder, often a small RAM
   disk.  A disk that fills while it is spooled is answered 507, as the
   store answers a full disk, and the file is dropped.
 - Deadlines (L{ControlChannel}): the request line and headers must be in
   within C{headerTimeout} seconds of their first byte; a body must keep
   coming, at least C{bodyMinBytes} every C{bodyWindow} seconds; either is
   answered 408 and the connection closed.  An idle connection is closed
   after C{ControlSite.idleTimeout} seconds.
"""

import json
import tempfile

from twisted.logger import Logger
from twisted.web.http import RESPONSES, HTTPChannel
from twisted.web.server import Request, Site

from tau.control.routes import COMMANDS, TAKES_BODY, APIError
from tau.diskfull import freeBytes, isFull

PREFIX = b"/api/v0/"
#: Bodies from this size on (or of unknown length) are spooled to disk.
SPOOL_MIN = 100_000

log = Logger()


def check(method, path, headers):
    """
    The command a request names, from what its line and headers say.

    @raise APIError: 403 for a request from a web page (an Origin header),
        404 for a path outside the API or an unknown command, 405 for a
        method other than POST.
    """
    if headers.hasHeader(b"origin"):
        raise APIError("requests from web pages are refused", status=403)
    if not path.startswith(PREFIX):
        raise APIError("not found: the API lives under /api/v0/", status=404)
    name = path[len(PREFIX):].decode("utf-8", "replace").strip("/")
    if name not in COMMANDS:
        raise APIError(f"unknown command {name!r}", status=404)
    if method != b"POST":
        raise APIError(f"{method.decode('ascii', 'replace')} not allowed: use POST", status=405)
    return name


def errorBody(message):
    """An error's JSON body, in kubo's form."""
    return json.dumps({"Message": message, "Code": 0, "Type": "error"}).encode("utf-8") + b"\n"


def storeFull(what, reason):
    """The message of a full disk (status 507), the same for every path that meets one."""
    return f"{what}: the disk is full ({reason}); nothing stored is lost"


class ControlRequest(Request):
    """
    A control API request: a big body is spooled in the site's C{spoolDir};
    a full disk while spooling refuses the request (507).
    """

    def gotLength(self, length):
        if length is not None and length < SPOOL_MIN:
            return super().gotLength(length)
        # unbuffered: a full disk shows on the write that meets it
        self.content = tempfile.TemporaryFile(dir=self.channel.site.spoolDir, buffering=0)

    def handleContentChunk(self, data):
        if self.content is None:
            return
        try:
            self.content.write(data)
        except OSError as e:
            if not isFull(e):
                raise
            self.content.close()
            self.content = None
            self.channel.refuse(507, storeFull("request body", "no room to spool it"))


class ControlChannel(HTTPChannel):
    """
    The control API's HTTP channel: checks before the body, deadlines on
    the headers and the body (see the module docstring).
    """

    #: Seconds from a request's first byte to the end of its headers.
    headerTimeout = 10.0
    #: A body must bring at least C{bodyMinBytes} each C{bodyWindow} seconds.
    bodyWindow = 30.0
    bodyMinBytes = 16 * 1024
    #: Seconds a refused request's body is read (and thrown away) before
    #: the connection is cut.
    lingerTimeout = 5.0

    _phase = "idle"     # idle, headers, body, refused, handling
    _timer = None
    _bodyBytes = 0

    def _arm(self, delay, f, *a):
        self._disarm()
        self._timer = self.callLater(delay, f, *a)

    def _disarm(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def dataReceived(self, data):
        if self._phase == "refused":
            return
        if self._phase == "idle" and data:
            self._phase = "headers"
            self._arm(self.headerTimeout, self._late, "headers")
        super().dataReceived(data)

    def allHeadersReceived(self):
        self._disarm()
        if self.length != 0:
            request = self.requests[-1]
            guard = self.site.guard
            if guard is not None and not guard.authorized(request):
                # refused before a byte of the body is kept
                self.refuse(401, guard.refusal(), guard.challenge())
                return
            try:
                name = check(self._command, self._path.split(b"?", 1)[0], request.requestHeaders)
                self._checkBody(name)
            except APIError as e:
                self.refuse(e.status, e.message)
                return
            self._phase = "body"
            self._bodyBytes = 0
            self._arm(self.bodyWindow, self._bodyCheck)
        super().allHeadersReceived()

    def _checkBody(self, name):
        if name not in TAKES_BODY:
            raise APIError(f"{name} takes no request body")
        if self.length is not None and self.length >= SPOOL_MIN:
            free = freeBytes(self.site.spoolDir)
            if self.length > free:
                raise APIError(storeFull(
                    name, f"a body of {self.length} bytes, {free} bytes free"), status=507)

    def rawDataReceived(self, data):
        if self._phase == "refused":
            return
        if self._phase == "body":
            self._bodyBytes += len(data)
        super().rawDataReceived(data)

    def allContentReceived(self):
        self._disarm()
        self._phase = "handling"
        super().allContentReceived()

    def requestDone(self, request):
        self._phase = "idle"
        super().requestDone(request)

    def connectionLost(self, reason):
        self._disarm()
        super().connectionLost(reason)

    def _bodyCheck(self):
        self._timer = None
        if self._bodyBytes < self.bodyMinBytes:
            self._late("body")
            return
        self._bodyBytes = 0
        self._arm(self.bodyWindow, self._bodyCheck)

    def _late(self, what):
        self._timer = None
        log.info("control API: {peer} too slow sending its request {what}, cut",
                 peer=str(self.transport.getPeer()), what=what)
        self.refuse(408, f"the request {what} came too slowly")

    def refuse(self, status, message, headers=()):
        """
        Answer the request whose body is coming with an error now; throw
        its body away; cut the connection once the client is done or after
        C{lingerTimeout} seconds.
        """
        self._answer(status, message, headers)
        self._phase = "refused"
        for request in self.requests[-1:]:
            if request.content is not None:
                request.content.close()
                request.content = None
        # half-close: the client reads the answer while it still sends (a
        # transport that cannot half-close, TLS, is closed)
        getattr(self.transport, "loseWriteConnection", self.transport.loseConnection)()
        self._arm(self.lingerTimeout, self.transport.abortConnection)

    def _answer(self, status, message, headers=()):
        self.persistent = False
        body = errorBody(message)
        head = [b"HTTP/1.1 %d %s" % (status, RESPONSES.get(status, b"Error")),
                b"Content-Type: application/json",
                b"Content-Length: %d" % len(body),
                b"Connection: close"]
        if status == 405:
            head.append(b"Allow: POST")
        head.extend(b"%s: %s" % (name, value) for name, value in headers)
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)


class ControlSite(Site):
    """
    The control API's site: L{ControlChannel}s, L{ControlRequest}s whose big
    bodies are spooled in C{spoolDir}, bodies never parsed as forms; no
    "Starting factory" lines, no access log.
    """

    noisy = False
    protocol = ControlChannel
    requestFactory = ControlRequest
    #: Seconds an open connection may stay silent between requests.
    idleTimeout = 60

    def __init__(self, resource, spoolDir, reactor, guard=None):
        # arguments come from the query string only: a body is never read
        # into memory as a form (curl --data-binary sends one as a form)
        super().__init__(resource, reactor=reactor, timeout=self.idleTimeout, parsePOSTFormSubmission=False)
        self.spoolDir = spoolDir
        #: a L{tau.control.auth.TokenGuard}, checked before a body is read
        self.guard = guard

    def log(self, request):
        pass
