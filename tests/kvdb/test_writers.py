"""
Databases with writers (L{tau.kvdb.writers}): only writers change them,
writers are added only by writers, each writer has a byte quota, a
snapshot or push from a non-writer is refused, and a cloud's admissions
make the nodes of a service its writers.
"""

import json

import treq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tau.cloud import MAX_ADMISSION, MAX_SERVICES, InvalidAdmission, decodeAdmission, makeAdmission
from tau.identity import PrivateKey
from tau.kvdb import codec, snapshots, writers
from tau.kvdb.service import KVDBService
from tau.kvdb.writers import Authority, CloudWriter, NodeWriter, NotAWriter
from tests.kvdb.fakes import Cluster
from tests.kvdb import test_nodes, test_replica
from tests.kvdb.test_service import FakeStream, StuckReplica


def genesisOf(keys, quota=1 << 20, name="db", extra=()):
    genesis = writers.makeGenesis(name, [NodeWriter(k.peerID()) for k in keys] + list(extra), quota)
    return genesis, writers.databaseName(name, genesis.cid)


async def offer(replica, delta, source="foreign"):
    """
    Announce C{delta} to C{replica} as a peer would, the block inline.
    """
    return await replica.merge([delta.cid], source=source, blocks={delta.cid: delta.data})


async def holding(replica, *blocks):
    await replica.blocks.putMany([(codec.cidObject(c), data) for c, data in blocks], verified=True)


class NamesTests(SynchronousTestCase):
    def test_nameHoldsTheGenesis(self):
        """
        A database with writers is NAME@GENESIS; the same name and writers
        give the same database; a name without a genesis CID is open.
        """
        key = PrivateKey.generate()
        genesis, name = genesisOf([key])
        self.assertEqual(writers.splitName(name), ("db", genesis.cid))
        self.assertEqual(genesisOf([key])[1], name)
        self.assertNotEqual(genesisOf([key], quota=5)[1], name)
        for open_ in ("db", "a@b", "mail@example.com", "x@" + str(key.peerID())):
            self.assertEqual(writers.splitName(open_), (open_, None))

    def test_writerText(self):
        key = PrivateKey.generate()
        self.assertEqual(writers.parseWriter(str(key.peerID())), NodeWriter(key.peerID()))
        self.assertEqual(writers.parseWriter(f"cloud:{key.peerID()}/tns"), CloudWriter(key.peerID(), "tns"))
        self.assertEqual(str(CloudWriter(key.peerID(), "tns")), f"cloud:{key.peerID()}/tns")
        for bad in ("nope", f"cloud:{key.peerID()}", "cloud:xyz/tns"):
            self.assertRaises(ValueError, writers.parseWriter, bad)

    def test_admissionTamperedRefused(self):
        cloud, node = PrivateKey.generate(), PrivateKey.generate()
        admission = makeAdmission(cloud, node.peerID(), ["tns"])
        self.assertEqual(decodeAdmission(admission.data).services, ("tns",))
        forged = admission.data.replace(b"tns", b"tnt")
        self.assertRaises(InvalidAdmission, decodeAdmission, forged)


    def test_mostServices(self):
        key, node = PrivateKey.generate(), PrivateKey.generate().peerID()
        names = ["s%d" % i for i in range(MAX_SERVICES + 1)]
        admission = makeAdmission(key, node, names[: MAX_SERVICES])
        self.assertEqual(len(decodeAdmission(admission.data).services), MAX_SERVICES)
        self.assertRaises(InvalidAdmission, makeAdmission, key, node, names)
        self.assertRaises(InvalidAdmission, decodeAdmission, b"\xa0" * (MAX_ADMISSION + 1))

    def test_badAuthorityFieldsAreInvalidBlocks(self):
        """
        A delta whose writer-set link or admission is malformed is an
        InvalidBlock (refused like any bad block), whatever its type.
        """
        key = PrivateKey.generate()
        for field, value in (("a", [1, 2]), ("a", b"junk"), ("a", 5), ("wv", 5), ("wv", b"x"), ("x", 1)):
            body = codec.decode(codec.makeDelta(key, "db", 1, [], [(b"k", b"v")]).data)
            del body["s"]
            body[field] = value
            body["s"] = key.sign(codec.DELTA_CONTEXT + codec.encode(body))
            data = codec.encode(body)
            self.assertRaises(codec.InvalidBlock, codec.decodeDelta, codec.cidOf(data), data)


