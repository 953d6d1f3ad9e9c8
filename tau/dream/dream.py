"""
L{Dream}: a whole tau cloud on this machine, each node a real
C{twistd -n taubyte} process on loopback ports the kernel picks, all in one
folder (L{tau.dream.universe}).

    dream = await startDream(reactor, folder, shapes=[("seer", "tns"), ("auth",)], name="t1")
    dream.urls["auth"]              # "http://127.0.0.1:PORT"
    dream.dns                       # ("127.0.0.1", PORT): seer's DNS over UDP
    await dream.inject(("gateway",))
    await dream.stop()
"""

import os
import socket

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger

from tau.config import loadConfig
from tau.control.client import call
from tau.dream.process import spawnNode
from tau.dream.universe import (MAX_NODES, SHAPE, DreamError, Layout, checkName, checkShape, defaultShapes, fqdnOf,
                                prepareFolder, prepareNode)
from tau.oneshot import OneShot

log = Logger()

_SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: Seconds between two asks of a dream's monkeys to patrick for a job.
DREAM_POLL = 1.0
#: Seconds a node gets to start (print its address and answer its API).
START_TIMEOUT = 90.0


class DreamNode:
    """
    One node of a dream.

    @ivar listeners: listener name -> C{{Name, Type, Address, Port}} (the
        node's C{listeners} control command).
    """

    def __init__(self, index, shape, root, process):
        self.index = index
        self.shape = shape
        self.root = root
        self.process = process
        self.listeners = {}
        self.peerID = None
        self._config = None

    @property
    def name(self):
        return f"{self.index}-{'-'.join(self.shape)}"

    @property
    def address(self):
        return self.process.address

    @property
    def pid(self):
        return self.process.pid

    @property
    def running(self):
        return not self.process.exited

    def config(self):
        """
        The node's L{tau.config.NodeConfig} (read once: it does not change
        while the node runs).
        """
        if self._config is None:
            self._config = loadConfig(shape=SHAPE, root=self.root, create=False)
        return self._config

    def urls(self):
        """
        Listener -> where: C{auth}, C{gateway}, C{patrick}, C{substrate}
        (an C{http://} URL for a C{NAME-http} listener), C{gateway-https},
        C{auth-git}, C{api}; C{seer-dns} and C{seer-dns-tcp} as
        C{HOST:PORT}.
        """
        out = {}
        for name, entry in self.listeners.items():
            where = f"{entry['Address']}:{entry['Port']}"
            if entry["Port"] is None:
                continue
            if name == "seer-udp":
                out["seer-dns"] = where
            elif name == "seer-tcp":
                out["seer-dns-tcp"] = where
            elif name.endswith("-https"):
                out[name] = f"https://{where}"
            elif name.endswith("-http"):
                out[name[:-len("-http")]] = f"http://{where}"
            else:
                out[name] = f"http://{where}"
        return out

    def summary(self):
        return {"index": self.index, "name": self.name, "services": list(self.shape), "root": str(self.root),
                "pid": self.pid, "peer": self.peerID, "address": self.address, "running": self.running,
                "urls": self.urls()}


