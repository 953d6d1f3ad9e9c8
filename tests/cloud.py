"""
A cloud in a test: tau nodes on loopback, each with a shape, connected to
each other (the seed of dream).

    cloud = Cloud(self)                       # a trial TestCase
    await cloud.start(["tns", "tns", "tns", "auth"])
    cloud.nodes[0].tnsClient                  # every node has a tns client
    await cloud.kill(1); await cloud.restart(1)

Nodes run in this process: each is what C{makeNode} builds for its shape
(a real host, DHT, pubsub, block store, kvdb and control API on a loopback
port, so the tau CLI talks to them, and the shape's services), admitted to
one cloud (its key is L{CLOUD_KEY}) for the services of its shape, so the
services trust each other and share their databases.
"""

import base64
from pathlib import Path

import yaml
from twisted.internet import reactor
from twisted.internet.task import deferLater

from tau import loadConfig, makeNode
from tau.cloud import makeAdmission
from tau.identity import PrivateKey
from tau.private import writePrivate
from tau.services.tns.config import TNSConfig
from tests.hosts import addressOf

NETWORK = "tau.example.com"
#: the cloud's own key, which admits every node of a test cloud
CLOUD_KEY = PrivateKey.generate()


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
        self.keys = {}

    async def start(self, shapes):
        for shape in shapes:
            self.roots.append(Path(self.case.mktemp()).resolve())
            self.shapes.append(shape)
            self.nodes.append(await self._startNode(len(self.nodes)))
        await self.connect()
        return self

    async def _startNode(self, index):
        shape = self.shapes[index]
        overrides = {
            "api-listen": "tcp:0:interface=127.0.0.1",
            "p2p-listen": ["/ip4/127.0.0.1/tcp/0"],
            "network-fqdn": NETWORK,
            "services": [shape],
            "tns": {name: getattr(self.tnsConfig, attribute) for name, attribute in TNSConfig.FIELDS.items()},
        }
        root = self.roots[index]
        key = self.keys.setdefault(index, PrivateKey.generate())
        (root / "config").mkdir(parents=True, exist_ok=True)
        shapeFile = root / "config" / f"cloud-{shape}.yaml"
        if not shapeFile.exists():
            # the node's identity and its admission to the cloud, for the
            # services of its shape
            admission = makeAdmission(CLOUD_KEY, key.peerID(), [shape])
            writePrivate(shapeFile, yaml.safe_dump({
                "privatekey": base64.b64encode(key.toProtobuf()).decode("ascii"),
                "services": [shape],
                "cloud": {"key": str(CLOUD_KEY.peerID()), "admission": admission.text()},
            }))
        del overrides["services"]
        config = loadConfig(shape=f"cloud-{shape}", root=root, overrides=overrides)
        node = makeNode(config, reactor=reactor)
        node.kvdb.rebroadcast = 0.5
        node.kvdb.fetchTimeout = 5.0
        self.peers.add(node.host.peerID)
        node.startService()
        self.case.addCleanup(lambda: node.stopService() if node.running else None)
        await node.whenReady()
        node.tns = node.shapeServices.get("tns")
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
        await node.stopService()

    async def restart(self, index, connect=True):
        """
        Start node C{index} again on what it stored.
        """
        self.nodes[index] = await self._startNode(index)
        if connect:
            await self.connect()
        return self.nodes[index]
