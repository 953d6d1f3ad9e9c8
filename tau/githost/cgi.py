"""
C{git http-backend} as a CGI child of the reactor: the spooled request body
is streamed to its stdin, its answer (CGI headers, then the body) to the
client with flow control, what a push changed is read on descriptor 3.
"""

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.protocols.basic import FileSender
from zope.interface import implementer

from tau.githost.process import GIT, MAX_ERRORS

#: the most bytes of CGI headers read before the body
MAX_HEADERS = 64 << 10
#: the most bytes of ref-update lines one push may report
MAX_UPDATES = 1 << 20
#: seconds a descendant may keep git's pipes open after git exited
LINGER = 1.0

log = Logger()


class BackendError(Exception):
    pass


def parseHeaders(block):
    """
    C{(status, [(name, value)])} of a CGI header block (bytes, lines ended
    by CRLF or LF).

    @raise BackendError: a line is not C{Name: value}, or the status is not
        a number.
    """
    status, headers = 200, []
    for line in block.replace(b"\r\n", b"\n").split(b"\n"):
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name.strip() or b" " in name.strip():
            raise BackendError(f"bad CGI header line {line[:80]!r}")
        name, value = name.strip(), value.strip()
        if name.lower() == b"status":
            code = value.split(b" ", 1)[0]
            if not code.isdigit() or not 100 <= int(code) <= 599:
                raise BackendError(f"bad CGI status {value[:40]!r}")
            status = int(code)
        else:
            headers.append((name, value))
    return status, headers


@implementer(IPushProducer)
class _BackendProducer:
    """
    The backend's output as the request's producer: paused and resumed with
    the client's connection, stopped (the process killed) when it is lost
    (a C{Process} has no C{stopProducing} of its own).
    """

    def __init__(self, protocol):
        self.protocol = protocol

    def pauseProducing(self):
        self.protocol.transport.pauseProducing()

    def resumeProducing(self):
        self.protocol.transport.resumeProducing()

    def stopProducing(self):
        self.protocol._stop("the client went away")


class BackendProtocol(ProcessProtocol):
    """
    One run of C{git http-backend} answering C{request}.

    @ivar done: fires with C{(exit code or None, updates bytes, error
        text)} when the process ended.
    """

    def __init__(self, request, body, clock, timeout):
        self.request = request
        self.body = body
        self.clock = clock
        self.timeout = timeout
        self.head = b""
        self.started = False
        self.updates = b""
        self.err = b""
        self.error = None
        self.done = Deferred()
        self._timer = None
        self._linger = None
        self._sender = None
        self._ended = False

    def connectionMade(self):
        self._timer = self.clock.callLater(self.timeout, self._expire)
        self.request.registerProducer(_BackendProducer(self), True)
        self.request.notifyFinish().addErrback(self._clientGone)
        self.body.seek(0)
        self._sender = FileSender()
        self._sender.beginFileTransfer(self.body, self.transport).addCallbacks(
            lambda _: self.transport.closeStdin(), lambda _: None)

    def _expire(self):
        self._timer = None
        self._stop(f"git http-backend took more than {self.timeout} seconds")

    def _clientGone(self, reason):
        self._stop("the client went away")

    def _stop(self, why):
        if self.error is None:
            self.error = why
        try:
            self.transport.signalProcess("KILL")
        except Exception:
            pass
        # a descendant holding the pipes must not keep the request open
        self._closePipes()

    def _closePipes(self):
        for fd in list(getattr(self.transport, "pipes", {})):
            self.transport.closeChildFD(fd)

    def processExited(self, reason):
        if not self._ended:
            self._linger = self.clock.callLater(LINGER, self._lingering)

    def _lingering(self):
        self._linger = None
        if not self._ended:
            log.warn("a child of git http-backend kept its pipes open; closed")
            self._closePipes()

    def childDataReceived(self, fd, data):
        if fd == 1:
            self._stdout(data)
        elif fd == 2:
            self.err = (self.err + data)[-MAX_ERRORS:]
        elif fd == 3:
            if len(self.updates) + len(data) > MAX_UPDATES:
                self._stop(f"the push reported more than {MAX_UPDATES} bytes of ref updates")
                return
            self.updates += data

    def _stdout(self, data):
        if self.started:
            if not self.request.finished and self.request.channel is not None:
                self.request.write(data)
            return
        self.head += data
        end, skip = self.head.find(b"\r\n\r\n"), 4
        lf = self.head.find(b"\n\n")
        if lf != -1 and (end == -1 or lf < end):
            end, skip = lf, 2
        if end == -1 and len(self.head) <= MAX_HEADERS + 3:
            return
        if end == -1 or end > MAX_HEADERS:
            self.head = b""
            self._stop(f"git http-backend sent more than {MAX_HEADERS} bytes of headers")
            return
        block, rest = self.head[:end], self.head[end + skip:]
        self.head = b""
        try:
            status, headers = parseHeaders(block)
        except BackendError as e:
            self._stop(str(e))
            return
        self.started = True
        if self.request.finished or self.request.channel is None:
            return
        self.request.setResponseCode(status)
        for name, value in headers:
            self.request.setHeader(name, value)
        if rest:
            self.request.write(rest)

    def processEnded(self, reason):
        self._ended = True
        for timer in (self._timer, self._linger):
            if timer is not None and timer.active():
                timer.cancel()
        if self._sender is not None and self._sender.deferred is not None and not self._sender.deferred.called:
            self._sender.stopProducing()
        code = 0 if reason.check(ProcessDone) else getattr(reason.value, "exitCode", None)
        if code != 0 and self.error is None:
            self.error = f"git http-backend exited with {code}: {self.err.decode('utf-8', 'replace').strip()[-500:]}"
        request = self.request
        if not request.finished and request.channel is not None:
            request.unregisterProducer()
            if not self.started:
                request.setResponseCode(502)
                request.setHeader(b"content-type", b"text/plain; charset=utf-8")
                request.write(f"git failed: {self.error or 'no answer'}\n".encode("utf-8"))
            request.finish()
        self.done.callback((code, self.updates, self.error))


def spawnBackend(reactor, request, body, env, timeout):
    """
    Start C{git http-backend} for C{request} with CGI environment C{env};
    its L{BackendProtocol} (C{.done} fires when it ended).
    """
    protocol = BackendProtocol(request, body, reactor, timeout)
    reactor.spawnProcess(protocol, GIT, [GIT, "http-backend"], env=env,
                         childFDs={0: "w", 1: "r", 2: "r", 3: "r"})
    return protocol
