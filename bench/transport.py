"""
tau's transport on loopback, each figure next to its baseline, in one run.

    python bench/transport.py                 # full run (a few minutes)
    python bench/transport.py --quick         # small sizes, one run: a smoke test
    python bench/transport.py --runs 7 --json

  1. one-stream throughput tau <-> tau: two tau hosts in two separate
     processes (this file run with --role), one yamux stream over TLS 1.3
     carrying N MiB to a sink protocol, measured by the receiver from its
     first to its last byte -- against raw TLS 1.3 (pyOpenSSL through
     Twisted) between two processes, measured the same way
     (bench/transport_baselines.py).  The runs alternate (TLS, tau, TLS,
     tau, ...) so both see the same machine; target: ratio >= 0.6;
  2. perf (/perf/1.0.0) throughput tau -> js and js -> tau, upload and
     download, against js -> js;
  3. connection set-up time, dial until identify is done, median of 50
     fresh connections: tau -> tau (two processes), tau -> js and js -> tau,
     against js -> js.

Every figure is the median of several runs: the machines are shared and
noisy.  Speed never changes the exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
for _p in (str(REPO), str(HERE.parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import transport_baselines as baselines  # noqa: E402

MiB = baselines.MiB
SINK = "/tau/bench/sink/1.0.0"
TARGET = 0.6


@dataclass
class Row:
    name: str
    value: Optional[float]
    unit: str
    baseline: str = ""  # the name of the row this one is compared with
    ratio: Optional[float] = None
    verdict: str = ""
    note: str = ""


def formatRows(rows: list[Row]) -> str:
    table = [("figure", "median", "unit", "ratio", "vs", "", "note")]
    for r in rows:
        table.append(
            (
                r.name,
                "-" if r.value is None else f"{r.value:.2f}",
                r.unit,
                "" if r.ratio is None else f"{r.ratio:.3f}",
                r.baseline,
                r.verdict,
                r.note,
            )
        )
    widths = [max(len(t[i]) for t in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(t, widths)).rstrip() for t in table]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# child processes (this file run with --role)


def _newHost(reactor: Any, listen: list[str]) -> Any:
    from tau.host import Host
    from tau.identity import PrivateKey
    from tau.protocols import installProtocols

    host = Host(PrivateKey.generate(), reactor, listen=listen)
    installProtocols(host, perf=True)
    return host


def _roleTauSink(total: Optional[int]) -> None:
    """
    A tau host on 127.0.0.1:0 serving L{SINK}; print {"addr"}.  With
    C{total}: once one sink stream has brought C{total} bytes, print
    {"bytes","seconds"} (first to last byte) and exit.  Without: serve
    until killed (the set-up time target).
    """
    from zope.interface import implementer

    from twisted.internet import reactor
    from twisted.internet.interfaces import IHalfCloseableProtocol
    from twisted.internet.protocol import Protocol

    result: dict = {}

    @implementer(IHalfCloseableProtocol)
    class Sink(Protocol):
        received = 0
        first: Optional[float] = None

        def dataReceived(self, data: bytes) -> None:
            if self.first is None:
                self.first = time.perf_counter()
            self.received += len(data)
            if total is not None and self.received >= total and not result:
                result.update(bytes=self.received, seconds=time.perf_counter() - self.first)
                self.transport.loseConnection()
                reactor.callLater(0.05, reactor.stop)

        def readConnectionLost(self) -> None:
            self.transport.loseConnection()

        def writeConnectionLost(self) -> None:
            pass

        def connectionLost(self, reason: Any) -> None:
            if total is not None and not result:
                result.update(error=f"sink stream lost after {self.received} bytes: {reason.value}")
                reactor.callLater(0, reactor.stop)

    host = _newHost(reactor, ["/ip4/127.0.0.1/tcp/0"])
    host.setProtocolFactory(SINK, lambda stream: Sink())
    host.startService()

    def ready(_: Any) -> None:
        addr = f"{host.listenAddresses()[0]}/p2p/{host.peerID}"
        print(json.dumps({"addr": addr}), flush=True)

    host.whenReady().addCallbacks(ready, lambda f: (print(json.dumps({"error": str(f.value)}), flush=True), reactor.stop()))
    if total is not None:
        reactor.callLater(300, reactor.stop)  # bounded
    reactor.run()
    if total is not None:
        print(json.dumps(result or {"error": "timed out"}), flush=True)


def _roleTauSend(addr: str, total: int, chunk: int) -> None:
    """
    Dial C{addr}, wait for identify, open one L{SINK} stream and send
    C{total} bytes on it with a streaming producer, in C{chunk}-byte writes
    of one buffer; half-close; exit once the stream is over.
    """
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    from _sender import Sender
    from tau.peerstore import stripPeer
    from tau.protocols import identify

    sender = Sender(total, os.urandom(chunk))
    sender.done.addCallback(lambda _: reactor.callLater(0, reactor.stop))

    async def run() -> None:
        host = _newHost(reactor, [])
        host.startService()
        await host.whenReady()
        conn = await host.connect(addr)
        await identify.whenIdentified(host, conn)
        _, peer = stripPeer(addr)
        await host.newRawStream(peer, [SINK], sender)

    def failed(f: Any) -> None:
        print(json.dumps({"error": f.getErrorMessage()}), flush=True)
        reactor.stop()

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(run()).addErrback(failed))
    reactor.callLater(300, reactor.stop)  # bounded
    reactor.run()


# ----------------------------------------------------------------------------
# the orchestrator's side


def _processProtocol() -> Any:
    from twisted.internet.defer import Deferred
    from twisted.internet.protocol import ProcessProtocol

    class Child(ProcessProtocol):
        def __init__(self, expectLine: bool) -> None:
            self.expectLine = expectLine
            self.out = b""
            self.err = b""
            self.firstLine: Deferred = Deferred()
            self.ended: Deferred = Deferred()

        def outReceived(self, data: bytes) -> None:
            self.out += data
            lines = [x for x in self.out.split(b"\n")[:-1] if x.startswith(b"{")]
            if lines and not self.firstLine.called:
                line = json.loads(lines[0])
                if "error" in line:
                    self.firstLine.errback(RuntimeError(f"bench child: {line['error']}"))
                else:
                    self.firstLine.callback(line)

        def errReceived(self, data: bytes) -> None:
            self.err += data

        def processEnded(self, reason: Any) -> None:
            if self.expectLine and not self.firstLine.called:
                self.firstLine.errback(RuntimeError(f"bench child failed: {self.err.decode()[-2000:]}"))
            self.ended.callback(None)

        def lastJSON(self) -> dict:
            lines = [x for x in self.out.split(b"\n") if x.startswith(b"{")]
            return json.loads(lines[-1]) if lines else {"error": "no output"}

    return Child


def _spawn(reactor: Any, *args: str, profile: Optional[str] = None, expectLine: bool = True) -> Any:
    child = _processProtocol()(expectLine)
    argv = [sys.executable, str(HERE), *args]
    if profile:
        # py-spy record -o PROFILE -- python ...
        import shutil

        pyspy = shutil.which("py-spy") or "py-spy"
        argv = [pyspy, "record", "--rate", "1000", "--format", "raw", "-o", profile, "--", *argv]
    reactor.spawnProcess(child, argv[0], argv, env=dict(os.environ))
    return child


async def _kill(reactor: Any, child: Any, after: float = 0.0) -> None:
    """
    Wait up to C{after} seconds for C{child} to end, then TERM it, then KILL.
    """
    from twisted.internet.defer import Deferred

    def ended(wait: float) -> Deferred:
        d: Deferred = Deferred()
        timer = reactor.callLater(wait, lambda: d.called or d.callback(None))

        def done(_: Any) -> None:
            if timer.active():
                timer.cancel()
            if not d.called:
                d.callback(None)

        child.ended.addBoth(lambda r: (done(None), r)[1])
        return d

    if after and not child.ended.called:
        await ended(after)
    for signal in ("TERM", "KILL"):
        if child.ended.called:
            return
        try:
            child.transport.signalProcess(signal)
        except Exception:
            return
        await ended(5.0)


async def tauStreamOnce(reactor: Any, total: int, chunk: int, profile: Optional[str] = None) -> dict:
    """
    One tau -> tau run: a sink process and a sender process, one stream.

    @return: C{{"bytes", "seconds"}} measured by the receiver.
    """
    sink = _spawn(reactor, "--role", "tau-sink", "--bytes", str(total), profile=profile and profile + ".recv")
    addr = (await sink.firstLine)["addr"]
    sender = _spawn(
        reactor, "--role", "tau-send", "--addr", addr, "--bytes", str(total), "--chunk", str(chunk),
        profile=profile and profile + ".send", expectLine=False,
    )
    # the sink exits once it has everything; the sender right after
    await _kill(reactor, sink, after=300)
    await _kill(reactor, sender, after=30)
    result = sink.lastJSON()
    if "error" in result:
        raise RuntimeError(
            f"tau stream bench: {result['error']}; receiver: {sink.err.decode()[-1500:]}; "
            f"sender: {sender.out.decode()[-500:]} {sender.err.decode()[-1500:]}"
        )
    return result


async def streamThroughput(reactor: Any, mib: int, runs: int, chunk: int) -> tuple[dict, dict]:
    """
    Alternate raw TLS and tau runs; medians and the median of the pairwise
    ratios.
    """
    tls, tau = [], []
    for _ in range(runs):
        r = await baselines._rawTlsOnce(reactor, mib * MiB)
        tls.append(r["bytes"] / MiB / r["seconds"])
        cipher = f"{r['version']} {r['cipher']}"
        t = await tauStreamOnce(reactor, mib * MiB, chunk)
        tau.append(t["bytes"] / MiB / t["seconds"])
        print(f"  stream run: raw TLS {tls[-1]:.1f} MiB/s, tau {tau[-1]:.1f} MiB/s", file=sys.stderr, flush=True)
    pairs = [b / a for a, b in zip(tls, tau)]
    return (
        {"MiBps": statistics.median(tls), "runs": tls, "cipher": cipher},
        {"MiBps": statistics.median(tau), "runs": tau, "pairRatio": statistics.median(pairs)},
    )


async def _tauHost(reactor: Any) -> Any:
    host = _newHost(reactor, ["/ip4/127.0.0.1/tcp/0"])
    host.startService()
    await host.whenReady()
    return host


def _addressOf(host: Any) -> str:
    return f"{host.listenAddresses()[0]}/p2p/{host.peerID}"


async def tauJsPerf(reactor: Any, mib: int, runs: int) -> dict:
    """
    perf between an in-process tau host and a js peer: tau as the client
    (tau -> js) and js as the client (js -> tau), C{runs} times each, over
    one connection.
    """
    from tau.identity import PeerID
    from tau.protocols import perf

    jspeer = baselines._harness()
    host = await _tauHost(reactor)
    try:
        js = await jspeer.startJsPeer(reactor)
        try:
            peer = PeerID.fromString(js.peerId)
            await host.connect(js.addrs[0])
            tauUp, tauDown, jsUp, jsDown = [], [], [], []
            for _ in range(runs):
                r = await perf.perf(host, peer, upload=mib * MiB, download=mib * MiB, timeout=300)
                tauUp.append(r["upload"][0] / MiB / r["upload"][1])
                tauDown.append(r["download"][0] / MiB / r["download"][1])
                a = await js.command("perf", addr=_addressOf(host), upload=mib * MiB, download=mib * MiB, timeout=300)
                jsUp.append(a["uploadBytes"] / MiB / a["uploadSeconds"])
                jsDown.append(a["downloadBytes"] / MiB / a["downloadSeconds"])
                print(
                    f"  perf run: tau->js up {tauUp[-1]:.1f} down {tauDown[-1]:.1f}; "
                    f"js->tau up {jsUp[-1]:.1f} down {jsDown[-1]:.1f} MiB/s",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            await js.stop()
    finally:
        await host.stopService()
    med = statistics.median
    return {"tauUp": med(tauUp), "tauDown": med(tauDown), "jsUp": med(jsUp), "jsDown": med(jsDown)}


async def _tauDials(reactor: Any, host: Any, addr: str, count: int) -> dict:
    """
    C{count} fresh connections from C{host} to C{addr} (plus one warm-up),
    each timed from the dial to identify done, closed in between.
    """
    from tau.protocols import identify

    dial, ident = [], []
    slow = 0
    for i in range(count + 1):
        t0 = time.perf_counter()
        conn = await host.connect(addr)
        t1 = time.perf_counter()
        await identify.whenIdentified(host, conn)
        t2 = time.perf_counter()
        # not timed: close, and abort what is not gone within a second
        # (a graceful close to a js peer takes ~10 s, see slowCloses)
        closed = conn.close()
        timer = reactor.callLater(1.0, conn.abort)
        await closed
        if timer.active():
            timer.cancel()
        else:
            slow += 1
        if i:
            dial.append((t1 - t0) * 1000)
            ident.append((t2 - t0) * 1000)
    return {**_setupStats(ident, dial), "slowCloses": slow}


def _setupStats(ident: list[float], dial: list[float]) -> dict:
    return {
        "medianMs": statistics.median(ident),
        "p90Ms": statistics.quantiles(ident, n=10)[-1] if len(ident) > 1 else ident[0],
        "dialMedianMs": statistics.median(dial),
        "runs": ident,
    }


async def tauTauSetup(reactor: Any, count: int) -> dict:
    """
    tau -> tau set-up: the in-process host dials a tau host in another
    process.
    """
    listener = _spawn(reactor, "--role", "tau-sink")
    try:
        addr = (await listener.firstLine)["addr"]
        host = await _tauHost(reactor)
        try:
            return await _tauDials(reactor, host, addr, count)
        finally:
            await host.stopService()
    finally:
        await _kill(reactor, listener)


async def tauJsSetup(reactor: Any, count: int) -> tuple[dict, dict]:
    """
    tau -> js (timed here) and js -> tau (timed inside js, as js -> js is).
    """
    jspeer = baselines._harness()
    host = await _tauHost(reactor)
    try:
        js = await jspeer.startJsPeer(reactor)
        try:
            out = await _tauDials(reactor, host, js.addrs[0], count)
            addr = _addressOf(host)
            await js.command("dial", addr=addr)
            await js.command("hangup", peer=str(host.peerID))
            ident, dial = [], []
            for _ in range(count):
                reply = await js.command("dial", addr=addr, force=True)
                ident.append(reply["identifyMs"])
                dial.append(reply["dialMs"])
                await js.command("hangup", peer=str(host.peerID))
            return out, _setupStats(ident, dial)
        finally:
            await js.stop()
    finally:
        await host.stopService()


def _ratio(value: Optional[float], base: Optional[float]) -> Optional[float]:
    if value is None or not base:
        return None
    return value / base


def _phase(name: str, _last: list = []) -> None:
    now = time.monotonic()
    if _last:
        print(f"  ({_last[0]}: {now - _last[1]:.1f} s)", file=sys.stderr, flush=True)
    _last[:] = [name, now]


async def runAll(reactor: Any, args: Any) -> tuple[list[Row], dict]:
    rows: list[Row] = []
    raw: dict = {}
    _phase("stream")

    # 1. one stream, tau <-> tau against raw TLS
    tls, tau = await streamThroughput(reactor, args.stream_mib, args.runs, args.chunk)
    raw["stream"] = {"tls": tls, "tau": tau}
    ratio = tau["MiBps"] / tls["MiBps"]
    rows.append(Row("raw TLS 1.3, py->py processes", tls["MiBps"], "MiB/s",
                    note=f"{args.stream_mib} MiB x{args.runs}, {tls['cipher']}"))
    rows.append(Row("tau->tau one stream, processes", tau["MiBps"], "MiB/s", "raw TLS", ratio,
                    "PASS" if ratio >= TARGET else "FAIL",
                    f"target >= {TARGET}; median pairwise ratio {tau['pairRatio']:.3f}; {args.chunk // 1024} KiB writes"))

    # 2. perf with js
    jsAvailable = True
    try:
        baselines._harness().findNode()
        baselines._harness().checkNodeModules()
    except Exception as e:
        jsAvailable = False
        rows.append(Row("js figures skipped", None, "", note=str(e).split(";")[0]))
    if jsAvailable:
        _phase("js->js perf")
        jsjs = await baselines.jsPerfThroughput(reactor, args.perf_mib, args.runs)
        _phase("tau<->js perf")
        mixed = await tauJsPerf(reactor, args.perf_mib, args.runs)
        raw["perf"] = {"jsjs": jsjs, "tauJs": mixed}
        note = f"{args.perf_mib} MiB x{args.runs}"
        rows += [
            Row("js->js perf upload", jsjs["uploadMiBps"], "MiB/s", note=f"{note}, {jsjs['encryption']}+yamux"),
            Row("js->js perf download", jsjs["downloadMiBps"], "MiB/s", note=note),
            Row("tau->js perf upload", mixed["tauUp"], "MiB/s", "js->js up", _ratio(mixed["tauUp"], jsjs["uploadMiBps"]), note="tau sends"),
            Row("tau->js perf download", mixed["tauDown"], "MiB/s", "js->js down", _ratio(mixed["tauDown"], jsjs["downloadMiBps"]), note="js sends"),
            Row("js->tau perf upload", mixed["jsUp"], "MiB/s", "js->js up", _ratio(mixed["jsUp"], jsjs["uploadMiBps"]), note="js sends"),
            Row("js->tau perf download", mixed["jsDown"], "MiB/s", "js->js down", _ratio(mixed["jsDown"], jsjs["downloadMiBps"]), note="tau sends"),
        ]

    # 3. set-up time
    n = args.connections
    _phase("tau->tau set-up")
    tt = await tauTauSetup(reactor, n)
    raw["setup"] = {"tauTau": tt}
    if jsAvailable:
        _phase("js->js set-up")
        jsjs = await baselines.jsConnectionSetup(reactor, n)
        _phase("tau<->js set-up")
        tauJs, jsTau = await tauJsSetup(reactor, n)
        raw["setup"].update(jsjs=jsjs, tauJs=tauJs, jsTau=jsTau)
        base = jsjs["medianMs"]
        rows.append(Row("js->js dial+identify", base, "ms", note=f"median of {n}, p90 {jsjs['p90Ms']:.1f}, dial {jsjs['dialMedianMs']:.1f}"))
    else:
        base = None
    rows.append(Row("tau->tau dial+identify", tt["medianMs"], "ms", "js->js", _ratio(tt["medianMs"], base),
                    note=f"processes; median of {n}, p90 {tt['p90Ms']:.1f}, dial {tt['dialMedianMs']:.1f}"))
    if jsAvailable:
        rows.append(Row("tau->js dial+identify", tauJs["medianMs"], "ms", "js->js", _ratio(tauJs["medianMs"], base),
                        note=f"median of {n}, p90 {tauJs['p90Ms']:.1f}, dial {tauJs['dialMedianMs']:.1f}"))
        rows.append(Row("js->tau dial+identify", jsTau["medianMs"], "ms", "js->js", _ratio(jsTau["medianMs"], base),
                        note=f"timed in js; median of {n}, p90 {jsTau['p90Ms']:.1f}, dial {jsTau['dialMedianMs']:.1f}"))
    _phase("")
    return rows, raw


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stream-mib", type=int, default=256, help="MiB on the tau<->tau stream and raw TLS")
    parser.add_argument("--perf-mib", type=int, default=100, help="MiB each way for perf with js")
    parser.add_argument("--connections", type=int, default=50, help="connections timed for set-up")
    parser.add_argument("--runs", type=int, default=5, help="runs per throughput figure")
    parser.add_argument("--chunk", type=int, default=256 * 1024, help="bytes per write on the tau stream")
    parser.add_argument("--quick", action="store_true", help="16 MiB / 10 MiB / 10 connections / 1 run")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--profile", metavar="PREFIX", help="only profile one tau->tau stream run with py-spy (PREFIX.recv/.send)")
    parser.add_argument("--role", choices=["tau-sink", "tau-send"], help=argparse.SUPPRESS)
    parser.add_argument("--addr", help=argparse.SUPPRESS)
    parser.add_argument("--bytes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "tau-sink":
        return _roleTauSink(args.bytes)
    if args.role == "tau-send":
        return _roleTauSend(args.addr, args.bytes, args.chunk)
    if args.quick:
        args.stream_mib, args.perf_mib, args.connections, args.runs = 16, 10, 10, 1

    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    async def run(reactor: Any) -> None:
        if args.profile:
            r = await tauStreamOnce(reactor, args.stream_mib * MiB, args.chunk, profile=args.profile)
            print(f"tau->tau {r['bytes'] / MiB / r['seconds']:.1f} MiB/s under py-spy; profiles in {args.profile}.recv/.send")
            return
        started = time.monotonic()
        rows, raw = await runAll(reactor, args)
        print(formatRows(rows))
        print(f"({time.monotonic() - started:.0f} s; python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
        if args.json:
            print(json.dumps({"rows": [asdict(r) for r in rows], "raw": raw}))

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
