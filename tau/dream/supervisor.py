"""
The process behind C{tau dream start}: it runs a L{Dream}, its own client
node (a "simple", for the console's tns and patrick clients), the web
console on a loopback port, and a control API on another loopback port
(C{control} in C{dream.json}; every request carries C{Authorization: Bearer}
the token in C{FOLDER/control.token}, mode 0600) that C{tau dream
status|inject|stop} use:

    GET  /status            the dream's state and each node's health
    POST /inject?shape=S    add a node of shape S (C{a+b}): its summary
    POST /stop              stop every node, then the supervisor

    python -m tau.dream.supervisor --folder F --name N [--shapes S] [--ready-fd FD]

It writes C{dream.pid} at once and C{dream.json} when every node runs,
then C{ready} (or C{failed: WHY}) on C{--ready-fd}; on SIGTERM, SIGINT or
C{/stop} it stops the nodes and removes C{dream.pid}, C{dream.json} and
the token.
"""

import argparse
import base64
import hmac
import json
import os
import secrets
import sys

import yaml
from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.logger import (FilteringLogObserver, Logger, PredicateResult, globalLogBeginner,
                            textFileLogObserver)
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from tau.dream.console import Collector, consoleResource
from tau.dream.dream import Dream
from tau.dream.universe import DreamError, Layout, checkShape, parseShapes
from tau.cloud import makeAdmission
from tau.identity import PrivateKey
from tau.listen import Listener
from tau.private import writePrivate

log = Logger()

#: The longest shape text C{/inject} takes.
MAX_SHAPE = 256


