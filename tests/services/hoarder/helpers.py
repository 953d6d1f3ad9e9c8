"""
A fleet of hoarders on one L{MemoryReactorClock}, without a network: fake
hosts that reach each other (L{tau.fakes.FakeHost}), a pubsub bus that
delivers to every running node through its own validators, one kvdb that
every node sees (perfect replication; each node's view records what it
opened), and block stores that fetch from each other (a pin takes the
blocks of every running store, as bitswap would find them).
"""

from types import SimpleNamespace

from twisted.internet.testing import MemoryReactorClock

from tau.store.content import NotFound
from tau.fakes import FakeContent, FakeHost, FakeKVDB, FakePubSub, fakeTNSClient
from tau.services.hoarder.config import HoarderConfig
from tau.services.hoarder.service import makeHoarder


class BusPubSub(FakePubSub):
    """
    One node's pubsub on a shared bus.
    """

    def __init__(self, bus, peerID):
        super().__init__(source=peerID)
        self.bus = bus
        self.down = False
        bus.append(self)

    async def publish(self, topic, data):
        self.published.append((topic, data))
        if self.down:
            return
        message = SimpleNamespace(topic=topic, data=data, source=self.source)
        for node in list(self.bus):
            if node.down:
                continue
            validator = node.validators.get(topic)
            if validator is not None:
                verdict = validator(message)
                if hasattr(verdict, "__await__"):
                    verdict = await verdict
                if not verdict:
                    continue
            for subscription in list(node.subscriptions.get(topic, ())):
                subscription._push(message)


class NetContent(FakeContent):
    """
    A block store whose pins fetch what is missing from the running stores
    of the net.
    """

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.down = False
        net.append(self)

    async def pin(self, cid):
        for other in self.net:
            if other is not self and not other.down:
                for key, block in other.blocks.data.items():
                    self.blocks.data.setdefault(key, block)
        if not await self.has(cid):
            raise NotFound(f"no peer has {cid}")
        return await super().pin(cid)


class NodeKVDB:
    """
    A node's view of the shared kvdb: what it opened is recorded.
    """

    def __init__(self, shared):
        self.shared = shared
        self.opened = []

    def __getattr__(self, name):
        return getattr(self.shared, name)

    async def serviceDatabase(self, service, name, quota=None):
        self.opened.append(name)
        return await self.shared.serviceDatabase(service, name)


class Fleet:
    """
    Hoarder nodes (and plain nodes, e.g. a monkey) on one clock.
    """

    def __init__(self, case, config=None):
        self.case = case
        self.clock = MemoryReactorClock()
        self.config = config or HoarderConfig(jitter=0.0)
        self.network = {}
        self.bus = []
        self.net = []
        self.kvdb = FakeKVDB()
        self.tns = fakeTNSClient(self.clock)
        self.outsiders = set()
        self.nodes = []

    async def isMember(self, peer, service=None):
        return peer in self.network and peer not in self.outsiders

    def plain(self, outsider=False):
        """
        A node with a host and a block store only (a monkey).
        """
        host = FakeHost(self.clock, network=self.network)
        if outsider:
            self.outsiders.add(host.peerID)
        return SimpleNamespace(host=host, content=NetContent(self.net), peerID=host.peerID)

    async def add(self, count=1):
        added = []
        for _ in range(count):
            host = FakeHost(self.clock, network=self.network)
            node = SimpleNamespace(host=host, peerID=host.peerID, me=str(host.peerID),
                                   pubsub=BusPubSub(self.bus, host.peerID), content=NetContent(self.net),
                                   kvdb=NodeKVDB(self.kvdb))
            node.service = makeHoarder(host, node.kvdb, node.pubsub, node.content, self.tns, self.clock,
                                       self.config, self.isMember)
            node.service.startService()
            self.case.addCleanup(lambda s=node.service: s.stopService() if s.running else None)
            await node.service.whenReady()
            self.nodes.append(node)
            added.append(node)
        return added

    def kill(self, node):
        """
        Node C{node} dies: no heartbeat, no stream, no blocks.
        """
        node.service.stopService()
        node.pubsub.down = True
        node.content.down = True
        del self.network[node.peerID]
        for other in self.network.values():
            other.conns.pop(node.peerID, None)

    def advance(self, seconds, step=0.5):
        for _ in range(int(seconds / step)):
            self.clock.advance(step)

    def running(self):
        return [n for n in self.nodes if n.service.running]

    def byID(self, peer):
        return next(n for n in self.nodes if n.me == str(peer))
