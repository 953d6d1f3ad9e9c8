"""
The key/value store between real nodes on loopback: real pubsub (gossipsub),
Bitswap, block stores and SQLite views; partitions made by refusing
connections between groups.
"""

import json
from pathlib import Path

import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tau import loadConfig, makeNode
from tau.kvdb import codec
from tests.hosts import addressOf
from tests.kvdb.test_replica import expectedWinners

DB = "shared"


def config(root):
    fields = {"api-listen": "tcp:0:interface=127.0.0.1", "p2p-listen": ["/ip4/127.0.0.1/tcp/0"]}
    return loadConfig(shape="full", root=root, overrides=fields)


class Firewall:
    """
    Refuses connections between peers of different groups: existing ones
    are closed and new ones (either direction) closed as they come up.
    """

    def __init__(self):
        self.blocked = {}

    def install(self, node):
        host = node.host
        original = host._register

        def register(conn):
            if conn.remotePeer in self.blocked.get(host.peerID, ()):
                conn.close()
                return
            original(conn)

        host._register = register

    def partition(self, groups):
        for group in groups:
            others = [n for g in groups if g is not group for n in g]
            for node in group:
                self.blocked[node.host.peerID] = {o.host.peerID for o in others}
        for group in groups:
            for node in group:
                for conn in node.host.connections():
                    if conn.remotePeer in self.blocked[node.host.peerID]:
                        conn.close()

    def heal(self):
        self.blocked.clear()


async def until(predicate, what, limit=60.0):
    """
    Poll C{predicate} (a coroutine function) every 50 ms until it is true.
    """
    deadline = reactor.seconds() + limit
    while not await predicate():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.05, lambda: None)