class LimitTests(TestCase):
    def test_mostWriters(self):
        keys = [PrivateKey.generate() for _ in range(writers.MAX_WRITERS + 1)]
        genesis, _ = genesisOf(keys[: writers.MAX_WRITERS])
        self.assertEqual(len(genesis.writers), writers.MAX_WRITERS)
        self.assertRaises(codec.InvalidBlock, genesisOf, keys)

    async def test_longestChain(self):
        """
        A chain of MAX_CHAIN writer sets above the genesis is followed; one
        more is refused.
        """
        key = PrivateKey.generate()
        genesis, name = genesisOf([key])
        blocks, prev, members = {}, genesis.cid, set(genesis.writers)
        for _ in range(writers.MAX_CHAIN + 1):
            members.add(NodeWriter(PrivateKey.generate().peerID()))
            ws = writers.makeWriterSet(key, name, prev, members)
            blocks[ws.cid] = ws.data
            prev = ws.cid
        chain = list(blocks)

        async def fetch(c):
            return blocks[c]

        async def keep(ws):
            pass

        self.assertEqual(len(await Authority(name, genesis, fetch, keep).resolve(chain[-2])), writers.MAX_CHAIN + 1)
        with self.assertRaises(codec.InvalidBlock) as caught:
            await Authority(name, genesis, fetch, keep).resolve(chain[-1])
        self.assertIn(f"more than {writers.MAX_CHAIN}", str(caught.exception))


