"""
Block store / UnixFS benchmark (issue 5 item 7, the storage half).

    python bench/store.py [--runs 3] [--mib 256] [--mem-mib 1024]

Prints, with medians of --runs runs:
  - import throughput of an N MiB file into a fresh BlockStore (fsync'd
    writes) against hashlib.sha256 over the same bytes, and the ratio
    (target >= 0.5);
  - peak RSS of a child process importing --mem-mib MiB from a file
    (target < 200 MiB), and the child's RSS before the import;
  - the dedup ratio of an edited file (an insertion in the middle) with the
    fixed 256 KiB chunker and with buzhash.
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


def child(kind: str, path: str):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn = importOnce(Path(path))
    result = {}

    def once():
        dt, e = run(fn)
        result["dt"], result["cid"] = dt, e.cid.encode("base32").decode()
    once()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{before} {peak} {result['dt']:.3f} {result['cid']}")


def writeFile(path: Path, mib: int):
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--mem-mib", type=int, default=1024)
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(dir=a.dir, prefix="tau-bench-"))
    try:
        src = work / "src.bin"
        writeFile(src, a.mib)
        shaT, impT = [], []
        for _ in range(a.runs):
            t = time.perf_counter()
            h = hashlib.sha256()
            with open(src, "rb") as f:
                while b := f.read(1 << 20):
                    h.update(b)
            shaT.append(time.perf_counter() - t)
            out = subprocess.run([sys.executable, __file__, "--child", "import", str(src)],
                                 capture_output=True, text=True, check=True).stdout.split()
            impT.append(float(out[2]))
        mb = a.mib
        sha, imp = mb / statistics.median(shaT), mb / statistics.median(impT)
        print(f"import {mb} MiB: {imp:.0f} MiB/s; sha256 over the same file: {sha:.0f} MiB/s; "
              f"ratio {imp / sha:.2f} (target >= 0.5)")

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


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