class NodeTests(TestCase):
    timeout = 180

    async def startNode(self, root=None, firewall=None):
        root = Path(root or self.mktemp())
        node = makeNode(config(root), reactor=reactor)
        node.kvdb.rebroadcast = 0.5
        node.kvdb.fetchTimeout = 5.0
        if firewall is not None:
            firewall.install(node)
        node.startService()
        self.addCleanup(lambda: node.stopService() if node.running else None)
        await node.whenReady()
        node.root = root
        return node

    async def connectAll(self, nodes):
        for i, a in enumerate(nodes):
            for b in nodes[i + 1 :]:
                await a.host.connect(addressOf(b.host))

    async def meshed(self, nodes):
        async def check():
            return all(len(n.pubsub.topicPeers("/tau/kvdb/1.0.0/" + DB)) >= len(nodes) - 1 for n in nodes)

        await until(check, "pubsub peers")

    async def states(self, nodes):
        return [await n.kvdb.list(DB, values=True) for n in nodes]

    async def converged(self, nodes):
        async def check():
            states = await self.states(nodes)
            return all(s == states[0] for s in states)

        await until(check, "convergence")
        return (await self.states(nodes))[0]

    async def test_partitionConvergence(self):
        """
        Five nodes split 2/3 write concurrently, the same keys on both
        sides; after healing all five hold the same state with the expected
        winners.  A sixth node, offline for the whole episode, catches up
        when it returns (its view survived its restart).
        """
        firewall = Firewall()
        nodes = [await self.startNode(firewall=firewall) for _ in range(6)]
        await self.connectAll(nodes)
        for n in nodes:
            await n.kvdb.open(DB)
        await self.meshed(nodes)
        written = []
        for i, n in enumerate(nodes):
            delta, _ = await n.kvdb.write(DB, [("shared", b"before-%d" % i), ("own-%d" % i, b"x")])
            written.append(delta)
        await self.converged(nodes)
        away = nodes.pop()
        await away.stopService()
        left, right = nodes[:2], nodes[2:]
        firewall.partition([left, right])
        tie = [(await left[0].kvdb.put(DB, "tie", b"left"))[0], (await right[0].kvdb.put(DB, "tie", b"right"))[0]]
        self.assertEqual(tie[0].height, tie[1].height)
        written.extend(tie)
        for step in range(12):
            for side, group in (("left", left), ("right", right)):
                n = group[step % len(group)]
                key = ["shared", "k1", "k2", f"{side}-only"][step % 4]
                value = None if step == 9 else f"{side}-{step}".encode()
                written.append((await n.kvdb.write(DB, [(key, value)]))[0])
        leftState = await self.converged(left)
        rightState = await self.converged(right)
        self.assertNotEqual(leftState, rightState)
        firewall.heal()
        await self.connectAll(nodes)
        state = await self.converged(nodes)
        self.assertEqual(dict(state), expectedWinners(written))
        self.assertEqual(dict(state)[b"tie"], b"left" if tie[0].cid > tie[1].cid else b"right")
        # the node that was away, restarted from its root
        back = await self.startNode(root=away.root)
        self.assertEqual(await back.kvdb.get(DB, "own-5"), b"x")
        for n in nodes:
            await back.host.connect(addressOf(n.host))
        self.assertEqual(await self.converged(nodes + [back]), state)

    async def test_replicatedWriteSurvivesWriter(self):
        """
        A write acknowledged with replicas=2 is held (stored, applied) by
        another node when put() returns: with the writer gone at once, it
        is readable there, and reaches a third node from there.
        """
        a, b, c = [await self.startNode() for _ in range(3)]
        await a.host.connect(addressOf(b.host))
        for n in (a, b):
            await n.kvdb.open(DB)
        await self.meshed([a, b])
        delta, confirmed = await a.kvdb.put(DB, "precious", b"data", replicas=2, timeout=30)
        self.assertEqual(confirmed, 2)
        # the writer dies: connections aborted, no goodbye
        for conn in a.host.connections():
            conn.transport.abortConnection() if hasattr(conn, "transport") and conn.transport else conn.close()
        await a.stopService()
        self.assertEqual(await b.kvdb.get(DB, "precious"), b"data")
        self.assertTrue(await b.store.blocks.isPinned(codec.cidObject(delta.cid)))
        await c.host.connect(addressOf(b.host))
        await c.kvdb.open(DB)

        async def arrived():
            return await c.kvdb.get(DB, "precious") == b"data"

        await until(arrived, "the write on the third node")

    async def test_replicasTimeout(self):
        """
        With no peer to confirm, replicas=2 fails after the timeout; the
        write is kept locally.
        """
        from tau.kvdb import ReplicationTimeout

        a = await self.startNode()
        with self.assertRaises(ReplicationTimeout) as caught:
            await a.kvdb.put(DB, "k", b"v", replicas=2, timeout=0.5)
        self.assertEqual(caught.exception.confirmed, 1)
        self.assertEqual(await a.kvdb.get(DB, "k"), b"v")

    async def test_forgedDeltaRejected(self):
        """
        A delta with a bad signature announced by a peer is not applied by
        the others, and the correctly written ones still are.
        """
        a, b = await self.startNode(), await self.startNode()
        await a.host.connect(addressOf(b.host))
        for n in (a, b):
            await n.kvdb.open(DB)
        await self.meshed([a, b])
        good, _ = await a.kvdb.put(DB, "k", b"good", replicas=2)
        import cbor2

        body = cbor2.loads(good.data)
        body["e"] = [[b"k", b"forged"]]
        body["h"] = 2
        body["p"] = [codec.link(good.cid)]
        data = codec.encode(body)
        forged = codec.cidOf(data)
        await a.store.blocks.putMany([(codec.cidObject(forged), data)], verified=True)
        await a.pubsub.publish("/tau/kvdb/1.0.0/" + DB, codec.encodeHeads([forged]))
        replica = b.kvdb.replicas[DB]

        async def rejected():
            return forged in replica._bad

        await until(rejected, "the forged delta rejected")
        self.assertEqual(await b.kvdb.get(DB, "k"), b"good")
        await a.kvdb.put(DB, "k2", b"after", replicas=2)
        self.assertEqual(await b.kvdb.get(DB, "k2"), b"after")

    async def test_controlAPI(self):
        """
        kv/put, kv/get, kv/list, kv/delete, kv/dbs through the control API.
        """
        node = await self.startNode()
        base = f"http://127.0.0.1:{node.ports()['api']}/api/v0/"

        async def post(command, params, data=None):
            response = await treq.post(base + command, params=params, data=data, persistent=False)
            return response.code, await response.content()

        for key in ("b", "a/2", "a/1", "c"):
            code, body = await post("kv/put", [("arg", "db1"), ("arg", key)], key.encode() * 2)
            self.assertEqual(code, 200, body)
        self.assertEqual(json.loads(body)["Replicas"], 1)
        self.assertEqual(await post("kv/get", [("arg", "db1"), ("arg", "a/1")]), (200, b"a/1a/1"))
        code, body = await post("kv/list", [("arg", "db1"), ("prefix", "a/")])
        self.assertEqual(json.loads(body)["Keys"], ["a/1", "a/2"])
        code, body = await post("kv/delete", [("arg", "db1"), ("arg", "a/1")])
        self.assertEqual(code, 200)
        self.assertEqual((await post("kv/get", [("arg", "db1"), ("arg", "a/1")]))[0], 404)
        code, body = await post("kv/list", [("arg", "db1")])
        self.assertEqual(json.loads(body)["Keys"], ["a/2", "b", "c"])
        code, body = await post("kv/dbs", [])
        # besides the databases of the node's services (tns@..., auth@..., hoarder@...)
        names = [d["Name"] for d in json.loads(body)["Databases"]]
        self.assertEqual([n for n in names if not n.startswith(("tns@", "auth@", "patrick@", "hoarder@"))], ["db1"])
        code, body = await post("kv/put", [("arg", "bad/name"), ("arg", "k")], b"v")
        self.assertEqual(code, 400)
        code, body = await post("kv/put", [("arg", "db1"), ("arg", "k"), ("replicas", "2"), ("timeout", "0.3")], b"v")
        self.assertEqual(code, 504)
        self.assertIn("1 of the 2", json.loads(body)["Message"])
