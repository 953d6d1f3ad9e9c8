"""
Bitswap between real tau hosts on loopback, with in-memory block stores.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tau import cids
from tau.bitswap import BitswapService, FetchTimeout
from tau.fakes import FakeRouting
from tests.bitswap.fakes import MemoryBlockStore, buildDAG
from tests.hosts import addressOf, startHost


class LyingStore(MemoryBlockStore):
    """
    Serves corrupted bytes for every block.
    """

    async def get(self, c):
        data = await super().get(c)
        if data is None:
            return None
        return bytes([data[0] ^ 0xFF]) + data[1:]


class BitswapLoopbackTests(TestCase):
    timeout = 60

    async def node(self, store=None, dht=None, **options):
        host = await startHost(self)
        store = store if store is not None else MemoryBlockStore()
        options.setdefault("fetchTimeout", 20.0)
        service = BitswapService(host, store, dht=dht, reactor=reactor, **options)
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        return host, store, service

    async def test_fetchBlock(self):
        """
        A block one host has is fetched by a connected host, verified and
        stored; the server's ledger counts it.
        """
        hostA, storeA, bsA = await self.node()
        hostB, storeB, bsB = await self.node()
        data = b"x" * 300000
        c = storeA.add(data)
        await hostB.connect(addressOf(hostA))
        self.assertEqual(await bsB.fetch(cids.cidText(c)), data)
        self.assertEqual(await storeB.get(c), data)
        ledger = bsA.stat()["ledgers"][str(hostB.peerID)]
        self.assertEqual(ledger["bytesSent"], 300000)
        self.assertEqual(bsB.stat()["blocksReceived"], 1)
        self.assertEqual(bsB.stat()["wantlist"], [])

    async def test_fullWantlistOnFirstContact(self):
        """
        The first message to a peer carries C{full=true}; later ones are
        deltas, and the want is cancelled once the block arrived.
        """
        hostA, storeA, bsA = await self.node()
        hostB, storeB, bsB = await self.node()
        seen = []
        received = bsA._received

        async def recording(peer, message):
            seen.append(message)
            await received(peer, message)

        bsA._received = recording
        c = storeA.add(b"w" * 5000)
        await hostB.connect(addressOf(hostA))
        await bsB.fetch(c)
        while not any(e.cancel for m in seen for e in m.entries):
            d = Deferred()
            reactor.callLater(0.01, d.callback, None)
            await d
        self.assertTrue(seen[0].full)
        self.assertFalse(any(m.full for m in seen[1:]))
        self.assertEqual(bsA.stat()["ledgers"][str(hostB.peerID)]["wantlist"], 0)

    async def test_fetchSmallBlockFromHave(self):
        """
        A block of at most 1 KiB comes back in answer to the want-have.
        """
        hostA, storeA, bsA = await self.node()
        hostB, storeB, bsB = await self.node()
        c = storeA.add(b"tiny")
        await hostB.connect(addressOf(hostA))
        self.assertEqual(await bsB.fetch(c), b"tiny")

    async def test_fetchDAG(self):
        """
        A whole dag-pb DAG, with bounded parallelism.
        """
        hostA, storeA, bsA = await self.node()
        hostB, storeB, bsB = await self.node()
        root, allCids, blocks = buildDAG(storeA, leaves=300, fanout=10, leafSize=20000)
        await hostB.connect(addressOf(hostA))
        result = await bsB.fetchDAG(root, parallelism=16)
        self.assertEqual(result["blocks"], len(allCids))
        self.assertEqual(result["bytes"], sum(len(d) for d in blocks.values()))
        for c, data in blocks.items():
            self.assertEqual(storeB.blocks[c.multihash], data)

    async def test_fetchDAGPartlyLocal(self):
        """
        Blocks of the DAG already stored are read from the store, the
        others come from the peer, and the store is not read for each of
        those (one look for the children of a node decides).
        """
        hostA, storeA, bsA = await self.node()
        hostB, storeB, bsB = await self.node()
        root, allCids, blocks = buildDAG(storeA, leaves=60, fanout=10, leafSize=3000)
        local = [c for c in allCids if c.codec == "raw"][:25]
        for c in local:
            storeB.blocks[c.multihash] = blocks[c]
        await hostB.connect(addressOf(hostA))
        result = await bsB.fetchDAG(root, parallelism=8)
        self.assertEqual(result["blocks"], len(allCids))
        for c, data in blocks.items():
            self.assertEqual(storeB.blocks[c.multihash], data)
        self.assertEqual(bsA.stat()["ledgers"][str(hostB.peerID)]["blocksSent"], len(allCids) - len(local))
        self.assertEqual(storeB.gets, 1 + len(local))  # the root, then the local blocks

    async def test_missingTimesOut(self):
        """
        A CID nobody has fails with a clear FetchTimeout naming it.
        """
        hostA, storeA, bsA = await self.node()
        hostB, storeB, bsB = await self.node()
        await hostB.connect(addressOf(hostA))
        missing = cids.makeCID(b"nobody has this")
        started = reactor.seconds()
        with self.assertRaises(FetchTimeout) as e:
            await bsB.fetch(missing, timeout=1.5)
        self.assertIn(cids.cidText(missing), str(e.exception))
        self.assertGreaterEqual(reactor.seconds() - started, 1.4)
        self.assertEqual(bsB.stat()["wantlist"], [])

    async def test_badBlockDropsPeer(self):
        """
        A peer that sends a block that does not hash to what was asked is
        disconnected, and the block is not stored.
        """
        hostA, storeA, bsA = await self.node(store=LyingStore())
        hostB, storeB, bsB = await self.node()
        c = storeA.add(b"y" * 5000)
        await hostB.connect(addressOf(hostA))
        closed = hostB.connectionTo(hostA.peerID).whenClosed()
        with self.assertRaises(FetchTimeout):
            await bsB.fetch(c, timeout=3)
        await closed
        self.assertIsNone(hostB.connectionTo(hostA.peerID))
        self.assertEqual(bsB.stat()["badBlocks"], 1)
        self.assertEqual(storeB.blocks, {})

    async def test_providersFromDHT(self):
        """
        With no connected peer having the block, providers are looked up in
        the DHT by multihash, dialled and asked.
        """
        hostA, storeA, bsA = await self.node()
        dht = FakeRouting()
        hostB, storeB, bsB = await self.node(dht=dht, providerSearchDelay=0.2)
        hostC, storeC, bsC = await self.node()
        data = b"z" * 50000
        c = storeA.add(data)
        await hostB.connect(addressOf(hostC))  # connected, but without the block
        dht.providers[c.multihash] = [(hostA.peerID, [str(hostA.listenAddresses()[0])])]
        self.assertEqual(await bsB.fetch(c), data)
        self.assertEqual(dht.asked, [c.multihash])
        self.assertIsNotNone(hostB.connectionTo(hostA.peerID))

    async def test_spreadOverProviders(self):
        """
        A DAG available from two providers is fetched from both.
        """
        hostA, storeA, bsA = await self.node()
        hostC, storeC, bsC = await self.node()
        hostB, storeB, bsB = await self.node()
        root, allCids, blocks = buildDAG(storeA, leaves=200, fanout=10, leafSize=20000)
        storeC.blocks.update(storeA.blocks)
        await hostB.connect(addressOf(hostA))
        await hostB.connect(addressOf(hostC))
        await bsB.fetchDAG(root, parallelism=16)
        sentA = bsA.stat()["ledgers"][str(hostB.peerID)]["blocksSent"]
        sentC = bsC.stat()["ledgers"][str(hostB.peerID)]["blocksSent"]
        self.assertGreater(sentA, 20)
        self.assertGreater(sentC, 20)

    async def test_providerKilledMidTransfer(self):
        """
        One of two providers stops while a DAG is being fetched: the fetch
        completes from the other.
        """
        hostA, storeA, bsA = await self.node()
        hostC, storeC, bsC = await self.node()
        hostB, storeB, bsB = await self.node(blockTimeout=2.0)
        root, allCids, blocks = buildDAG(storeA, leaves=400, fanout=10, leafSize=30000)
        storeC.blocks.update(storeA.blocks)
        await hostB.connect(addressOf(hostA))
        await hostB.connect(addressOf(hostC))
        killed = []
        putMany = storeB.putMany

        async def counting(items, verified=False):
            await putMany(items, verified)
            if storeB.puts >= 60 and not killed:
                killed.append(reactor.seconds())
                bsA.stopService()
                hostA.stopService()

        storeB.putMany = counting
        result = await bsB.fetchDAG(root, parallelism=16)
        self.assertTrue(killed)
        self.assertEqual(result["blocks"], len(allCids))
        for c, data in blocks.items():
            self.assertEqual(storeB.blocks[c.multihash], data)
        # most of the DAG arrived after A was gone, so from C
        self.assertGreater(storeB.puts - 60, len(allCids) // 2)
        self.assertGreater(bsC.stat()["ledgers"][str(hostB.peerID)]["blocksSent"], len(allCids) // 2)


class BlockStoreLoopbackTests(TestCase):
    """
    Bitswap between two hosts with real block stores: a DAG walk writes
    through one write batch, and everything is durable and indexed once
    fetchDAG returns.
    """

    timeout = 60

    async def node(self):
        from pathlib import Path

        from tau.store.blockstore import BlockStore

        host = await startHost(self)
        store = BlockStore(Path(self.mktemp()), reactor)
        await store.open()
        self.addCleanup(lambda: Deferred.fromCoroutine(store.close()))
        service = BitswapService(host, store, reactor=reactor, fetchTimeout=20.0)
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        return host, store, service

    async def test_fetchDAGIntoBlockStore(self):
        import random

        from tau.store import batch, unixfs, unixfsread

        hostA, storeA, bsA = await self.node()
        hostB, storeB, bsB = await self.node()
        data = random.Random(7).randbytes(5 << 20) + b"tail"    # 5 MiB and a bit: 21 leaves
        entry = await unixfs.importFile(storeA, data, reactor)
        batches = []
        makeBatch = storeB.batch

        def recording():
            batches.append(makeBatch())
            return batches[-1]
        storeB.batch = recording
        syncs = []     # the blocks made durable, one syncfs or one fsync each
        fsyncFiles, syncfsFiles = batch._fsyncFiles, batch._syncfsFiles
        self.patch(batch, "_fsyncFiles", lambda paths: (syncs.extend(paths), fsyncFiles(paths))[1])
        self.patch(batch, "_syncfsFiles", lambda fd, paths: (syncs.extend(paths), syncfsFiles(fd, paths))[1])
        await hostB.connect(addressOf(hostA))
        result = await bsB.fetchDAG(entry.cid, parallelism=8)
        self.assertEqual(result["blocks"], 22)
        self.assertEqual(len(batches), 1)
        self.assertEqual(len(syncs), 22)                 # every block synced before the return
        self.assertEqual((await storeB.stat())["blocks"], 22)
        self.assertEqual(storeB._batches, set())
        got = b"".join([chunk async for chunk in unixfsread.cat(storeB, entry.cid)])
        self.assertEqual(got, data)
        self.assertEqual(bsB.stat()["badBlocks"], 0)
