"""
A tau node: one MultiService holding the control API, the p2p host and the
services its shape names.  Build one with L{makeNode}.
"""

import os

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.logger import Logger

from tau import services
from tau._version import __version__
from tau.control.auth import TokenGuard
from tau.control.intake import ControlSite
from tau.control.server import ControlResource
from tau.bitswap.service import BitswapService
from tau.host import Host
from tau.interfaces import IContent, IHost, IKVDB, IMembers, IPatrickClient, IPubSub, IRouting, ITNSClient
from tau.kad.network import DHTService
from tau.members import CloudMembers
from tau.protocols import installProtocols
from tau.pubsub.service import PubSubService
from tau.services.patrick.client import clientFor as patrickClientFor
from tau.services.tns.client import clientFor as tnsClientFor
from tau.services.seer.beacon import beaconOf
from tau.kvdb.service import KVDBService
from tau import relay as _relay
from tau.autonat import policy as _autonat
from tau.tor import service as _tor
from tau import dcutr as _dcutr
from tau.store.content import ContentService
from tau.store.service import StoreService
from tau.listen import Listener
from tau.oneshot import OneShot
from tau.private import WARNING, exposed, writePrivate


def listeningAddress(port):
    """
    A printable address for an L{IListeningPort}.
    """
    host = port.getHost()
    if hasattr(host, "port"):
        return f"{host.host}:{host.port}" if ":" not in host.host else f"[{host.host}]:{host.port}"
    name = getattr(host, "name", host)
    return name.decode() if isinstance(name, bytes) else str(name)


class Node(MultiService):
    """
    A running (or runnable) tau node.

    @ivar config: its L{tau.config.NodeConfig}.
    """

    log = Logger()

    def __init__(self, config, reactor):
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.host = None
        self.dht = None
        self.store = None
        self.content = None
        self.bitswap = None
        self.pubsub = None
        self.kvdb = None
        self.relay = None
        self.relayClient = None
        self.autonat = None
        self.autorelay = None
        #: the L{tau.tor.service.TorService}, with C{tor.enabled}
        self.tor = None
        self.holepunch = None
        self.apiGuard = None
        self.members = None
        self.capabilities = None
        #: the services of the shape, by name
        self.shapeServices = {}
        self.tnsClient = None
        self._ready = OneShot()
        self._listeners = []

    # building, done by makeNode

    def addListener(self, listener):
        self._listeners.append(listener)
        listener.setServiceParent(self)

    # running

    def startService(self):
        if self._ready.fired:
            self._ready = OneShot()
        self._secrets()
        super().startService()
        waits = [listener.whenListening() for listener in self._listeners]
        if self.host is not None:
            waits.append(self.host.whenReady())
        if self.store is not None:
            waits.append(self.store.whenReady())
        if self.kvdb is not None:
            waits.append(self.kvdb.whenReady())
        for service in self.shapeServices.values():
            if hasattr(service, "whenReady"):
                waits.append(service.whenReady())
        d = gatherResults(waits, consumeErrors=True)
        d.addCallbacks(self._bound, self._startFailed)

    def _secrets(self):
        """
        Load the control API token (made on first use); warn about files
        holding a secret that other users can open.
        """
        files = list(self.config.secretFiles)
        if self.apiGuard is not None:
            self.apiGuard.load()
            files.append(self.config.apiTokenFile)
        for path, mode in exposed(files):
            self.log.warn(WARNING, path=str(path), mode=f"{mode:04o}")

    def _bound(self, _):
        # Ready once the reactor runs: under twistd, services start before
        # the reactor has its signal handlers, and a node that says "ready"
        # must already stop cleanly on SIGTERM.
        self.reactor.callWhenRunning(self._started)

    def _started(self):
        if not self.running:
            return
        self._writeAPIFile()
        self.log.info(
            "tau {version} node {peerID} ready, shape {shape}, services: {services}",
            version=__version__,
            peerID=str(self.config.peerID),
            shape=self.config.shape,
            services=", ".join(self.config.services) or "none",
        )
        for what, address in self.listeningAddresses():
            self.log.info("{what} listening on {address}", what=what, address=address)
        for address in self.announcedAddresses():
            self.log.info("reachable at {address}", address=address)
        self._ready.fire(self)
        for addr in self.config.peers:
            Deferred.fromCoroutine(self.host.connect(addr)).addErrback(
                lambda f, addr=addr: self.log.info("bootstrap peer {addr} not reached: {reason}", addr=addr, reason=f.getErrorMessage())
            )

    def _startFailed(self, failure):
        reason = failure.value.subFailure if hasattr(failure.value, "subFailure") else failure
        self.log.error("tau node {peerID} failed to start: {reason}", peerID=str(self.config.peerID), reason=reason.getErrorMessage())
        self._ready.fire(reason)

    def whenReady(self):
        """
        @return: a Deferred that fires with this node once every listener is
            bound, or fails with the reason the node could not start.
        """
        return self._ready.whenFired()

    def _api(self):
        for listener in self._listeners:
            if listener.name == "api":
                return listener
        return None

    def ports(self):
        """
        Where the node listens: C{{"api": port, "p2p": port}} for bound TCP
        listeners (C{p2p} is the first p2p listener).
        """
        ports = {}
        api = self._api()
        if api is not None and api.port is not None and hasattr(api.port.getHost(), "port"):
            ports["api"] = api.port.getHost().port
        if self.host is not None:
            p2p = self.host.listeningPorts()
            if p2p:
                ports["p2p"] = p2p[0]
        return ports

    def listeningAddresses(self):
        """
        C{(what, address)} for every bound listener.
        """
        out = []
        for listener in self._listeners:
            if listener.port is not None:
                out.append((listener.name, listeningAddress(listener.port)))
        if self.host is not None:
            out.extend(("p2p", str(addr)) for addr in self.host.listenAddresses())
        return out

    def announcedAddresses(self):
        """
        The p2p multiaddrs other peers may dial, with C{/p2p/<id>}.
        """
        if self.host is None:
            return []
        return [f"{addr}/p2p/{self.config.peerID}" for addr in self.host.announcedAddresses()]

    def protocols(self):
        if self.host is None:
            return []
        return sorted(self.host.protocols())

    def _apiAddress(self):
        api = self._api()
        if api is None or api.port is None:
            return None
        host = api.port.getHost()
        if hasattr(host, "port"):
            family = "ip6" if ":" in host.host else "ip4"
            return f"/{family}/{host.host}/tcp/{host.port}"
        name = host.name.decode() if isinstance(host.name, bytes) else host.name
        return "/unix" + os.path.abspath(name)  # multiaddr: /unix/tmp/api.sock

    def _writeAPIFile(self):
        address = self._apiAddress()
        if address is None:
            return
        path = self.config.apiFile
        path.parent.mkdir(parents=True, exist_ok=True)
        writePrivate(path, address + "\n")

    def _removeAPIFile(self):
        address = self._apiAddress()
        try:
            if address is not None and self.config.apiFile.read_text(encoding="ascii").strip() == address:
                self.config.apiFile.unlink()
        except OSError:
            pass

    def stopService(self):
        """
        Stop the services first, then the host, then tor, then the
        listeners, each step waiting for the one before.
        """
        self._removeAPIFile()
        if self.tnsClient is not None:
            self.tnsClient.close()
        self.running = 0
        children = list(self)
        children.reverse()
        if self.tor in children and self.host in children:
            # tor quits after the host: the host's goodbyes to peers dialed
            # through it still get there
            children.remove(self.tor)
            children.insert(children.index(self.host) + 1, self.tor)
        return _stopInOrder(children)


