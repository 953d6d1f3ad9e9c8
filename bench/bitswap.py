"""
Bitswap file transfer on loopback, against the one-stream transport figure of
the same run.

    python bench/bitswap.py                 # 256 MiB, 3 runs
    python bench/bitswap.py --mib 32 --runs 1 --no-helia

  1. tau -> tau: two separate processes, each a tau host with a BlockStore in
     a temp dir; one imports N MiB of random bytes (UnixFS, helia defaults),
     the other dials it and fetchDAGs the root; timed by the fetcher from its
     first want (fetchDAG called) to its last block stored (fetchDAG done).
     Against the serving process's own import of the same file (UnixFS
     into its fresh store, timed there): the store is the common ceiling
     of both.  Target: ratio >= 0.5.  The tau <-> tau one-stream
     throughput (bench/transport.py's tauStreamOnce, two processes, one
     yamux stream) is printed for reference, runs alternating.
  2. tau -> helia against helia -> helia: helia
     (tests/interop/helia/files.mjs cat-file) reads the file with
     @helia/unixfs cat, timed inside node from the first want to the last
     byte.  Target: ratio >= 1 (tau serves helia at least as fast as
     helia serves itself).

Medians of --runs runs.  Speed never changes the exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
for _p in (str(REPO), str(HERE.parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import transport  # noqa: E402

MiB = 1 << 20
TARGET = 0.5  # bitswap tau->tau / tau's own import of the same file
HELIA_TARGET = 1.0  # tau->helia / helia->helia
HELIA_DIR = REPO / "tests" / "interop" / "helia"


# -- child roles ------------------------------------------------------------------

async def _tauNode(reactor: Any, root: str) -> tuple:
    from tau.bitswap import BitswapService
    from tau.store.blockstore import BlockStore

    store = BlockStore(Path(root), reactor)
    await store.open()
    host = transport._newHost(reactor, ["/ip4/127.0.0.1/tcp/0"])
    host.startService()
    await host.whenReady()
    service = BitswapService(host, store, reactor=reactor, fetchTimeout=120.0)
    service.startService()
    return store, host, service


def _roleServe(mib: int) -> None:
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    from tau.store import unixfs

    async def run(reactor: Any) -> None:
        tmp = tempfile.mkdtemp(prefix="tau-bench-bitswap-serve-")
        parts: tuple = ()
        try:
            parts = await _tauNode(reactor, tmp + "/store")
            store, host, service = parts
            path = Path(tmp) / "file"
            with open(path, "wb") as f:
                for _ in range(mib):
                    f.write(os.urandom(MiB))
            started = time.perf_counter()
            entry = await unixfs.importFile(store, path, reactor)
            imported = time.perf_counter() - started
            path.unlink()
            addr = f"{host.listenAddresses()[0]}/p2p/{host.peerID}"
            print(json.dumps({"addr": addr, "cid": unixfs.cidText(entry.cid), "importSeconds": imported}), flush=True)
            cpu = time.process_time()
            done: Deferred = Deferred()
            # serve until the parent closes our stdin
            from twisted.internet import stdio
            from twisted.internet.protocol import Protocol

            class Stdin(Protocol):
                def connectionLost(self, reason: Any = None) -> None:
                    if not done.called:
                        done.callback(None)

            stdio.StandardIO(Stdin(), reactor=reactor)
            await done
            # CPU seconds (all threads) spent serving, for the parent's report
            print(json.dumps({"cpu": time.process_time() - cpu}), flush=True)
        except Exception as e:
            print(json.dumps({"error": repr(e)}), flush=True)
        finally:
            await _stopNode(parts)
            shutil.rmtree(tmp, ignore_errors=True)

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


def _roleFetch(addr: str, cid: str, parallelism: int) -> None:
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    async def run(reactor: Any) -> None:
        tmp = tempfile.mkdtemp(prefix="tau-bench-bitswap-fetch-")
        parts: tuple = ()
        try:
            parts = await _tauNode(reactor, tmp + "/store")
            store, host, service = parts
            await host.connect(addr)
            started = time.perf_counter()
            cpu = time.process_time()
            result = await service.fetchDAG(cid, timeout=120.0, parallelism=parallelism)
            seconds = time.perf_counter() - started
            cpu = time.process_time() - cpu
            print(json.dumps({"bytes": result["bytes"], "blocks": result["blocks"], "seconds": seconds, "cpu": cpu}), flush=True)
        except Exception as e:
            print(json.dumps({"error": repr(e)}), flush=True)
        finally:
            await _stopNode(parts)
            shutil.rmtree(tmp, ignore_errors=True)

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


async def _stopNode(parts: tuple) -> None:
    """Stop what _tauNode started (the store's threads keep a process alive)."""
    if not parts:
        return
    store, host, service = parts
    service.stopService()
    await host.stopService()
    await store.close()


# -- the parent -------------------------------------------------------------------

def _spawn(reactor: Any, argv: list[str], path: Optional[str] = None, expectLine: bool = True) -> Any:
    child = transport._processProtocol()(expectLine)
    reactor.spawnProcess(child, argv[0], argv, env=dict(os.environ), path=path)
    return child


def _self(*args: str) -> list[str]:
    return [sys.executable, str(HERE), *args]


def _node(*args: str) -> list[str]:
    node = shutil.which("node") or "node"
    return [node, "--import", "./polyfill.mjs", "files.mjs", *args]


async def _finish(reactor: Any, *children: Any) -> None:
    for child in children:
        try:
            child.transport.closeStdin()
        except Exception:
            pass
    for child in children:
        await transport._kill(reactor, child, after=20)


async def _bounded(reactor: Any, d: Any, seconds: float) -> Any:
    d.addTimeout(seconds, reactor)
    return await d


async def tauServer(reactor: Any, mib: int) -> tuple:
    server = _spawn(reactor, _self("--role", "serve", "--mib", str(mib)))
    info = await _bounded(reactor, server.firstLine, 300)
    return server, info


async def tauTauOnce(reactor: Any, mib: int, parallelism: int = 32) -> dict:
    """
    @return: C{{"rate"}} in MiB/s, C{{"importRate"}} the server's import of
        the file into its store (MiB/s), and the CPU seconds (all threads) of
        the fetcher during the fetch (C{"fetchCPU"}) and of the server
        while it served (C{"serveCPU"}, None if it did not say).
    """
    server, info = await tauServer(reactor, mib)
    try:
        fetcher = _spawn(reactor, _self("--role", "fetch", "--addr", info["addr"], "--cid", info["cid"], "--parallelism", str(parallelism)))
        result = await _bounded(reactor, fetcher.firstLine, 300)
        await transport._kill(reactor, fetcher, after=20)
    finally:
        await _finish(reactor, server)
    if result["bytes"] < mib * MiB:
        raise RuntimeError(f"tau fetched {result['bytes']} bytes, less than {mib * MiB}")
    return {"rate": mib / result["seconds"], "importRate": mib / info["importSeconds"], "fetchCPU": result.get("cpu"), "serveCPU": server.lastJSON().get("cpu")}


async def heliaCat(reactor: Any, addr: str, cid: str, mib: int) -> float:
    cat = _spawn(reactor, _node("cat-file", addr, cid, "300000"), path=str(HELIA_DIR))
    result = await _bounded(reactor, cat.firstLine, 330)
    await transport._kill(reactor, cat, after=20)
    if not result.get("ok") or result["size"] != mib * MiB:
        raise RuntimeError(f"helia cat failed: {result.get('error', result)}")
    return result["size"] / MiB / (result["ms"] / 1000)


async def tauHeliaOnce(reactor: Any, mib: int) -> float:
    server, info = await tauServer(reactor, mib)
    try:
        return await heliaCat(reactor, info["addr"], info["cid"], mib)
    finally:
        await _finish(reactor, server)


async def heliaHeliaOnce(reactor: Any, mib: int) -> float:
    server = _spawn(reactor, _node("serve-file", str(mib * MiB), "random"), path=str(HELIA_DIR))
    try:
        info = await _bounded(reactor, server.firstLine, 300)
        return await heliaCat(reactor, info["addr"], info["cid"], mib)
    finally:
        await _finish(reactor, server)


async def runAll(reactor: Any, args: Any) -> list:
    Row = transport.Row
    stream, imports, bitswap, toHelia, heliaHelia, pairs, streamPairs = [], [], [], [], [], [], []
    notes = {}
    for i in range(args.runs):
        t = await transport.tauStreamOnce(reactor, args.mib * MiB, args.chunk)
        stream.append(t["bytes"] / MiB / t["seconds"])
        once = await tauTauOnce(reactor, args.mib, args.parallelism)
        bitswap.append(once["rate"])
        imports.append(once["importRate"])
        pairs.append(bitswap[-1] / imports[-1])
        streamPairs.append(bitswap[-1] / stream[-1])
        line = (f"  run {i + 1}: one stream {stream[-1]:.1f} MiB/s, import {imports[-1]:.1f} MiB/s, "
                f"bitswap tau->tau {bitswap[-1]:.1f} MiB/s")
        if once["serveCPU"] is not None:
            line += f" (CPU s: fetcher {once['fetchCPU']:.2f}, server {once['serveCPU']:.2f})"
        if args.helia:
            for name, fn, out in (("tau->helia", tauHeliaOnce, toHelia), ("helia->helia", heliaHeliaOnce, heliaHelia)):
                try:
                    out.append(await fn(reactor, args.mib))
                    line += f", {name} {out[-1]:.1f} MiB/s"
                except Exception as e:
                    notes[name] = f"failed: {e}"[:120]
                    line += f", {name} failed"
        print(line, file=sys.stderr, flush=True)

    def med(xs: list) -> Optional[float]:
        return statistics.median(xs) if xs else None

    stream_ = "tau->tau one stream"
    import_ = f"tau import {args.mib} MiB"
    ratio = statistics.median(pairs)
    rows = [
        Row(stream_, med(stream), "MiB/s", note="reference"),
        Row(import_, med(imports), "MiB/s", note="the serving process, into its fresh store"),
        Row(f"bitswap tau->tau {args.mib} MiB", med(bitswap), "MiB/s", import_, ratio,
            verdict(ratio, TARGET), "median of per-run ratios"),
        Row(f"bitswap tau->tau {args.mib} MiB", med(bitswap), "MiB/s", stream_, statistics.median(streamPairs),
            note="reference"),
    ]
    if args.helia:
        hh = med(heliaHelia)
        rows.append(Row("bitswap helia->helia", hh, "MiB/s", note=notes.get("helia->helia", "")))
        th = med(toHelia)
        r = th / hh if th and hh else None
        rows.append(Row("bitswap tau->helia", th, "MiB/s", "bitswap helia->helia", r,
                        verdict(r, HELIA_TARGET), notes.get("tau->helia", "")))
    return rows


def verdict(ratio: Optional[float], target: float) -> str:
    if ratio is None:
        return "not measured"
    return "ok" if ratio >= target else f"below {target}"


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="file size, and bytes on the one-stream baseline")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=256 * 1024, help="bytes per write on the baseline stream")
    parser.add_argument("--no-helia", dest="helia", action="store_false", help="skip tau->helia and helia->helia")
    parser.add_argument("--parallelism", type=int, default=32, help="blocks the tau fetcher wants at once (fetchDAG)")
    parser.add_argument("--role", choices=["serve", "fetch"], help=argparse.SUPPRESS)
    parser.add_argument("--addr", help=argparse.SUPPRESS)
    parser.add_argument("--cid", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "serve":
        return _roleServe(args.mib)
    if args.role == "fetch":
        return _roleFetch(args.addr, args.cid, args.parallelism)

    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    async def run(reactor: Any) -> None:
        started = time.monotonic()
        rows = await runAll(reactor, args)
        print(transport.formatRows(rows))
        print(f"({time.monotonic() - started:.0f} s; python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
