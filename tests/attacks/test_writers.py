"""
The attack of issue 13, item 3, against real node processes on loopback: a
node with a fresh key joins the network and tries to overwrite a key of a
database with writers, by every way a write travels (its own node's API,
a signed delta announced on pubsub with the block inline, a push).  Each
replica (two writers and a reader, real twistd processes) refuses it and
logs it, and the value stays the writers' everywhere.
"""

import base64
import json
import re
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tau import loadConfig, makeNode
from tau.cloud import makeAdmission
from tau.identity import PeerID, PrivateKey
from tau.kvdb import codec
from tau.kvdb.service import topicFor
from tau.kvdb.writers import NotAWriter
from tests.hosts import addressOf
from tests.kvdb.test_nodes import config, until
from tests.processes import TWISTD, spawn, stopped
from tests.test_cli_store import NodeMixin


class ForeignWriterTests(NodeMixin, TestCase):
    timeout = 240

    async def realNode(self):
        root = Path(self.mktemp()).resolve()
        proc = spawn(reactor, TWISTD + ["-n", "--pidfile=", "taubyte", f"--root={root}", "--listen=/ip4/127.0.0.1/tcp/0"])
        self.addCleanup(stopped, proc)
        await proc.waitFor(b"reachable at")
        address = re.search(rb"reachable at (\S+)", proc.out).group(1).decode()
        return root, proc, address, address.rsplit("/p2p/", 1)[1]

    async def foreignNode(self):
        root = Path(self.mktemp()).resolve()
        node = makeNode(config(root), reactor=reactor)
        node.root = root
        node.kvdb.fetchTimeout = 5.0
        node.startService()
        self.addCleanup(lambda: node.stopService() if node.running else None)
        await node.whenReady()
        return node

    async def value(self, root, db, key):
        status, out, err = await self.tau(root, "kv", "get", db, key)
        return out if status == 0 else None

    async def test_foreignPutRefusedOnEveryReplica(self):
        (rootA, procA, addrA, idA), (rootB, procB, addrB, idB), (rootC, procC, addrC, idC) = [await self.realNode() for _ in range(3)]
        await self.ok(rootB, "swarm", "connect", addrA)
        await self.ok(rootC, "swarm", "connect", addrA)
        await self.ok(rootC, "swarm", "connect", addrB)

        # A creates the database with B as the other writer; C only reads
        created = json.loads(await self.ok(rootA, "kv", "create", "app", "--writer", idB, "--quota", "1MiB", "--json"))
        db = created["Database"]
        self.assertRegex(db, r"^app@bafyrei[a-z2-7]+$")
        self.assertEqual(sorted(created["Writers"]), sorted([idA, idB]))
        shown = await self.ok(rootC, "kv", "writers", db)
        self.assertEqual(shown.splitlines(), [db, "quota 1048576 bytes per writer"] + [f"writer {w}" for w in sorted([idA, idB])])
        out = await self.ok(rootB, "kv", "put", db, "owner", "alice", "--replicas", "2", "--timeout", "60")
        self.assertIn("on 2 node(s)", out)

        async def everywhere(value):
            return [await self.value(r, db, "owner") for r in (rootA, rootB, rootC)] == [value] * 3

        await until(lambda: everywhere("alice"), "the writers' value on every replica", limit=90)

        # the foreign node: a fresh key, connected to all three
        foreign = await self.foreignNode()
        for addr in (addrA, addrB, addrC):
            await foreign.host.connect(addr)
        replica = await foreign.kvdb.open(db)

        async def copied():
            return await replica.get(b"owner") == b"alice"

        await until(copied, "the foreign node's copy", limit=60)

        # 1. through its own node: refused there
        with self.assertRaises(NotAWriter):
            await foreign.kvdb.put(db, "owner", b"mallory")
        status, out, err = await self.tau(foreign.root, "kv", "put", db, "owner", "mallory")
        self.assertEqual(status, 1)
        self.assertIn(f"{foreign.host.peerID} is not a writer of database {db}", err)

        # 2. a node that skips its own check: a signed delta on top of the
        # writers' heads, announced with the block inline, and pushed
        heads = dict(replica.heads)
        evil = codec.makeDelta(foreign.kvdb.key, db, max(heads.values()) + 1, list(heads), [(b"owner", b"mallory")])
        await foreign.store.blocks.putMany([(codec.cidObject(evil.cid), evil.data)], verified=True)
        await foreign.pubsub.publish(topicFor(db), codec.encodeHeads([evil.cid], None, [evil.data]))
        for peer in (idA, idB, idC):
            ok, why = await foreign.kvdb._push(PeerID.fromString(peer), db, [evil.cid])
            self.assertEqual((ok, why), (False, "not a writer of this database"))
        needle = f"refused deltas from {foreign.host.peerID}".encode()
        for proc in (procA, procB, procC):
            try:
                await proc.waitFor(needle, timeout=60)
            except Exception:
                raise AssertionError(f"no refusal logged:\n{proc.output()[-6000:]}") from None
            await proc.waitFor(f"refused a push from {foreign.host.peerID}".encode(), timeout=10)
        self.assertTrue(await everywhere("alice"))

        # the writers still write, and a writer adds the reader C, whose
        # writes every replica then takes
        await self.ok(rootA, "kv", "put", db, "owner", "bob")
        await until(lambda: everywhere("bob"), "a writer's later value on every replica", limit=60)
        status, out, err = await self.tau(rootC, "kv", "put", db, "owner", "carol")
        self.assertEqual(status, 1)
        self.assertIn(f"{idC} is not a writer of database {db}", err)
        added = await self.ok(rootA, "kv", "writers", db, "--add", idC)
        self.assertIn(f"writer {idC}", added.splitlines())

        async def learnt():
            return f"writer {idC}" in (await self.tau(rootC, "kv", "writers", db))[1].splitlines()

        await until(learnt, "C learning it is a writer", limit=60)
        await self.ok(rootC, "kv", "put", db, "owner", "carol")
        await until(lambda: everywhere("carol"), "the new writer's value on every replica", limit=60)



