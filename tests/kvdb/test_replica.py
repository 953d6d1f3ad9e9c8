"""
The Merkle-CRDT on simulated nodes (real SQLite views, in-memory block
stores and announcements): convergence, last write wins, restarts,
snapshots, forged deltas.
"""

import random

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tau.identity import PrivateKey
from tau.kvdb import codec
from tau.kvdb.view import View, prefixEnd
from tests.kvdb.fakes import Cluster


def expectedWinners(deltas):
    """
    Per key, the value of the write with the largest (height, CID).
    """
    best = {}
    for d in deltas:
        for k, v in d.entries:
            if k not in best or (d.height, d.cid) > best[k][0]:
                best[k] = ((d.height, d.cid), v)
    return {k: v for k, (_, v) in best.items() if v is not None}


class ViewTests(TestCase):
    def test_prefixEnd(self):
        self.assertEqual(prefixEnd(b"ab"), b"ac")
        self.assertEqual(prefixEnd(b"a\xff"), b"b")
        self.assertIsNone(prefixEnd(b"\xff\xff"))
        self.assertEqual(prefixEnd(b""), None)

    async def test_listInByteOrder(self):
        """
        list(prefix) gives the live keys with that prefix in byte order,
        including keys with 0xff bytes; deleted keys are left out.
        """
        cluster = Cluster(self)
        a = await cluster.add()
        keys = [b"a", b"a\x00", b"a\xff", b"a\xff\xff", b"ab", b"b", b"\xff", b"\xff\x01", b"A"]
        for k in keys:
            await a.write([(k, k * 2)])
        await a.write([(b"ab", None)])
        self.assertEqual(await a.list(), sorted(set(keys) - {b"ab"}))
        self.assertEqual(await a.list(b"a"), [b"a", b"a\x00", b"a\xff", b"a\xff\xff"])
        self.assertEqual(await a.list(b"a\xff"), [b"a\xff", b"a\xff\xff"])
        self.assertEqual(await a.list(b"\xff"), [b"\xff", b"\xff\x01"])
        self.assertEqual(await a.list(b"a", limit=2, values=True), [(b"a", b"aa"), (b"a\x00", b"a\x00a\x00")])
        self.assertIsNone(await a.get(b"ab"))
        self.assertEqual(await a.get(b"b"), b"bb")

    async def test_survivesRestart(self):
        """
        The view and the heads survive closing and reopening the view; the
        next write links to the heads from before.
        """
        path = self.mktemp()
        cluster = Cluster(self)
        a = await cluster.add(path=path)
        first = await a.write([(b"k", b"1")])
        await a.view.close()
        view = View(path, reactor)
        await view.open()
        self.addCleanup(view.close)
        a.view = view
        await a.open()
        self.assertEqual(a.heads, {first.cid: 1})
        self.assertEqual(await a.get(b"k"), b"1")
        second = await a.write([(b"k", b"2")])
        self.assertEqual((second.parents, second.height), ([first.cid], 2))