class WriterTests(TestCase):
    async def cluster(self, keys, readers=(), quota=1 << 20, extra=(), **options):
        genesis, name = genesisOf(keys, quota, extra=extra)
        cluster = Cluster(self, name=name)
        nodes = [await cluster.add(key=k, genesis=genesis, **options) for k in list(keys) + list(readers)]
        return cluster, genesis, nodes

    async def test_foreignDeltaRefusedOnEveryReplica(self):
        """
        A delta signed by a key that is not a writer is refused by every
        replica (writers and readers), and the value stays the writers'.
        """
        ka, kb, kc, foreign = (PrivateKey.generate() for _ in range(4))
        cluster, genesis, (a, b, c) = await self.cluster([ka, kb], readers=[kc])
        await a.write([(b"k", b"good")])
        await cluster.settle()
        height = max(a.heads.values())
        evil = codec.makeDelta(foreign, cluster.name, height + 1, list(a.heads), [(b"k", b"evil")])
        worse = codec.makeDelta(foreign, cluster.name, height + 1, list(a.heads), [(b"k", b"worse")])
        with capturedLogs() as events:
            for replica in (a, b, c):
                await offer(replica, evil)
                await offer(replica, worse)
            await cluster.settle()
        for replica in (a, b, c):
            self.assertEqual(await replica.get(b"k"), b"good")
            self.assertIn(evil.cid, replica._bad)
            self.assertNotIn(evil.cid, replica.heads)
        refusals = [e for e in events if e.get("what") == "deltas"]
        self.assertEqual(len(refusals), 3, "one line per node and writer per minute, not per delta")
        self.assertIn("not a writer", refusals[0]["why"])
        # the writers go on
        await b.write([(b"k", b"better")])
        await cluster.settle()
        self.assertEqual([await r.get(b"k") for r in (a, b, c)], [b"better"] * 3)

    async def test_nonWriterCannotWriteLocally(self):
        ka, kc = PrivateKey.generate(), PrivateKey.generate()
        cluster, genesis, (a, c) = await self.cluster([ka], readers=[kc])
        with self.assertRaises(NotAWriter):
            await c.write([(b"k", b"v")])
        self.assertEqual(c.heads, {})
        with self.assertRaises(NotAWriter):
            await c.addWriters([NodeWriter(kc.peerID())])

    async def test_writerAddsWriter(self):
        """
        A writer adds a writer; every replica then takes the new writer's
        deltas, including one that joins later and learns the writer set
        from the new writer's delta.
        """
        ka, kb, kc = (PrivateKey.generate() for _ in range(3))
        cluster, genesis, (a, b, c) = await self.cluster([ka], readers=[kb, kc])
        await a.write([(b"k", b"1")])
        await a.addWriters([NodeWriter(kc.peerID())])
        await cluster.settle()
        self.assertTrue(c.authority.isWriter(kc.peerID()))
        self.assertFalse(c.authority.isWriter(kb.peerID()))
        delta = await c.write([(b"k", b"2")])
        self.assertIsNotNone(delta.version)
        await cluster.settle()
        late = await cluster.add(key=PrivateKey.generate(), genesis=genesis)
        await late.merge([delta.cid], source=2)
        await cluster.settle()
        self.assertEqual([await r.get(b"k") for r in (a, b, c, late)], [b"2"] * 4)
        self.assertEqual({str(w) for w in late.authority.current()}, {str(ka.peerID()), str(kc.peerID())})
        with self.assertRaises(NotAWriter):
            await b.write([(b"k", b"3")])

    async def test_selfMadeWriterSetRefused(self):
        """
        A foreign key cannot make itself a writer: a writer set it signed
        (naming the genesis, listing itself) is refused, and so its delta.
        """
        ka, foreign = PrivateKey.generate(), PrivateKey.generate()
        cluster, genesis, (a, f) = await self.cluster([ka], readers=[foreign])
        await a.write([(b"k", b"good")])
        await cluster.settle()
        ws = writers.makeWriterSet(foreign, cluster.name, genesis.cid, genesis.writers | {NodeWriter(foreign.peerID())})
        evil = codec.makeDelta(foreign, cluster.name, max(a.heads.values()) + 1, list(a.heads), [(b"k", b"evil")], version=ws.cid)
        await holding(f, (ws.cid, ws.data))
        await offer(a, evil)
        await cluster.settle()
        self.assertEqual(await a.get(b"k"), b"good")
        self.assertIn(evil.cid, a._bad)
        self.assertIn("not a writer of the set before it", a._bad[evil.cid])

    async def test_writerSetThatDropsWritersRefused(self):
        ka, kb = PrivateKey.generate(), PrivateKey.generate()
        cluster, genesis, (a, b) = await self.cluster([ka, kb])
        await a.write([(b"k", b"good")])
        await cluster.settle()
        ws = writers.makeWriterSet(kb, cluster.name, genesis.cid, {NodeWriter(kb.peerID())})
        await holding(b, (ws.cid, ws.data))
        delta = codec.makeDelta(kb, cluster.name, max(a.heads.values()) + 1, list(a.heads), [(b"k", b"mine")], version=ws.cid)
        await offer(a, delta)
        self.assertIn("drops writers", a._bad[delta.cid])
        self.assertEqual(await a.get(b"k"), b"good")

    async def quotaCase(self, quotaDelta):
        """
        A replica given a writer's three chained deltas, with a quota of
        the first two's bytes plus C{quotaDelta}: what it holds.
        """
        ka, kb = PrivateKey.generate(), PrivateKey.generate()

        def chain(name):
            d1 = codec.makeDelta(ka, name, 1, [], [(b"k", b"x" * 100)])
            d2 = codec.makeDelta(ka, name, 2, [d1.cid], [(b"k", b"y" * 100)])
            d3 = codec.makeDelta(ka, name, 3, [d2.cid], [(b"k", b"z")])
            return d1, d2, d3

        # a delta's size does not depend on the quota in its genesis
        d1, d2, _ = chain(genesisOf([ka])[1])
        cluster, genesis, (a, b) = await self.cluster([ka], readers=[kb], quota=len(d1.data) + len(d2.data) + quotaDelta)
        deltas = chain(cluster.name)
        self.assertEqual([len(d.data) for d in deltas[:2]], [len(d1.data), len(d2.data)])
        for d in deltas:
            await offer(b, d, source="a")
        await cluster.settle()
        return b, deltas

    async def test_quotaExactlyReached(self):
        b, (d1, d2, d3) = await self.quotaCase(0)
        self.assertEqual(await b.get(b"k"), b"y" * 100)
        self.assertEqual(set(b.heads), {d2.cid})
        self.assertIn("over the writer's quota", b._bad[d3.cid])

    async def test_quotaOneBytePast(self):
        b, (d1, d2, d3) = await self.quotaCase(-1)
        self.assertEqual(await b.get(b"k"), b"x" * 100)
        self.assertIn("over the writer's quota", b._bad[d2.cid])

    async def test_ownWriteOverQuotaRefused(self):
        ka = PrivateKey.generate()
        cluster, genesis, (a,) = await self.cluster([ka], quota=400)
        await a.write([(b"k", b"x" * 100)])
        with self.assertRaises(NotAWriter) as caught:
            await a.write([(b"k", b"y" * 150)])
        self.assertIn("quota", str(caught.exception))
        self.assertEqual(await a.get(b"k"), b"x" * 100)

    async def test_snapshotFromNonWriterRefused(self):
        """
        A new replica does not start from a snapshot a non-writer signed
        (it walks the writers' deltas instead); a writer's is taken.
        """
        ka, foreign = PrivateKey.generate(), PrivateKey.generate()
        cluster, genesis, (a, f) = await self.cluster([ka], readers=[foreign])
        for i in range(3):
            await a.write([(b"k%d" % i, b"v")])
        await cluster.settle()
        heads, entries, covered, _ = await a.view.state(a.space)
        forged = [(k, b"evil", h, c) for k, _, h, c in entries]
        root, blocks = codec.makeSnapshot(foreign, cluster.name, heads, forged, covered)
        await holding(f, *blocks)
        fresh = await cluster.add(key=PrivateKey.generate(), genesis=genesis)
        await fresh.merge(list(a.heads), snapshot=root, source=1)
        await cluster.settle()
        self.assertIsNone(fresh.snapshotCID)
        self.assertIn(root, fresh._bad)
        self.assertEqual(await fresh.get(b"k0"), b"v")
        good = await a.snapshot()
        other = await cluster.add(key=PrivateKey.generate(), genesis=genesis)
        await other.merge(list(a.heads), snapshot=good, source=0)
        self.assertEqual(other.snapshotCID, good)
        self.assertIsNone(await f.snapshot(), "a non-writer makes no snapshot")

    async def test_snapshotStartCountsCoveredBytes(self):
        """
        A replica that started from a writer's snapshot counts the bytes of
        the deltas it covers against their writers once it checked it, so
        it refuses what the other replicas refuse.
        """
        self.patch(snapshots, "VERIFY_DELAY", 0)
        ka = PrivateKey.generate()
        cluster, genesis, (a,) = await self.cluster([ka])
        sizes = [len((await a.write([(b"k%d" % i, b"v" * 50)])).data) for i in range(3)]
        root = await a.snapshot()
        fresh = await cluster.add(key=PrivateKey.generate(), genesis=genesis)
        await fresh.merge(list(a.heads), snapshot=root, source=0)
        self.assertEqual(fresh.snapshotCID, root)
        await test_replica.SnapshotCheckTests.checked(self, fresh)
        self.assertEqual(await fresh.view.usage(fresh.name), {ka.peerID().toBytes(): sum(sizes)})
        self.assertEqual(await fresh.view.usage(fresh.name), await a.view.usage(a.name))

    async def test_cloudAdmittedNodesWrite(self):
        """
        A database whose writer is "the nodes cloud C admitted for tns":
        a node with such an admission writes; one admitted for another
        service, or by another key, is refused.
        """
        cloud, other = PrivateKey.generate(), PrivateKey.generate()
        k1, k2, k3, k4 = (PrivateKey.generate() for _ in range(4))
        genesis, name = genesisOf([], extra=[CloudWriter(cloud.peerID(), "tns")])
        cluster = Cluster(self, name=name)
        r1 = await cluster.add(key=k1, genesis=genesis, admission=makeAdmission(cloud, k1.peerID(), ["auth", "tns"]))
        r2 = await cluster.add(key=k2, genesis=genesis, admission=makeAdmission(cloud, k2.peerID(), ["tns"]))
        delta = await r1.write([(b"k", b"from r1")])
        self.assertEqual(delta.admission.node, k1.peerID())
        await cluster.settle()
        self.assertEqual(await r2.get(b"k"), b"from r1")
        head = list(r2.heads)
        auth = codec.makeDelta(k3, name, 2, head, [(b"k", b"auth")], admission=makeAdmission(cloud, k3.peerID(), ["auth"]).data)
        forged = codec.makeDelta(k4, name, 2, head, [(b"k", b"forged")], admission=makeAdmission(other, k4.peerID(), ["tns"]).data)
        stolen = codec.makeDelta(k4, name, 2, head, [(b"k", b"stolen")], admission=makeAdmission(cloud, k1.peerID(), ["tns"]).data)
        for d in (auth, forged, stolen):
            await offer(r2, d)
            self.assertIn("not a writer", r2._bad[d.cid])
        self.assertEqual(await r2.get(b"k"), b"from r1")