def _stopInOrder(children):
    async def run():
        for child in children:
            if child.running:
                try:
                    await maybeDeferred(child.stopService)
                except Exception:
                    Node.log.failure("stopping {service} failed", service=child.name)

    return Deferred.fromCoroutine(run())


def _dhtMode(config):
    """
    C{auto}: a server when the node listens for peers, else a client.
    """
    mode = config.dht["mode"]
    if mode == "auto":
        return "server" if _listens(config) else "client"
    return mode


def _torOnly(config):
    """
    Whether the node is reachable only through Tor (C{tor.only}): no
    clear-net listener, nothing announced but its onion address.
    """
    return config.tor["enabled"] and config.tor["only"]


def _listens(config):
    """
    Whether peers can dial the node: on a clear-net listener, or on its
    onion service.
    """
    onion = config.tor["enabled"] and config.tor["onion"]
    return onion or (bool(config.p2pListen) and not _torOnly(config))


def _onionReachability(config):
    """
    C{config}, its AutoNAT reachability forced C{public} for a node reachable
    only on its onion service (peers cannot dial it back at an IP address,
    and an onion service needs no relay) unless the config forces one.
    """
    onion = config.tor["enabled"] and config.tor["onion"]
    if _torOnly(config) and onion and config.autonat["reachability"] == "auto":
        return config.evolve(autonat={**config.autonat, "reachability": "public"})
    return config


def _relayMode(config):
    """
    C{auto} relays on a C{full} node only (while it listens and its
    reachability does not say it cannot be dialed); other shapes relay when
    their config says C{on}.
    """
    mode = config.relay["service"]
    if mode == "auto" and config.shape != "full":
        return "off"
    return mode


def _privateSocket(description):
    """
    A C{unix:} endpoint made mode 0600 (Twisted's default is 0666; the
    mode is set before the socket listens) unless it names its own mode.
    """
    kind, _, rest = description.partition(":")
    if kind != "unix" or any(part.startswith("mode=") for part in rest.split(":")[1:]):
        return description
    return description + ":mode=600"