class ConvergenceTests(TestCase):
    timeout = 120

    async def test_partitionAndHeal(self):
        """
        Five replicas split 2/3 write concurrently (the same keys on both
        sides); after healing all five hold the same state, and each key
        holds the value of its write with the largest (height, CID).  A
        replica offline the whole time catches up when it returns.
        """
        cluster = Cluster(self)
        nodes = [await cluster.add() for _ in range(6)]
        cluster.offline = {5}
        written = []
        for i in range(5):
            written.append(await nodes[i].write([(b"shared", b"before-%d" % i), (b"own-%d" % i, b"x")]))
        await cluster.settle()
        self.assertEqual(len(set(map(repr, await cluster.states(range(5))))), 1)
        cluster.partition({0, 1}, {2, 3, 4})
        # the same key written at the same height on both sides: the CID decides
        tie = [await nodes[0].write([(b"tie", b"left")]), await nodes[2].write([(b"tie", b"right")])]
        self.assertEqual(tie[0].height, tie[1].height)
        written.extend(tie)
        rng = random.Random(7)
        for step in range(60):
            i = rng.randrange(5)
            key = rng.choice([b"shared", b"k1", b"k2", b"k3", b"side-%d" % (i > 1)])
            value = None if rng.random() < 0.15 else b"%d-%d" % (i, step)
            written.append(await nodes[i].write([(key, value)]))
            if step % 5 == 0:
                await cluster.settle()
        await cluster.settle()
        left, right = await cluster.states([0, 1]), await cluster.states([2, 3, 4])
        self.assertEqual(left[0], left[1])
        self.assertEqual(right[0], right[1])
        self.assertEqual(right[1], right[2])
        self.assertNotEqual(left[0], right[0])
        cluster.heal()
        await cluster.announceAll()
        states = await cluster.states(range(5))
        for state in states[1:]:
            self.assertEqual(state, states[0])
        self.assertEqual(dict(states[0]), expectedWinners(written))
        heads = {frozenset(n.heads) for n in nodes[:5]}
        self.assertEqual(len(heads), 1)
        # the one that was away
        self.assertEqual(await nodes[5].list(), [])
        cluster.offline = set()
        await cluster.announceAll()
        self.assertEqual(await nodes[5].list(values=True), states[0])

    async def test_orderDoesNotMatter(self):
        """
        The same deltas merged in different orders give the same state.
        """
        cluster = Cluster(self)
        a, b = await cluster.add(), await cluster.add()
        cluster.offline = {1}
        deltas = []
        for i in range(30):
            deltas.append(await a.write([(b"k%d" % (i % 4), b"%d" % i)]))
        cluster.offline = set()
        # merge heads one by one, newest first: each walk stops at known deltas
        for d in reversed(deltas[::7]):
            await b.merge([d.cid])
        await b.merge(list(a.heads))
        self.assertEqual(await b.list(values=True), await a.list(values=True))
        self.assertEqual(b.heads, a.heads)


class SnapshotTests(TestCase):
    timeout = 120

    async def test_newReplicaStartsFromSnapshot(self):
        """
        Past C{snapshotEvery} deltas a snapshot is made and announced; a new
        replica merges it instead of fetching every delta, then takes the
        deltas written after it.
        """
        cluster = Cluster(self, snapshotEvery=50)
        a = await cluster.add()
        for i in range(60):
            await a.write([(b"k%03d" % (i % 40), b"v%d" % i)] + ([(b"gone", None)] if i == 59 else []))
        await a._snapshotting if a._snapshotting is not None else None
        self.assertIsNotNone(a.snapshotCID)
        b = await cluster.add()
        fetched = []
        original = cluster._fetch

        async def counting(i, c):
            fetched.append(c)
            return await original(i, c)

        cluster._fetch = counting
        await a._announce()
        await cluster.settle()
        self.assertEqual(await b.list(values=True), await a.list(values=True))
        self.assertEqual(b.heads, a.heads)
        self.assertEqual(b.snapshotCID, a.snapshotCID)
        # the snapshot's blocks and the deltas after it, not 60 deltas
        self.assertLess(len(fetched), 20)
        await a.write([(b"after", b"1")])
        await cluster.settle()
        self.assertEqual(await b.get(b"after"), b"1")

    async def test_snapshotMergeIsLastWriteWins(self):
        """
        A replica with its own concurrent writes that merges a snapshot
        keeps the winners by (height, CID) and the union of heads.
        """
        cluster = Cluster(self)
        a, b = await cluster.add(), await cluster.add()
        cluster.offline = {1}
        written = [await a.write([(b"k", b"a%d" % i)]) for i in range(5)]
        written.append(await b.write([(b"k", b"b")]))
        written.append(await b.write([(b"only-b", b"b")]))
        root = await a.snapshot()
        cluster.offline = set()
        await b.mergeSnapshot(root)
        self.assertEqual(dict(await b.list(values=True)), expectedWinners(written))
        self.assertEqual(set(b.heads), set(a.heads) | {written[-1].cid})
        await b._announce()
        await cluster.settle()
        self.assertEqual(await a.list(values=True), await b.list(values=True))


