"""
Onion services on a private Tor network (tests/torNetwork.py): connection
set-up time and one-stream throughput between two tau hosts, reported only.

    python bench/_reach_onion.py            # about a minute
    python bench/_reach_onion.py --json

Host A listens only on a v3 onion service of a tor it launches; host B
dials A's /onion3 address through a second tor of the network.  Measured:

  - how long the network took until a client tor was bootstrapped, how long
    A's tor took to bootstrap and how long its onion service to publish;
  - connection set-up B -> A (SOCKS, onion circuits, TLS, yamux), the first
    one (descriptor fetch, introduction, rendezvous) and the median of the
    next ones (tor may reuse what it built);
  - ping round trips on that connection;
  - one-stream throughput B -> A (C{MIB} MiB into a sink on A, timed from
    B's first byte to A's acknowledgement), against the same transfer over
    a direct loopback TCP connection between the same hosts as baseline.

Every tor runs on 127.0.0.1; nothing reaches the real Tor network.
C{measure(reactor)} returns the figures as a dict (bench/reach.py combines
it with the other parts).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SINK = "/tau/bench/onion-sink/1.0.0"
MIB = 4
CONNECTIONS = 5
CHUNK = 64 * 1024


async def _sink(stream):
    total = 0
    while True:
        data = await stream.readSome()
        if not data:
            break
        total += len(data)
    stream.write(str(total).encode())
    stream.closeWrite()


def _host(reactor, listen):
    from tau.host import Host
    from tau.identity import PrivateKey
    from tau.protocols import installProtocols

    host = Host(PrivateKey.generate(), reactor, listen=listen)
    installProtocols(host)
    host.setStreamHandler(SINK, _sink)
    return host


async def _send(host, peer, size):
    stream = await host.newStream(peer, [SINK])
    payload = os.urandom(CHUNK)
    began = time.monotonic()
    sent = 0
    while sent < size:
        stream.write(payload)
        sent += len(payload)
        await stream.drain()
    stream.closeWrite()
    answer = await stream.readToEnd(64)
    elapsed = time.monotonic() - began
    if int(answer) != sent:
        raise RuntimeError(f"the sink got {answer!r} bytes of {sent}")
    return sent / elapsed / (1 << 20)


async def measure(reactor, mib=MIB, connections=CONNECTIONS) -> dict:
    """
    Start a private Tor network, two hosts and their tors; measure; stop
    everything.

    @return: the figures (seconds, milliseconds, MiB/s), keyed by name.
    """
    from tau.protocols.ping import ping
    from tau.tor.config import TorSection
    from tau.tor.service import TorService
    from tests.torNetwork import TorNetwork, torAvailable

    missing = torAvailable()
    if missing:
        return {"skipped": missing}
    work = Path(tempfile.mkdtemp(prefix="tau-onion-bench-"))
    net = TorNetwork(reactor, str(work / "net"))
    stops = []
    out = {}
    try:
        began = time.monotonic()
        await net.start()
        client = await net.startClient("clientB")
        out["network_bootstrap_s"] = round(time.monotonic() - began, 2)

        a = _host(reactor, [])
        b = _host(reactor, ["/ip4/127.0.0.1/tcp/0"])
        for host in (a, b):
            host.startService()
            stops.append(host.stopService)
            await host.whenReady()
        section = TorSection()
        torA = TorService(a, section.load("bench", {"enabled": True, "options": net.clientOptionsMapping(), "timeout": 120}),
                          work / "a", reactor)
        torB = TorService(b, section.load("bench", {"enabled": True, "launch": False, "control": client.control, "onion": False}),
                          work / "b", reactor)
        (work / "a").mkdir()
        a.addTransport(torA.transport)
        b.addTransport(torB.transport)
        began = time.monotonic()
        for service in (torA, torB):
            service.startService()
            stops.append(service.stopService)
        await torA.whenReady()
        await torB.whenReady()
        out["tor_bootstrap_s"] = round(torA.bootstrapSeconds, 2)
        out["onion_ready_s"] = round(time.monotonic() - began, 2)
        target = f"{torA.onionAddress}/p2p/{a.peerID}"

        setups = []
        for _ in range(connections):
            began = time.monotonic()
            conn = await b.connect(target, timeout=60)
            setups.append(time.monotonic() - began)
            if len(setups) < connections:
                await conn.close()
        out["connect_first_s"] = round(setups[0], 3)
        out["connect_next_median_s"] = round(statistics.median(setups[1:]), 3) if len(setups) > 1 else None
        rtts = await ping(b, a.peerID, count=10, timeout=30)
        out["ping_rtt_median_ms"] = round(statistics.median(rtts) * 1000, 1)
        out["onion_mib_s"] = round(await _send(b, a.peerID, mib << 20), 2)
        out["mib"] = mib

        # the baseline: the same transfer over loopback TCP, A dialing B,
        # once the onion connection is gone
        for conn in b.connections(a.peerID) + a.connections(b.peerID):
            await conn.close()
        a2b = await a.connect(f"{b.announcedAddresses()[0]}/p2p/{b.peerID}")
        if not a2b.remoteAddr.startswith("/ip4/") or a.connectionTo(b.peerID) is not a2b:
            raise RuntimeError(f"the baseline does not run over TCP ({a2b.remoteAddr})")
        out["tcp_mib_s"] = round(await _send(a, b.peerID, mib << 20), 2)
        out["onion_over_tcp"] = round(out["onion_mib_s"] / out["tcp_mib_s"], 4)
    finally:
        for stop in reversed(stops):
            try:
                await stop()
            except Exception:
                pass
        await net.stop()
        shutil.rmtree(work, ignore_errors=True)
    return out


def main():
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    asJSON = "--json" in sys.argv[1:]

    async def run(reactor):
        figures = await measure(reactor)
        if asJSON:
            print(json.dumps(figures))
        else:
            for key, value in figures.items():
                print(f"{key:24} {value}")

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
