"""
A bounded HTTP/1.1 load generator and the servers bench/serve.py puts it
against.

L{load} keeps C{concurrency} keep-alive connections to one target, each
sending its next request as soon as the previous answer is complete, until
C{requests} answers came (or C{timeout} seconds passed); it reports
requests per second and latency percentiles.  A L{Target} is where to
connect and what to send (C{Host} header and path), so any server can be
measured the same way.

Run as a program, it is a server in its own process (so the load generator
and the server do not share one Python thread):

    python bench/_httpload.py bare            # twisted.web "hello"
    python bench/_httpload.py wasm            # twisted.web + tau's wasm Runtime (a WAT "hello")

Each prints C{PORT <n>} once it listens on 127.0.0.1 and serves until
it is ended.
"""

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: a function answering "hello", in WAT with Taubyte's ABI (export "hello")
HELLO_WAT = """
(module
 (import "taubyte/sdk" "eventHttpWrite" (func $write (param i32 i32 i32 i32) (result i32)))
 (memory (export "memory") 1)
 (data (i32.const 16) "hello")
 (func (export "hello") (param $ev i32)
   (drop (call $write (local.get $ev) (i32.const 16) (i32.const 5) (i32.const 8))))
)
"""


@dataclass
class Target:
    """
    Where requests go: C{address:port} (a loopback address), with C{Host:
    host} and C{path}.  C{expect} is the body every answer must carry
    (None: any).
    """

    name: str
    port: int
    host: str = "localhost"
    path: str = "/"
    expect: bytes = None
    address: str = "127.0.0.1"

    def request(self):
        return f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUser-Agent: tau-bench\r\n\r\n".encode()


class BadAnswer(Exception):
    pass


class _Response:
    """
    Parses one answer after another on a keep-alive connection
    (Content-Length or chunked bodies).
    """

    MAX_HEAD = 64 << 10

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        """
        Add C{data}; the C{(status, body)} answers now complete.
        """
        self.buf += data
        done = []
        while True:
            answer = self._one()
            if answer is None:
                return done
            done.append(answer)

    def _one(self):
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > self.MAX_HEAD:
                raise BadAnswer("a response head over 64 KiB")
            return None
        head = self.buf[:end].decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        fields = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        rest = self.buf[end + 4:]
        if "chunked" in fields.get("transfer-encoding", "").lower():
            body, used = self._chunked(rest)
            if body is None:
                return None
        else:
            length = int(fields.get("content-length", "0"))
            if len(rest) < length:
                return None
            body, used = rest[:length], length
        self.buf = rest[used:]
        return status, body

    @staticmethod
    def _chunked(data):
        body, at = [], 0
        while True:
            line = data.find(b"\r\n", at)
            if line < 0:
                return None, 0
            size = int(data[at:line].split(b";")[0], 16)
            start = line + 2
            if size == 0:
                end = data.find(b"\r\n\r\n", line)   # no trailers expected
                return (b"".join(body), end + 4) if end >= 0 else (None, 0)
            if len(data) < start + size + 2:
                return None, 0
            body.append(data[start:start + size])
            at = start + size + 2


def percentile(samples, fraction):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def load(reactor, target, requests=5000, concurrency=16, timeout=60.0):
    """
    Send C{requests} requests to C{target} over C{concurrency} keep-alive
    connections; C{{"rps", "p50_ms", "p99_ms", "errors", "first_error"}}
    (errors: answers that were not 200 with the expected body; they count
    in the rate and the percentiles too).

    @raise BadAnswer: an answer did not parse, a connection failed or was
        lost, or the run did not finish within C{timeout} seconds.
    """
    from twisted.internet.defer import Deferred, DeferredList
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.internet.protocol import Protocol

    payload = target.request()
    latencies = []
    errors = []   # answers that are not 200 with the expected body
    state = {"sent": 0, "problem": None}
    finished = Deferred()

    def stop(problem=None):
        if problem is not None and state["problem"] is None:
            state["problem"] = problem
        if not finished.called:
            finished.callback(None)

    class Client(Protocol):
        def connectionMade(self):
            self.parser = _Response()
            self.started = None
            self.next()

        def next(self):
            if state["sent"] >= requests or finished.called:
                self.transport.loseConnection()
                return
            state["sent"] += 1
            self.started = time.perf_counter()
            self.transport.write(payload)

        def dataReceived(self, data):
            try:
                answers = self.parser.feed(data)
            except (BadAnswer, ValueError, IndexError) as e:
                stop(BadAnswer(f"{target.name}: unreadable answer: {e}"))
                self.transport.abortConnection()
                return
            for status, body in answers:
                latencies.append(time.perf_counter() - self.started)
                if status != 200 or (target.expect is not None and body != target.expect):
                    errors.append(f"{status} {body[:100]!r}")
                if len(latencies) >= requests:
                    stop()
                self.next()

        def connectionLost(self, reason):
            if len(latencies) < requests and not finished.called and state["sent"] < requests:
                stop(BadAnswer(f"{target.name}: connection lost: {reason.getErrorMessage()}"))

    guard = reactor.callLater(timeout, stop, BadAnswer(f"{target.name}: not done within {timeout}s"))
    start = time.perf_counter()
    endpoint = TCP4ClientEndpoint(reactor, target.address, target.port)
    connecting = [connectProtocol(endpoint, Client()) for _ in range(min(concurrency, requests))]
    connected = await DeferredList(connecting, consumeErrors=True)
    for ok, result in connected:
        if not ok:
            stop(BadAnswer(f"{target.name}: cannot connect: {result.getErrorMessage()}"))
    await finished
    elapsed = time.perf_counter() - start
    if guard.active():
        guard.cancel()
    for ok, proto in connected:
        if ok and proto.transport is not None:
            proto.transport.loseConnection()
    if state["problem"] is not None:
        raise state["problem"]
    return {"rps": len(latencies) / elapsed, "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * percentile(latencies, 0.99), "errors": len(errors),
            "first_error": errors[0] if errors else None}