class RejectionTests(TestCase):
    async def forged(self, cluster, build):
        a, b = await cluster.add(), await cluster.add()
        good = await a.write([(b"k", b"good")])
        await cluster.settle()
        data = build(good)
        c = codec.cidOf(data)
        await a.blocks.putMany([(codec.cidObject(c), data)], verified=True)
        applied = await b.merge([c], source="a")
        return b, c, applied, good

    async def test_badSignature(self):
        """
        A delta whose signature does not verify is not applied, and not
        fetched again.
        """
        import cbor2

        def build(good):
            body = cbor2.loads(good.data)
            body["e"] = [[b"k", b"forged"]]
            body["h"] = 2
            body["p"] = [codec.link(good.cid)]
            return codec.encode(body)

        cluster = Cluster(self)
        b, c, applied, _ = await self.forged(cluster, build)
        self.assertEqual(applied, 0)
        self.assertEqual(await b.get(b"k"), b"good")
        self.assertIn(c, b._bad)
        self.assertEqual(await b.merge([c]), 0)

    async def test_badSignatureInline(self):
        """
        A forged delta sent along with an announcement is checked and
        refused like a fetched one.
        """
        import cbor2

        cluster = Cluster(self)
        a, b = await cluster.add(), await cluster.add()
        good = await a.write([(b"k", b"good")])
        await cluster.settle()
        body = cbor2.loads(good.data)
        body["e"], body["h"], body["p"] = [[b"k", b"forged"]], 2, [codec.link(good.cid)]
        data = codec.encode(body)
        heads, snap, blocks = codec.decodeHeads(codec.encodeHeads([codec.cidOf(data)], None, [data]))
        self.assertEqual(await b.merge(heads, snap, source="a", blocks=blocks), 0)
        self.assertEqual(await b.get(b"k"), b"good")
        self.assertIn(codec.cidOf(data), b._bad)

    async def test_inflatedHeight(self):
        """
        A correctly signed delta claiming a height its parents do not give
        (to win every key) is refused, and so are its children.
        """
        evil = PrivateKey.generate()

        cluster = Cluster(self)
        b, c, applied, good = await self.forged(cluster, lambda good: codec.makeDelta(evil, "db", 1000, [good.cid], [(b"k", b"evil")]).data)
        self.assertEqual(applied, 0)
        self.assertEqual(await b.get(b"k"), b"good")
        child = codec.makeDelta(evil, "db", 1001, [c], [(b"k2", b"x")])
        await cluster.nodes[0].blocks.putMany([(codec.cidObject(child.cid), child.data)], verified=True)
        self.assertEqual(await b.merge([child.cid]), 0)
        self.assertIsNone(await b.get(b"k2"))

    async def test_otherDatabase(self):
        """
        A valid delta of another database is not applied to this one.
        """
        cluster = Cluster(self)
        b, c, applied, good = await self.forged(cluster, lambda good: codec.makeDelta(PrivateKey.generate(), "other", 2, [good.cid], [(b"k", b"x")]).data)
        self.assertEqual(applied, 0)
        self.assertEqual(await b.get(b"k"), b"good")


