from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.python.threadpool import ThreadPool

from tau import cids
from tau.store.blockstore import BlockStore


def rawCid(data: bytes, version: int = 1):
    return cids.makeCID(data, cids.RAW, version)


def dagpbCid(data: bytes, version: int = 1):
    return cids.makeCID(data, cids.DAG_PB, version)


class StoreMixin:
    """Real temp dir, real thread pool, real reactor (threads need it)."""

    def setUp(self):
        self.pool = ThreadPool(2, 4, name="test-store-io")
        self.pool.start()
        self.addCleanup(self.pool.stop)
        self.root = Path(self.mktemp())
        self.stores = []

    def makeStore(self, root=None):
        s = BlockStore(root or self.root, reactor, self.pool)
        self.stores.append(s)
        return s

    def temps(self, root=None) -> list:
        """Temp files of writes in progress left in the store (in its shard folders)."""
        return sorted((root or self.root).rglob("*.tmp"))

    async def openStore(self, root=None):
        s = self.makeStore(root)
        await s.open()
        self.addCleanup(lambda: Deferred.fromCoroutine(s.close()))
        return s
