"""
seer under a flood (issue 15 item 6): the queries per second a normal
client still gets answered while another address floods the server.

    python bench/seer_flood.py [--seconds 3] [--runs 3] [--flood-rate PPS] [--json]

In this process: a server on UDP loopback, and a client keeping 16
queries outstanding, one from each of 16 addresses 127.0.1.x (as many
resolvers; a query unanswered after 100 ms is sent again and counted
lost).  In a child process: a flooder on 127.0.0.2
sending, at a fixed rate so that every server faces the same load
(L{FLOOD_RATES}, or --flood-rate packets a second; 0: as fast as it can),
one of

  - none:      nothing (the baseline);
  - malformed: truncated questions, compression loops, bad label lengths, garbage;
  - queries:   valid queries (what the per-source rate limit is for);
  - bomb:      an 8 KiB query of 680 questions pointing at one 64-label name
               (73 ms of twisted.names parsing each).

Servers: seer (its limits: 1000 queries a second per source), seer without
the rate limit, and bare twisted.names (C{DNSServerFactory} with a static
zone).  Medians of --runs runs.
"""

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FQDN = "tau.example.com"
NAME = f"gateway.tau.{FQDN}"
#: packets a second of each flood by default
FLOOD_RATES = {"none": 0, "malformed": 20_000, "queries": 20_000, "bomb": 200}


def floodPackets(kind):
    from twisted.names import dns

    def header(qd=1, ident=0):
        return struct.pack("!HHHHHH", ident, 0, qd, 0, 0, 0)

    good = dns.Message(id=1)
    good.addQuery(NAME.encode())
    whole = good.toStr()
    if kind == "queries":
        return [whole]
    if kind == "malformed":
        return [whole[:-3], header() + b"\x3f" + b"a" * 5, header() + b"\xc0\x0c\x00\x01\x00\x01",
                header() + b"\x01a\xc0\x0c\x00\x01\x00\x01", header(qd=0xFFFF) + whole[12:], b"\xff" * 40]
    if kind == "bomb":
        # twisted reads at most 8192 bytes of a datagram: the bomb fits in them
        name = b"".join(b"\x3f" + b"a" * 63 for _ in range(64)) + b"\x00"
        pointer = struct.pack("!HHH", 0xC000 | 12, 1, 1)
        return [header(qd=680) + name + struct.pack("!HH", 1, 1) + pointer * 679]
    return []


def flood(port, kind, seconds, rate):
    """
    The child: send C{kind} packets to C{port} from 127.0.0.2.
    """
    packets = floodPackets(kind)
    if not packets:
        time.sleep(seconds)
        return
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.2", 0))
    sock.setblocking(False)
    end = time.perf_counter() + seconds
    sent = 0
    start = time.perf_counter()
    while time.perf_counter() < end:
        for packet in packets:
            try:
                sock.sendto(packet, ("127.0.0.1", port))
            except (BlockingIOError, OSError):
                pass
            sent += 1
        if rate:
            ahead = sent / rate - (time.perf_counter() - start)
            if ahead > 0:
                time.sleep(ahead)
    print(sent / seconds, flush=True)


def seerServer(rate):
    from twisted.internet import reactor

    from tau.services.seer.dns import SeerDatagramProtocol, SeerDNSFactory, Zones
    from tau.services.seer.guard import Limits
    from tau.services.seer.registry import Registry

    registry = Registry(reactor, 600, 100)
    for i in range(8):
        registry.announce(f"node-{i}", {"gateway": {"IP": f"127.0.0.{10 + i}"}})
        registry.heartbeat(f"node-{i}", "h", {})
    factory = SeerDNSFactory(Zones(FQDN, "g." + FQDN, registry, 60, 16), reactor, Limits(rate=rate, burst=rate))
    return SeerDatagramProtocol(factory)


def bareServer(rate):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from seer import bareFactory

    factory, protocolClass = bareFactory(8)
    return protocolClass(factory)


async def measure(reactor, protocol, kind, seconds, floodRate):
    from twisted.internet.defer import Deferred
    from twisted.internet.protocol import DatagramProtocol
    from twisted.internet.task import LoopingCall
    from twisted.internet.threads import deferToThread
    from twisted.names import dns

    port = reactor.listenUDP(0, protocol, interface="127.0.0.1")
    target = ("127.0.0.1", port.getHost().port)
    window = 16
    packets = []
    for i in range(window):
        query = dns.Message(id=i, recDes=0)
        query.addQuery(NAME.encode(), dns.A)
        packets.append(query.toStr())
    sentAt = {}
    state = {"answered": 0, "lost": 0}

    class Client(DatagramProtocol):
        def __init__(self, ident):
            self.ident = ident

        def datagramReceived(self, data, addr):
            if sentAt.pop(self.ident, None) is None:
                return
            state["answered"] += 1
            self.send()

        def send(self):
            sentAt[self.ident] = time.perf_counter()
            self.transport.write(packets[self.ident], target)

    clients = [Client(i) for i in range(window)]
    clientPorts = [reactor.listenUDP(0, c, interface=f"127.0.1.{1 + c.ident}") for c in clients]

    def resend():
        now = time.perf_counter()
        for ident, when in list(sentAt.items()):
            if now - when > 0.1:
                state["lost"] += 1
                clients[ident].send()

    child = deferToThread(subprocess.run, [sys.executable, __file__, "--child", kind, str(target[1]),
                                           str(seconds + 1), str(floodRate)], capture_output=True, text=True)
    # let the flood start first
    d = Deferred()
    reactor.callLater(0.5, d.callback, None)
    await d
    checker = LoopingCall(resend)
    checker.clock = reactor
    checker.start(0.05, now=False)
    start = time.perf_counter()
    for c in clients:
        c.send()
    d = Deferred()
    reactor.callLater(seconds, d.callback, None)
    await d
    elapsed = time.perf_counter() - start
    answered, lost = state["answered"], state["lost"]
    checker.stop()
    done = await child
    for clientPort in clientPorts:
        await clientPort.stopListening()
    await port.stopListening()
    floodPPS = float(done.stdout.strip() or 0)
    return answered / elapsed, lost, floodPPS


async def run(reactor, args):
    figures = {"seconds": args.seconds, "runs": args.runs, "flood_rate": args.flood_rate}
    servers = {"seer": lambda: seerServer(1000.0), "seer_nolimit": lambda: seerServer(0.0), "bare": lambda: bareServer(0)}
    for kind in ("none", "malformed", "queries", "bomb"):
        for name, make in servers.items():
            if kind == "none" and name == "seer_nolimit":
                continue
            rate = args.flood_rate if args.flood_rate is not None else FLOOD_RATES[kind]
            samples = [await measure(reactor, make(), kind, args.seconds, rate) for _ in range(args.runs)]
            figures[f"{kind}/{name}"] = {
                "qps": round(statistics.median(s[0] for s in samples)),
                "lost": round(statistics.median(s[1] for s in samples)),
                "flood_pps": round(statistics.median(s[2] for s in samples)),
            }
    return figures


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, port, seconds, rate = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
        flood(port, kind, seconds, rate)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--flood-rate", type=float, default=None, help="packets a second (0: as fast as it can)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    async def go(reactor):
        figures = await run(reactor, args)
        if args.json:
            print(json.dumps(figures))
        else:
            for key, value in figures.items():
                print(f"{key:>24}: {value}")

    os.environ.setdefault("PYTHONHASHSEED", "0")
    react(lambda r: Deferred.fromCoroutine(go(r)))


if __name__ == "__main__":
    main()
