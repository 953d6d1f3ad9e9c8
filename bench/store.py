"""
Block store, UnixFS and Bitswap benchmark (issue 5 item 7), in one run.

    python bench/store.py                       # everything (about 10 minutes)
    python bench/store.py --runs 5 --no-helia
    python bench/store.py --no-bitswap --mib 64 --mem-mib 256   # quick

Prints, with medians of --runs runs:
  - import throughput of an N MiB file (default 256) into a fresh
    BlockStore (UnixFS, helia defaults; a write batch: no fsync per block,
    everything synced before the import returns) against two baselines
    measured in the same runs, interleaved (each run in another order): the
    store's layout with nothing else: the same bytes as 256 KiB files in 256
    shard folders, written (4 threads), renamed and synced as the store
    does — no chunking, hashing or index, the ceiling of a durable
    file-per-block store (target: ratio >= 0.7); for reference
    hashlib.sha256 over the same bytes, the disk itself (the same bytes
    written to one file in the store's folder and fsync'd), and the layout
    with no fsync at all (not durable: the ceiling of any store that keeps
    a block per file);
  - peak RSS of a child process importing --mem-mib MiB (default 1024)
    from a file (target < 200 MiB), and its RSS before the import;
  - the dedup ratio of an edited file (an insertion in the middle) with the
    fixed 256 KiB chunker and with buzhash;
  - Bitswap (bench/bitswap.py, two processes): tau -> tau transfer of an N
    MiB file against the serving process's own import of the same file
    (target: ratio >= 0.5; the one-stream transport throughput of the same
    run for reference), and tau -> helia against helia -> helia (target:
    ratio >= 1).
"""

import argparse
import hashlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: import throughput / the bare durable layout's, in the same run
IMPORT_TARGET = 0.7


def run(coro_fn):
    from twisted.internet import task
    from twisted.internet.defer import Deferred
    out = {}

    def main(reactor):
        async def go():
            out["v"] = await coro_fn(reactor)
        return Deferred.fromCoroutine(go())
    try:
        task.react(main)
    except SystemExit as e:
        if e.code:
            raise
    return out["v"]


def importOnce(path: Path, chunker=None):
    from tau.store.blockstore import BlockStore
    from tau.store import unixfs
    from tau.store.chunker import FixedSize

    async def go(reactor):
        with tempfile.TemporaryDirectory(dir=path.parent) as root:
            s = BlockStore(Path(root), reactor)
            await s.open()
            t = time.perf_counter()
            e = await unixfs.importFile(s, path, reactor,
                                        params=unixfs.Params(chunker=chunker or FixedSize()))
            dt = time.perf_counter() - t
            await s.close()
            return dt, e
    return go


def _hwm() -> int:
    """Peak RSS of this process in KiB (VmHWM: unlike ru_maxrss, not
    inherited from the parent across fork and exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(kind: str, path: str):
    before = _hwm()
    fn = importOnce(Path(path))
    result = {}

    def once():
        dt, e = run(fn)
        result["dt"], result["cid"] = dt, e.cid.encode("base32").decode()
    once()
    peak = _hwm()
    print(f"{before} {peak} {result['dt']:.3f} {result['cid']}")


def diskOnce(src: Path, dest: Path) -> float:
    """Seconds to write src's bytes (already in memory) to dest and fsync it."""
    data = src.read_bytes()
    t = time.perf_counter()
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view[: 8 << 20])
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    dirfd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
    dt = time.perf_counter() - t
    dest.unlink()
    return dt