class ServiceDatabaseTests(TestCase):
    """
    A service's database: its writers are the nodes the cloud's key
    admitted for that service.  Nodes run in this process (real hosts,
    pubsub and Bitswap on loopback).
    """

    timeout = 180

    async def member(self, cloud, services):
        key = PrivateKey.generate()
        fields = {
            "api-listen": "tcp:0:interface=127.0.0.1",
            "p2p-listen": ["/ip4/127.0.0.1/tcp/0"],
            "privatekey": base64.b64encode(key.toProtobuf()).decode(),
            "cloud": {"key": str(cloud.peerID()), "admission": makeAdmission(cloud, key.peerID(), services).text()},
        }
        node = makeNode(loadConfig(shape="full", root=Path(self.mktemp()), overrides=fields), reactor=reactor)
        node.kvdb.rebroadcast = 0.5
        node.kvdb.fetchTimeout = 5.0
        node.startService()
        self.addCleanup(lambda: node.stopService() if node.running else None)
        await node.whenReady()
        return node

    async def test_onlyTheServicesNodesWrite(self):
        cloud = PrivateKey.generate()
        a, b = await self.member(cloud, ["tns"]), await self.member(cloud, ["tns", "auth"])
        other = await self.member(cloud, ["auth"])
        for x, y in ((a, b), (a, other), (b, other)):
            await x.host.connect(addressOf(y.host))
        replicas = [await n.kvdb.serviceDatabase("tns", "projects") for n in (a, b, other)]
        db = replicas[0].name
        self.assertEqual({r.name for r in replicas}, {db}, "every node of the cloud opens the same database")
        self.assertEqual([str(w) for w in await a.kvdb.writersOf(db)], [f"cloud:{cloud.peerID()}/tns"])
        await b.kvdb.put(db, "project/1", b"b's")

        async def everywhere(value):
            return [await n.kvdb.get(db, "project/1") for n in (a, b, other)] == [value] * 3

        await until(lambda: everywhere(b"b's"), "b's write on every node")
        with self.assertRaises(NotAWriter):
            await other.kvdb.put(db, "project/1", b"hijacked")
        # the auth node skips its own check: its admission is not for tns
        replica = replicas[2]
        heads = dict(replica.heads)
        evil = codec.makeDelta(other.kvdb.key, db, max(heads.values()) + 1, list(heads), [(b"project/1", b"hijacked")], admission=other.kvdb.admission.data)
        await other.store.blocks.putMany([(codec.cidObject(evil.cid), evil.data)], verified=True)
        await other.pubsub.publish(topicFor(db), codec.encodeHeads([evil.cid], None, [evil.data]))

        async def refused():
            return all(evil.cid in r._bad for r in replicas[:2])

        await until(refused, "the tns nodes refusing the auth node's delta")
        self.assertTrue(await everywhere(b"b's"))
