"""
Hole punching in network namespaces: a hole-punched connection against a
relayed one and a direct one, in one run.  A part of bench/reach.py;
runnable alone (as root):

    python bench/_reach_holepunch.py [--runs 5] [--mib 64]

The topology of tests/natnet.py: a relay R that also routes between the
sites; A behind home router NA and B behind home router NB (nftables
masquerade); PA and PB on R with public addresses and no NAT.  Every node
is a real C{twistd -n taubyte} process in its namespace, with perf served.

 - hole-punched: A dials B's C{/p2p-circuit} address; B, private by
   AutoNAT, punches (DCUtR) and both move to the direct connection through
   both NATs;
 - relayed: A2 and B2, in the same namespaces, with C{dcutr.hole-punching}
   off: they stay on R (no relay limits);
 - direct: PA dials PB (two hops through R, as the NAT path has).

Set-up times (one sample each: a connection is made once per pair): the
C{swarm/connect} call for relayed and direct; for hole-punched, the relayed
connect plus DCUtR's exchange and dials until the direct connection is up
(what C{swarm/holepunch} reports).  Throughput: C{perf} downloads of
C{--mib} MiB on one stream, the three paths alternating, medians of
C{--runs}.  Target: hole-punched >= 0.9 of direct.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MiB = 1 << 20
SHAPE = "netns"


class _Node:
    """
    One twistd tau node in a namespace, driven through its control API.
    """

    def __init__(self, reactor, name, namespace, root, socket, **config):
        from tau.identity import PrivateKey

        self.reactor = reactor
        self.name = name
        self.namespace = namespace
        self.root = Path(root)
        key = PrivateKey.generate()
        self.peerID = key.peerID()
        from types import SimpleNamespace

        self.api = SimpleNamespace(
            apiFile=self.root / "storage" / SHAPE / "api",
            apiTokenFile=self.root / "storage" / SHAPE / "api-token",
            shape=SHAPE,
            root=self.root,
        )
        self.config = {
            "privatekey": base64.b64encode(key.toProtobuf()).decode("ascii"),
            "services": [],
            "api-listen": f"unix:{socket}",
            "perf": True,
            **config,
        }
        self.process = None

    async def start(self):
        import yaml

        from tests.processes import TWISTD, spawn

        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "netns.yaml"
        path.write_text(yaml.safe_dump(self.config), encoding="utf-8")
        path.chmod(0o600)
        self.process = spawn(
            self.reactor,
            ["ip", "netns", "exec", self.namespace]
            + TWISTD
            + ["-n", "--pidfile=", "taubyte", f"--root={self.root}", f"--shape={SHAPE}", f"--config={path}"],
        )
        await self.process.waitFor(b"ready, shape", timeout=60)

    async def call(self, command, args=(), **kwargs):
        from tau.control.client import call

        return await call(self.reactor, self.api, command, args, **kwargs)

    async def stop(self):
        from tests.processes import stopped

        if self.process is not None:
            await stopped(self.process)


async def _until(reactor, check, what, limit=90.0, interval=0.2):
    from twisted.internet.task import deferLater

    deadline = reactor.seconds() + limit
    while True:
        result = await check()
        if result:
            return result
        if reactor.seconds() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await deferLater(reactor, interval, lambda: None)


async def measure(reactor, runs: int = 5, mib: int = 64) -> dict:
    """
    Build the namespaces, start the nodes, measure, tear everything down.

    @return: set-up seconds and one-stream throughput (MiB/s, medians) of
        the hole-punched, relayed and direct paths, the ratios, and the
        relay's own byte counters during the hole-punched transfers.
    """
    from tests.natnet import NATNet

    await NATNet.removeStale(reactor)
    net = NATNet(reactor, {"a": "cone", "b": "cone", "pa": "public", "pb": "public"})
    work = Path(tempfile.mkdtemp(prefix="tau-bench-hp-"))
    nodes = []

    def node(name, site, **config):
        n = _Node(reactor, name, net.ns[site], work / name, str(work / f"{name}.sock"), **config)
        nodes.append(n)
        return n

    try:
        await net.build()
        relay = node("r", "r", **{"p2p-listen": ["/ip4/0.0.0.0/tcp/0"], "relay": {"service": "on", "data": 0, "duration": 0}})
        await relay.start()
        rid = await relay.call("id")

        def boot(site):
            return [x for x in rid["Addresses"] if x.startswith(f"/ip4/{net.relayIP(site)}/tcp/")][0]

        # DHT clients: no walk of R's routing table connects the pairs
        # before the measured dials
        common = {"p2p-listen": ["/ip4/0.0.0.0/tcp/0"], "autonat": {"boot-delay": 0.5}, "dht": {"mode": "client"}}
        off = {"dcutr": {"hole-punching": False}}
        a = node("a", "a", peers=[boot("a")], **common)
        b = node("b", "b", peers=[boot("b")], **common)
        a2 = node("a2", "a", peers=[boot("a")], **common, **off)
        b2 = node("b2", "b", peers=[boot("b")], **common, **off)
        pa = node("pa", "pa", peers=[boot("pa")], **common)
        # PB knows nobody and nobody knows it (no DHT walk connects PA to it
        # before the measured dial)
        pb = node("pb", "pb", **common)
        for n in (a, b, a2, b2, pa, pb):
            await n.start()

        async def circuitOf(n):
            answer = await n.call("id")
            circuits = [x for x in answer["Addresses"] if "/p2p-circuit" in x and x.startswith(f"/ip4/{net.relayIP('a')}/")]
            return circuits[0] if answer["Reachability"] == "private" and circuits else None

        circuitB = await _until(reactor, lambda: circuitOf(b), "B private with a circuit address")
        circuitB2 = await _until(reactor, lambda: circuitOf(b2), "B2 private with a circuit address")
        for n in (a, a2):
            await _until(reactor, lambda n=n: _private(n), f"{n.name} private")
        pbAddr = [x for x in (await pb.call("id"))["Addresses"] if x.startswith(f"/ip4/{net.publicIP('pb')}/")][0]

        def withPeer(addr, peer):
            return addr if addr.endswith(f"/p2p/{peer}") else f"{addr}/p2p/{peer}"

        async def connected(client, server):
            peers = (await client.call("swarm/peers"))["Peers"]
            return any(p["Peer"] == str(server.peerID) for p in peers)

        already = {k: await connected(c, s) for k, (c, s) in (("direct", (pa, pb)), ("relayed", (a2, b2)), ("hole-punched", (a, b)))}
        setup = {}
        started = time.perf_counter()
        await pa.call("swarm/connect", {"arg": withPeer(pbAddr, pb.peerID)}, timeout=60)
        setup["direct"] = time.perf_counter() - started
        started = time.perf_counter()
        await a2.call("swarm/connect", {"arg": withPeer(circuitB2, b2.peerID)}, timeout=60)
        setup["relayed"] = time.perf_counter() - started
        started = time.perf_counter()
        await a.call("swarm/connect", {"arg": withPeer(circuitB, b.peerID)}, timeout=60)
        relayedPart = time.perf_counter() - started

        async def punched():
            try:
                answer = await b.call("swarm/holepunch", {"arg": str(a.peerID)})
            except Exception:
                return None
            if answer["State"] == "relayed":
                raise RuntimeError(f"the hole punch failed: {answer}")
            return answer if answer["State"] == "direct" else None

        outcome = await _until(reactor, punched, "the hole punch", limit=60, interval=0.01)
        setup["hole-punched"] = time.perf_counter() - started
        setup["hole-punch exchange"] = outcome["Seconds"]
        setup["hole-punched (relayed part)"] = relayedPart

        pairs = {"direct": (pa, pb), "hole-punched": (a, b), "relayed": (a2, b2)}
        speeds = {k: [] for k in pairs}
        addrs = {}
        relayBytes = []
        size = mib * MiB
        for _ in range(runs):
            for kind, (client, server) in pairs.items():
                before = await net.counters() if kind == "hole-punched" else None
                answer = await client.call(
                    "perf", {"arg": str(server.peerID), "download": str(size), "upload": "0"}, timeout=300
                )
                if before is not None:
                    after = await net.counters()
                    relayBytes.append(after["input"] + after["output"] - before["input"] - before["output"])
                addrs[kind] = answer["Addr"]
                speeds[kind].append(answer["Download"]["Bytes"] / answer["Download"]["Seconds"] / MiB)
        medians = {k: statistics.median(v) for k, v in speeds.items()}
        return {
            "runs": runs,
            "mib": mib,
            "setup_s": {k: round(v, 4) for k, v in setup.items()},
            "setup_connected_before": already,
            "throughput_mib_s": {k: round(v, 1) for k, v in medians.items()},
            "samples_mib_s": {k: [round(x, 1) for x in v] for k, v in speeds.items()},
            "ratio_holepunched_direct": round(medians["hole-punched"] / medians["direct"], 3),
            "ratio_relayed_direct": round(medians["relayed"] / medians["direct"], 3),
            "target_met": medians["hole-punched"] >= 0.9 * medians["direct"],
            "paths": addrs,
            "relay_own_bytes_during_holepunched_perf": relayBytes,
        }
    finally:
        for n in reversed(nodes):
            try:
                await n.stop()
            except Exception:
                pass
        await net.delete()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


async def _private(n):
    return (await n.call("id"))["Reachability"] == "private"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mib", type=int, default=64)
    options = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    async def run(reactor):
        result = await measure(reactor, runs=options.runs, mib=options.mib)
        print(json.dumps(result, indent=2))

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
