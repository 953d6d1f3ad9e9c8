"""
The replicated key/value store through the C{tau} CLI against running
nodes: tau kv put|get|list|delete|dbs, and a write acknowledged with
--replicas 2 that outlives its writer killed with SIGKILL.
"""

import re
import signal
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests.kvdb.test_nodes import until
from tests.processes import TAU, TWISTD, run, spawn, stopped
from tests.test_cli_store import NodeMixin


class KVCommandTests(NodeMixin, TestCase):
    async def test_putGetListDelete(self):
        root = await self.startNode()
        out = await self.ok(root, "kv", "put", "app", "users/bob", "Bob")
        self.assertRegex(out, r"^put app/users/bob delta bafy\S+ on 1 node\(s\)$")
        await self.ok(root, "kv", "put", "app", "users/alice", "Alice")
        await self.ok(root, "kv", "put", "app", "config", "{}")
        status, out, err = await run(reactor, TAU + ["--root", str(root), "kv", "get", "app", "users/bob"])
        self.assertEqual((status, out), (0, "Bob"))
        self.assertEqual((await self.ok(root, "kv", "list", "app")).split(), ["config", "users/alice", "users/bob"])
        self.assertEqual((await self.ok(root, "kv", "list", "app", "users/")).split(), ["users/alice", "users/bob"])
        await self.ok(root, "kv", "delete", "app", "users/bob")
        status, out, err = await self.tau(root, "kv", "get", "app", "users/bob")
        self.assertEqual(status, 1)
        self.assertIn("tau: app/users/bob: no such key", err)
        self.assertIn("app  height 4", await self.ok(root, "kv", "dbs"))
        status, out, err = await self.tau(root, "kv", "put", "app", "k", "v", "--replicas", "2", "--timeout", "0.5")
        self.assertEqual(status, 1)
        self.assertIn("stored on 1 of the 2", err)


class NoDataLostTests(NodeMixin, TestCase):
    async def test_replicatedWriteOutlivesKilledWriter(self):
        """
        tau kv put --replicas 2 returns once another node holds the write;
        the writer is then killed (SIGKILL) and the write is readable on
        the other node, and reaches a third one from there.
        """
        from tests.kvdb.test_nodes import NodeTests

        helper = NodeTests("test_controlAPI")
        helper.mktemp = self.mktemp
        helper.addCleanup = self.addCleanup
        writerRoot = Path(self.mktemp()).resolve()
        writer = spawn(reactor, TWISTD + ["-n", "--pidfile=", "taubyte", f"--root={writerRoot}", "--listen=/ip4/127.0.0.1/tcp/0"])
        self.addCleanup(stopped, writer)
        await writer.waitFor(b"reachable at")
        address = re.search(rb"reachable at (\S+)", writer.out).group(1).decode()
        b = await helper.startNode()
        await b.kvdb.open("shared")
        await b.host.connect(address)
        out = await self.ok(writerRoot, "kv", "put", "shared", "precious", "data", "--replicas", "2", "--timeout", "60")
        self.assertIn("on 2 node(s)", out)
        writer.kill(signal.SIGKILL)
        await writer.ended()
        self.assertEqual(writer.signal, signal.SIGKILL)
        self.assertEqual(await b.kvdb.get("shared", "precious"), b"data")
        c = await helper.startNode()
        await c.kvdb.open("shared")
        await c.host.connect(f"{b.host.listenAddresses()[0]}/p2p/{b.host.peerID}")

        async def arrived():
            return await c.kvdb.get("shared", "precious") == b"data"

        await until(arrived, "the write on the third node")
