"""
Circuit relay v2 on loopback: relayed against direct, in one run.

    python bench/relay.py                 # full run (about a minute)
    python bench/relay.py --quick         # small sizes: a smoke test
    python bench/relay.py --runs 7 --mib 64 --connections 30 --json

Three tau hosts, each in its own process (this file run with --role): a
relay R (service on, no limits), a peer A that holds a reservation on R
and serves a sink protocol, and a sender B.  B measures, alternating the
two paths so both see the same machine:

  1. one-stream throughput B -> A, direct (B dials A's TCP address) and
     relayed (B dials .../p2p/R/p2p-circuit/p2p/A; TLS and yamux end to
     end over the hop and stop streams), each on a fresh connection; the
     sink measures first to last byte;
  2. connection set-up, dial until identify is done, direct and relayed
     (the relayed one includes the hop stream, CONNECT and the stop
     exchange; B is already connected to R, as a client of a relay is).

It prints the medians, the relayed/direct throughput ratio and the extra
set-up time of a relayed connection, and the CPU time each process spent
per GiB on each path: a relayed byte is encrypted three times (B's end to
end TLS, B's TLS to R, R's TLS to A) and decrypted three times, so with
three processes on two cores the ratio cannot go much above the ratio of
the total CPU per GiB.  Speed never changes the exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
for _p in (str(REPO), str(HERE.parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

MiB = 1 << 20
SINK = "/tau/bench/relay-sink/1.0.0"
CPU = "/tau/bench/cpu/1.0.0"
CHUNK = 64 * 1024


def _newHost(reactor: Any, listen: list[str]) -> tuple[Any, Any, Any]:
    from tau import relay
    from tau.host import Host
    from tau.identity import PrivateKey
    from tau.protocols import installProtocols

    host = Host(PrivateKey.generate(), reactor, listen=listen)
    installProtocols(host)
    client, service = relay.install(
        host, reactor, service="on" if listen else "off",
        limits=relay.RelayLimits(data=0, duration=0, maxReservationsPerIP=0),
    )

    async def cpu(stream: Any) -> None:
        # this process's CPU seconds (user + system) so far
        stream.write(json.dumps(time.process_time()).encode())
        stream.closeWrite()

    host.setStreamHandler(CPU, cpu)
    return host, client, service


def _emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def _roleRelay() -> None:
    from twisted.internet import reactor

    host, client, service = _newHost(reactor, ["/ip4/127.0.0.1/tcp/0"])
    host.startService()
    client.startService()
    service.startService()
    host.whenReady().addCallbacks(
        lambda _: _emit({"addr": f"{host.listenAddresses()[0]}/p2p/{host.peerID}"}),
        lambda f: (_emit({"error": f.getErrorMessage()}), reactor.stop()),
    )
    reactor.run()


def _roleSink(relayAddr: str) -> None:
    """
    A: serve SINK (count the bytes, answer {"bytes","seconds"} first to last
    byte once the sender half-closes), reserve on the relay, print the
    direct and the circuit address.
    """
    from zope.interface import implementer

    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IHalfCloseableProtocol
    from twisted.internet.protocol import Protocol

    from tau.config import peerIDOf

    @implementer(IHalfCloseableProtocol)
    class Sink(Protocol):
        received = 0
        first: Optional[float] = None
        firstCPU = 0.0
        last = 0.0

        def dataReceived(self, data: bytes) -> None:
            now = time.perf_counter()
            if self.first is None:
                self.first = now
                self.firstCPU = time.process_time()
            self.last = now
            self.received += len(data)

        def readConnectionLost(self) -> None:
            seconds = self.last - self.first if self.first is not None else 0.0
            cpu = time.process_time() - self.firstCPU
            self.transport.write(json.dumps({"bytes": self.received, "seconds": seconds, "cpu": cpu}).encode())
            self.transport.loseConnection()

        def writeConnectionLost(self) -> None:
            pass

    host, client, _ = _newHost(reactor, ["/ip4/127.0.0.1/tcp/0"])
    host.setProtocolFactory(SINK, lambda stream: Sink())

    async def run() -> None:
        host.startService()
        client.startService()
        await host.whenReady()
        reservation = await client.listen(peerIDOf(relayAddr), relayAddr)
        _emit(
            {
                "addr": f"{host.listenAddresses()[0]}/p2p/{host.peerID}",
                "circuit": f"{reservation.circuitAddrs()[0]}/p2p/{host.peerID}",
            }
        )

    Deferred.fromCoroutine(run()).addErrback(lambda f: (_emit({"error": f.getErrorMessage()}), reactor.stop()))
    reactor.run()


def _roleSender(relayAddr: str, direct: str, circuit: str, runs: int, mib: int, connections: int) -> None:
    """
    B: the measurements; print one JSON object with every sample.
    """
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    from _sender import Sender
    from tau.config import peerIDOf
    from tau.protocols import identify

    block = os.urandom(CHUNK)
    total = mib * MiB
    target = peerIDOf(direct)

    async def fresh(host: Any, addr: str) -> Any:
        for old in host.connections(target):
            await old.close()
        started = time.perf_counter()
        conn = await host.connect(addr)
        dialed = time.perf_counter()
        await identify.whenIdentified(host, conn)
        return conn, (dialed - started) * 1000, (time.perf_counter() - started) * 1000

    async def cpuOf(host: Any, peer: Any) -> float:
        stream = await host.newStream(peer, [CPU])
        return float(json.loads(await stream.readToEnd(100)))

    async def run() -> dict:
        host, client, _ = _newHost(reactor, [])
        host.startService()
        client.startService()
        await host.whenReady()
        relayPeer = (await host.connect(relayAddr)).remotePeer
        out: dict = {"direct": [], "relayed": [], "setupDirect": [], "setupRelayed": [], "cpuDirect": [], "cpuRelayed": []}
        # 1. throughput, alternating
        for i in range(runs):
            for mode, addr in (("direct", direct), ("relayed", circuit)) if i % 2 == 0 else (("relayed", circuit), ("direct", direct)):
                conn, _, _ = await fresh(host, addr)
                assert (conn.relay is not None) == (mode == "relayed"), mode
                sender = Sender(total, block)
                relayCPU = await cpuOf(host, relayPeer)
                ownCPU = time.process_time()
                await host.newRawStream(target, [SINK], sender)
                answer = json.loads(await sender.done)
                ownCPU = time.process_time() - ownCPU
                relayCPU = await cpuOf(host, relayPeer) - relayCPU
                if answer["bytes"] != total:
                    raise RuntimeError(f"{mode}: the sink got {answer['bytes']} of {total} bytes")
                out[mode].append(total / MiB / answer["seconds"])
                gib = total / (1 << 30)
                out["cpuDirect" if mode == "direct" else "cpuRelayed"].append(
                    {"sender": ownCPU / gib, "relay": relayCPU / gib, "sink": answer["cpu"] / gib}
                )
                await conn.close()
        # 2. set-up, alternating
        for i in range(connections):
            for mode, addr in (("setupDirect", direct), ("setupRelayed", circuit)) if i % 2 == 0 else (("setupRelayed", circuit), ("setupDirect", direct)):
                conn, dialMs, identifyMs = await fresh(host, addr)
                out[mode].append({"dialMs": dialMs, "identifyMs": identifyMs})
                await conn.close()
        return out

    def done(result: dict) -> None:
        _emit(result)
        reactor.stop()

    def failed(f: Any) -> None:
        _emit({"error": f.getErrorMessage()})
        reactor.stop()

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(run()).addCallbacks(done, failed))
    reactor.callLater(900, reactor.stop)  # bounded
    reactor.run()


# ----------------------------------------------------------------------------
# the orchestrator


def _spawn(reactor: Any, *args: str) -> Any:
    from twisted.internet.defer import Deferred
    from twisted.internet.protocol import ProcessProtocol

    class Child(ProcessProtocol):
        def __init__(self) -> None:
            self.lines: list[dict] = []
            self.buffer = b""
            self.stderr = b""
            self.waiting: list[Deferred] = []
            self.ended: Deferred = Deferred()

        def outReceived(self, data: bytes) -> None:
            self.buffer += data
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                self.lines.append(obj)
                waiting, self.waiting = self.waiting, []
                for d in waiting:
                    d.callback(obj)

        def errReceived(self, data: bytes) -> None:
            self.stderr = (self.stderr + data)[-8000:]

        def processEnded(self, reason: Any) -> None:
            waiting, self.waiting = self.waiting, []
            for d in waiting:
                d.errback(RuntimeError(f"{args[1]} exited: {self.stderr.decode(errors='replace')[-2000:]}"))
            self.ended.callback(None)

        def next(self) -> Deferred:
            d: Deferred = Deferred()
            self.waiting.append(d)
            return d

    child = Child()
    argv = [sys.executable, str(HERE), *args]
    profile = os.environ.get("TAU_BENCH_PROFILE_" + args[1].upper())
    if profile:
        # py-spy record -o PROFILE -- python ... (TAU_BENCH_PROFILE_RELAY=path)
        argv = [".venv/bin/py-spy", "record", "--rate", "500", "--format", "raw", "-o", profile, "--", *argv]
    reactor.spawnProcess(child, argv[0], argv, env=dict(os.environ))
    return child


async def _line(child: Any) -> dict:
    obj = await child.next()
    if "error" in obj:
        raise RuntimeError(obj["error"])
    return obj


async def _stop(reactor: Any, child: Any) -> None:
    from twisted.internet.task import deferLater

    for signal in ("INT", "TERM", "KILL"):
        if child.ended.called:
            return
        try:
            child.transport.signalProcess(signal)
        except Exception:
            return
        for _ in range(50):
            if child.ended.called:
                return
            await deferLater(reactor, 0.1)


async def measure(reactor: Any, runs: int, mib: int, connections: int) -> dict:
    relayProc = _spawn(reactor, "--role", "relay")
    children = [relayProc]
    try:
        relayAddr = (await _line(relayProc))["addr"]
        sink = _spawn(reactor, "--role", "sink", "--relay", relayAddr)
        children.append(sink)
        addrs = await _line(sink)
        sender = _spawn(
            reactor, "--role", "sender", "--relay", relayAddr, "--direct", addrs["addr"],
            "--circuit", addrs["circuit"], "--runs", str(runs), "--mib", str(mib),
            "--connections", str(connections),
        )
        children.append(sender)
        return await _line(sender)
    finally:
        for child in children:
            await _stop(reactor, child)


def summarize(raw: dict, mib: int) -> dict:
    direct = statistics.median(raw["direct"])
    relayed = statistics.median(raw["relayed"])
    pairs = [r / d for d, r in zip(raw["direct"], raw["relayed"])]
    setupD = statistics.median(s["identifyMs"] for s in raw["setupDirect"])
    setupR = statistics.median(s["identifyMs"] for s in raw["setupRelayed"])
    dialD = statistics.median(s["dialMs"] for s in raw["setupDirect"])
    dialR = statistics.median(s["dialMs"] for s in raw["setupRelayed"])
    cpu = {
        path: {role: statistics.median(c[role] for c in raw[key]) for role in ("sender", "relay", "sink")}
        for path, key in (("direct", "cpuDirect"), ("relayed", "cpuRelayed"))
    }
    return {
        "mib": mib,
        "runs": len(raw["direct"]),
        "directMiBps": direct,
        "relayedMiBps": relayed,
        "throughputRatio": relayed / direct,
        "medianPairRatio": statistics.median(pairs),
        "connections": len(raw["setupDirect"]),
        "setupDirectMs": setupD,
        "setupRelayedMs": setupR,
        "setupExtraMs": setupR - setupD,
        "setupRatio": setupR / setupD,
        "dialDirectMs": dialD,
        "dialRelayedMs": dialR,
        "cpuSecondsPerGiB": cpu,
        "cpuRatio": sum(cpu["relayed"].values()) / sum(cpu["direct"].values()),
    }


def report(s: dict) -> str:
    rows = [
        ("figure", "median", "unit", "ratio", "note"),
        ("direct one stream B->A", f"{s['directMiBps']:.2f}", "MiB/s", "", f"{s['mib']} MiB x{s['runs']}, fresh connection each"),
        ("relayed one stream B->R->A", f"{s['relayedMiBps']:.2f}", "MiB/s", f"{s['throughputRatio']:.3f}",
         f"vs direct; median pairwise ratio {s['medianPairRatio']:.3f}"),
        ("direct dial+identify", f"{s['setupDirectMs']:.1f}", "ms", "", f"median of {s['connections']}, dial {s['dialDirectMs']:.1f}"),
        ("relayed dial+identify", f"{s['setupRelayedMs']:.1f}", "ms", f"{s['setupRatio']:.3f}",
         f"extra {s['setupExtraMs']:+.1f} ms; dial {s['dialRelayedMs']:.1f}; B already connected to R"),
    ]
    for path in ("direct", "relayed"):
        c = s["cpuSecondsPerGiB"][path]
        rows.append((
            f"CPU per GiB, {path}", f"{sum(c.values()):.2f}", "s",
            f"{s['cpuRatio']:.3f}" if path == "relayed" else "",
            f"sender {c['sender']:.2f}, relay {c['relay']:.2f}, sink {c['sink']:.2f}"
            + ("; relayed/direct" if path == "relayed" else ""),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 MiB, 2 runs, 6 connections")
    parser.add_argument("--runs", type=int, default=5, help="throughput runs per path")
    parser.add_argument("--mib", type=int, default=64, help="MiB per throughput run")
    parser.add_argument("--connections", type=int, default=30, help="set-up samples per path")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--role", choices=["relay", "sink", "sender"], help=argparse.SUPPRESS)
    parser.add_argument("--relay", help=argparse.SUPPRESS)
    parser.add_argument("--direct", help=argparse.SUPPRESS)
    parser.add_argument("--circuit", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "relay":
        _roleRelay()
        return 0
    if args.role == "sink":
        _roleSink(args.relay)
        return 0
    if args.role == "sender":
        _roleSender(args.relay, args.direct, args.circuit, args.runs, args.mib, args.connections)
        return 0
    if args.quick:
        args.runs, args.mib, args.connections = 2, 8, 6

    from twisted.internet import task
    from twisted.internet.defer import Deferred

    async def run(reactor: Any) -> None:
        raw = await measure(reactor, args.runs, args.mib, args.connections)
        summary = summarize(raw, args.mib)
        if args.json:
            print(json.dumps({**summary, "raw": raw}, indent=2))
        else:
            print(report(summary))

    task.react(lambda reactor: Deferred.fromCoroutine(run(reactor)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
