"""
The DHT on a host: C{/ipfs/kad/1.0.0} streams for L{KademliaCore}.

L{DHTService} serves the protocol, feeds the routing table with identified
peers that speak it, bootstraps from the config's peers and offers
C{findPeer}, C{provide}, C{findProviders}, C{getValue} and C{putValue}.
"""

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from tau.addrs import ipOf, sourceOf
from tau.interfaces import IRouting
from tau.kad.dht import IKadTransport, KademliaCore
from tau.kad.messages import PROTOCOL_ID, PeerInfo
from tau.kad.records import RecordStore
from tau.kad.wire import requestOverStream, serveStream
from tau.peerstore import stripPeer
from tau.protocols.peerrecord import decodeAddr, encodeAddr

# How long addresses learnt from a lookup stay in the peer store.
LEARNT_ADDR_TTL = 600.0

log = Logger()


def addrsToBytes(addrs):
    return [data for data in map(encodeAddr, addrs) if data is not None]


def addrsFromBytes(addrs):
    return [text for text in map(decodeAddr, addrs) if text is not None]


@implementer(IKadTransport)
class HostKadTransport:
    """
    Kad requests over a host's streams.
    """

    def __init__(self, host):
        self.host = host

    def request(self, peerID, message, addrs=()):
        return Deferred.fromCoroutine(self._request(peerID, message, addrs))

    async def _request(self, peerID, message, addrs, expectResponse=True):
        learnt = addrsFromBytes(addrs)
        if learnt:
            self.host.peerstore.addAddrs(peerID, learnt, ttl=LEARNT_ADDR_TTL)
        # Never through peer routing: a lookup must not start lookups.
        await self.host.dial(peerID, route=False)
        stream = await self.host.newStream(peerID, [PROTOCOL_ID])
        try:
            return await requestOverStream(stream, message, expectResponse=expectResponse)
        except BaseException:
            stream.reset()
            raise

    def send(self, peerID, message, addrs=()):
        d = Deferred.fromCoroutine(self._request(peerID, message, addrs, expectResponse=False))
        d.addErrback(lambda f: log.debug("kad: sending to {peer} failed: {why}", peer=str(peerID), why=f.getErrorMessage()))
        return d

    def addrsOf(self, peerID):
        return addrsToBytes(self.host.peerstore.addrs(peerID))

    def selfAddrs(self):
        return addrsToBytes(self.host.announcedAddresses())


@implementer(IRouting)
class DHTService(Service):
    """
    The node's Kademlia DHT.

    @param host: the started-with-the-node L{tau.host.Host}.
    @param storePath: the SQLite file for provider records and values.
    @param peers: bootstrap multiaddrs (ending in C{/p2p/<id>}).
    @param mode: C{"server"} (answer queries, be in others' routing tables)
        or C{"client"}.
    @param storeOptions: keyword arguments of L{RecordStore} (e.g.
        C{provideValidity}); other keyword arguments go to L{KademliaCore}
        (e.g. C{reprovideInterval}).
    """

    log = Logger()
    #: kad streams one peer may have open to us at once (js-libp2p's
    #: kad-dht allows 32 too)
    maxInboundStreams = 32

    def __init__(self, host, reactor, *, storePath=":memory:", peers=(), mode="server", storeOptions=None, **options):
        self.setName("dht")
        self.host = host
        self.reactor = reactor
        self.peers = list(peers)
        self.mode = mode
        self.store = RecordStore(storePath, **(storeOptions or {}))
        self.core = KademliaCore(host.peerID, reactor, HostKadTransport(host), self.store, mode=mode, **options)
        self._bootstrapping = None

    def startService(self):
        super().startService()
        if self.mode == "server":
            self.host.setStreamHandler(PROTOCOL_ID, self._serve, maxInbound=self.maxInboundStreams)
        setRouting = getattr(self.host, "setPeerRouting", None)
        if setRouting is not None:
            setRouting(self)
        self.host.addConnectionObserver(self._connected)
        for conn in self.host.connections():
            self._connected(conn)
        self.core.start()
        if self.peers:
            self._bootstrapping = Deferred.fromCoroutine(self._bootstrap())
            self._bootstrapping.addErrback(lambda f: self.log.info("kad: bootstrap failed: {why}", why=f.getErrorMessage()))

    def stopService(self):
        super().stopService()
        if self._bootstrapping is not None and not self._bootstrapping.called:
            self._bootstrapping.cancel()
        self.host.removeHandler(PROTOCOL_ID)
        if getattr(self.host, "_routing", None) is self:
            self.host.setPeerRouting(None)
        self.core.stop()
        self.store.close()

    def setMode(self, mode):
        """
        Switch to C{"server"} (answer queries, be in peers' routing tables)
        or C{"client"} mode, e.g. when reachability changes; the host tells
        connected peers through identify push.
        """
        if mode not in ("server", "client"):
            raise ValueError(f"mode is 'server' or 'client', not {mode!r}")
        if mode == self.mode:
            return
        self.log.info("kad: switching to {mode} mode", mode=mode)
        self.mode = self.core.mode = mode
        if self.running:
            if mode == "server":
                self.host.setStreamHandler(PROTOCOL_ID, self._serve, maxInbound=self.maxInboundStreams)
            else:
                self.host.removeHandler(PROTOCOL_ID)
            changed = getattr(self.host, "notifyChanged", None)
            if changed is not None:
                changed()

    async def _serve(self, stream):
        ip = ipOf(stream.connection.remoteAddr)
        await serveStream(stream, self.core, stream.remotePeer, source=None if ip is None else sourceOf(ip))

    def _connected(self, connection):
        from tau.protocols import identify

        d = identify.whenIdentified(self.host, connection)
        d.addCallback(lambda _: self._identified(connection.remotePeer))
        d.addErrback(lambda f: None)

    def _identified(self, peerID):
        if not self.running:
            return
        self.core.peerSeen(peerID, self.host.peerstore.supports(peerID, PROTOCOL_ID))

    async def _bootstrap(self):
        infos = []
        for addr in self.peers:
            text, peer = stripPeer(addr)
            if peer is None or peer == self.host.peerID:
                continue
            self.host.peerstore.addAddrs(peer, [text])
            infos.append(PeerInfo(peer, tuple(addrsToBytes([text]))))
        size = await self.core.bootstrap(infos)
        self.log.info("kad: bootstrapped, {size} peers in the routing table", size=size)
        return size

    # the API the rest of tau uses: keys are bytes (a multihash for content)

    def findPeer(self, peerID):
        """
        @return: a Deferred firing with the multiaddrs (text) of C{peerID}.
        """
        local = self.host.connectionTo(peerID)
        if local is not None:
            return Deferred.fromCoroutine(_done(self.host.peerstore.addrs(peerID)))
        d = self.core.findPeer(peerID)
        return d.addCallback(lambda info: self._remember(info))

    def _remember(self, info):
        addrs = addrsFromBytes(info.addrs)
        self.host.peerstore.addAddrs(info.peerID, addrs, ttl=LEARNT_ADDR_TTL)
        return addrs

    def provide(self, key):
        return self.core.provide(key)

    def findProviders(self, key, count=20):
        """
        @return: a Deferred firing with C{[(PeerID, [multiaddr text])]}.
        """
        d = self.core.findProviders(key, count)
        return d.addCallback(lambda infos: [(info.peerID, self._remember(info)) for info in infos])

    def getValue(self, key, quorum=1):
        return self.core.getValue(key, quorum)

    def putValue(self, key, value):
        return self.core.putValue(key, value)


async def _done(value):
    return value