# -- the servers, each in its own process -------------------------------------

def _bareSite():
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    class Hello(Resource):
        isLeaf = True

        def render_GET(self, request):
            return b"hello"

    return Site(Hello())


def _wasmSite(reactor):
    """
    twisted.web whose every request runs the WAT "hello" in tau's wasm
    Runtime (a warm instance): the runtime's cost per request, without
    tns, the store or the tunnel.
    """
    from twisted.internet.defer import Deferred
    from twisted.web.resource import Resource
    from twisted.web.server import NOT_DONE_YET, Site
    from wasmtime import wat2wasm

    from tau.services.substrate.wasm import HttpRequest, Runtime

    runtime = Runtime(reactor)
    runtime.start()
    # its worker threads must end for the process to exit
    reactor.addSystemEventTrigger("before", "shutdown", lambda: Deferred.fromCoroutine(runtime.stop()))
    cid = []

    class Function(Resource):
        isLeaf = True

        def render_GET(self, request):
            async def answer():
                if not cid:
                    cid.append(await runtime.load(bytes(wat2wasm(HELLO_WAT))))
                status, headers, body = await runtime.call(
                    cid[0], "hello", HttpRequest("GET", request.uri.decode("latin-1"), "localhost"))
                request.setResponseCode(status)
                for name, value in headers:
                    request.responseHeaders.addRawHeader(name, value)
                request.write(body)
                request.finish()
            Deferred.fromCoroutine(answer()).addErrback(lambda f: (request.setResponseCode(500), request.finish()))
            return NOT_DONE_YET

    return Site(Function())


def serve(kind):
    from twisted.internet import reactor
    from twisted.internet.endpoints import serverFromString

    site = _bareSite() if kind == "bare" else _wasmSite(reactor)

    def listening(port):
        print(f"PORT {port.getHost().port}", flush=True)

    serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site).addCallbacks(
        listening, lambda f: (print(f.getErrorMessage(), flush=True), reactor.stop()))
    reactor.run()


async def startServer(reactor, kind):
    """
    Start C{python bench/_httpload.py KIND} in its own process; its
    C{(port, stop)} (C{stop()} ends it and fires when it ended).
    """
    from twisted.internet.defer import Deferred
    from twisted.internet.protocol import ProcessProtocol

    ready, ended = Deferred(), Deferred()

    class Server(ProcessProtocol):
        out = b""

        def outReceived(self, data):
            self.out += data
            if b"\n" in self.out and not ready.called:
                line = self.out.split(b"\n")[0].split()
                if line[:1] == [b"PORT"]:
                    ready.callback(int(line[1]))
                else:
                    ready.errback(RuntimeError(self.out.decode()))

        def errReceived(self, data):
            sys.stderr.write(data.decode("utf-8", "replace"))

        def processEnded(self, reason):
            if not ready.called:
                ready.errback(RuntimeError(f"the {kind} server ended before listening"))
            ended.callback(None)

    proto = Server()
    transport = reactor.spawnProcess(proto, sys.executable, [sys.executable, __file__, kind],
                                     env=None, path=str(Path(__file__).resolve().parents[1]))
    guard = reactor.callLater(60, lambda: ready.called or ready.errback(RuntimeError(f"{kind} server: no port")))
    try:
        port = await ready
    finally:
        if guard.active():
            guard.cancel()

    def stop():
        if not ended.called:
            transport.signalProcess("TERM")
            reactor.callLater(10, lambda: ended.called or transport.signalProcess("KILL"))
        return ended

    return port, stop


if __name__ == "__main__":
    serve(sys.argv[1] if len(sys.argv) > 1 else "bare")
