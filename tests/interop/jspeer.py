"""
Drive a js-libp2p peer (tests/interop/js/peer.mjs) from Twisted.

The peer is one node process speaking JSON lines: requests
C{{"id": N, "cmd": NAME, ...}} on its stdin, replies C{{"id": N, "ok": ...}}
and unsolicited events C{{"event": ...}} on its stdout, logs on its stderr.

    peer = await startJsPeer(reactor)
    try:
        result = await peer.command("ping", addr=otherAddr)
    finally:
        await peer.stop()

The npm side is installed with C{npm ci --prefix tests/interop/js}.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections import deque
from pathlib import Path
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

JS_DIR = Path(__file__).resolve().parent / "js"
ECHO_PROTOCOL = "/tau/echo/1.0.0"
PERF_PROTOCOL = "/perf/1.0.0"

_MAX_LINE = 16 * 1024 * 1024
_STDERR_KEEP = 64 * 1024
_MAX_EVENTS = 10_000


class JsPeerError(Exception):
    """
    The js peer failed: it did not start, it answered C{ok: false}, it did
    not answer in time, or it exited.  The message carries the tail of its
    stderr where that helps.
    """


class JsPeerUnavailable(JsPeerError):
    """
    node or the npm packages are missing on this machine.
    """


def findNode() -> str:
    """
    The node binary: C{$TAU_NODE}, else C{node} on C{$PATH}.
    """
    node = os.environ.get("TAU_NODE") or shutil.which("node")
    if not node:
        raise JsPeerUnavailable(
            "node (>= 20) not found on PATH (or set TAU_NODE); "
            "install Node.js, then run: npm ci --prefix tests/interop/js"
        )
    return node


def checkNodeModules(jsDir: Path = JS_DIR) -> None:
    """
    Raise L{JsPeerUnavailable} unless C{npm ci} has been run in C{jsDir}.
    """
    if not (jsDir / "node_modules" / "libp2p" / "package.json").exists():
        raise JsPeerUnavailable(
            f"{jsDir / 'node_modules'} is missing or incomplete; run: "
            f"npm ci --prefix {jsDir}"
        )


def writeSwarmKey(path: str | os.PathLike[str], key: Optional[bytes] = None) -> bytes:
    """
    Write a PSK v1 swarm key file (C{/key/swarm/psk/1.0.0/}, C{/base16/},
    64 hex digits) and return the 32 key bytes (random unless given).
    """
    if key is None:
        key = secrets.token_bytes(32)
    if len(key) != 32:
        raise ValueError("a swarm key is 32 bytes")
    Path(path).write_text(f"/key/swarm/psk/1.0.0/\n/base16/\n{key.hex()}\n")
    return key


class _PeerProcess(ProcessProtocol):
    """
    Framing only: stdout bytes -> JSON objects, stderr -> a bounded tail.
    """

    def __init__(self, onMessage: Callable[[dict], None], onEnded: Callable[[Failure], None]):
        self._onMessage = onMessage
        self._onEnded = onEnded
        self._buffer = b""
        self.stderr: deque[bytes] = deque()
        self._stderrSize = 0

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError:
                log.warn("js peer wrote a non-JSON line: {line!r}", line=line[:200])
                continue
            if isinstance(message, dict):
                self._onMessage(message)
        if len(self._buffer) > _MAX_LINE:
            log.warn("js peer wrote a line over {max} bytes; killing it", max=_MAX_LINE)
            self._buffer = b""
            self.transport.signalProcess("KILL")

    def errReceived(self, data: bytes) -> None:
        self.stderr.append(data)
        self._stderrSize += len(data)
        while self._stderrSize > _STDERR_KEEP and len(self.stderr) > 1:
            self._stderrSize -= len(self.stderr.popleft())

    def stderrTail(self, limit: int = 4000) -> str:
        return b"".join(self.stderr)[-limit:].decode("utf-8", "replace")

    def processEnded(self, reason: Failure) -> None:
        self._onEnded(reason)


class JsPeer:
    """
    A running js-libp2p peer.  Build it with L{startJsPeer}.

    @ivar peerId: the peer's id (text).
    @ivar addrs: its listen multiaddrs, each ending in C{/p2p/<peerId>}.
    @ivar protocols: the protocols it serves.
    @ivar events: the unsolicited events it reported, oldest first
        (C{identify}, C{connection:open}, C{connection:close}).
    """

    def __init__(self, reactor: IReactorTime, defaultTimeout: float = 30.0):
        self._reactor = reactor
        self.defaultTimeout = defaultTimeout
        self._nextId = 1
        self._pending: dict[int, tuple[Deferred, Any]] = {}
        self._eventWaiters: list[tuple[Callable[[dict], bool], Deferred, Any]] = []
        self._ready: Optional[Deferred] = Deferred()
        self._endedWaiters: list[Deferred] = []
        self.ended: Optional[Failure] = None
        self._startTimedOut = False
        self.events: deque[dict] = deque(maxlen=_MAX_EVENTS)
        self.peerId: str = ""
        self.addrs: list[str] = []
        self.protocols: list[str] = []
        self.process = _PeerProcess(self._messageReceived, self._processEnded)

    # -- process events

    def _messageReceived(self, message: dict) -> None:
        if "event" in message:
            if message["event"] == "ready" and self._ready is not None:
                self.peerId = message["peerId"]
                self.addrs = list(message["addrs"])
                self.protocols = list(message["protocols"])
                ready, self._ready = self._ready, None
                ready.callback(self)
                return
            self.events.append(message)
            for waiter in list(self._eventWaiters):
                match, d, _ = waiter
                if match(message):
                    self._eventWaiters.remove(waiter)
                    waiter[2].cancel()
                    d.callback(message)
            return
        if message.get("id") == 0:
            return  # the reply to stop()
        entry = self._pending.pop(message.get("id"), None)
        if entry is None:
            log.warn("js peer sent an unexpected message: {message}", message=message)
            return
        d, timer = entry
        timer.cancel()
        if message.get("ok"):
            d.callback(message)
        else:
            d.errback(JsPeerError(message.get("error", "unknown error")))

    def _processEnded(self, reason: Failure) -> None:
        self.ended = reason
        if self._startTimedOut:
            why = "js peer did not become ready in time (killed)"
        elif reason.check(ProcessDone):
            why = "js peer exited"
        else:
            why = f"js peer died ({reason.value})"
        error = JsPeerError(f"{why}; stderr:\n{self.process.stderrTail()}")
        if self._ready is not None:
            ready, self._ready = self._ready, None
            ready.errback(error)
        pending, self._pending = self._pending, {}
        for d, timer in pending.values():
            timer.cancel()
            d.errback(error)
        waiters, self._eventWaiters = self._eventWaiters, []
        for _, d, timer in waiters:
            timer.cancel()
            d.errback(error)
        endedWaiters, self._endedWaiters = self._endedWaiters, []
        for d in endedWaiters:
            d.callback(None)

    # -- API

    async def command(self, name: str, *, timeout: Optional[float] = None, **args: Any) -> dict:
        """
        Send command C{name} with C{args}, return the reply dict (C{ok} true).

        The js side gives up after C{timeout} seconds and answers with an
        error; we wait 5 s longer for that answer before failing ourselves.

        @raise JsPeerError: on C{ok: false}, no answer, or process exit.
        """
        if self.ended is not None:
            raise JsPeerError(f"js peer is not running; stderr:\n{self.process.stderrTail()}")
        if timeout is None:
            timeout = self.defaultTimeout
        requestId = self._nextId
        self._nextId += 1
        request = {"id": requestId, "cmd": name, "timeoutMs": int(timeout * 1000), **args}
        d: Deferred = Deferred()

        def expire() -> None:
            entry = self._pending.pop(requestId, None)
            if entry is not None:
                entry[0].errback(
                    JsPeerError(
                        f"js peer did not answer {name} within {timeout + 5:.0f} s; stderr:\n"
                        f"{self.process.stderrTail()}"
                    )
                )

        timer = self._reactor.callLater(timeout + 5, expire)
        self._pending[requestId] = (d, timer)
        self.process.transport.write(json.dumps(request).encode() + b"\n")
        return await d

    async def waitEvent(
        self, match: Callable[[dict], bool], *, timeout: float = 10.0, past: bool = True
    ) -> dict:
        """
        Return the first event for which C{match(event)} is true, looking at
        the events already received too when C{past}.
        """
        if past:
            for event in self.events:
                if match(event):
                    return event
        if self.ended is not None:
            raise JsPeerError("js peer is not running")
        d: Deferred = Deferred()

        def expire() -> None:
            for waiter in list(self._eventWaiters):
                if waiter[1] is d:
                    self._eventWaiters.remove(waiter)
                    d.errback(TimeoutError(f"no matching js peer event within {timeout} s"))

        self._eventWaiters.append((match, d, self._reactor.callLater(timeout, expire)))
        return await d

    async def stop(self, timeout: float = 10.0) -> None:
        """
        Stop the node and wait for the process to exit: ask nicely, then
        SIGTERM, then SIGKILL.
        """
        if self.ended is not None:
            return
        ended: Deferred = Deferred()
        self._endedWaiters.append(ended)
        try:
            self.process.transport.write(b'{"id":0,"cmd":"stop"}\n')
            self.process.transport.closeStdin()
        except Exception:
            pass
        steps = [(timeout / 2, "TERM"), (timeout / 2, "KILL")]

        def escalate() -> None:
            if self.ended is not None or not steps:
                return
            _, signal = steps.pop(0)
            try:
                self.process.transport.signalProcess(signal)
            except ProcessExitedAlready:
                return
            if steps:
                timers.append(self._reactor.callLater(steps[0][0], escalate))

        timers = [self._reactor.callLater(steps[0][0], escalate)]
        try:
            await ended
        finally:
            for t in timers:
                if t.active():
                    t.cancel()


async def startJsPeer(
    reactor: Any,
    *,
    swarmKeyPath: Optional[str | os.PathLike[str]] = None,
    dht: bool = False,
    pubsub: bool = False,
    encrypter: str = "tls",
    listen: Optional[list[str]] = None,
    privateKey: Optional[str] = None,
    keyType: Optional[str] = None,
    debug: Optional[str] = None,
    startTimeout: float = 30.0,
    defaultTimeout: float = 30.0,
    jsDir: Path = JS_DIR,
    script: str = "peer.mjs",
    extraArgs: tuple = (),
    wrapper: tuple = (),
) -> JsPeer:
    """
    Start C{node --import ./polyfill.mjs peer.mjs} and wait for it to be ready.

    @param reactor: an L{IReactorProcess} and L{IReactorTime}.
    @param swarmKeyPath: a PSK v1 swarm key file: join that private network.
    @param dht: run @libp2p/kad-dht (server mode, /ipfs/kad/1.0.0).
    @param pubsub: run @libp2p/gossipsub (commands C{subscribe},
        C{unsubscribe}, C{publish}, C{pubsubPeers}; events C{pubsub:message}).
    @param encrypter: C{"tls"}, C{"noise"}, or both (C{"tls,noise"}) in dial
        preference order.
    @param listen: listen multiaddrs (default C{/ip4/127.0.0.1/tcp/0});
        C{[]} for no listener.
    @param privateKey: hex of a libp2p protobuf private key (fixed peer id).
    @param keyType: C{Ed25519} (default), C{secp256k1}, C{ECDSA} or C{RSA}.
    @param debug: the C{DEBUG} variable for js-libp2p logs (e.g. C{"libp2p:*"}),
        which end up in the stderr tail of error messages.
    @param script: another script speaking the same JSON lines (e.g.
        C{relay.mjs}); it gets C{extraArgs} and only the options it knows
        should be given.
    @param wrapper: a command to run node under, e.g. C{("ip", "netns",
        "exec", NAME)}.
    """
    IReactorProcess(reactor)
    node = findNode()
    checkNodeModules(jsDir)
    args = [node, "--import", "./polyfill.mjs", script]
    if script == "peer.mjs":
        args += ["--encrypter", encrypter]
    args += list(extraArgs)
    if listen is not None:
        for addr in listen or ["none"]:
            args += ["--listen", addr]
    if swarmKeyPath is not None:
        args += ["--swarm-key", os.fspath(Path(swarmKeyPath).resolve())]
    if dht:
        args += ["--dht"]
    if pubsub:
        args += ["--pubsub"]
    if privateKey is not None:
        args += ["--private-key", privateKey]
    if keyType is not None:
        args += ["--key-type", keyType]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAU_JS_")}
    env.pop("DEBUG", None)
    if debug:
        env["DEBUG"] = debug
    peer = JsPeer(reactor, defaultTimeout=defaultTimeout)
    ready = peer._ready
    args = list(wrapper) + args
    reactor.spawnProcess(peer.process, args[0], args, env=env, path=os.fspath(jsDir))

    def tooSlow() -> None:
        if peer._ready is not None:
            peer._startTimedOut = True
            peer.process.transport.signalProcess("KILL")

    timer = reactor.callLater(startTimeout, tooSlow)
    try:
        await ready
    finally:
        if timer.active():
            timer.cancel()
    return peer
