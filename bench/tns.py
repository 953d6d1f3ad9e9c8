"""
tns benchmark (issue 14 item 9).

    python bench/tns.py [--runs 3] [--lookups 500] [--resources 1000] [--quick] [--json]

Two nodes in this process on loopback: A runs tns on its kvdb, B asks it
through a tns client (streams over TCP, TLS, yamux).  A project of
--resources resources (bench/compile.py's) is published through B's client,
then, with medians of --runs runs, one request after the other:

  - local read: A's own kvdb read of one key (kvdb.get: what any lookup
    costs at least where the data is): reads per second and p99 latency;
  - cold lookup: B's client looks a host, path and method up with its cache
    emptied first (a fetch of the index, the branch's pointer and each
    resource the index names, each over p2p): lookups per second, p99;
  - cached lookup: the same lookup answered from B's cache (as a substrate
    answers the requests after the first): lookups per second, p99, and
    its ratio to the local read (target: at least 0.5);
  - lookup from cached fetches: the lookup made again from B's cached
    fetches (its whole answer forgotten first: the rules run over every
    resource the host's index names), lookups per second, p99;
  - compile: seconds to compile the --resources project (bench/compile.py),
    and to publish it (the three pushes over p2p to A).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compile import compileSeconds, generateProject  # noqa: E402


def p99(samples):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def timed(n, once):
    """
    C{(per second, p99 seconds)} of C{n} calls of C{once()}, one after the
    other.
    """
    samples = []
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        await once()
        samples.append(time.perf_counter() - t)
    return n / (time.perf_counter() - start), p99(samples)


async def startNode(reactor, root):
    from tau import loadConfig, makeNode

    config = loadConfig(shape="full", root=Path(root),
                        overrides={"api-listen": "tcp:0:interface=127.0.0.1", "p2p-listen": ["/ip4/127.0.0.1/tcp/0"]})
    node = makeNode(config, reactor=reactor)
    node.startService()
    await node.whenReady()
    return node


async def run(reactor, args):
    from tau.project import compileInThread
    from tau.services.tns.client import TNSClient
    from tau.services.tns.config import TNSConfig
    from tau.services.tns.paths import CHANGED_TOPIC, storedKey
    from tau.services.tns.service import makeTNS

    figures = {"resources": args.resources, "lookups": args.lookups, "runs": args.runs}
    with tempfile.TemporaryDirectory() as tmp:
        project = generateProject(Path(tmp) / "project", args.resources)
        figures["compile_s"] = compileSeconds(project, args.runs)
        a = await startNode(reactor, Path(tmp) / "a")
        b = await startNode(reactor, Path(tmp) / "b")
        try:
            tns = makeTNS(a.host, a.kvdb, a.pubsub, reactor, TNSConfig(), lambda peer: peer == b.host.peerID)
            tns.setServiceParent(a)
            await tns.whenReady()
            await b.host.connect(f"{a.host.listenAddresses()[0]}/p2p/{a.host.peerID}")
            client = TNSClient(b.host, b.pubsub, None, reactor)
            compiled = await compileInThread(reactor, str(project))
            t = time.perf_counter()
            await client.publish(compiled, "c0ffee")
            figures["publish_s"] = time.perf_counter() - t
            key = storedKey(["projects", compiled.projectId, "branches", "main", "current", "current"])

            async def localRead():
                await a.kvdb.get("tns", key)

            async def lookup():
                found = await client.http("d1.bench.example", "/f1", "GET")
                assert found is not None and found["commit"] == "c0ffee", found

            async def fromFetches():
                client._answers.clear()   # the whole answer only, the fetches stay
                await lookup()

            async def cold():
                client.drop(CHANGED_TOPIC)
                await lookup()

            await lookup()
            rows = []
            for _ in range(args.runs):
                rows.append((await timed(args.lookups, localRead), await timed(max(1, args.lookups // 10), cold),
                             await timed(args.lookups, lookup), await timed(args.lookups, fromFetches)))
            for index, name in enumerate(("local_read", "cold_lookup", "cached_lookup", "fetches_lookup")):
                figures[name + "_per_s"] = statistics.median(r[index][0] for r in rows)
                figures[name + "_p99_ms"] = statistics.median(r[index][1] for r in rows) * 1000
            figures["cached_over_local"] = figures["cached_lookup_per_s"] / figures["local_read_per_s"]
            figures["fetches_over_local"] = figures["fetches_lookup_per_s"] / figures["local_read_per_s"]
            client.close()
        finally:
            await b.stopService()
            await a.stopService()
    return figures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--lookups", type=int, default=500)
    ap.add_argument("--resources", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="100 resources, 100 lookups, 1 run")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.resources, args.lookups, args.runs = 100, 100, 1

    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    out = {}

    def start():
        d = Deferred.fromCoroutine(run(reactor, args))
        d.addCallbacks(lambda r: out.setdefault("figures", r), lambda f: out.setdefault("failure", f))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run()
    if "failure" in out:
        out["failure"].raiseException()
    f = out["figures"]
    if args.json:
        print(json.dumps(f))
        return
    print(f"{f['resources']} resources, {f['lookups']} lookups, medians of {f['runs']} runs")
    print(f"  compile        {f['compile_s']:.3f} s   publish (3 pushes over p2p) {f['publish_s']:.3f} s")
    for name, label in (("local_read", "local kvdb read"), ("cold_lookup", "cold lookup"),
                        ("cached_lookup", "cached lookup"), ("fetches_lookup", "from cached fetches")):
        print(f"  {label:19} {f[name + '_per_s']:9.0f} /s   p99 {f[name + '_p99_ms']:.3f} ms")
    print(f"  cached lookup / local read: {f['cached_over_local']:.2f} (target >= 0.5); "
          f"from cached fetches / local read: {f['fetches_over_local']:.2f}")


if __name__ == "__main__":
    main()