class RefusalLogTests(SynchronousTestCase):
    def test_oncePerWriterPerMinute(self):
        clock = Clock()
        log = writers.RefusalLog(clock)
        a, b = PrivateKey.generate().peerID(), PrivateKey.generate().peerID()
        with capturedLogs() as events:
            for _ in range(5):
                log.refused("db", a, "deltas", "no")
            log.refused("db", b, "deltas", "no")
            clock.advance(writers.REFUSAL_LOG_EVERY - 1)
            log.refused("db", a, "deltas", "no")
            clock.advance(1)
            log.refused("db", a, "deltas", "no")
        self.assertEqual([(e["writer"], e["n"]) for e in events], [(str(a), 1), (str(b), 1), (str(a), 6)])

    def test_boundedMemory(self):
        """
        Past MAX_REFUSERS writers remembered, all are forgotten (a flood of
        fresh keys costs log lines, not memory).
        """
        self.patch(writers, "MAX_REFUSERS", 3)
        log = writers.RefusalLog(Clock())
        with capturedLogs() as events:
            for i in range(7):
                log.refused("db", f"writer{i}", "deltas", "no")
            log.refused("db", "writer6", "deltas", "no")
        self.assertLessEqual(len(log._last), 3)
        self.assertEqual(len(events), 7)