def makeNode(config, reactor):
    """
    Build an unstarted node for C{config}.

    The control API listens on C{config.apiListen}; each service of the shape
    is built by its factory C{(config, node, reactor)}.  Nothing binds a port
    until the node is started.

    @rtype: L{Node}
    """
    node = Node(config, reactor)
    host = Host(
        config.privateKey,
        reactor,
        listen=() if _torOnly(config) else config.p2pListen,
        announce=() if _torOnly(config) else config.p2pAnnounce,
        swarmKey=config.swarmKey,
        connections=config.connections,
        security=config.p2pSecurity,
    )
    installProtocols(host, perf=config.perf)
    node.host = host
    node.dht = DHTService(
        host,
        reactor,
        storePath=str(config.dataDir / "dht.sqlite"),
        peers=config.peers,
        mode=_dhtMode(config),
        storeOptions={
            "provideValidity": config.dht["provider-expiry"],
            "maxProviderRecords": config.dht["max-provider-records"],
            "maxProviderBytes": config.dht["max-provider-bytes"],
            "maxRecordsPerPeer": config.dht["max-provider-records-per-peer"],
        },
        reprovideInterval=config.dht["republish"],
    )
    node.store = StoreService(
        config.dataDir / "blocks", reactor,
        budget=config.storage["budget"], gcInterval=config.storage["gc-interval"])
    resource = ControlResource(node)
    if config.apiToken:
        node.apiGuard = resource = TokenGuard(resource, config.apiTokenFile)
    site = ControlSite(resource, config.dataDir, reactor, guard=node.apiGuard)
    node.store.setServiceParent(node)
    node.addListener(Listener("api", _privateSocket(config.apiListen), site, reactor))
    host.setServiceParent(node)
    # stopped after the host (Node.stopService)
    node.tor = _tor.install(host, config, reactor)
    if node.tor is not None:
        node.tor.setServiceParent(node)
    node.dht.setServiceParent(node)
    node.bitswap = BitswapService(host, node.store.blocks, dht=node.dht, reactor=reactor)
    node.store.fetcher = node.bitswap.fetch
    node.bitswap.setServiceParent(node)
    node.content = ContentService(node.store, reactor, notify=node.bitswap.notifyNewBlocks, routing=node.dht)
    node.pubsub = PubSubService(host, reactor)
    node.pubsub.setServiceParent(node)
    node.kvdb = KVDBService(
        host,
        node.pubsub,
        node.store,
        node.bitswap.fetch,
        config.privateKey,
        config.dataDir / "kvdb.sqlite",
        reactor,
        notify=node.bitswap.notifyNewBlocks,
        cloud=config.cloud.get("key"),
        admission=config.cloud.get("admission"),
        writerQuota=config.kvdb["writer-quota"],
    )
    node.kvdb.setServiceParent(node)
    node.relayClient, node.relay = _relay.install(
        host,
        reactor,
        service=_relayMode(config),
        limits=_relay.RelayLimits.fromConfig(config.relay),
        autoDefault=_listens(config),
    )
    node.relayClient.setServiceParent(node)
    node.relay.setServiceParent(node)
    node.autonat, node.autorelay = _autonat.install(node, _onionReachability(config), reactor)
    node.holepunch = _dcutr.install(host, reactor, autonat=node.autonat, options=config.dcutr)
    if node.holepunch is not None:
        node.holepunch.setServiceParent(node)
    node.members = CloudMembers(host, reactor, cloud=config.cloud.get("key"), admission=config.cloud.get("admission"))
    node.members.setServiceParent(node)
    offered = {
        IHost: host, IRouting: node.dht, IPubSub: node.pubsub, IKVDB: node.kvdb, IMembers: node.members,
        IContent: node.content,
    }
    node.capabilities = services.Capabilities(offered)

    def build(name):
        factory = services.factoryFor(name)
        service = factory(node.capabilities.only(factory.needs), config, reactor)
        service.setName(name)
        service.setServiceParent(node)
        node.shapeServices[name] = service

    # tns, then patrick, first: every node calls them through one client
    # each, on its own service where it runs one (too), else on the nodes
    # it finds; the other services get those clients
    if "tns" in config.services:
        build("tns")
    node.tnsClient = tnsClientFor(host, node.pubsub, node.dht, reactor, node.shapeServices.get("tns"))
    offered[ITNSClient] = node.tnsClient
    node.capabilities = services.Capabilities(offered)
    if "patrick" in config.services:
        build("patrick")
    offered[IPatrickClient] = patrickClientFor(host, node.dht, node.shapeServices.get("patrick"))
    node.capabilities = services.Capabilities(offered)
    for name in config.services:
        if name not in ("tns", "patrick"):
            build(name)
    # a node given its address tells seer what it runs, and that it is alive
    node.seerBeacon = beaconOf(host, node.dht, config, reactor, node.shapeServices.get("seer"))
    if node.seerBeacon is not None:
        node.seerBeacon.setServiceParent(node)
    return node