class HostileTests(TestCase):
    """
    What other writers (any peer may write) can make a replica do.
    """

    timeout = 60

    async def test_moreHeadsThanAWriteCanLink(self):
        """
        Others can leave more heads than one delta may link (MAX_PARENTS,
        e.g. many writers' first writes); our writes still work: each links
        the highest MAX_PARENTS heads, at 1 + the largest height, and the
        next ones link the rest.
        """
        cluster = Cluster(self)
        a, b = await cluster.add(), await cluster.add()
        others = PrivateKey.generate()
        genesis = [codec.makeDelta(others, "db", 1, [], [(b"g%03d" % i, b"x")]) for i in range(codec.MAX_PARENTS + 44)]
        blocks = {d.cid: d.data for d in genesis}
        for i in range(0, len(genesis), codec.MAX_PARENTS):
            chunk = genesis[i : i + codec.MAX_PARENTS]
            await b.merge([d.cid for d in chunk], source="others", blocks={d.cid: blocks[d.cid] for d in chunk})
        self.assertEqual(len(b.heads), len(genesis))
        first = await b.write([(b"k", b"1")])
        self.assertEqual((len(first.parents), first.height), (codec.MAX_PARENTS, 2))
        self.assertEqual(len(b.heads), len(genesis) - codec.MAX_PARENTS + 1)
        remaining = set(b.heads)
        second = await b.write([(b"k", b"2")])
        self.assertEqual(set(second.parents), remaining)
        self.assertEqual(b.heads, {second.cid: 3})
        await a.merge(list(b.heads), source="b")
        self.assertEqual(await a.list(values=True), await b.list(values=True))

    async def test_signingIsNotInTheReactorThread(self):
        """
        A write is signed and encoded (up to MAX_BLOCK bytes) in a thread.
        """
        import threading

        threads = []
        original = codec.makeDelta

        def recording(*a, **kw):
            threads.append(threading.current_thread() is threading.main_thread())
            return original(*a, **kw)

        self.patch(codec, "makeDelta", recording)
        cluster = Cluster(self)
        a = await cluster.add()
        await a.write([(b"k", b"v" * 100_000)])
        self.assertEqual(threads, [False])

    async def test_queuedHeadsBounded(self):
        """
        While a merge round waits for fetches, the heads announced meanwhile
        queue up to MAX_QUEUED; the rest are dropped (they come again).
        """
        import os

        from twisted.internet.defer import Deferred

        from tau.bitswap.client import FetchTimeout
        from tau.kvdb import walk as module

        cluster = Cluster(self)
        b = await cluster.add()
        gate = Deferred()

        async def stuck(i, c):
            await gate
            raise FetchTimeout("never")

        cluster._fetch = stuck
        merges = []
        for _ in range(10):
            heads = [codec.cidOf(os.urandom(16)) for _ in range(codec.MAX_PARENTS)]
            merges.append(Deferred.fromCoroutine(b.merge(heads, source="flood")))
        self.assertLessEqual(len(b._queued), module.MAX_QUEUED)
        gate.callback(None)
        for d in merges:
            self.assertEqual(await d, 0)
        self.assertEqual(b._queued, {})

    async def test_inlineBlocksBounded(self):
        """
        Blocks sent along with announcements are kept up to
        MAX_INLINE_BYTES in all.
        """
        import os

        from tau.kvdb import walk as module

        cluster = Cluster(self)
        b = await cluster.add()
        for _ in range(4):
            blocks = {codec.cidOf(d): d for d in (os.urandom(60_000) for _ in range(50))}
            await b.merge([], source="flood", blocks=blocks)
        self.assertLessEqual(sum(map(len, b._inline.values())), module.MAX_INLINE_BYTES)

    async def forgedSnapshot(self, state, heads, covered):
        cluster = Cluster(self)
        a, b = await cluster.add(), await cluster.add()
        cluster.offline = {1}
        good = await a.write([(b"k", b"good")])
        root, blocks = codec.makeSnapshot(PrivateKey.generate(), "db", heads, state, covered)
        await a.blocks.putMany([(codec.cidObject(c), data) for c, data in blocks], verified=True)
        cluster.offline = set()
        await b.merge([h for h, _ in heads], root, source="forger")
        return cluster, a, b, good

    async def test_forgedSnapshotCannotOutrankWrites(self):
        """
        A snapshot claiming a write far above the heights it covers (to win
        its key against every later write) is refused: a replica that took
        it would keep the forged value while the others hold the real one.
        """
        fake = codec.cidOf(b"no such delta")
        cluster, a, b, good = await self.forgedSnapshot([(b"k", b"evil", 1000, fake)], [(fake, 1000)], [(fake, 1000)])
        self.assertIsNone(b.snapshotCID)
        await b.merge(list(a.heads), source="a")
        self.assertEqual(await b.get(b"k"), b"good")
        self.assertEqual(await b.list(values=True), await a.list(values=True))

    async def test_snapshotEntriesMustBeCoveredWrites(self):
        """
        Entries that name no covered delta, or another height than the
        delta's, are refused.
        """
        from tau.kvdb.replica import checkSnapshot

        x, y = codec.cidOf(b"x"), codec.cidOf(b"y")

        class Snap:
            height = 2
            heads = [(y, 2)]

        checkSnapshot(Snap, [(b"k", b"v", 2, y)], [(x, 1), (y, 2)])
        bad = [
            ([(b"k", b"v", 2, x)], [(x, 1), (y, 2)]),  # wrong height for x
            ([(b"k", b"v", 3, y)], [(x, 1), (y, 2)]),  # above the snapshot
            ([(b"k", b"v", 2, y)], [(y, 2)]),  # level 1 missing
            ([(b"k", b"v", 1, x)], [(x, 1)]),  # head not covered
            ([(b"k", b"v", 2, y), (b"k", b"w", 2, y)], [(x, 1), (y, 2)]),  # key twice
        ]
        for entries, covered in bad:
            self.assertRaises(codec.InvalidBlock, checkSnapshot, Snap, entries, covered)

    async def test_oneSnapshotMergeAtATime(self):
        """
        Announcements that reach an empty replica together start one
        snapshot merge; the others wait for it.
        """
        cluster = Cluster(self, snapshotEvery=0)
        a = await cluster.add()
        for i in range(5):
            await a.write([(b"k%d" % i, b"v")])
        root = await a.snapshot()
        b = await cluster.add()
        calls = []
        original = b.mergeSnapshot

        async def counting(*args, **kw):
            calls.append(args)
            return await original(*args, **kw)

        b.mergeSnapshot = counting
        from twisted.internet.defer import Deferred, gatherResults

        merges = [Deferred.fromCoroutine(b.merge(list(a.heads), root, source="a")) for _ in range(3)]
        await gatherResults(merges)
        self.assertEqual(len(calls), 1)
        self.assertEqual(b.snapshotCID, root)
        self.assertEqual(await b.list(values=True), await a.list(values=True))

    async def test_missingBlocksNotAskedAgainAtOnce(self):
        """
        A delta linking to a parent nobody has costs one failed fetch of
        that parent, not one at every announcement; after MISSING_RETRY
        seconds it is asked for again, and after MAX_TRIES failures it is
        given up, with the delta waiting for it (unpinned).
        """
        from tau.kvdb import walk as module

        cluster = Cluster(self)
        a, b = await cluster.add(), await cluster.add()
        ghost = str(codec.cidObject(codec.cidOf(b"a parent nobody has")))
        orphan = codec.makeDelta(PrivateKey.generate(), "db", 2, [codec.cidOf(b"a parent nobody has")], [(b"k", b"v")])
        await a.blocks.putMany([(codec.cidObject(orphan.cid), orphan.data)], verified=True)
        asked = []
        original = cluster._fetch

        async def counting(i, c):
            asked.append(str(c))
            return await original(i, c)

        cluster._fetch = counting
        for _ in range(3):
            self.assertEqual(await b.merge([orphan.cid], source="a"), 0)
        self.assertEqual(asked.count(ghost), 1)
        self.assertEqual(await b.view.walkState("db"), (1, 1))
        self.assertTrue(b.blocks.pinned(codec.cidObject(orphan.cid), b._pinRoot))

        async def later():
            # MISSING_RETRY seconds on
            await b.view._run(b.view._q, "UPDATE wanted SET retry = ?", (reactor.seconds() - 1,))

        await later()
        self.assertEqual(await b.merge([orphan.cid], source="a"), 0)
        self.assertEqual(asked.count(ghost), 2)
        for _ in range(module.MAX_TRIES - 2):
            await later()
            await b.merge([orphan.cid], source="a")
        self.assertEqual(asked.count(ghost), module.MAX_TRIES)
        self.assertEqual(await b.view.walkState("db"), (0, 0))
        self.assertFalse(b.blocks.pinned(codec.cidObject(orphan.cid), b._pinRoot))


