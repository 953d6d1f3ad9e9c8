"""
Serving benchmark (issue 15 item 7).

    python bench/serve.py [--runs 3] [--quick] [--json] [--only cold,seer,http]

Each figure with its baseline from the same run, medians of --runs runs:

  (a) cold start, at the wasm Runtime level (what substrate calls): time
      from a request to the function's answer (the whole answer: the
      Runtime answers status, headers and body at once, so this is also
      its first byte), p50, for
        - a function not compiled yet (compile + instantiate + call),
        - one in the compiled-module cache on disk (a new runtime, as after
          a restart: load the serialized module + instantiate + call;
          target: under 5 ms),
        - one compiled in memory but with no warm instance (instantiate +
          call),
        - a warm call (the baseline every cold figure is compared to).
      The module is the "hello" function padded with --pad functions so
      that its size is near a small TinyGo build; each sample is a module
      of its own (a different CID).
  (b) seer queries per second against a bare twisted.names server with a
      static zone: bench/seer.py's run, called as it is (target: 0.8).
  (c) warm function requests per second and p99 over HTTP/1.1 keep-alive
      (bench/_httpload.py's load generator, --requests requests over
      --concurrency connections), for every target that can be started:
        - bare: a twisted.web "hello" in its own process (the baseline);
        - wasm-web: twisted.web + tau's wasm Runtime running the WAT hello
          (the runtime's cost per request; not substrate: no tns, store or
          tunnel);
        - substrate: direct to a substrate node's HTTP listener (target:
          at least 0.5 of bare),
        - gateway: through a gateway node to a substrate node (target: at
          least 0.3 of bare),
        - substrate-web, gateway-web: the same two for a static file of the
          project's website (no WASM: the gateway's and the tunnel's own
          cost),
          all on the end-to-end test's cloud of twistd processes and its
          project (L{startCloud}, the HOOK: skipped, with the reason, while
          the cloud does not start).
      Ratios are of requests per second to bare's.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _httpload import HELLO_WAT, Target, load, startServer  # noqa: E402


# -- (a) cold start -------------------------------------------------------------

def paddedHello(pad, tag):
    """
    The hello module with C{pad} more functions (each a little arithmetic,
    compiled though never called) and a data segment holding C{tag} (so
    each sample has its own CID).
    """
    from wasmtime import wat2wasm

    # not exported: a TinyGo module exports a handful of functions, and
    # instantiating costs per export (wasmtime-py wraps every export)
    extra = "\n".join(
        f' (func $f{i} (param i32) (result i32) (i32.add (i32.mul (local.get 0) (i32.const {i + 3})) (i32.const {i})))'
        for i in range(pad))
    wat = HELLO_WAT.rstrip().rstrip(")") + f'\n (data (i32.const 256) "{tag}")\n{extra}\n)'
    return bytes(wat2wasm(wat))


async def coldStart(reactor, samples, pad):
    """
    One run: the p50 milliseconds of each kind of start, and the module size.
    """
    from tau.cids import cidText, makeCID
    from tau.services.substrate.wasm import HttpRequest, Limits, Runtime

    folder = tempfile.mkdtemp(prefix="tau-bench-serve-")
    modules = [paddedHello(pad, f"sample-{time.time_ns()}-{i}") for i in range(samples + 1)]
    cids = [cidText(makeCID(m)) for m in modules]
    request = HttpRequest()
    expected = (200, [], b"hello")

    async def timed(call):
        start = time.perf_counter()
        answer = await call
        elapsed = time.perf_counter() - start
        if answer != expected:
            raise AssertionError(f"answered {answer!r}")
        return 1000 * elapsed

    first = Runtime(reactor, folder)
    first.start()
    figures = {"module_bytes": len(modules[0]), "not_compiled": [], "disk_cached": [], "memory_cached": [], "warm": []}
    try:
        await first.call(await first.load(modules[-1], cids[-1]), "hello", request)   # threads started
        for wasm, cid in zip(modules[:-1], cids[:-1]):
            async def compileAndCall(wasm=wasm, cid=cid):
                await first.load(wasm, cid)
                return await first.call(cid, "hello", request)
            figures["not_compiled"].append(await timed(compileAndCall()))
        for i, cid in enumerate(cids[:-1]):
            limits = Limits(timeout=10 + i)   # a pool key of its own: no warm instance
            figures["memory_cached"].append(await timed(first.call(cid, "hello", request, limits)))
        for _ in range(samples):
            figures["warm"].append(await timed(first.call(cids[0], "hello", request)))
    finally:
        await first.stop()
    second = Runtime(reactor, folder)   # as after a restart: the modules are on disk only
    second.start()
    try:
        await second.call(cids[-1], "hello", request)
        for cid in cids[:-1]:
            figures["disk_cached"].append(await timed(second.call(cid, "hello", request)))
        if second.cache.compiled != 0:
            raise AssertionError("the restarted runtime compiled a module it had on disk")
    finally:
        await second.stop()
    for name in ("not_compiled", "disk_cached", "memory_cached", "warm"):
        figures[name] = statistics.median(figures[name])
    for path in Path(folder).iterdir():
        path.unlink()
    os.rmdir(folder)
    return figures


async def coldFigures(reactor, args):
    runs = [await coldStart(reactor, args.samples, args.pad) for _ in range(args.runs)]
    out = {"module_bytes": runs[0]["module_bytes"]}
    for name in ("not_compiled", "disk_cached", "memory_cached", "warm"):
        out[f"{name}_p50_ms"] = round(statistics.median(r[name] for r in runs), 3)
    out["disk_cached_under_5ms"] = out["disk_cached_p50_ms"] < 5.0
    out["not_compiled_over_disk_cached"] = round(out["not_compiled_p50_ms"] / out["disk_cached_p50_ms"], 1)
    return out


# -- (b) seer -------------------------------------------------------------------

async def seerFigures(reactor, args):
    import seer   # bench/seer.py

    options = argparse.Namespace(seconds=1.0 if args.quick else 3.0, runs=args.runs, window=16, nodes=8)
    return await seer.run(reactor, options)


# -- (c) HTTP -------------------------------------------------------------------

class NotConnected(Exception):
    """
    A target whose service does not exist on this branch yet.
    """


async def startBare(reactor):
    port, stop = await startServer(reactor, "bare")
    return Target("bare", port, expect=b"hello"), stop


async def startWasmWeb(reactor):
    port, stop = await startServer(reactor, "wasm")
    return Target("wasm-web", port, expect=b"hello"), stop


class _Case:
    """
    What tests/cloud.py asks of a test case (C{mktemp}, C{addCleanup}),
    for a cloud started outside trial.
    """

    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="tau-bench-cloud-")
        self.made = 0
        self.cleanups = []

    def mktemp(self):
        self.made += 1
        return os.path.join(self.folder, f"t{self.made}")

    def addCleanup(self, f, *args):
        self.cleanups.append((f, args))

    async def cleanUp(self):
        from twisted.internet.defer import maybeDeferred

        for f, args in reversed(self.cleanups):
            await maybeDeferred(f, *args)
        shutil.rmtree(self.folder, ignore_errors=True)


#: the website file the *-web targets ask for (a few hundred bytes)
WEBSITE_FILE = "/app.js"


async def startCloud(reactor):
    """
    HOOK for the substrate and gateway targets: the end-to-end test's cloud
    (seer+tns+auth, substrate, gateway as twistd processes) with its
    project published (tests/test_e2e_serving.py's startServingCloud;
    [LEAD] import it from tests.test_e2e_serving once the draft is
    renamed); the substrate's and the gateway's targets, and C{stop}.

    @raise NotConnected: the cloud does not start (on a branch without the
        substrate or gateway service, its nodes refuse their shape).
    """
    from tests import e2e
    from tests.test_e2e_serving import startServingCloud
    from tests.netclients import curl
    from tests.cloud import until

    case = _Case()
    try:
        _, ports = await startServingCloud(case)
    except Exception as e:
        await case.cleanUp()
        raise NotConnected(f"substrate, gateway: the e2e cloud did not start ({str(e).splitlines()[-1][:300]})")

    async def answering(where):
        status, _, body = await curl(reactor, f"http://{e2e.DOMAIN}{e2e.FUNCTION_PATH}", via={e2e.DOMAIN: where})
        return (status, body) == (200, e2e.FUNCTION_BODY)
    try:
        for name in ("substrate", "gateway"):
            await until(lambda: answering(ports[name]), f"the function through {name}", limit=60)
    except Exception:
        await case.cleanUp()
        raise
    targets = [Target(name, ports[name][1], host=e2e.DOMAIN, path=e2e.FUNCTION_PATH, expect=e2e.FUNCTION_BODY,
                      address=ports[name][0]) for name in ("substrate", "gateway")]
    # a static file of the website: the gateway's own cost, no WASM involved
    page = (e2e.WEBSITE / WEBSITE_FILE.lstrip("/")).read_bytes()
    targets += [Target(f"{name}-web", ports[name][1], host=e2e.DOMAIN, path=WEBSITE_FILE, expect=page,
                       address=ports[name][0]) for name in ("substrate", "gateway")]
    return targets, case.cleanUp


async def startBareTargets(reactor):
    targets, stops = [], []
    for start in (startBare, startWasmWeb):
        target, stop = await start(reactor)
        targets.append(target)
        stops.append(stop)

    async def stop():
        for one in stops:
            await one()
    return targets, stop


#: what starts targets: each returns C{([Target], stop)} or raises NotConnected
STARTERS = (startBareTargets, startCloud)


async def httpFigures(reactor, args):
    targets, stops, skipped = [], [], []
    for start in STARTERS:
        try:
            started, stop = await start(reactor)
        except NotConnected as e:
            skipped.append(str(e))
            continue
        targets += started
        stops.append(stop)
    samples = {target.name: [] for target in targets}
    try:
        for target in targets:   # warm-up: compile, instantiate, connect
            await load(reactor, target, requests=200, concurrency=args.concurrency)
        for _ in range(args.runs):   # interleaved: every target sees the same load of the machine
            for target in targets:
                samples[target.name].append(await load(reactor, target, args.requests, args.concurrency))
    finally:
        for stop in stops:
            await stop()
    out = {"requests": args.requests, "concurrency": args.concurrency}
    for name, runs in samples.items():
        out[f"{name}_rps"] = round(statistics.median(r["rps"] for r in runs))
        out[f"{name}_p50_ms"] = round(statistics.median(r["p50_ms"] for r in runs), 3)
        out[f"{name}_p99_ms"] = round(statistics.median(r["p99_ms"] for r in runs), 3)
        failed = sum(r["errors"] for r in runs)
        if failed:
            out[f"{name}_errors"] = f"{failed} of {len(runs) * args.requests}, first: " + next(
                r["first_error"] for r in runs if r["errors"])
    for name in samples:
        if name != "bare":
            out[f"{name}_over_bare"] = round(out[f"{name}_rps"] / out["bare_rps"], 3)
    for number, why in enumerate(skipped):
        out[f"skipped_{number}"] = why
    return out


FIGURES = {"cold": coldFigures, "seer": seerFigures, "http": httpFigures}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=15, help="cold starts of each kind per run")
    parser.add_argument("--pad", type=int, default=1000, help="functions added to the cold-start module")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--only", default=",".join(FIGURES), help="comma-separated: " + ",".join(FIGURES))
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.samples, args.pad, args.requests = 1, 5, 200, 500
    wanted = [w for w in args.only.split(",") if w]
    unknown = [w for w in wanted if w not in FIGURES]
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)}")

    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    async def go(reactor):
        figures = {}
        for name in wanted:
            figures[name] = await FIGURES[name](reactor, args)
        if args.json:
            print(json.dumps(figures))
            return
        for name, values in figures.items():
            print(f"[{name}]")
            for key, value in values.items():
                print(f"  {key:>30}: {value}")

    react(lambda r: Deferred.fromCoroutine(go(r)))


if __name__ == "__main__":
    main()
