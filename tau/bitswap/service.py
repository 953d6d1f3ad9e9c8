"""
L{BitswapService}: Bitswap 1.2.0 on a host, serving a block store and
fetching into it.
"""

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure

from tau import cids
from tau.bitswap.client import BadBlock, Client
from tau.bitswap.engine import Engine
from tau.bitswap.message import INBOUND_PROTOCOLS, MessageError
from tau.bitswap.network import MessageReader, PeerQueue
from tau.protocols.multistream import NegotiationFailed
from tau.ratelog import PeerLog

#: Most providers dialled per search.
MAX_PROVIDERS = 10
#: Seconds before a peer that refused bitswap is asked again.
NO_BITSWAP_RETRY = 600.0
#: Messages of blocks from one peer being hashed and stored at once: the
#: stream is read on while earlier messages are still on their way to disk.
RECEIVE_PIPELINE = 4

peerLog = PeerLog(Logger())


class BitswapService(Service):
    """
    @param host: the node's L{tau.host.Host}.
    @param blockstore: the block store (async C{get}, C{put}, C{has},
        C{size}).
    @param dht: a L{tau.kad.network.DHTService} for provider search, or None.
    @param options: L{Client} timeouts (C{blockTimeout}, C{fetchTimeout},
        C{providerSearchDelay}) and L{Engine} limits (C{maxWantlist},
        C{maxMessage}).
    """

    log = Logger()
    #: bitswap streams one peer may have open to us at once (go and kubo
    #: use one, helia one per message in turn)
    maxInboundStreams = 32

    def __init__(self, host, blockstore, dht=None, reactor=None, **options):
        self.setName("bitswap")
        self.host = host
        self.store = blockstore
        self.dht = dht
        self.reactor = reactor if reactor is not None else host.reactor
        engineOptions = {k: options.pop(k) for k in ("maxWantlist", "maxMessage", "replaceHasWithBlock", "maxLedgers") if k in options}
        self.engine = Engine(blockstore, self._sendMessage, **engineOptions)
        self.client = Client(
            blockstore,
            self.reactor,
            self._sendWants,
            self._connectedPeers,
            self._findProviders if dht is not None else None,
            self.engine.blocksAdded,
            **options,
        )
        self._queues = {}
        self._observed = set()
        self._noBitswap = {}
        self._observing = False
        self._receiving = {}  # peer -> [Deferred] of blocks being stored

    # Service

    def startService(self):
        super().startService()
        for pid in INBOUND_PROTOCOLS:
            self.host.setProtocolFactory(pid, self._reader, maxInbound=self.maxInboundStreams)
        if not self._observing:
            # the host has no removeConnectionObserver; the observer checks
            # self.running instead.
            self._observing = True
            self.host.addConnectionObserver(self._connected)
        for conn in self.host.connections():
            self._connected(conn)

    def stopService(self):
        super().stopService()
        for pid in INBOUND_PROTOCOLS:
            self.host.removeHandler(pid)
        self.client.stop()
        self.engine.stop()
        for queue in self._queues.values():
            queue.close()
        self._queues.clear()

    # public API

    async def fetch(self, c, timeout=None):
        """
        The bytes of block C{c} (CID object or text), local or fetched.

        @raise tau.bitswap.FetchTimeout: nobody delivered it in time.
        """
        return await self.client.fetch(c, timeout=timeout)

    async def fetchDAG(self, root, childrenOf=cids.childrenOf, parallelism=32, timeout=None):
        """
        Fetch the whole DAG under C{root}; see L{Client.fetchDAG}.
        """
        return await self.client.fetchDAG(root, childrenOf, parallelism, timeout)

    def notifyNewBlocks(self, added):
        """
        Blocks added to the store by others (an import): answer the peers
        waiting for them.
        """
        self.engine.blocksAdded(added)

    def stat(self):
        client = self.client.stat()
        return {
            "peers": [str(p) for p in self._queues],
            "wantlist": client["wantlist"],
            "blocksReceived": client["blocksReceived"],
            "bytesReceived": client["bytesReceived"],
            "duplicateBlocks": client["duplicateBlocks"],
            "badBlocks": client["badBlocks"],
            "blocksSent": self.engine.blocksSent,
            "bytesSent": self.engine.bytesSent,
            "ledgers": self.engine.stat(),
        }

    # connections

    def _connectedPeers(self):
        now = self.reactor.seconds()
        out = []
        for peer in self.host.connectedPeers():
            until = self._noBitswap.get(peer)
            if until is not None:
                if until > now:
                    continue
                del self._noBitswap[peer]
            if self.host.connectionTo(peer) is not None:
                out.append(peer)
        return out

    def _connected(self, conn):
        if not self.running:
            return
        peer = conn.remotePeer
        conn.whenClosed().addCallback(lambda _: self._connectionClosed(peer))
        self.client.peerConnected(peer)

    def _connectionClosed(self, peer):
        if self.host.connections(peer):
            return
        queue = self._queues.pop(peer, None)
        if queue is not None:
            queue.close()
        self.engine.peerDisconnected(peer)
        self.client.peerDisconnected(peer)

    def _queue(self, peer):
        queue = self._queues.get(peer)
        if queue is None:
            queue = self._queues[peer] = PeerQueue(self.host, peer, self.reactor, onError=self._queueFailed)
        return queue

    def _queueFailed(self, queue, error):
        """
        Our wants could not be sent to a peer: forget the queue, and treat
        the peer as gone for the wants it was asked.
        """
        peer = queue.peer
        if self._queues.get(peer) is queue:
            del self._queues[peer]
            queue.close()
        if isinstance(error, NegotiationFailed):
            self._noBitswap[peer] = self.reactor.seconds() + NO_BITSWAP_RETRY
        self.client.peerDisconnected(peer)

    def _sendWants(self, peer, entries):
        if not self.running:
            return
        self._queue(peer).want(entries)

    async def _sendMessage(self, peer, message):
        queue = self._queue(peer)
        try:
            await queue.send(message)
        except Exception as e:
            if self._queues.get(peer) is queue:
                del self._queues[peer]
                queue.close()
            if isinstance(e, NegotiationFailed):
                self._noBitswap[peer] = self.reactor.seconds() + NO_BITSWAP_RETRY
            raise

    async def _findProviders(self, key):
        found = await self.dht.findProviders(key, MAX_PROVIDERS)
        peers = []
        dials = []
        for peer, addrs in found:
            if peer == self.host.peerID:
                continue
            if addrs:
                self.host.peerstore.addAddrs(peer, addrs, ttl=600)
            peers.append(peer)
            d = Deferred.fromCoroutine(self.host.dial(peer))
            d.addErrback(lambda f, p=peer: self.log.debug("bitswap: provider {peer} unreachable: {why}", peer=str(p), why=f.getErrorMessage()))
            dials.append(d)
        if dials:
            await gatherResults(dials)
        return [p for p in peers if self.host.connectionTo(p) is not None]

    # inbound

    def _reader(self, stream):
        return MessageReader(stream.remotePeer, self._received, self._readFailed, clock=self.reactor)

    def _readFailed(self, peer, error):
        if isinstance(error, MessageError):
            peerLog.warn(self.reactor, "bad message", "bitswap: bad message from {peer}, dropping it: {why}", peer=str(peer), why=str(error))
        elif isinstance(error, BadBlock):
            peerLog.warn(self.reactor, "bad block", "bitswap: bad block from {peer}, dropping it: {why}", peer=str(peer), why=str(error))
        else:
            self.log.failure("bitswap: handling a message from {peer} failed", Failure(error), peer=str(peer))
            return
        self._drop(peer)

    async def _received(self, peer, message):
        if not self.running:
            return
        if message.blocks:
            for _, data in message.blocks:
                self.engine.blockReceivedFrom(peer, len(data))
            await self._receiveBlocks(peer, message.blocks)
        if message.presences:
            self.client.presencesReceived(peer, message.presences)
        if message.entries or message.full:
            self.engine.messageReceived(peer, message)

    async def _receiveBlocks(self, peer, blocks):
        """
        Hand C{blocks} to the client without waiting for them to be stored,
        unless L{RECEIVE_PIPELINE} messages of C{peer} already are (then
        wait for the oldest: the stream is not read meanwhile, which holds
        the peer back).  A bad block drops the peer.
        """
        inflight = self._receiving.setdefault(peer, [])
        while len(inflight) >= RECEIVE_PIPELINE:
            waiter = Deferred()
            inflight[0].addBoth(lambda r, w=waiter: (w.called or w.callback(None), r)[1])
            await waiter
        d = Deferred.fromCoroutine(self.client.blocksReceived(peer, blocks))
        inflight.append(d)

        def done(result):
            inflight.remove(d)
            if not inflight and self._receiving.get(peer) is inflight:
                del self._receiving[peer]
            return result

        def failed(f):
            if f.check(BadBlock):
                peerLog.warn(self.reactor, "bad block", "bitswap: bad block from {peer}, dropping it: {why}", peer=str(peer), why=f.getErrorMessage())
                self._drop(peer)
            elif not f.check(CancelledError):
                self.log.failure("bitswap: storing blocks from {peer} failed", f, peer=str(peer))

        d.addBoth(done)
        d.addErrback(failed)

    def _drop(self, peer):
        for conn in self.host.connections(peer):
            conn.close()