def alive(pid):
    """
    Whether process C{pid} runs (a zombie, ended but not reaped by its
    parent, does not).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def readPid(layout):
    try:
        return int(layout.pidFile.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def writeJSON(path, value):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def simpleConfig(layout, fqdn, peers, cloudKey):
    """
    The config of the supervisor's own node: no service, the dream's
    swarm, admitted to its cloud as a C{client} (so tns shows it every
    project), loopback listeners on port 0.
    """
    from tau.config import loadConfig

    path = layout.simple / "config" / "simple.yaml"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = PrivateKey.generate()
        writePrivate(path, yaml.safe_dump({
            "privatekey": base64.b64encode(key.toProtobuf()).decode("ascii"),
            "cloud": {"key": str(cloudKey.peerID()),
                      "admission": makeAdmission(cloudKey, key.peerID(), ["client"]).text()},
            "services": [],
            "swarmkey": str(layout.swarmKey),
            "api-listen": "tcp:0:interface=127.0.0.1",
            "p2p-listen": ["/ip4/127.0.0.1/tcp/0"],
            "network-fqdn": fqdn,
        }))
    return loadConfig(shape="simple", root=layout.simple, overrides={"peers": list(peers)})


def _json(request, value, status=200):
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(value).encode("utf-8")


class ControlResource(Resource):
    """
    The supervisor's control API (see the module's docstring).
    """

    isLeaf = True

    def __init__(self, supervisor, token):
        super().__init__()
        self.supervisor = supervisor
        self.token = b"Bearer " + token.encode("ascii")

    def render(self, request):
        if not hmac.compare_digest(request.getHeader(b"authorization") or b"", self.token):
            return _json(request, {"error": "not authorised: the token is in the dream's control.token"}, 401)
        return super().render(request)

    def render_GET(self, request):
        if request.path != b"/status":
            return _json(request, {"error": "not found"}, 404)
        return self._later(request, self.supervisor.status())

    def render_POST(self, request):
        if request.path == b"/stop":
            self.supervisor.reactor.callLater(0, self.supervisor.shutdown)
            return _json(request, {"stopping": True})
        if request.path == b"/inject":
            shape = (request.args.get(b"shape") or [b""])[0].decode("utf-8", "replace")
            if not shape or len(shape) > MAX_SHAPE:
                return _json(request, {"error": f"shape: 1 to {MAX_SHAPE} characters"}, 400)
            return self._later(request, self.supervisor.inject(shape))
        return _json(request, {"error": "not found"}, 404)

    def _later(self, request, coroutine):
        gone = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def done(value):
            if not gone:
                request.write(_json(request, value))
                request.finish()

        def failed(f):
            status = 400 if f.check(DreamError) else 500
            if status == 500:
                log.failure("control request failed", f)
            if not gone:
                request.write(_json(request, {"error": f.getErrorMessage()}, status))
                request.finish()

        Deferred.fromCoroutine(coroutine).addCallbacks(done, failed)
        return NOT_DONE_YET


class Supervisor:
    """
    One running dream with its console; L{run} until L{shutdown}.
    """

    def __init__(self, reactor, folder, name, shapes):
        self.reactor = reactor
        self.layout = Layout(folder)
        # dream.json names every node from its spawn on: a supervisor
        # killed while starting leaves no process C{tau dream stop} misses
        self.dream = Dream(reactor, folder, name, changed=self.save)
        self.shapes = shapes
        self.simple = None
        self.collector = None
        self.listeners = []
        self.consoleURL = None
        self.controlURL = None
        self._stopping = None

    async def start(self):
        await self.dream.start(self.shapes)
        from tau.node import makeNode

        config = simpleConfig(self.layout, self.dream.fqdn, [n.address for n in self.dream.nodes][:8],
                              self.dream.cloudKey)
        self.simple = makeNode(config, reactor=self.reactor)
        self.simple.startService()
        await self.simple.whenReady()
        self.collector = Collector(self.dream, self.simple, self.reactor)
        self.collector.startService()
        console = Listener("console", "tcp:0:interface=127.0.0.1", QuietSite(consoleResource(self.collector)),
                           self.reactor)
        token = secrets.token_hex(16)
        writePrivate(self.layout.controlToken, token + "\n")
        control = Listener("control", "tcp:0:interface=127.0.0.1", QuietSite(ControlResource(self, token)),
                           self.reactor)
        for listener in (console, control):
            listener.startService()
            self.listeners.append(listener)
            await listener.whenListening()
        self.consoleURL = f"http://127.0.0.1:{console.port.getHost().port}/"
        self.controlURL = f"http://127.0.0.1:{control.port.getHost().port}"
        self.save()
        return self

    def state(self):
        state = self.dream.state()
        state.update(supervisor=os.getpid(), console=self.consoleURL, control=self.controlURL,
                     dns=("{}:{}".format(*self.dream.dns) if self.dream.dns else None))
        return state

    def save(self):
        writeJSON(self.layout.state, self.state())

    async def status(self):
        state = self.state()
        state["health"] = await self.dream.health()
        return state

    async def inject(self, shape):
        node = await self.dream.inject(checkShape(shape))
        self.save()
        return node.summary()

    async def stop(self):
        if self._stopping is None:
            self._stopping = Deferred.fromCoroutine(self._stop())
        await self._stopping

    async def _stop(self):
        if self.collector is not None and self.collector.running:
            await self.collector.stopService()
        for listener in self.listeners:
            await listener.stopService()
        if self.simple is not None and self.simple.running:
            await self.simple.stopService()
        await self.dream.stop()
        for path in (self.layout.state, self.layout.controlToken):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def shutdown(self):
        if self.reactor.running:
            self.reactor.stop()


def _quiet(event):
    # the health checks' HTTP clients say so every 2 seconds
    if event.get("log_namespace", "").startswith("twisted.web.client"):
        return PredicateResult.no
    return PredicateResult.maybe


class QuietSite(Site):
    """
    A site that logs no request (the console polls every 2 seconds).
    """

    def log(self, request):
        pass


def _parser():
    p = argparse.ArgumentParser(prog="python -m tau.dream.supervisor")
    p.add_argument("--folder", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--shapes", default=None)
    p.add_argument("--ready-fd", type=int, default=None)
    return p


def main(argv=None):
    """
    Run a dream until SIGTERM, SIGINT or C{/stop}; exits with 1 when it
    could not start.
    """
    react(_supervise, [_parser().parse_args(argv)])


async def _supervise(reactor, args):
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(textFileLogObserver(sys.stdout), [_quiet])],
                                     redirectStandardIO=False)
    ready = os.fdopen(args.ready_fd, "w", encoding="utf-8") if args.ready_fd is not None else None

    def tell(text):
        if ready is not None and not ready.closed:
            ready.write(text + "\n")
            ready.close()

    try:
        shapes = parseShapes(args.shapes) if args.shapes else None
        supervisor = Supervisor(reactor, args.folder, args.name, shapes)
    except DreamError as e:
        tell(f"failed: {e}")
        raise SystemExit(1)
    layout = supervisor.layout
    layout.folder.mkdir(parents=True, exist_ok=True)
    other = readPid(layout)
    if other is not None and other != os.getpid() and alive(other):
        tell(f"failed: dream {args.name} already runs (pid {other}) in {layout.folder}")
        raise SystemExit(1)
    layout.pidFile.write_text(f"{os.getpid()}\n", encoding="ascii")

    async def stop():
        await supervisor.stop()
        try:
            if readPid(layout) == os.getpid():
                layout.pidFile.unlink()
        except OSError:
            pass

    reactor.addSystemEventTrigger("before", "shutdown", lambda: Deferred.fromCoroutine(stop()))
    running = Deferred()
    reactor.callWhenRunning(running.callback, None)
    await running
    try:
        await supervisor.start()
    except BaseException as e:
        sub = getattr(e, "subFailure", None)
        reason = sub.getErrorMessage() if sub is not None else str(e) or e.__class__.__name__
        log.error("dream {name} failed to start: {reason}", name=args.name, reason=reason)
        tell(f"failed: {reason}")
        raise SystemExit(1)
    log.info("dream {name} running, console at {url}", name=args.name, url=supervisor.consoleURL)
    tell("ready")
    # until SIGTERM, SIGINT or /stop stops the reactor
    await Deferred()


if __name__ == "__main__":
    main()
