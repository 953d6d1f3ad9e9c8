"""
A cloud in a test: tau nodes on loopback, each with a shape, connected to
each other (the seed of dream).

    cloud = Cloud(self)                       # a trial TestCase
    await cloud.start(["tns", "tns", "tns", "auth"])
    cloud.nodes[0].tnsClient                  # every node has a tns client
    await cloud.kill(1); await cloud.restart(1)

Nodes run in this process (makeNode, a real host, DHT, pubsub, block store
and kvdb each, their control API on a loopback port, so the tau CLI talks
to them); the services of a shape are started on them here until node
shapes run them (tns, auth).  Every peer of the cloud is trusted by its
services.
"""

from pathlib import Path

from twisted.internet import reactor
from twisted.internet.task import deferLater

from tau import loadConfig, makeNode
from tau.services.auth.config import AuthConfig
from tau.services.auth.service import makeAuth
from tau.services.tns.client import clientFor
from tau.services.tns.config import TNSConfig
from tau.services.tns.service import makeTNS
from tests.hosts import addressOf

NETWORK = "tau.example.com"


async def until(predicate, what, limit=60.0, every=0.05):
    """
    Await C{predicate()} every C{every} seconds until it is true.
    """
    deadline = reactor.seconds() + limit
    while True:
        try:
            if await predicate():
                return
        except Exception as e:
            last = e
        else:
            last = None
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f" (last: {last!r})" if last else ""))
        await deferLater(reactor, every, lambda: None)


class Cloud:
    """
    @ivar nodes: the nodes, in the order of their shapes (a killed one
        stays in its place, stopped).
    @ivar shapes: the shape of each.
    """

    def __init__(self, case, tnsConfig=None):
        self.case = case
        self.tnsConfig = tnsConfig or TNSConfig()
        self.nodes = []
        self.shapes = []
        self.roots = []
        self.peers = set()

    def trusted(self, peer):
        return peer in self.peers

    async def start(self, shapes):
        for shape in shapes:
            self.roots.append(Path(self.case.mktemp()).resolve())
            self.shapes.append(shape)
            self.nodes.append(await self._startNode(len(self.nodes)))
        await self.connect()
        return self

    async def _startNode(self, index):
        overrides = {"api-listen": "tcp:0:interface=127.0.0.1", "p2p-listen": ["/ip4/127.0.0.1/tcp/0"],
                     "network-fqdn": NETWORK}
        node = makeNode(loadConfig(shape="full", root=self.roots[index], overrides=overrides), reactor=reactor)
        node.kvdb.rebroadcast = 0.5
        node.kvdb.fetchTimeout = 5.0
        self.peers.add(node.host.peerID)
        node.startService()
        self.case.addCleanup(lambda: node.stopService() if node.running else None)
        await node.whenReady()
        tns = None
        if self.shapes[index] == "tns":
            tns = makeTNS(node.host, node.kvdb, node.pubsub, reactor, self.tnsConfig, self.trusted, routing=node.dht)
            tns.setServiceParent(node)
            await tns.whenReady()
        elif self.shapes[index] == "auth":
            auth = makeAuth(node.host, node.kvdb, reactor, AuthConfig(), self.roots[index], self.trusted,
                            networkFQDN=NETWORK, routing=node.dht)
            auth.setServiceParent(node)
            await auth.whenReady()
        node.tns = tns
        node.tnsClient = clientFor(node.host, node.pubsub, node.dht, reactor, tns)
        self.case.addCleanup(node.tnsClient.close)
        return node

    async def connect(self):
        """
        Connect every running node to every other.
        """
        running = [n for n in self.nodes if n.running]
        for i, a in enumerate(running):
            for b in running[i + 1:]:
                await a.host.connect(addressOf(b.host))

    async def kill(self, index):
        """
        Stop node C{index} (its store and its kvdb stay on disk).
        """
        node = self.nodes[index]
        node.tnsClient.close()
        await node.stopService()

    async def restart(self, index, connect=True):
        """
        Start node C{index} again on what it stored.
        """
        self.nodes[index] = await self._startNode(index)
        if connect:
            await self.connect()
        return self.nodes[index]
