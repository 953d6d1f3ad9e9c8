"""
The store service: automatic GC under a budget, and its config.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial import unittest

from tau.config import loadConfig, publicView
from tau.configsection import parseSize
from tau.store.config import StorageSection
from tau.errors import ConfigError
from tau.store.service import AutoGC, StoreService

from .helpers import rawCid
from tests.test_config import ConfigTestsMixin


class FakeBlocks:
    """gc() calls, each held until released."""

    def __init__(self):
        self.calls = []
        self.pending = []

    def gc(self, budget):
        self.calls.append(budget)
        d = Deferred()
        self.pending.append(d)
        return d

    def release(self, result=(1, 100)):
        self.pending.pop(0).callback(result)


class AutoGCTests(unittest.SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.blocks = FakeBlocks()
        self.gc = AutoGC(self.blocks, self.clock, budget=1600, interval=60.0)

    def test_periodic(self):
        """A collection at start, then one every interval after the last ended."""
        self.gc.start()
        self.assertEqual(self.blocks.calls, [])
        self.clock.advance(0)
        self.assertEqual(self.blocks.calls, [1600])
        self.clock.advance(120)
        self.assertEqual(len(self.blocks.calls), 1)     # still running: no second one
        self.blocks.release()
        self.clock.advance(59)
        self.assertEqual(len(self.blocks.calls), 1)
        self.clock.advance(1)
        self.assertEqual(len(self.blocks.calls), 2)

    def test_afterWrites(self):
        """Every budget/16 bytes written trigger a collection soon after."""
        self.gc.wrote(99)
        self.clock.advance(0)
        self.assertEqual(self.blocks.calls, [])
        self.gc.wrote(1)
        self.gc.wrote(500)                               # one collection, not two
        self.clock.advance(0)
        self.assertEqual(self.blocks.calls, [1600])
        self.gc.wrote(100)                               # while it runs: joins it
        self.clock.advance(0)
        self.assertEqual(self.blocks.calls, [1600])
        self.blocks.release()
        self.gc.wrote(100)
        self.clock.advance(0)
        self.assertEqual(self.blocks.calls, [1600, 1600])

    def test_stopWaitsAndCancels(self):
        self.gc.start()
        self.clock.advance(0)
        stopped = self.gc.stop()
        self.assertNoResult(stopped)
        self.blocks.release()
        self.successResultOf(stopped)
        self.gc.wrote(10000)
        self.clock.advance(3600)
        self.assertEqual(self.blocks.calls, [1600])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_failureLogged(self):
        """A failed collection is logged and the schedule goes on."""
        self.gc.start()
        self.clock.advance(0)
        self.blocks.pending.pop(0).errback(OSError("disk on fire"))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.clock.advance(60)
        self.assertEqual(len(self.blocks.calls), 2)


class StoreServiceGCTests(unittest.TestCase):
    """A real store with a small budget stays under it by itself."""

    async def started(self, **kw):
        service = StoreService(self.mktemp(), reactor, **kw)
        service.startService()
        self.addCleanup(service.stopService)
        await service.whenReady()
        return service

    async def test_budgetKeptAfterWrites(self):
        service = await self.started(budget=16 * 1000, gcInterval=3600.0)
        blocks = service.blocks
        pinned = rawCid(b"p" * 1000)
        await blocks.put(pinned, b"p" * 1000)
        await blocks.pin(pinned)
        cids = []
        for i in range(40):
            data = bytes([i]) * 1000
            cids.append(rawCid(data))
            await blocks.put(cids[-1], data)
        await service.autoGC.collect()
        stat = await blocks.stat()
        self.assertLessEqual(stat["bytes"], 16 * 1000)
        self.assertTrue(await blocks.has(pinned))
        self.assertTrue(await blocks.has(cids[-1]))
        self.assertFalse(await blocks.has(cids[1]))
        self.assertGreater(service.autoGC.collections, 1)   # triggered by the writes

    async def test_noBudgetNoGC(self):
        service = await self.started()
        self.assertIsNone(service.autoGC)
        for i in range(20):
            data = bytes([i]) * 1000
            await service.blocks.put(rawCid(data), data)
        self.assertEqual((await service.blocks.stat())["blocks"], 20)


class StorageConfigTests(ConfigTestsMixin, unittest.SynchronousTestCase):
    def test_default(self):
        config = loadConfig(shape="full", root=self.root)
        self.assertEqual(config.storage, StorageSection.defaults)
        self.assertEqual(publicView(config)["storage"], {"budget": None, "gc-interval": 3600.0})

    def test_humanSizes(self):
        path = self.writeConfig({"storage": {"budget": "10GiB"}})
        config = loadConfig(shape="full", root=self.root, configFile=path)
        self.assertEqual(config.storage, {"budget": 10 * 2**30, "gc-interval": 3600.0})
        for text, value in (("500 MB", 500 * 10**6), ("1.5G", 1500 * 10**6), (4096, 4096), ("64kib", 65536)):
            self.assertEqual(parseSize(text), value)

    def test_layersMerge(self):
        """A layer giving gc-interval keeps the budget from below."""
        loadConfig(shape="full", root=self.root)
        rootFile = self.root / "config" / "full.yaml"
        rootFile.write_text(rootFile.read_text() + "storage: {budget: 2GB}\n")
        path = self.writeConfig({"storage": {"gc-interval": 60}})
        config = loadConfig(shape="full", root=self.root, configFile=path)
        self.assertEqual(config.storage, {"budget": 2 * 10**9, "gc-interval": 60.0})

    def assertRefused(self, storage, field, words):
        path = self.writeConfig({"storage": storage})
        e = self.assertRaises(ConfigError, loadConfig, shape="full", root=self.root, configFile=path)
        self.assertEqual(e.field, field)
        for word in words:
            self.assertIn(word, str(e))

    def test_badValues(self):
        self.assertRefused({"budget": "10 parsecs"}, "storage.budget", ["invalid size '10 parsecs'", "GiB"])
        self.assertRefused({"budget": -5}, "storage.budget", ["negative"])
        self.assertRefused({"budget": 0}, "storage.budget", ["above 0"])
        self.assertRefused({"budget": 1.5}, "storage.budget", ["whole number"])
        self.assertRefused({"gc-interval": 0}, "storage.gc-interval", ["positive number of seconds"])
        self.assertRefused({"gc-interval": "hourly"}, "storage.gc-interval", ["positive number of seconds"])
        self.assertRefused({"budgets": "1GB"}, "storage.budgets", ["unknown field", "budget, gc-interval"])
        self.assertRefused(["1GB"], "storage", ["mapping"])
