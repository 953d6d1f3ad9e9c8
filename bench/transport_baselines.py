"""
Transport baselines on loopback, to put tau's own figures next to.

    python bench/transport_baselines.py              # all three, default sizes
    python bench/transport_baselines.py --quick      # small sizes, a smoke run

  (a) raw TLS 1.3 throughput (pyOpenSSL through Twisted) between two separate
      Python processes: one listens and measures, the other sends;
  (b) js-libp2p <-> js-libp2p perf (/perf/1.0.0) throughput, TLS + yamux,
      upload and download, via tests/interop/jspeer.py;
  (c) js <-> js connection set-up time: dial until identify is done.

Every figure is the median of several runs (the machines are shared and
noisy).  Import this module and call L{rawTlsThroughput},
L{jsPerfThroughput}, L{jsConnectionSetup} (all C{async}, given a reactor) to
add tau figures and ratios; L{formatTable} prints rows of L{Figure}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

MiB = 1024 * 1024
HERE = Path(__file__).resolve()
REPO = HERE.parent.parent


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    note: str = ""


def formatTable(figures: list[Figure], baseline: Optional[Figure] = None) -> str:
    """
    A text table; with C{baseline}, a ratio column (value / baseline value)
    for the figures with the baseline's unit.
    """
    rows = [("figure", "median", "unit", "ratio" if baseline else "", "note")]
    for f in figures:
        ratio = ""
        if baseline is not None and f.unit == baseline.unit and baseline.value:
            ratio = f"{f.value / baseline.value:.3f}"
        rows.append((f.name, f"{f.value:.2f}", f.unit, ratio, f.note))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# (a) raw TLS 1.3: child processes (this file run with --role)


def _selfSignedPEM() -> bytes:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) + cert.public_bytes(serialization.Encoding.PEM)


def _tlsOptions(server: bool) -> Any:
    from twisted.internet import ssl
    from twisted.internet.ssl import TLSVersion

    if server:
        pc = ssl.PrivateCertificate.loadPEM(_selfSignedPEM())
        return ssl.CertificateOptions(
            privateKey=pc.privateKey.original,
            certificate=pc.original,
            raiseMinimumTo=TLSVersion.TLSv1_3,
        )
    return ssl.CertificateOptions(verify=False, raiseMinimumTo=TLSVersion.TLSv1_3)


def _roleReceive(total: int) -> None:
    """
    Listen on 127.0.0.1:0 (TLS 1.3), print {"port"}, receive C{total} bytes
    from one client, print {"bytes","seconds","cipher"}, exit.
    """
    import time

    from twisted.internet import reactor
    from twisted.internet.protocol import Factory, Protocol

    result: dict = {}

    class Receiver(Protocol):
        received = 0
        first: Optional[float] = None

        def dataReceived(self, data: bytes) -> None:
            if self.first is None:
                self.first = time.perf_counter()
            self.received += len(data)
            if self.received >= total and not result:
                elapsed = time.perf_counter() - self.first
                conn = self.transport.getHandle()
                result.update(
                    bytes=self.received,
                    seconds=elapsed,
                    cipher=conn.get_cipher_name(),
                    version=conn.get_protocol_version_name(),
                )
                self.transport.loseConnection()
                reactor.callLater(0, reactor.stop)

        def connectionLost(self, reason: Any) -> None:
            if not result:
                result.update(error=f"connection lost after {self.received} bytes: {reason.value}")
                reactor.callLater(0, reactor.stop)

    port = reactor.listenSSL(0, Factory.forProtocol(Receiver), _tlsOptions(True), interface="127.0.0.1")
    print(json.dumps({"port": port.getHost().port}), flush=True)
    reactor.callLater(300, reactor.stop)  # bounded
    reactor.run()
    print(json.dumps(result or {"error": "timed out"}), flush=True)


def _roleSend(port: int, total: int) -> None:
    """
    Connect to 127.0.0.1:port over TLS 1.3 and send C{total} bytes with a
    streaming producer, then close.
    """
    from twisted.internet import reactor
    from twisted.internet.protocol import ClientFactory

    from _sender import Sender

    block = os.urandom(64 * 1024)

    def sender() -> Sender:
        protocol = Sender(total, block)
        protocol.done.addCallback(lambda _: reactor.callLater(0, reactor.stop))
        return protocol

    factory = ClientFactory.forProtocol(sender)
    factory.clientConnectionFailed = lambda c, r: reactor.stop()
    reactor.connectSSL("127.0.0.1", port, factory, _tlsOptions(False))
    reactor.callLater(300, reactor.stop)  # bounded
    reactor.run()


async def _rawTlsOnce(reactor: Any, total: int) -> dict:
    from twisted.internet.defer import Deferred
    from twisted.internet.protocol import ProcessProtocol

    class Child(ProcessProtocol):
        def __init__(self) -> None:
            self.out = b""
            self.err = b""
            self.firstLine: Deferred = Deferred()
            self.ended: Deferred = Deferred()
            self.waited = False

        def outReceived(self, data: bytes) -> None:
            self.out += data
            if b"\n" in self.out and not self.firstLine.called:
                self.firstLine.callback(json.loads(self.out.split(b"\n", 1)[0]))

        def errReceived(self, data: bytes) -> None:
            self.err += data

        def processEnded(self, reason: Any) -> None:
            if self.waited and not self.firstLine.called:
                self.firstLine.errback(RuntimeError(f"bench child failed: {self.err.decode()[-2000:]}"))
            self.ended.callback(None)

    env = dict(os.environ)
    receiver = Child()
    reactor.spawnProcess(
        receiver, sys.executable, [sys.executable, str(HERE), "--role", "tls-receive", "--bytes", str(total)], env=env
    )
    receiver.waited = True
    port = (await receiver.firstLine)["port"]
    sender = Child()
    reactor.spawnProcess(
        sender,
        sys.executable,
        [sys.executable, str(HERE), "--role", "tls-send", "--port", str(port), "--bytes", str(total)],
        env=env,
    )
    await sender.ended
    # the receiver is done at most shortly after the sender closed
    killer = reactor.callLater(30, lambda: receiver.transport.signalProcess("KILL"))
    await receiver.ended
    if killer.active():
        killer.cancel()
    lines = receiver.out.strip().split(b"\n")
    result = json.loads(lines[-1])
    if "error" in result:
        raise RuntimeError(f"raw TLS bench: {result['error']}; {receiver.err.decode()[-2000:]}")
    return result


async def rawTlsThroughput(reactor: Any, mib: int = 256, runs: int = 3) -> dict:
    """
    Raw TLS 1.3 throughput between two Python/Twisted processes on
    loopback, measured by the receiver from first to last byte.

    @return: C{{"MiBps": median, "runs": [MiB/s...], "cipher": ...}}
    """
    results = [await _rawTlsOnce(reactor, mib * MiB) for _ in range(runs)]
    rates = [r["bytes"] / MiB / r["seconds"] for r in results]
    return {"MiBps": statistics.median(rates), "runs": rates, "cipher": results[0]["cipher"], "version": results[0]["version"]}


# ----------------------------------------------------------------------------
# (b), (c) js <-> js through the harness


def _harness() -> Any:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.interop import jspeer

    return jspeer


async def jsPerfThroughput(reactor: Any, mib: int = 100, runs: int = 3, encrypter: str = "tls") -> dict:
    """
    js -> js perf: C{mib} MiB up and C{mib} MiB down on one stream, C{runs}
    times over one connection.

    @return: C{{"uploadMiBps", "downloadMiBps", "runs": [...], "encryption"}}
    """
    jspeer = _harness()
    a = await jspeer.startJsPeer(reactor, encrypter=encrypter)
    try:
        b = await jspeer.startJsPeer(reactor, encrypter=encrypter)
        try:
            await a.command("dial", addr=b.addrs[0])
            replies = []
            for _ in range(runs):
                replies.append(
                    await a.command("perf", peer=b.peerId, upload=mib * MiB, download=mib * MiB, timeout=300)
                )
        finally:
            await b.stop()
    finally:
        await a.stop()
    up = [r["uploadBytes"] / MiB / r["uploadSeconds"] for r in replies]
    down = [r["downloadBytes"] / MiB / r["downloadSeconds"] for r in replies]
    return {
        "uploadMiBps": statistics.median(up),
        "downloadMiBps": statistics.median(down),
        "runs": list(zip(up, down)),
        "encryption": replies[0]["encryption"],
    }


async def jsConnectionSetup(reactor: Any, count: int = 50, encrypter: str = "tls") -> dict:
    """
    js -> js: a fresh connection (TCP, TLS, yamux) until identify is done,
    C{count} times, hanging up in between; times measured inside js.

    @return: C{{"medianMs", "p90Ms", "dialMedianMs", "runs": [...]}}
    """
    jspeer = _harness()
    a = await jspeer.startJsPeer(reactor, encrypter=encrypter)
    try:
        b = await jspeer.startJsPeer(reactor, encrypter=encrypter)
        try:
            # warm up (JIT, peer store) once, not counted
            await a.command("dial", addr=b.addrs[0])
            await a.command("hangup", peer=b.peerId)
            identify, dial = [], []
            for _ in range(count):
                reply = await a.command("dial", addr=b.addrs[0], force=True)
                identify.append(reply["identifyMs"])
                dial.append(reply["dialMs"])
                await a.command("hangup", peer=b.peerId)
        finally:
            await b.stop()
    finally:
        await a.stop()
    return {
        "medianMs": statistics.median(identify),
        "p90Ms": statistics.quantiles(identify, n=10)[-1],
        "dialMedianMs": statistics.median(dial),
        "runs": identify,
    }


async def runAll(reactor: Any, tlsMib: int = 256, perfMib: int = 100, connections: int = 50, runs: int = 3) -> list[Figure]:
    tls = await rawTlsThroughput(reactor, tlsMib, runs)
    perf = await jsPerfThroughput(reactor, perfMib, runs)
    setup = await jsConnectionSetup(reactor, connections)
    return [
        Figure("raw TLS 1.3, py->py processes", tls["MiBps"], "MiB/s", f"{tlsMib} MiB x{runs}, {tls['cipher']}"),
        Figure("js->js perf upload", perf["uploadMiBps"], "MiB/s", f"{perfMib} MiB x{runs}, {perf['encryption']}+yamux"),
        Figure("js->js perf download", perf["downloadMiBps"], "MiB/s", f"{perfMib} MiB x{runs}"),
        Figure("js->js dial+identify", setup["medianMs"], "ms", f"median of {connections}, p90 {setup['p90Ms']:.1f}"),
        Figure("js->js dial (upgraded)", setup["dialMedianMs"], "ms", f"median of {connections}"),
    ]


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tls-mib", type=int, default=256)
    parser.add_argument("--perf-mib", type=int, default=100)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="16 MiB / 10 MiB / 10 connections / 1 run")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--role", choices=["tls-receive", "tls-send"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bytes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "tls-receive":
        return _roleReceive(args.bytes)
    if args.role == "tls-send":
        return _roleSend(args.port, args.bytes)
    if args.quick:
        args.tls_mib, args.perf_mib, args.connections, args.runs = 16, 10, 10, 1

    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    async def run(reactor: Any) -> None:
        figures = await runAll(reactor, args.tls_mib, args.perf_mib, args.connections, args.runs)
        print(formatTable(figures, baseline=figures[0]))
        if args.json:
            print(json.dumps([f.__dict__ for f in figures]))

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
