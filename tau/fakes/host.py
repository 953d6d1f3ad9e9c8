"""
Fakes of the host (L{tau.interfaces.IHost}): hosts in memory that reach each
other through a shared C{network} dict.
"""

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.python.failure import Failure
from zope.interface import implementer

from tau.identity import PrivateKey
from tau.interfaces import IHost
from tau.peerstore import PeerStore, stripPeer
from tau.protocols.multistream import NegotiationFailed
from tau.streams import StreamProtocol


class DialError(Exception):
    """A fake host could not reach a peer."""


class _PipeEnd:
    """
    One end of an in-memory stream: what is written reaches the other
    end's protocol at once; closing writes half-closes, as a yamux stream
    does.
    """

    def __init__(self):
        self.protocol = None
        self.other = None
        self.writing = True
        self.lost = False

    def write(self, data):
        if self.writing and not self.lost:
            self.other.protocol.dataReceived(bytes(data))

    def writeSequence(self, data):
        self.write(b"".join(data))

    def loseConnection(self):
        if not self.writing or self.lost:
            return
        self.writing = False
        self.other.protocol.readConnectionLost()
        if not self.other.writing:
            self._end(ConnectionDone())

    def abortConnection(self):
        if not self.lost:
            self._end(ConnectionLost("the stream was reset"))

    def _end(self, reason):
        for end in (self, self.other):
            if not end.lost:
                end.lost = True
                end.writing = False
                end.protocol.connectionLost(Failure(reason))

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        self.abortConnection()


def _streamPair(a, b):
    ends = _PipeEnd(), _PipeEnd()
    ends[0].other, ends[1].other = ends[1], ends[0]
    for end, protocol in zip(ends, (a, b)):
        end.protocol = protocol
        protocol.makeConnection(end)


class FakeConnection:
    """
    A connection of a L{FakeHost}: C{remotePeer}, C{remoteAddr}, C{relay}
    (None for a direct one), C{direction}; L{close} ends it.
    """

    def __init__(self, host, remotePeer, remoteAddr, direction="outbound", relay=None):
        self.host = host
        self.remotePeer = remotePeer
        self.remoteAddr = remoteAddr
        self.direction = direction
        self.relay = relay
        self.opened = host.clock.seconds()
        self.closing = False
        self._closed = []

    def whenClosed(self):
        d = Deferred()
        if self.closing:
            d.callback(None)
        else:
            self._closed.append(d)
        return d

    def close(self):
        if self.closing:
            return
        self.closing = True
        if self.host.conns.get(self.remotePeer) is self:
            del self.host.conns[self.remotePeer]
        waiting, self._closed = self._closed, []
        for d in waiting:
            d.callback(None)


@implementer(IHost)
class FakeHost:
    """
    A host without a network.  Hosts made with the same C{network} dict
    (PeerID -> host) dial each other; C{newStream} runs the other host's
    handler on an in-memory stream.  Handler failures are kept in
    C{failures}.

    @ivar handlers: protocol id -> C{async def handler(stream)}.
    @ivar dialed: the peers dialed, in order.
    @ivar changes: how many times the announced addresses changed.
    """

    def __init__(self, clock, key=None, network=None, listen=("/ip4/127.0.0.1/tcp/4001",), announce=()):
        self.key = key or PrivateKey.generate()
        self.peerID = self.key.peerID()
        self.clock = clock
        self.peerstore = PeerStore(clock)
        self.swarmKey = None
        self.network = {} if network is None else network
        self.network[self.peerID] = self
        self.listen = list(listen)
        self.announce = list(announce)
        self.extra = []
        self.changes = 0
        self.handlers = {}
        self.conns = {}
        self.observers = []
        self.dialed = []
        self.failures = []

    # what a test does

    def addConnection(self, peer, protocols=(), observed=None, relay=None, remoteAddr="/ip4/1.2.3.4/tcp/4001"):
        """
        A connection to C{peer} (no host behind it) that speaks
        C{protocols} and saw us at C{observed}; the connection observers
        are told.
        """
        conn = FakeConnection(self, peer, remoteAddr, "inbound", relay)
        self.conns[peer] = conn
        self.peerstore.setProtocols(peer, protocols)
        if observed is not None:
            self.peerstore.record(peer).observedAddr = observed
        for observer in list(self.observers):
            observer(conn)
        return conn

    def disconnect(self, peer):
        self.conns[peer].close()

    # IHost

    def setStreamHandler(self, protocolID, handler, *, allowLimited=False, maxInbound=None):
        self.handlers[protocolID] = handler

    def removeHandler(self, protocolID):
        self.handlers.pop(protocolID, None)

    def protocols(self):
        return list(self.handlers)

    def connectedPeers(self):
        return list(self.conns)

    async def dial(self, peerID, timeout=None, route=True):
        if peerID == self.peerID:
            raise DialError("cannot dial ourselves")
        existing = self.conns.get(peerID)
        if existing is not None:
            return existing
        other = self.network.get(peerID)
        if other is None:
            raise DialError(f"{peerID} is not on this fake network")
        self.dialed.append(peerID)
        theirs = FakeConnection(other, self.peerID, self.listen[0] if self.listen else None, "inbound")
        other.conns[self.peerID] = theirs
        ours = FakeConnection(self, peerID, other.listen[0] if other.listen else None, "outbound")
        self.conns[peerID] = ours
        self.peerstore.setProtocols(peerID, other.protocols())
        other.peerstore.setProtocols(self.peerID, self.protocols())
        for host, conn in ((other, theirs), (self, ours)):
            for observer in list(host.observers):
                observer(conn)
        return ours

    async def connect(self, addr, timeout=None):
        text, peer = stripPeer(addr)
        if peer is None:
            raise DialError(f"a fake host dials peers, not {addr!r}: end the address with /p2p/ID")
        if text:
            self.peerstore.addAddrs(peer, [text], ttl=600)
        return await self.dial(peer)

    async def newStream(self, peerID, protocols, timeout=None, *, allowLimited=False, lazy=False):
        conn = await self.dial(peerID)
        other = self.network.get(peerID)
        chosen = next((p for p in protocols if other is not None and p in other.handlers), None)
        if chosen is None:
            raise NegotiationFailed(f"{peerID} speaks none of {list(protocols)}")
        ours = StreamProtocol(chosen, peerID, conn)
        theirs = StreamProtocol(chosen, self.peerID, other.conns.get(self.peerID))
        _streamPair(ours, theirs)

        def failed(failure):
            other.failures.append(failure)
            theirs.reset()
        Deferred.fromCoroutine(other.handlers[chosen](theirs)).addErrback(failed)
        return ours

    # more of the host, for the node's own machinery (autonat, relay, kvdb)

    def connections(self, peer=None):
        if peer is not None:
            return [self.conns[peer]] if peer in self.conns else []
        return list(self.conns.values())

    def connectionTo(self, peer):
        return self.conns.get(peer)

    def addConnectionObserver(self, observer):
        self.observers.append(observer)

    def listenAddresses(self):
        return list(self.listen)

    def announcedAddresses(self):
        base = self.announce or self.listen
        return list(base) + [a for a in self.extra if a not in base]

    def addAnnouncedAddrs(self, addrs):
        self.extra.extend(a for a in addrs if a not in self.extra)
        self.notifyChanged()

    def removeAnnouncedAddrs(self, addrs):
        self.extra = [a for a in self.extra if a not in addrs]
        self.notifyChanged()

    def notifyChanged(self):
        self.changes += 1