def filesOnce(src: Path, dest: Path, size: int = 256 * 1024, sync: bool = True) -> float:
    """
    Seconds to write src's bytes as C{size}-byte files, the way the block
    store lays blocks out (temp file, rename, then one syncfs -- or, where
    there is none, an fsync of each file and shard folder), with the store's
    thread counts and nothing else; with
    C{sync=False} nothing is fsync'd (not durable: the ceiling of any store
    that keeps a block per file, whatever it does about crashes).
    """
    from concurrent.futures import ThreadPoolExecutor
    from tau.store import batch

    data = src.read_bytes()
    dest.mkdir()
    shards = [dest / f"{i:02x}" for i in range(256)]
    for d in shards:
        d.mkdir()
    t = time.perf_counter()

    def write(i):
        path = shards[i % 256] / f"b{i}"
        with open(path.with_suffix(".tmp"), "wb") as f:
            f.write(data[i * size:(i + 1) * size])
        os.rename(path.with_suffix(".tmp"), path)
        return path

    def fsync(path):
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(write, range((len(data) + size - 1) // size)))
    if sync and batch._syncfsCall() is not None:
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
        try:
            batch._syncfs(fd)        # what the store's write batches do
        finally:
            os.close(fd)
    elif sync:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(fsync, paths + shards))
    dt = time.perf_counter() - t
    subprocess.run(["rm", "-rf", str(dest)], check=True)
    return dt


def writeFile(path: Path, mib: int):
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--mem-mib", type=int, default=1024)
    ap.add_argument("--dir", default=None, help="where the stores go (default: the temp folder)")
    ap.add_argument("--no-bitswap", dest="bitswap", action="store_false", help="skip the Bitswap figures")
    ap.add_argument("--no-helia", dest="helia", action="store_false", help="skip tau->helia and helia->helia")
    ap.add_argument("--parallelism", type=int, default=32, help="blocks the tau fetcher wants at once")
    a = ap.parse_args()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(dir=a.dir, prefix="tau-bench-"))
    try:
        src = work / "src.bin"
        writeFile(src, a.mib)
        shaT, diskT, filesT, bareT, impT = [], [], [], [], []
        def sha():
            t = time.perf_counter()
            h = hashlib.sha256()
            with open(src, "rb") as f:
                while b := f.read(1 << 20):
                    h.update(b)
            return time.perf_counter() - t

        def bare():
            dt = filesOnce(src, work / "files", sync=False)
            os.sync()  # nothing of it left to write back while the next figure runs
            return dt

        def imp():
            out = subprocess.run([sys.executable, __file__, "--child", "import", str(src)],
                                 capture_output=True, text=True, check=True).stdout.split()
            return float(out[2])
        figures = [(shaT, sha), (diskT, lambda: diskOnce(src, work / "disk.bin")),
                   (filesT, lambda: filesOnce(src, work / "files")), (bareT, bare), (impT, imp)]
        for i in range(a.runs):
            # each run in another order: what the disk and the VM's memory
            # went through just before weighs on every figure in turn
            for times, measure in figures[i % len(figures):] + figures[:i % len(figures)]:
                times.append(measure())
            print(f"  run {i + 1}: sha256 {a.mib / shaT[-1]:.0f}, disk write+fsync {a.mib / diskT[-1]:.0f}, "
                  f"256 KiB files {a.mib / filesT[-1]:.0f} (no fsync: {a.mib / bareT[-1]:.0f}), import {a.mib / impT[-1]:.0f} MiB/s",
                  file=sys.stderr, flush=True)
        mb = a.mib
        sha, disk, files, bare, imp = (mb / statistics.median(x) for x in (shaT, diskT, filesT, bareT, impT))
        layout = imp / files
        print(f"import {mb} MiB: {imp:.0f} MiB/s; the same bytes as 256 KiB files (write, rename, sync; "
              f"no hashing, no index: the bare durable layout): {files:.0f} MiB/s; ratio {layout:.2f} "
              f"(target >= {IMPORT_TARGET}: {'ok' if layout >= IMPORT_TARGET else 'below'})")
        print(f"import {mb} MiB: {imp:.0f} MiB/s; sha256 over the same file: {sha:.0f} MiB/s; "
              f"ratio {imp / sha:.2f} (reference; the bare durable layout alone is {files / sha:.2f} of sha256)")
        print(f"import {mb} MiB: {imp:.0f} MiB/s; the disk, the same bytes in one file + fsync: "
              f"{disk:.0f} MiB/s; ratio {imp / disk:.2f} (reference)")
        print(f"the same 256 KiB files with no fsync at all (not durable; the ceiling of any block-per-file "
              f"store): {bare:.0f} MiB/s, {bare / sha:.2f} of sha256 (reference)")

        big = work / "big.bin"
        writeFile(big, a.mem_mib)
        out = subprocess.run([sys.executable, __file__, "--child", "import", str(big)],
                             capture_output=True, text=True, check=True).stdout.split()
        before, peak = int(out[0]) / 1024, int(out[1]) / 1024
        print(f"import {a.mem_mib} MiB: peak RSS {peak:.0f} MiB (interpreter + imports before: "
              f"{before:.0f} MiB) (target < 200 MiB); {a.mem_mib / float(out[2]):.0f} MiB/s")
        big.unlink()

        from tau.store.chunker import Buzhash, FixedSize
        import io
        base = os.urandom(64 << 20)
        edited = base[: 32 << 20] + b"edited in the middle" + base[32 << 20:]
        for name, ch in (("fixed 256 KiB", FixedSize()), ("buzhash", Buzhash())):
            a_ = {hashlib.sha256(c).digest() for c in ch(io.BytesIO(base).read)}
            b_ = [hashlib.sha256(c).digest() for c in ch(io.BytesIO(edited).read)]
            shared = sum(1 for x in b_ if x in a_)
            print(f"dedup, 64 MiB file with 20 bytes inserted in the middle, {name}: "
                  f"{shared}/{len(b_)} chunks of the edit already stored "
                  f"({100 * shared / len(b_):.1f}%)")
    finally:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    if a.bitswap:
        bitswapFigures(a)
    print(f"({time.monotonic() - started:.0f} s; python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")


def bitswapFigures(a):
    """bench/bitswap.py's figures, printed as its table."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bitswap
    import transport
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    args = argparse.Namespace(mib=a.mib, runs=a.runs, chunk=256 * 1024, helia=a.helia,
                              parallelism=a.parallelism)

    async def go(reactor):
        rows = await bitswap.runAll(reactor, args)
        print(transport.formatRows(rows), flush=True)

    try:
        react(lambda reactor: Deferred.fromCoroutine(go(reactor)))
    except SystemExit as e:
        if e.code:
            raise


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
