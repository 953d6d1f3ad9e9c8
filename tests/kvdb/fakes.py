"""
An in-memory network for replicas: block stores that fetch from each
other, announcements delivered to every reachable replica, and partitions.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from tau.bitswap.client import FetchTimeout
from tau.identity import PrivateKey
from tau.kvdb import codec
from tau.kvdb.replica import Replica
from tau.kvdb.view import View
from tests.bitswap.fakes import MemoryBlockStore


class PinningStore(MemoryBlockStore):
    def __init__(self):
        super().__init__()
        self.pins = {}

    async def pinMany(self, cs, root):
        self.pins.setdefault(root.multihash, set()).update(c.multihash for c in cs)

    async def unpin(self, c, root=None):
        self.pins.get((root or c).multihash, set()).discard(c.multihash)

    def pinned(self, c, root):
        return c.multihash in self.pins.get(root.multihash, ())

    async def unpinRoot(self, root):
        return len(self.pins.pop(root.multihash, ()))


class Cluster:
    """
    Replicas of one database on C{n} simulated nodes.  Announcements reach
    every node in the same group as the announcer (all in one group
    unless L{partition} was called); a fetch finds a block on any node of
    the fetcher's group, or fails at once.
    """

    def __init__(self, case, name="db", snapshotEvery=0):
        self.case = case
        self.name = name
        self.snapshotEvery = snapshotEvery
        self.nodes = []
        self.groups = None
        self.offline = set()
        self.pending = []

    async def add(self, path=None, key=None, store=None, **options):
        i = len(self.nodes)
        view = View(path or self.case.mktemp(), reactor)
        await view.open()
        self.case.addCleanup(view.close)
        store = store if store is not None else PinningStore()
        key = key or PrivateKey.generate()
        replica = Replica(
            self.name,
            view,
            store,
            lambda c, timeout, i=i: self._fetch(i, c),
            lambda data, i=i: self._publish(i, data),
            key,
            reactor,
            snapshotEvery=self.snapshotEvery,
            **options,
        )
        await replica.open()
        # cleanups run last first: the replica stops before its view closes
        self.case.addCleanup(replica.stop)
        self.nodes.append(replica)
        return replica

    def reachable(self, a, b):
        if a in self.offline or b in self.offline:
            return False
        if self.groups is None:
            return True
        return any(a in g and b in g for g in self.groups)

    def partition(self, *groups):
        self.groups = [set(g) for g in groups]

    def heal(self):
        self.groups = None

    async def _fetch(self, i, c):
        for j, other in enumerate(self.nodes):
            if j != i and self.reachable(i, j):
                data = other.blocks.blocks.get(c.multihash)
                if data is not None:
                    await self.nodes[i].blocks.putMany([(c, data)], verified=True)
                    return data
        raise FetchTimeout(f"nobody reachable has {c}")

    async def _publish(self, i, data):
        heads, snap, blocks = codec.decodeHeads(data)
        for j, other in enumerate(self.nodes):
            if j != i and self.reachable(i, j):
                d = Deferred.fromCoroutine(other.merge(heads, snap, source=i, blocks=blocks))
                self.pending.append(d)

    async def settle(self):
        """
        Wait until every merge started so far (and those they started) ended.
        """
        while True:
            pending, self.pending = self.pending, []
            for d in pending:
                await d
            for node in self.nodes:
                await node.idle()
            await deferLater(reactor, 0, lambda: None)
            if not self.pending:
                break

    async def announceAll(self):
        for i, node in enumerate(self.nodes):
            if i not in self.offline:
                await node._announce() if node.heads else None
        await self.settle()

    async def states(self, indexes=None):
        out = []
        for i, node in enumerate(self.nodes):
            if indexes is None or i in indexes:
                out.append(await node.list(values=True))
        return out
