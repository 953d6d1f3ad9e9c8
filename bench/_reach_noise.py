"""
Noise against TLS between two tau hosts on loopback, in one run.

    python bench/_reach_noise.py                  # 64 MiB, 5 runs, 30 dials
    python bench/_reach_noise.py --mib 16 --runs 3 --dials 10 --json

  1. one-stream throughput: two tau hosts in this process, each speaking
     only the protocol measured; one yamux stream carries N MiB (256 KiB
     writes from a streaming producer) to a sink, timed from the first
     write to the sink's last byte.  Both ends share one reactor thread, so
     the figure is what one core does encrypting and decrypting; the ratio
     Noise/TLS is what matters (target: >= 0.8).
  2. connection set-up time: a fresh TCP connection upgraded (multistream,
     the security handshake, multistream, yamux) until the dialer holds the
     connection, median of M dials, each closed before the next.

The runs alternate (TLS, Noise, TLS, Noise, ...) so both see the same
machine; every figure is a median.  L{measure} is what bench/reach.py calls.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
for _p in (str(HERE.parent.parent), str(HERE.parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from _sender import Sender  # noqa: E402

MiB = 1 << 20
SINK = "/tau/bench/sink/1.0.0"
CHUNK = 256 * 1024
TARGET = 0.8
KINDS = ("tls", "noise")


def _sinkFactory(total: int, done: Any):
    from twisted.internet.interfaces import IHalfCloseableProtocol
    from twisted.internet.protocol import Protocol
    from zope.interface import implementer

    @implementer(IHalfCloseableProtocol)
    class Sink(Protocol):
        received = 0

        def dataReceived(self, data: bytes) -> None:
            self.received += len(data)
            if self.received >= total and not done.called:
                done.callback(time.perf_counter())

        def readConnectionLost(self) -> None:
            self.transport.loseConnection()

        def writeConnectionLost(self) -> None:
            pass

        def connectionLost(self, reason: Any) -> None:
            if not done.called:
                done.errback(reason)

    return lambda stream: Sink()


async def _hosts(reactor: Any, kind: str) -> tuple[Any, Any]:
    from tau.host import Host
    from tau.identity import PrivateKey

    hosts = []
    for _ in range(2):
        host = Host(PrivateKey.generate(), reactor, listen=["/ip4/127.0.0.1/tcp/0"], security=[kind])
        host.startService()
        await host.whenReady()
        hosts.append(host)
    return hosts[0], hosts[1]


def _address(host: Any) -> str:
    return f"{host.listenAddresses()[0]}/p2p/{host.peerID}"


async def _stop(*hosts: Any) -> None:
    for host in hosts:
        await host.stopService()


async def throughputOnce(reactor: Any, kind: str, total: int) -> float:
    """
    MiB/s through one yamux stream between two hosts speaking C{kind}.
    """
    from twisted.internet.defer import Deferred

    sender, receiver = await _hosts(reactor, kind)
    try:
        done: Deferred = Deferred()
        receiver.setProtocolFactory(SINK, _sinkFactory(total, done))
        await sender.connect(_address(receiver))
        producer = Sender(total, os.urandom(CHUNK))
        start = time.perf_counter()
        await sender.newRawStream(receiver.peerID, [SINK], producer)
        end = await done
        return total / MiB / (end - start)
    finally:
        await _stop(sender, receiver)


async def setupOnce(reactor: Any, kind: str, dials: int) -> float:
    """
    The median milliseconds from dial to upgraded connection, over C{dials}
    fresh connections between two hosts speaking C{kind}.
    """
    dialer, listener = await _hosts(reactor, kind)
    try:
        address = _address(listener)
        times = []
        for _ in range(dials):
            start = time.perf_counter()
            conn = await dialer.connect(address)
            times.append((time.perf_counter() - start) * 1000)
            await conn.close()
            for theirs in listener.connections(dialer.peerID):
                await theirs.whenClosed()
        return statistics.median(times)
    finally:
        await _stop(dialer, listener)


async def measure(reactor: Any, *, mib: int = 64, runs: int = 5, dials: int = 30) -> dict:
    """
    Noise and TLS between two tau hosts on loopback: one-stream throughput
    (MiB/s, median of C{runs} runs of C{mib} MiB) and connection set-up time
    (ms, median over C{runs} runs of the median of C{dials} dials), with the
    ratios Noise/TLS.
    """
    throughput: dict = {kind: [] for kind in KINDS}
    setup: dict = {kind: [] for kind in KINDS}
    for _ in range(runs):
        for kind in KINDS:
            throughput[kind].append(await throughputOnce(reactor, kind, mib * MiB))
        for kind in KINDS:
            setup[kind].append(await setupOnce(reactor, kind, dials))
    tput = {kind: statistics.median(v) for kind, v in throughput.items()}
    times = {kind: statistics.median(v) for kind, v in setup.items()}
    return {
        "stream_mib": mib,
        "runs": runs,
        "dials": dials,
        "tls_throughput_mib_s": tput["tls"],
        "noise_throughput_mib_s": tput["noise"],
        "throughput_ratio": tput["noise"] / tput["tls"],
        "throughput_target": TARGET,
        "tls_setup_ms": times["tls"],
        "noise_setup_ms": times["noise"],
        "setup_ratio": times["noise"] / times["tls"],
        "samples": {"throughput_mib_s": throughput, "setup_ms": setup},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=64, help="MiB through the stream per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dials", type=int, default=30, help="dials timed per set-up run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from twisted.internet import task
    from twisted.internet.defer import Deferred

    async def run(reactor: Any) -> None:
        figures = await measure(reactor, mib=args.mib, runs=args.runs, dials=args.dials)
        if args.json:
            print(json.dumps(figures))
            return
        print(f"tau <-> tau on loopback, one process; medians of {args.runs} runs")
        print(f"  one stream, {args.mib} MiB   TLS {figures['tls_throughput_mib_s']:8.1f} MiB/s"
              f"   Noise {figures['noise_throughput_mib_s']:8.1f} MiB/s"
              f"   Noise/TLS {figures['throughput_ratio']:.3f} (target >= {TARGET})")
        print(f"  set-up, {args.dials} dials     TLS {figures['tls_setup_ms']:8.2f} ms"
              f"      Noise {figures['noise_setup_ms']:8.2f} ms"
              f"      Noise/TLS {figures['setup_ratio']:.3f}")

    task.react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
