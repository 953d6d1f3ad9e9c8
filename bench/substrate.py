"""
substrate benchmark (issue 15 item 7, the part without a gateway).

    python bench/substrate.py [--seconds 3] [--runs 3] [--connections 16] [--cold 20] [--json]

Warm requests per second and p99 latency over HTTP/1.1 keep-alive on
loopback, the client in this process and each server in its own process:

  - bare: a C{twisted.web} resource answering "hello from wasm";
  - substrate: substrate's direct HTTP listener (C{substrate.http-listen})
    answering the same through a WebAssembly function (WAT compiled here),
    looked up in tns (in memory) with its build in a block store in memory.

The ratio substrate / bare is the figure (target: at least 0.5).  Then the
cold start, in this process: the time from a request to the first byte of
the function's answer on a substrate that has never compiled the module
(fetch, unzip, compile, instantiate, call), and on a fresh substrate whose
module is in the compiled-module cache on disk (target: under 5 ms, p50).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HOST = "shop.example.com"


# -- the servers (run as: bench/substrate.py --serve bare|substrate PORTFILE) -------------

def serveBare(reactor):
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    class Hello(Resource):
        isLeaf = True

        def render_GET(self, request):
            request.setHeader(b"content-type", b"text/plain")
            return b"hello from wasm"

    site = Site(Hello())
    site.log = lambda request: None
    return reactor.listenTCP(0, site, interface="127.0.0.1")


async def serveSubstrate(reactor, folder):
    from tau.fakes import FakeContent
    from tau.services.substrate.config import SubstrateConfig
    from tau.services.substrate.service import SubstrateService
    from tau.services.tns.client import TNSClient
    from tests.hosts import startHost
    from tests.services.substrate.helpers import publishShop
    from tests.services.tns.helpers import calls, makeCommands

    class Case:
        def addCleanup(self, *a):
            pass

    commands, _, pubsub = makeCommands()
    tns = TNSClient(None, pubsub, None, reactor, calls=calls(commands))
    content = FakeContent()
    await publishShop(os.path.join(folder, "project"), tns, content)
    host = await startHost(Case())
    config = SubstrateConfig(httpListen="tcp:0:interface=127.0.0.1")
    service = SubstrateService(host, content, tns, reactor, config, os.path.join(folder, "modules"))
    service.startService()
    # its workers are threads: stop them, or the process outlives the reactor
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    await service.whenReady()
    return service.listener.port


def serve(kind, portFile):
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    async def start():
        if kind == "bare":
            port = serveBare(reactor)
        else:
            port = await serveSubstrate(reactor, tempfile.mkdtemp())
        Path(portFile).write_text(str(port.getHost().port))

    d = Deferred.fromCoroutine(start())
    d.addErrback(lambda f: (f.printTraceback(), reactor.stop()))
    reactor.run()


# -- the client -------------------------------------------------------------------------

def load(port, seconds, connections):
    """
    C{(requests per second, p99 seconds)} of C{connections} keep-alive
    connections each sending one request after another for C{seconds}.
    """
    from twisted.internet import reactor
    from twisted.internet.protocol import ClientFactory, Protocol

    request = f"GET /hello HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    latencies = []
    state = {"done": False, "errors": 0}

    class Client(Protocol):
        def connectionMade(self):
            self.buffer = b""
            self.send()

        def send(self):
            if state["done"]:
                self.transport.loseConnection()
                return
            self.sent = time.perf_counter()
            self.transport.write(request)

        def dataReceived(self, data):
            self.buffer += data
            while True:
                head, sep, rest = self.buffer.partition(b"\r\n\r\n")
                if not sep:
                    return
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if len(rest) < length:
                    return
                if not head.startswith(b"HTTP/1.1 200"):
                    state["errors"] += 1
                self.buffer = rest[length:]
                latencies.append(time.perf_counter() - self.sent)
                self.send()

    factory = ClientFactory.forProtocol(Client)
    for _ in range(connections):
        reactor.connectTCP("127.0.0.1", port, factory)

    def stop():
        state["done"] = True
        reactor.callLater(0.5, reactor.stop)

    start = time.perf_counter()
    reactor.callLater(seconds, stop)
    reactor.run()
    elapsed = time.perf_counter() - start - 0.5
    if state["errors"]:
        raise SystemExit(f"{state['errors']} answers were not 200")
    latencies.sort()
    return len(latencies) / elapsed, latencies[int(len(latencies) * 0.99)] if latencies else float("nan")


def measure(kind, seconds, connections):
    with tempfile.TemporaryDirectory() as folder:
        portFile = Path(folder) / "port"
        server = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(portFile)])
        try:
            deadline = time.time() + 60
            while not portFile.exists() or not portFile.read_text():
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit(f"the {kind} server did not start")
                time.sleep(0.05)
            port = int(portFile.read_text())
            client = subprocess.run([sys.executable, __file__, "--client", str(port), str(seconds), str(connections)],
                                    capture_output=True, text=True, check=True, timeout=seconds + 60)
            return json.loads(client.stdout)
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


# -- cold starts (in this process) ------------------------------------------------------

def coldStarts(count):
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    from tau.fakes import FakeContent
    from tau.services.substrate.serving import Serving
    from tau.services.substrate.wasm import Runtime
    from tau.services.tns.client import TNSClient
    from tau.services.substrate.tunnel import TunnelRequest
    from tests.services.substrate.helpers import publishShop
    from tests.services.tns.helpers import calls, makeCommands

    class FirstByte:
        def __init__(self):
            self.at = None
            self.status = None

        def head(self, status, headers=None):
            self.status = status

        async def write(self, data):
            if self.at is None:
                self.at = time.perf_counter()

    class Empty:
        async def read(self):
            return b""

    results = {"uncompiled": [], "compiled": []}

    async def once(content, tns, folder):
        runtime = Runtime(reactor, folder)
        runtime.start()
        serving = Serving(tns, content, runtime, reactor, maxRequestBody=1 << 20, maxModule=1 << 26)
        response = FirstByte()
        start = time.perf_counter()
        await serving.handle(TunnelRequest("GET", "/zipped", {"Host": [HOST]}, HOST), Empty(), response)
        await runtime.stop()
        if response.status != 200:
            raise SystemExit(f"the function answered {response.status}")
        return response.at - start

    async def run():
        commands, _, pubsub = makeCommands()
        tns = TNSClient(None, pubsub, None, reactor, calls=calls(commands))
        content = FakeContent()
        with tempfile.TemporaryDirectory() as folder:
            await publishShop(os.path.join(folder, "project"), tns, content)
            await tns.http(HOST, "/zipped", "GET")   # tns answers cached, as on a warm node
            for i in range(count):
                cache = os.path.join(folder, f"modules-{i}")
                results["uncompiled"].append(await once(content, tns, cache))
                results["compiled"].append(await once(content, tns, cache))

    d = Deferred.fromCoroutine(run())
    d.addErrback(lambda f: f.printTraceback())
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    return {k: statistics.median(v) for k, v in results.items()}


def main():
    if sys.argv[1:2] == ["--serve"]:
        return serve(sys.argv[2], sys.argv[3])
    if sys.argv[1:2] == ["--client"]:
        rate, p99 = load(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
        print(json.dumps({"rate": rate, "p99": p99}))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--cold", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = {"bare": [], "substrate": []}
    for _ in range(args.runs):
        for kind in runs:
            runs[kind].append(measure(kind, args.seconds, args.connections))
    out = {kind: {"rate": statistics.median(r["rate"] for r in rs), "p99": statistics.median(r["p99"] for r in rs)}
           for kind, rs in runs.items()}
    out["ratio"] = out["substrate"]["rate"] / out["bare"]["rate"]
    cold = subprocess.run([sys.executable, __file__, "--cold", str(args.cold)], capture_output=True, text=True,
                          check=True, timeout=600)
    out["coldStart"] = json.loads(cold.stdout)
    if args.json:
        print(json.dumps(out))
        return
    for kind in ("bare", "substrate"):
        print(f"{kind:10} {out[kind]['rate']:9.0f} req/s   p99 {out[kind]['p99'] * 1000:6.2f} ms")
    print(f"ratio substrate/bare: {out['ratio']:.2f} (target >= 0.5)")
    print(f"cold start to first byte, p50: not compiled {out['coldStart']['uncompiled'] * 1000:.2f} ms, "
          f"compiled-module cache {out['coldStart']['compiled'] * 1000:.2f} ms (target < 5 ms)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--cold"]:
        print(json.dumps(coldStarts(int(sys.argv[2]))))
    else:
        main()
