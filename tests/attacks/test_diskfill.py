"""
The network cannot fill a node's disk: attacks on a real twistd node on
loopback, measured on its files.

- Provider records: three fresh identities each send 1,000 ADD_PROVIDER
  for different keys, every one carrying 16 addresses of 1 KiB of junk and
  16 real ones; C{dht.sqlite} stays near the configured byte cap, which the
  records fill, the oldest evicted.
- Log lines: one peer floods a connection with 12-byte yamux SYN frames far
  past the stream limit, then drops it; or opens 300 connections that each
  send garbage instead of multistream; the node's log grows by a few KiB.
"""

import re
import sqlite3
from pathlib import Path

import multiaddr
import yaml
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tau.identity import PeerID, PrivateKey
from tau.kad.messages import PROTOCOL_ID as KAD, Message, encodeMessage, peerEntry
from tau.protocols.yamuxframe import FLAG_SYN, windowUpdateFrame
from tests.hosts import startHost
from tests.processes import TWISTD, spawn, stopped

#: The byte cap of other peers' provider records the node is given.
PROVIDER_BYTES = 64 * 1024


def fileSize(path):
    return path.stat().st_size if path.exists() else 0


def logSize(logPath):
    """
    The bytes of the log, counting the files twistd rotated it to (every
    1 MB).
    """
    return sum(fileSize(p) for p in logPath.parent.glob(logPath.name + "*"))


class Garbage(Protocol):
    """
    Sends junk where multistream-select is expected; C{lost} fires when the
    node drops the connection.
    """

    def __init__(self):
        self.lost = Deferred()

    def connectionMade(self):
        self.transport.write(b"\x13not multistream at all\n" * 4)

    def connectionLost(self, reason):
        self.lost.callback(None)


class DiskFillTests(TestCase):
    timeout = 180

    async def startNode(self):
        """
        A node with no services, its DHT in server mode with a 64 KiB cap on
        provider records, its log in a file: C{(peerID, address, root,
        logPath)}.
        """
        root = Path(self.mktemp()).resolve()
        root.mkdir()
        config = root / "attack.yaml"
        config.write_text(
            yaml.safe_dump({"services": [], "dht": {"mode": "server", "max-provider-bytes": PROVIDER_BYTES}})
        )
        logPath = root / "node.log"
        node = spawn(
            reactor,
            TWISTD
            + [
                "-n", "--pidfile=", f"--logfile={logPath}", "taubyte", "--shape=attack",
                f"--root={root}", f"--config={config}", "--listen=/ip4/127.0.0.1/tcp/0",
            ],
        )
        self.addCleanup(stopped, node)
        for _ in range(300):
            text = logPath.read_text() if logPath.exists() else ""
            found = re.search(r"reachable at (\S+/p2p/(\S+))", text)
            if found or node.status is not None:
                break
            await deferLater(reactor, 0.1)
        self.assertTrue(found, node.output() + text)
        return found.group(2), found.group(1), root, logPath

    async def quietLog(self, logPath):
        """
        Wait (at most 10 s) until the log has not grown for a second.
        """
        size, still = logSize(logPath), 0
        for _ in range(50):
            await deferLater(reactor, 0.2)
            now = logSize(logPath)
            still = still + 1 if now == size else 0
            size = now
            if still >= 5:
                break
        return size

    async def test_providerRecordsCapped(self):
        peerID, address, root, logPath = await self.startNode()
        db = root / "storage" / "attack" / "dht.sqlite"
        files = [db, db.with_name("dht.sqlite-wal")]
        before = sum(map(fileSize, files))

        junk = [bytes([i]) * 1024 for i in range(16)]
        real = [multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{port}").to_bytes() for port in range(1000, 1016)]
        attackers = []
        for n in range(3):
            host = await startHost(self, key=PrivateKey.generate())
            attackers.append(host.peerID)
            await host.connect(address)
            stream = await host.newStream(PeerID.fromString(peerID), [KAD])
            for i in range(1000):
                key = b"\x12\x20" + bytes([n]) + i.to_bytes(31, "big")
                message = Message(type=Message.ADD_PROVIDER, key=key, providerPeers=[peerEntry(host.peerID, junk + real)])
                stream.writeLP(encodeMessage(message))
            stream.closeWrite()
            # The node closes its side once it has handled every message.
            self.assertEqual(await stream.readToEnd(1), b"")

        grown = sum(map(fileSize, files)) - before
        # 3,000 messages of 17 KiB: 55 MB before the caps; now the records,
        # SQLite's pages for them and the write-ahead log (checkpointed
        # every 1,000 pages, about 4 MB).
        self.assertLess(grown, 6 * 1024 * 1024, f"dht.sqlite and its WAL grew by {grown} bytes")
        self.assertLess(fileSize(db), 1024 * 1024)
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        self.addCleanup(con.close)
        rows, size = con.execute(
            "SELECT count(*), total(length(key) + length(peer) + length(addrs)) FROM providers WHERE own = 0"
        ).fetchone()
        record = con.execute("SELECT max(length(key) + length(peer) + length(addrs)) FROM providers").fetchone()[0]
        kept = {bytes(a) for (a,) in con.execute("SELECT addrs FROM providers")}
        newest = con.execute(
            "SELECT count(*) FROM providers WHERE peer = ? AND key = ?",
            (attackers[2].toBytes(), b"\x12\x20\x02" + (999).to_bytes(31, "big")),
        ).fetchone()[0]
        oldest = con.execute("SELECT count(*) FROM providers WHERE peer = ?", (attackers[0].toBytes(),)).fetchone()[0]

        # At the cap, and no further: the oldest records (the first
        # identity's) were evicted for the newest.
        self.assertLessEqual(size, PROVIDER_BYTES)
        self.assertGreater(size, PROVIDER_BYTES - record)
        self.assertEqual((newest, oldest), (1, 0))
        # Each record kept 8 of the real addresses, none of the junk.
        self.assertEqual(kept, {b"".join(bytes([len(a)]) + a for a in real[:8])})
        self.assertEqual(rows, size // record)

    async def test_synFloodLogBounded(self):
        peerID, address, root, logPath = await self.startNode()
        host = await startHost(self, key=PrivateKey.generate())
        conn = await host.connect(address)
        before = await self.quietLog(logPath)

        # 1,000 streams are allowed (each waits for a protocol name that
        # never comes); 20,000 more are refused, one RST each.
        flood = b"".join(windowUpdateFrame(FLAG_SYN, 2 * i + 1, 0) for i in range(1000, 22000))
        self.assertEqual(len(flood), 21000 * 12)
        conn.session.transport.write(flood)
        # The node answers a ping once it has read every frame before it.
        await conn.session.ping()
        conn.close()
        after = await self.quietLog(logPath)

        grown = after - before
        self.assertLess(grown, 8 * 1024, f"the log grew by {grown} bytes, ending: " + logPath.read_text()[-1000:])

    async def test_garbageConnectionsLogBounded(self):
        """
        A peer that reconnects stays limited: lines about connections that
        fail their upgrade count against its IP address.
        """
        peerID, address, root, logPath = await self.startNode()
        port = int(address.split("/tcp/")[1].split("/")[0])
        before = await self.quietLog(logPath)
        for _ in range(10):
            batch = [
                await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), Garbage()) for _ in range(30)
            ]
            await gatherResults([g.lost for g in batch])
        after = await self.quietLog(logPath)
        grown = after - before
        self.assertLess(grown, 8 * 1024, f"the log grew by {grown} bytes, ending: " + logPath.read_text()[-1000:])
