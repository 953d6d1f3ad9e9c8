"""
seer benchmark (issue 15 item 7).

    python bench/seer.py [--seconds 3] [--runs 3] [--window 16] [--nodes 8] [--json]

Queries per second over UDP on loopback, in this process: a client keeps
--window A queries outstanding (pre-built packets, one reply per query)
against, in turn,

  - bare: twisted.names' DNSServerFactory with a static in-memory zone
    (an authority holding the same addresses);
  - seer: seer's server (its zones over a registry of --nodes live
    gateway nodes; its per-source rate checked but set past what the one
    client sends: bench/seer_flood.py measures the limits).

Each for --seconds, median of --runs runs (interleaved); the ratio seer / bare is the
figure (target: at least 0.8).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FQDN = "tau.example.com"
NAME = f"gateway.tau.{FQDN}"


def bareFactory(nodes):
    from twisted.names import authority, dns, server

    class StaticZone(authority.FileAuthority):
        def loadFile(self, filename):
            pass

    zone = StaticZone(None)
    zone.soa = (FQDN.encode(), dns.Record_SOA(mname=b"ns." + FQDN.encode(), rname=b"root." + FQDN.encode(),
                                                 serial=1, refresh=60, retry=60, expire=60, minimum=60, ttl=60))
    zone.records = {
        FQDN.encode(): [zone.soa[1]],
        NAME.encode(): [dns.Record_A(f"127.0.0.{10 + i}", 60) for i in range(nodes)],
    }
    return server.DNSServerFactory(authorities=[zone]), dns.DNSDatagramProtocol


def seerFactory(nodes):
    from twisted.internet import reactor

    from tau.services.seer.dns import SeerDatagramProtocol, SeerDNSFactory, Zones
    from tau.services.seer.guard import Limits
    from tau.services.seer.registry import Registry

    registry = Registry(reactor, 60, 10_000)
    for i in range(nodes):
        registry.announce(f"node-{i}", {"gateway": {"IP": f"127.0.0.{10 + i}"}})
        registry.heartbeat(f"node-{i}", "host", {})
    # the per-source rate is checked (its cost counts) but never reached by the one client
    limits = Limits(rate=1e9, burst=1e9)
    return SeerDNSFactory(Zones(FQDN, "g." + FQDN, registry, 60, 16), reactor, limits), SeerDatagramProtocol


async def qps(reactor, factory, protocolClass, seconds, window, nodes):
    """
    Queries answered per second, each answer checked to carry C{nodes}
    addresses.
    """
    from twisted.internet.defer import Deferred
    from twisted.internet.protocol import DatagramProtocol
    from twisted.names import dns

    port = reactor.listenUDP(0, protocolClass(factory), interface="127.0.0.1")
    target = ("127.0.0.1", port.getHost().port)
    packets = []
    for i in range(window):
        query = dns.Message(id=i, recDes=0)
        query.addQuery(NAME.encode(), dns.A)
        packets.append(query.toStr())
    finished = Deferred()
    state = {"answered": 0, "end": time.perf_counter() + seconds, "outstanding": 0}

    class Blaster(DatagramProtocol):
        def datagramReceived(self, data, addr):
            reply = dns.Message()
            reply.fromStr(data)
            if len(reply.answers) != nodes:
                raise AssertionError(f"{len(reply.answers)} answers, expected {nodes}")
            state["answered"] += 1
            state["outstanding"] -= 1
            if time.perf_counter() < state["end"]:
                self.transport.write(packets[reply.id], target)
                state["outstanding"] += 1
            elif state["outstanding"] == 0 and not finished.called:
                finished.callback(None)

    blaster = Blaster()
    clientPort = reactor.listenUDP(0, blaster, interface="127.0.0.1")
    start = time.perf_counter()
    for packet in packets:
        blaster.transport.write(packet, target)
        state["outstanding"] += 1
    # a reply lost on loopback would hold the run: bounded by a timeout
    timeout = reactor.callLater(seconds + 10, lambda: finished.called or finished.callback(None))
    await finished
    if timeout.active():
        timeout.cancel()
    elapsed = time.perf_counter() - start
    await clientPort.stopListening()
    await port.stopListening()
    return state["answered"] / elapsed


async def run(reactor, args):
    figures = {"seconds": args.seconds, "runs": args.runs, "window": args.window, "nodes": args.nodes}
    samples = {"bare_qps": [], "seer_qps": []}
    # interleaved, so that both see the same load of a shared machine
    for _ in range(args.runs):
        for label, make in (("bare_qps", bareFactory), ("seer_qps", seerFactory)):
            factory, protocolClass = make(args.nodes)
            samples[label].append(await qps(reactor, factory, protocolClass, args.seconds, args.window, args.nodes))
    for label, values in samples.items():
        figures[label] = round(statistics.median(values))
    figures["ratio"] = round(figures["seer_qps"] / figures["bare_qps"], 2)
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    async def go(reactor):
        figures = await run(reactor, args)
        if args.json:
            print(json.dumps(figures))
        else:
            for key, value in figures.items():
                print(f"{key:>10}: {value}")

    react(lambda r: Deferred.fromCoroutine(go(r)))


if __name__ == "__main__":
    main()
