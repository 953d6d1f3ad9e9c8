"""
A cloud in a test: tau nodes on loopback, each with a shape, connected to
each other (the seed of dream).

    cloud = Cloud(self)                       # a trial TestCase
    await cloud.start(["tns", "tns", "tns", "auth"])
    cloud.nodes[0].tnsClient                  # every node has a tns client
    await cloud.kill(1); await cloud.restart(1)

L{Cloud} runs its nodes in this process: each is what C{makeNode} builds
for its shape (a real host, DHT, pubsub, block store, kvdb and control API
on a loopback port, so the tau CLI talks to them, and the shape's
services).  L{ProcessCloud} runs each as a real C{twistd -n taubyte}
process, driven with the tau CLI.  Either way every node is admitted to
one cloud (its key is L{CLOUD_KEY}) for the services of its shape, so the
services trust each other and share their databases: its root holds the
shape file C{config/cloud-<shape>.yaml} (L{_Members.prepare}) with its
key, its admission and its loopback listeners.
"""

import base64
import re
import signal
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
from tests.processes import TAU, TWISTD, run, spawn, stopped

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


class _Members:
    """
    What both clouds keep of their nodes: a root, a shape and a key each.

    @ivar shapes: the shape of each node, in order.
    @ivar roots: the root folder of each.
    @ivar keys: the private key of each.
    """

    def __init__(self, case, tnsConfig=None):
        self.case = case
        self.tnsConfig = tnsConfig or TNSConfig()
        self.shapes = []
        self.roots = []
        self.keys = []

    def prepare(self, shape):
        """
        A new member of shape C{shape}: its root, holding the shape file
        C{config/cloud-<shape>.yaml} (its identity, its admission to the
        cloud for the services of its shape, loopback listeners on port 0,
        the network and the tns settings); its index.
        """
        root = Path(self.case.mktemp()).resolve()
        key = PrivateKey.generate()
        (root / "config").mkdir(parents=True)
        admission = makeAdmission(CLOUD_KEY, key.peerID(), [shape])
        writePrivate(root / "config" / f"cloud-{shape}.yaml", yaml.safe_dump({
            "privatekey": base64.b64encode(key.toProtobuf()).decode("ascii"),
            "services": [shape],
            "cloud": {"key": str(CLOUD_KEY.peerID()), "admission": admission.text()},
            "api-listen": "tcp:0:interface=127.0.0.1",
            "p2p-listen": ["/ip4/127.0.0.1/tcp/0"],
            "network-fqdn": NETWORK,
            "tns": {name: getattr(self.tnsConfig, attribute) for name, attribute in TNSConfig.FIELDS.items()},
        }))
        self.shapes.append(shape)
        self.roots.append(root)
        self.keys.append(key)
        return len(self.shapes) - 1

    def shapeName(self, index):
        """
        The shape node C{index} runs as (C{--shape} of twistd and tau).
        """
        return f"cloud-{self.shapes[index]}"


class Cloud(_Members):
    """
    Nodes in this process.

    @ivar nodes: the nodes, in the order of their shapes (a killed one
        stays in its place, stopped).
    """

    def __init__(self, case, tnsConfig=None):
        super().__init__(case, tnsConfig)
        self.nodes = []

    async def start(self, shapes):
        for shape in shapes:
            self.nodes.append(await self._startNode(self.prepare(shape)))
        await self.connect()
        return self

    async def _startNode(self, index):
        node = makeNode(loadConfig(shape=self.shapeName(index), root=self.roots[index]), reactor=reactor)
        node.kvdb.rebroadcast = 0.5
        node.kvdb.fetchTimeout = 5.0
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


class ProcessCloud(_Members):
    """
    Nodes as real C{twistd -n taubyte} processes; each one started dials
    the ones running before it (C{--peer}), so they all meet.

    @ivar processes: the L{tests.processes.Process} of each node (a killed
        one stays in its place, ended).
    @ivar addresses: the p2p multiaddr (with C{/p2p/ID}) of each.
    """

    def __init__(self, case, tnsConfig=None):
        super().__init__(case, tnsConfig)
        self.processes = []
        self.addresses = []

    async def start(self, shapes):
        for shape in shapes:
            index = self.prepare(shape)
            self.processes.append(None)
            self.addresses.append(None)
            await self._startNode(index, self.running())
        return self

    def running(self):
        """
        The indexes of the nodes whose process runs.
        """
        return [i for i, p in enumerate(self.processes) if p is not None and not p.exited]

    async def _startNode(self, index, peers):
        argv = TWISTD + ["-n", "--pidfile=", "taubyte", f"--shape={self.shapeName(index)}",
                         f"--root={self.roots[index]}"] + [f"--peer={self.addresses[i]}" for i in peers]
        proc = spawn(reactor, argv)
        self.case.addCleanup(stopped, proc)
        self.processes[index] = proc
        try:
            await proc.waitFor(b"reachable at", timeout=60)
        except Exception:
            raise AssertionError(f"node {index} did not start:\n{proc.output()[-4000:]}") from None
        self.addresses[index] = re.search(rb"reachable at (\S+)", proc.out).group(1).decode()
        return proc

    async def tau(self, index, *args):
        """
        Run C{tau ARGS} against node C{index}: C{(status, stdout, stderr)}.
        """
        return await run(reactor, TAU + ["--root", str(self.roots[index]), "--shape", self.shapeName(index), *args])

    async def kill(self, index, sig=signal.SIGKILL):
        """
        End node C{index} with C{sig} (by default, no chance to clean up).
        """
        proc = self.processes[index]
        proc.kill(sig)
        await proc.ended()

    async def restart(self, index, connect=True):
        """
        Start node C{index} again on its root, dialing the running nodes
        when C{connect}.
        """
        return await self._startNode(index, self.running() if connect else [])