class PushTests(SynchronousTestCase):
    def test_pushFromNonWriterRefused(self):
        """
        A push (which makes the node fetch) is served for writers only;
        a cloud-admitted writer shows its admission with the push.
        """
        clock = Clock()
        writer, stranger, cloud, member = (PrivateKey.generate() for _ in range(4))
        genesis, name = genesisOf([writer], extra=[CloudWriter(cloud.peerID(), "tns")])
        service = KVDBService(None, None, None, None, PrivateKey.generate(), self.mktemp(), clock)
        replica = service.replicas[name] = StuckReplica()
        replica.authority = Authority(name, genesis, None, None)
        head = codec.cidOf(b"head")
        refused = FakeStream(codec.encodePush(name, [head]), stranger.peerID())
        bare = FakeStream(codec.encodePush(name, [head]), member.peerID())
        admitted = FakeStream(codec.encodePush(name, [head], makeAdmission(cloud, member.peerID(), ["tns"]).data), member.peerID())
        ok = FakeStream(codec.encodePush(name, [head]), writer.peerID())
        for stream in (refused, bare):
            self.successResultOf(Deferred.fromCoroutine(service._servePush(stream)))
            self.assertEqual([codec.decodePushed(w) for w in stream.written], [(False, "not a writer of this database")])
        self.assertEqual(replica.merges, [])
        for stream in (admitted, ok):
            Deferred.fromCoroutine(service._servePush(stream))
        self.assertEqual(len(replica.merges), 2)