class Dream:
    """
    A running dream.  Build with L{startDream}.

    @ivar name: its name; its network is C{<name>.localtau}.
    @ivar layout: its L{Layout}.
    @ivar nodes: its L{DreamNode}s, in the order they started.
    @ivar cloudKey: the cloud's L{PrivateKey} (it admits every node), once
        started.
    """

    def __init__(self, reactor, folder, name, env=None, configure=None, changed=None):
        self.reactor = reactor
        self.name = checkName(name)
        self.fqdn = fqdnOf(name)
        self.layout = Layout(folder)
        self.nodes = []
        self.env = env
        self.configure = configure
        #: called with no argument whenever a node was spawned or started
        self.changed = changed or (lambda: None)
        self.cloudKey = None
        self._stopped = None

    def _environment(self):
        env = dict(os.environ if self.env is None else self.env)
        env.pop("TAU_ROOT", None)
        env["TMPDIR"] = str(self.layout.tmp)
        # the nodes run the tau this process runs
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_SOURCE, env.get("PYTHONPATH")) if p)
        return env

    async def start(self, shapes=None):
        """
        Start a node per shape (default: L{defaultShapes}): the first one,
        then the others at once, each given the first one as its peer.
        """
        shapes = [checkShape(s) for s in (defaultShapes() if shapes is None else shapes)]
        if not shapes:
            raise DreamError("a dream has at least one node")
        if len(shapes) > MAX_NODES:
            raise DreamError(f"a dream has at most {MAX_NODES} nodes")
        self.cloudKey = prepareFolder(self.layout)
        # patrick's nodes first: auth posts the webhooks of pushes to
        # patrick's HTTP listener, whose port is known once it runs
        shapes.sort(key=lambda shape: "patrick" not in shape)
        try:
            await self._startNode(shapes[0])
            await gatherResults([_coroutine(self._startNode(shape)) for shape in shapes[1:]], consumeErrors=True)
        except BaseException as e:
            await self.stop()
            raise _unwrap(e) from None
        return self

    def _configure(self, index, shape, fields):
        """
        Wire the node's services to the dream's: auth's webhooks go to
        patrick's HTTP listener (a running patrick node's, or, on a node
        that runs both, a port picked now); monkeys ask for jobs every
        L{DREAM_POLL} seconds; then the caller's C{configure}.
        """
        patrick = self.urls.get("patrick")
        if "auth" in shape and "patrick" in shape:
            port = freePort()
            fields.setdefault("patrick", {})["http-listen"] = f"tcp:{port}:interface=127.0.0.1"
            patrick = f"http://127.0.0.1:{port}"
        if "auth" in shape and patrick is not None:
            fields.setdefault("auth", {})["webhook-url"] = f"{patrick}/github/"
        if "monkey" in shape:
            # a development cloud: a push is taken within a second (Taubyte's
            # dream polls every 2 s, its production every 5 s)
            fields.setdefault("monkey", {})["poll-interval"] = DREAM_POLL
        if self.configure is not None:
            self.configure(index, shape, fields)

    async def inject(self, shape):
        """
        Add a node of C{shape} (services) to the running dream: its
        L{DreamNode}.
        """
        shape = checkShape(shape)
        if self._stopped is not None:
            raise DreamError("the dream is stopped")
        if len(self.nodes) >= MAX_NODES:
            raise DreamError(f"a dream has at most {MAX_NODES} nodes")
        return await self._startNode(shape)

    async def _startNode(self, shape):
        if self._stopped is not None:
            raise DreamError("the dream is stopping")
        index = len(self.nodes)
        root = prepareNode(self.layout, index, shape, self.fqdn, self.cloudKey, configure=self._configure)
        peers = [n.address for n in self.nodes if n.running and n.address][:4]
        node = DreamNode(index, shape, root, spawnNode(self.reactor, root, SHAPE, peers, self._environment()))
        self.nodes.append(node)
        self.changed()
        started = node.process.whenStarted()
        timer = self.reactor.callLater(START_TIMEOUT, node.process.signal, "KILL")
        try:
            await started
        finally:
            if timer.active():
                timer.cancel()
        answer = await call(self.reactor, node.config(), "listeners", timeout=30)
        node.listeners = {entry["Name"]: entry for entry in answer["Listeners"]}
        node.peerID = node.address.rsplit("/p2p/", 1)[-1]
        log.info("dream {name}: node {node} ({services}) started, pid {pid}", name=self.name, node=node.name,
                 services=", ".join(shape), pid=node.pid)
        self.changed()
        return node

    @property
    def urls(self):
        """
        Where the dream's services are (L{DreamNode.urls}, the first node
        that has each), e.g. C{urls["auth"]}, C{urls["gateway"]},
        C{urls["patrick"]}, C{urls["seer-dns"]}.
        """
        out = {}
        for node in self.nodes:
            for name, where in node.urls().items():
                if name != "api":
                    out.setdefault(name, where)
        return out

    @property
    def dns(self):
        """
        C{(host, port)} of seer's DNS over UDP, or None without seer.
        """
        where = self.urls.get("seer-dns")
        if where is None:
            return None
        host, _, port = where.rpartition(":")
        return host, int(port)

    async def health(self, timeout=5):
        """
        Node name -> C{"up"} (its process runs and its API answers),
        C{"unresponsive"} or C{"exited (STATUS)"}.
        """
        async def one(node):
            if not node.running:
                return f"exited ({node.process.status})"
            try:
                await call(self.reactor, node.config(), "id", timeout=timeout)
            except Exception:
                return "unresponsive"
            return "up"
        answers = await gatherResults([_coroutine(one(n)) for n in self.nodes])
        return {node.name: answer for node, answer in zip(self.nodes, answers)}

    def state(self):
        """
        What C{dream.json} holds: name, network, folder, nodes, urls.
        """
        return {"name": self.name, "fqdn": self.fqdn, "folder": str(self.layout.folder), "urls": self.urls,
                "nodes": [node.summary() for node in self.nodes]}

    async def stop(self):
        """
        Stop every node (SIGTERM, SIGKILL after a grace period) and wait for
        their ends; once.
        """
        if self._stopped is None:
            self._stopped = OneShot()
            await gatherResults([_coroutine(n.process.stop(self.reactor)) for n in self.nodes])
            self._stopped.fire(None)
        await self._stopped.whenFired()


def freePort():
    """
    A loopback TCP port free now (the kernel's pick).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _coroutine(coroutine):
    return Deferred.fromCoroutine(coroutine)


def _unwrap(e):
    sub = getattr(e, "subFailure", None)
    return sub.value if sub is not None else e


async def startDream(reactor, root, shapes=None, name="dream", env=None, configure=None):
    """
    Start a dream in folder C{root}: a L{Dream} once every node runs.

    @param shapes: the services of each node (tuples, or C{"a+b"} text);
        None: one node per service this build provides.
    @param env: the nodes' environment (this process's by default; C{TMPDIR}
        is always the dream's own C{tmp/}).
    @param configure: C{configure(index, shape, fields)} may change each
        node's config fields before they are written (see
        L{tau.dream.universe.prepareNode}).
    @raise DreamError: a bad name or shape; the nodes already started are
        stopped.
    """
    return await Dream(reactor, root, name, env, configure).start(shapes)