class WalkTests(TestCase):
    """
    A replica far behind: the walk keeps its state in the view, applies in
    bounded batches as soon as the ancestry is complete, resumes.
    """

    timeout = 120

    async def test_farBehindCatchesUpInBoundedBatches(self):
        """
        A replica with state more than MAX_WALK deltas behind catches up:
        the walk goes on round after round, fetching WALK_STEP deltas at a
        time, and applies parents first in batches of at most APPLY_BATCH
        deltas (read back from the block store when they are no longer in
        memory).
        """
        from tau.kvdb import walk as module

        self.patch(module, "MAX_WALK", 10)
        self.patch(module, "WALK_STEP", 4)
        self.patch(module, "APPLY_BATCH", 7)
        self.patch(module, "DECODED_BYTES", 2000)
        cluster = Cluster(self)
        a, b = await cluster.add(), await cluster.add()
        await a.write([(b"k-first", b"1")])
        await b.write([(b"own", b"b")])
        await cluster.settle()
        cluster.offline = {1}
        # a history with branches: a second writer on the same database
        c = await cluster.add()
        for i in range(60):
            w = a if i % 7 else c
            await w.write([(b"k%02d" % (i % 25), b"v%d" % i)])
            if i % 10 == 0:
                await cluster.settle()
        await cluster.settle()
        cluster.offline = set()
        fetchedAtOnce, applied = [], []
        inFlight = [0]
        original = cluster._fetch

        async def counting(i, cid):
            inFlight[0] += 1
            fetchedAtOnce.append(inFlight[0])
            try:
                return await original(i, cid)
            finally:
                inFlight[0] -= 1

        cluster._fetch = counting
        apply = b.view.apply

        async def recording(db, deltas, quota=None):
            applied.append(len(deltas))
            return await apply(db, deltas, quota)

        b.view.apply = recording
        await b.merge(list(a.heads), source="a")
        await b.idle()
        self.assertEqual(await b.list(values=True), await a.list(values=True))
        self.assertEqual(b.heads, a.heads)
        self.assertEqual(await b.view.walkState("db"), (0, 0))
        self.assertLessEqual(max(applied), 7)
        self.assertGreater(len(applied), 60 // 7)
        self.assertLessEqual(max(fetchedAtOnce), 4)
        self.assertLessEqual(len(fetchedAtOnce), 61)
        self.assertLessEqual(b._decodedBytes, 2000)

    async def test_walkResumesAfterRestart(self):
        """
        A walk cut short (the peers went away after part of the history
        was fetched) keeps what it fetched: stored, pinned, recorded; after
        a restart it fetches only the rest, then applies everything.
        """
        cluster = Cluster(self)
        a = await cluster.add()
        for i in range(40):
            await a.write([(b"k%02d" % (i % 30), b"v%d" % i)])
        path = self.mktemp()
        b = await cluster.add(path=path)
        first, second = [], []
        original = cluster._fetch

        async def flaky(i, c):
            if len(first) >= 15:
                from tau.bitswap.client import FetchTimeout

                raise FetchTimeout("the peer went away")
            first.append(c.multihash)
            return await original(i, c)

        cluster._fetch = flaky
        self.assertEqual(await b.merge(list(a.heads), source="a"), 0)
        await b.idle()
        wanted, fetched = await b.view.walkState("db")
        self.assertEqual((wanted, fetched), (1, 15))
        self.assertEqual(await b.list(), [])
        for c in first:
            self.assertTrue(b.blocks.pinned(codec.cidObject(codec.cidOf(b.blocks.blocks[c])), b._pinRoot))
        await b.stop()
        await b.view.close()

        async def recording(i, c):
            second.append(c.multihash)
            return await original(i, c)

        cluster._fetch = recording
        again = await cluster.add(path=path, key=b.key, store=b.blocks)
        await again.idle()
        self.assertEqual(len(second), 25)
        self.assertFalse(set(first) & set(second))
        self.assertEqual(await again.list(values=True), await a.list(values=True))
        self.assertEqual(again.heads, a.heads)
        self.assertEqual(await again.view.walkState("db"), (0, 0))

    async def test_badAncestorDropsWaitingDeltas(self):
        """
        A correctly signed delta whose parent has an inflated height is
        refused when its ancestry is complete, and the fetched deltas above
        it are dropped and unpinned, not kept forever.
        """
        evil = PrivateKey.generate()
        cluster = Cluster(self)
        a, b = await cluster.add(), await cluster.add()
        good = await a.write([(b"k", b"good")])
        await cluster.settle()
        inflated = codec.makeDelta(evil, "db", 50, [good.cid], [(b"k", b"evil")])
        above = [inflated]
        for i in range(3):
            above.append(codec.makeDelta(evil, "db", 51 + i, [above[-1].cid], [(b"x%d" % i, b"x")]))
        await a.blocks.putMany([(codec.cidObject(d.cid), d.data) for d in above], verified=True)
        self.assertEqual(await b.merge([above[-1].cid], source="evil"), 0)
        self.assertEqual(await b.get(b"k"), b"good")
        self.assertIn(inflated.cid, b._bad)
        self.assertEqual(await b.view.walkState("db"), (0, 0))
        for d in above:
            self.assertFalse(b.blocks.pinned(codec.cidObject(d.cid), b._pinRoot))


class GroupCommitTests(TestCase):
    timeout = 60

    async def test_concurrentWritesShareOneDelta(self):
        """
        Writes made in one reactor turn are committed as one delta (one
        signature, one store, one view transaction, one announcement);
        each returns that delta only once it is stored and applied; of two
        writes of one key the later wins; a bad write fails alone.
        """
        from twisted.internet.defer import Deferred, gatherResults

        cluster = Cluster(self)
        a, b = await cluster.add(), await cluster.add()
        signed, published = [], []
        original = codec.makeDelta

        def counting(*args, **kw):
            signed.append(args)
            return original(*args, **kw)

        self.patch(codec, "makeDelta", counting)
        publish = a._publish

        async def recording(data):
            published.append(data)
            await publish(data)

        a._publish = recording
        durable = []

        async def write(entries):
            delta = await a.write(entries)
            durable.append((a.blocks.blocks.get(codec.cidObject(delta.cid).multihash) is not None, await a.view.known("db", [delta.cid])))
            return delta

        writes = [Deferred.fromCoroutine(write([(b"k%d" % i, b"v%d" % i)])) for i in range(50)]
        writes.append(Deferred.fromCoroutine(write([(b"k7", b"later")])))
        bad = Deferred.fromCoroutine(a.write([(b"k", b"1"), (b"k", b"2")]))
        deltas = await gatherResults(writes)
        self.failureResultOf(bad, codec.InvalidBlock)
        self.assertEqual(len({d.cid for d in deltas}), 1)
        self.assertEqual(len(signed), 1)
        self.assertEqual(durable, [(True, {deltas[0].cid: 1})] * 51)
        self.assertEqual(await a.get(b"k7"), b"later")
        self.assertEqual(len(await a.list()), 50)
        await cluster.settle()
        self.assertEqual(len(published), 1)
        self.assertEqual(await b.list(values=True), await a.list(values=True))
        # the next write links to the group's delta
        after = await a.write([(b"k0", b"again")])
        self.assertEqual((after.parents, after.height), ([deltas[0].cid], 2))

    async def test_announcementsCoalesced(self):
        """
        With announceDelay, the first write is announced at once; writes
        made within the delay go out together in one announcement that
        carries their blocks.
        """
        from twisted.internet.task import Clock

        clock = Clock()
        cluster = Cluster(self)
        a = await cluster.add(clock=clock, announceDelay=1.0)
        published = []

        async def recording(data):
            published.append(codec.decodeHeads(data))

        a._publish = recording
        first = await a.write([(b"k", b"0")])
        later = [await a.write([(b"k%d" % i, b"v")]) for i in range(4)]
        self.assertEqual(len(published), 1)
        self.assertEqual(published[0][0], [first.cid])
        self.assertEqual(set(published[0][2]), {first.cid})
        clock.advance(1.0)
        self.assertEqual(len(published), 2)
        heads, _, blocks = published[1]
        self.assertEqual(heads, [later[-1].cid])
        self.assertEqual(set(blocks), {d.cid for d in later})


class SnapshotCheckTests(TestCase):
    """
    A merged snapshot is checked in the background against the deltas it
    covers.
    """

    timeout = 60

    async def checked(self, replica):
        from twisted.internet.task import deferLater

        while replica._verifyCall is not None or replica._verifyTask is not None:
            if replica._verifyTask is not None:
                await replica._verifyTask
            else:
                await deferLater(reactor, 0.01, lambda: None)
        await replica.idle()

    async def test_forgedConsistentSnapshotFoundOut(self):
        """
        A snapshot that passes every check a replica can make without the
        deltas (its entries name covered deltas at their heights) but holds
        a value nobody wrote is taken by an empty replica, not passed on,
        then found out when the covered deltas are fetched and applied: the
        state is rebuilt from the deltas and the snapshot dropped.
        """
        from tau.kvdb import snapshots as module
        from tau.kvdb.replica import pinRoot

        self.patch(module, "VERIFY_DELAY", 0)
        cluster = Cluster(self)
        a = await cluster.add()
        for i in range(8):
            await a.write([(b"k%d" % (i % 3), b"good-%d" % i)])
        heads, entries, covered, _ = await a.view.state("db")
        forged = [(k, b"evil" if k == b"k1" else v, h, c) for k, v, h, c in entries]
        root, blocks = codec.makeSnapshot(PrivateKey.generate(), "db", heads, forged, covered)
        await a.blocks.putMany([(codec.cidObject(c), data) for c, data in blocks], verified=True)
        b = await cluster.add()
        await b.merge([c for c, _ in heads], root, source="forger")
        self.assertEqual(b.snapshotCID, root)
        self.assertEqual(await b.get(b"k1"), b"evil")
        self.assertIsNone(codec.decodeHeads(b.headsMessage())[1])
        await self.checked(b)
        self.assertEqual(await b.list(values=True), await a.list(values=True))
        self.assertEqual(b.heads, a.heads)
        self.assertIsNone(b.snapshotCID)
        self.assertIn(root, b._bad)
        self.assertIsNone(await b.view.unverified("db"))
        self.assertEqual(await b.view.counts("db/verify"), (0, 0))
        self.assertNotIn(pinRoot(f"tau-kvdb-snapshot:{codec.cidString(root)}").multihash, b.blocks.pins)
        # and it goes on replicating
        await b.write([(b"after", b"b")])
        await cluster.settle()
        self.assertEqual(await a.get(b"after"), b"b")

    async def test_forgedSnapshotRepairKeepsLaterWrites(self):
        """
        Writes made on top of a forged snapshot before it was found out are
        kept (merged again from their blocks).
        """
        from tau.kvdb import snapshots as module

        self.patch(module, "VERIFY_DELAY", 3600)
        cluster = Cluster(self)
        a = await cluster.add()
        for i in range(5):
            await a.write([(b"k%d" % i, b"good")])
        heads, entries, covered, _ = await a.view.state("db")
        forged = [(k, b"evil", h, c) for k, v, h, c in entries]
        root, blocks = codec.makeSnapshot(PrivateKey.generate(), "db", heads, forged, covered)
        await a.blocks.putMany([(codec.cidObject(c), data) for c, data in blocks], verified=True)
        b = await cluster.add()
        await b.merge([c for c, _ in heads], root, source="forger")
        self.assertEqual(await b.get(b"k0"), b"evil")
        mine = await b.write([(b"mine", b"b")])
        b._verifyCall.reset(0)
        await self.checked(b)
        self.assertEqual(await b.get(b"mine"), b"b")
        self.assertEqual(await b.get(b"k0"), b"good")
        self.assertIn(mine.cid, b.heads)

    async def test_honestSnapshotTrustedOnceChecked(self):
        """
        A snapshot that matches its deltas is passed on once checked, and
        the rows of the check are dropped.
        """
        from tau.kvdb import snapshots as module

        self.patch(module, "VERIFY_DELAY", 0)
        cluster = Cluster(self, snapshotEvery=20)
        a = await cluster.add()
        for i in range(25):
            await a.write([(b"k%02d" % (i % 12), b"v%d" % i)])
        await a._snapshotting if a._snapshotting is not None else None
        b = await cluster.add()
        await a._announce()
        await cluster.settle()
        self.assertEqual(b.snapshotCID, a.snapshotCID)
        await self.checked(b)
        self.assertEqual(codec.decodeHeads(b.headsMessage())[1], a.snapshotCID)
        self.assertIsNone(await b.view.unverified("db"))
        self.assertEqual(await b.view.counts("db/verify"), (0, 0))
        self.assertEqual(await b.list(values=True), await a.list(values=True))
