"""
Replicated key/value store benchmark (issue 7 item 7).

    python bench/kvdb.py [--runs 3] [--writes 1000] [--nodes 10] [--concurrency 64] [--quick] [--json]

Prints, with medians of --runs runs, against a baseline measured in the same
run (a plain sqlite3 loop inserting the same rows, WAL, synchronous=NORMAL,
one commit per row -- each kvdb write is also its own durable transaction):

  - writes per second on one node with no peers, one put after the other
    (kv put, one delta each: sign, store the block with fsync, pin, apply
    to the SQLite view) / sqlite3 inserts per second;
  - the same with --concurrency writers putting at once (writes that wait
    for the one being committed are committed together: one delta, one
    fsync, one transaction; each put still returns only once durable);
  - seconds from the first of --writes writes on one node (one after the
    other, and with --concurrency writers) until all of them are visible on
    --nodes nodes (all in this one process, on loopback, over gossipsub +
    Bitswap) / seconds of the sqlite3 loop for the same rows.
"""

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DB = "bench"


def sqliteLoop(root, n):
    path = Path(root) / "baseline.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB) WITHOUT ROWID")
    t = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN")
        conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (b"key-%08d" % i, b"value-%d" % i))
        conn.execute("COMMIT")
    dt = time.perf_counter() - t
    conn.close()
    return dt


async def startNode(reactor, root):
    from tau import loadConfig, makeNode

    config = loadConfig(shape="full", root=Path(root), overrides={"api-listen": "tcp:0:interface=127.0.0.1", "p2p-listen": ["/ip4/127.0.0.1/tcp/0"]})
    node = makeNode(config, reactor=reactor)
    node.kvdb.rebroadcast = 1.0
    node.startService()
    await node.whenReady()
    return node


def address(node):
    return f"{node.host.listenAddresses()[0]}/p2p/{node.host.peerID}"


async def sleep(reactor, seconds):
    from twisted.internet.task import deferLater

    await deferLater(reactor, seconds, lambda: None)


async def put(node, writes, concurrency):
    """
    Put --writes keys from C{concurrency} writers, each one put after the
    other.
    """
    from twisted.internet.defer import Deferred, gatherResults

    async def writer(first):
        for i in range(first, writes, concurrency):
            await node.kvdb.put(DB, b"key-%08d" % i, b"value-%d" % i)

    await gatherResults([Deferred.fromCoroutine(writer(w)) for w in range(concurrency)])


async def alone(reactor, root, writes, concurrency):
    node = await startNode(reactor, Path(root) / f"alone-{concurrency}")
    try:
        await node.kvdb.open(DB)
        t = time.perf_counter()
        await put(node, writes, concurrency)
        return time.perf_counter() - t
    finally:
        await node.stopService()


async def measure(reactor, root, writes, count, concurrency):
    nodes = []
    try:
        for i in range(count):
            nodes.append(await startNode(reactor, Path(root) / f"n{concurrency}-{i}"))
        # each node dials a few others: a connected graph, as a real cloud
        for i, a in enumerate(nodes[1:], 1):
            for j in {0, (i - 1), (i * 7) % i}:
                if j != i:
                    await a.host.connect(address(nodes[j]))
        for n in nodes:
            await n.kvdb.open(DB)
        topic = "/tau/kvdb/1.0.0/" + DB
        deadline = reactor.seconds() + 60
        while any(not n.pubsub.topicPeers(topic) for n in nodes) and reactor.seconds() < deadline:
            await sleep(reactor, 0.1)
        await sleep(reactor, 2)  # let the gossipsub meshes form
        writer = nodes[0]
        t = time.perf_counter()
        await put(writer, writes, concurrency)
        while True:
            counts = [len(await n.kvdb.list(DB)) for n in nodes]
            if all(c == writes for c in counts):
                break
            if time.perf_counter() - t > 600:
                raise RuntimeError(f"not replicated after 600 s: {counts}")
            await sleep(reactor, 0.02)
        visibleTime = time.perf_counter() - t
        return visibleTime
    finally:
        for n in nodes:
            await n.stopService()


def runOnce(writes, count, concurrency):
    from twisted.internet import task
    from twisted.internet.defer import Deferred

    out = {}

    def main(reactor):
        async def go():
            with tempfile.TemporaryDirectory() as root:
                out["baseline"] = sqliteLoop(root, writes)
                out["write"] = await alone(reactor, root, writes, 1)
                out["write_concurrent"] = await alone(reactor, root, writes, concurrency)
                out["visible"] = await measure(reactor, root, writes, count, 1)
                out["visible_concurrent"] = await measure(reactor, root, writes, count, concurrency)

        return Deferred.fromCoroutine(go())

    try:
        task.react(main)
    except SystemExit as e:
        if e.code:
            raise
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--writes", type=int, default=1000)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=64, help="writers putting at once for the concurrent figures")
    ap.add_argument("--quick", action="store_true", help="1 run, 200 writes, 4 nodes")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.writes, args.nodes = 1, 200, 4
    import subprocess

    results = []
    for _ in range(args.runs):
        # each run in a fresh process: task.react stops the reactor
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(args.writes), str(args.nodes), str(args.concurrency)], capture_output=True, text=True, check=True
        ).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    base = statistics.median(r["baseline"] for r in results)
    write = statistics.median(r["write"] for r in results)
    visible = statistics.median(r["visible"] for r in results)
    writeC = statistics.median(r["write_concurrent"] for r in results)
    visibleC = statistics.median(r["visible_concurrent"] for r in results)
    figures = {
        "writes": args.writes,
        "nodes": args.nodes,
        "runs": args.runs,
        "sqlite_inserts_per_s": args.writes / base,
        "kvdb_writes_per_s": args.writes / write,
        "write_ratio": (args.writes / write) / (args.writes / base),
        "sqlite_loop_s": base,
        "visible_on_all_s": visible,
        "visible_ratio": visible / base,
        "concurrency": args.concurrency,
        "kvdb_concurrent_writes_per_s": args.writes / writeC,
        "concurrent_write_ratio": (args.writes / writeC) / (args.writes / base),
        "visible_concurrent_s": visibleC,
        "visible_concurrent_ratio": visibleC / base,
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{args.writes} writes, {args.nodes} nodes, medians of {args.runs} runs")
    print(f"  sqlite3 insert loop     {figures['sqlite_inserts_per_s']:10.0f} rows/s   ({base:.3f} s)")
    print(f"  kvdb put on one node    {figures['kvdb_writes_per_s']:10.0f} writes/s ratio {figures['write_ratio']:.4f}")
    print(f"  kvdb put, {args.concurrency:3d} writers {figures['kvdb_concurrent_writes_per_s']:10.0f} writes/s ratio {figures['concurrent_write_ratio']:.4f}")
    print(f"  visible on all {args.nodes:2d} nodes {visible:10.2f} s        ratio to the sqlite loop {figures['visible_ratio']:.1f}x")
    print(f"    with {args.concurrency:3d} writers   {visibleC:10.2f} s        ratio to the sqlite loop {figures['visible_concurrent_ratio']:.1f}x")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        from twisted.logger import globalLogBeginner

        globalLogBeginner.beginLoggingTo([], redirectStandardIO=False)
        result = runOnce(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        print(json.dumps(result))
    else:
        main()