class ControlAPITests(TestCase):
    timeout = 120

    async def test_createAndWriters(self):
        """
        kv/create and kv/writers: the full name, the writers and the quota;
        a bad writer or quota is 400; a node that is not a writer gets 403
        for a put or for adding writers, and a writer at its quota gets 403.
        """
        helper = test_nodes.NodeTests("test_controlAPI")
        helper.mktemp, helper.addCleanup = self.mktemp, self.addCleanup
        node = await helper.startNode()
        base = f"http://127.0.0.1:{node.ports()['api']}/api/v0/"

        async def post(command, params, data=None):
            response = await treq.post(base + command, params=params, data=data, persistent=False)
            return response.code, json.loads(await response.content() or b"null")

        other = PrivateKey.generate().peerID()
        code, body = await post("kv/create", [("arg", "app"), ("writer", str(other)), ("quota", "1KiB")])
        self.assertEqual(code, 200, body)
        db = body["Database"]
        self.assertEqual(writers.splitName(db)[0], "app")
        self.assertEqual(body["Writers"], sorted([str(other), str(node.host.peerID)]))
        self.assertEqual((body["Open"], body["Quota"]), (False, 1024))
        code, body = await post("kv/put", [("arg", db), ("arg", "k")], b"v" * 600)
        self.assertEqual(code, 200, body)
        code, body = await post("kv/put", [("arg", db), ("arg", "k")], b"v" * 600)
        self.assertEqual(code, 403)
        self.assertIn("quota", body["Message"])
        code, body = await post("kv/writers", [("arg", "plain")])
        self.assertEqual((code, body["Open"], body["Writers"]), (200, True, None))
        self.assertEqual((await post("kv/create", [("arg", "x"), ("writer", "nobody")]))[0], 400)
        self.assertEqual((await post("kv/create", [("arg", "x"), ("quota", "0")]))[0], 400)
        code, body = await post("kv/create", [("arg", "theirs"), ("writer", str(other)), ("self", "false")])
        self.assertEqual(code, 200, body)
        theirs = body["Database"]
        self.assertEqual(body["Writers"], [str(other)])
        self.assertEqual((await post("kv/put", [("arg", theirs), ("arg", "k")], b"v"))[0], 403)
        code, body = await post("kv/writers", [("arg", theirs), ("add", str(node.host.peerID))])
        self.assertEqual(code, 403)
        self.assertIn("not a writer", body["Message"])


class RestartTests(TestCase):
    timeout = 120

    async def test_writersSurviveRestart(self):
        """
        After a restart, a node still replicates a database with writers,
        knows the writers added to it, and still refuses a non-writer.
        """
        helper = test_nodes.NodeTests("test_controlAPI")
        helper.mktemp, helper.addCleanup = self.mktemp, self.addCleanup
        root = self.mktemp()
        node = await helper.startNode(root=root)
        added = PrivateKey.generate()
        replica = await node.kvdb.create("app", [NodeWriter(node.host.peerID)])
        db = replica.name
        await node.kvdb.put(db, "k", b"v")
        await node.kvdb.addWriters(db, [NodeWriter(added.peerID())])
        await node.stopService()
        node = await helper.startNode(root=root)
        self.assertIn(db, node.kvdb.databases())
        self.assertEqual(await node.kvdb.get(db, "k"), b"v")
        self.assertEqual({str(w) for w in await node.kvdb.writersOf(db)}, {str(node.host.peerID), str(added.peerID())})
        replica = node.kvdb.replicas[db]
        foreign = PrivateKey.generate()
        evil = codec.makeDelta(foreign, db, max(replica.heads.values()) + 1, list(replica.heads), [(b"k", b"evil")])
        await offer(replica, evil)
        self.assertEqual(await node.kvdb.get(db, "k"), b"v")
        self.assertIn(evil.cid, replica._bad)
