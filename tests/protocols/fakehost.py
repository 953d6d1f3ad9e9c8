"""
A small in-memory stand-in for L{tau.host.Host}: two of them are joined by
a pair of yamux sessions through L{twisted.test.iosim}, and inbound streams
are dispatched through multistream-select to handlers, as the real host
does.
"""

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.test import iosim

from tau.identity import PrivateKey
from tau.peerstore import PeerStore
from tau.protocols.multistream import MultistreamNegotiator
from tau.protocols.yamux import YamuxConfig, YamuxSession
from tau.streams import StreamProtocol

NO_KEEPALIVE = YamuxConfig(keepAliveInterval=None)


class FakeConnection:
    def __init__(self, remotePeer, direction, remoteAddr, localAddr, session):
        self.remotePeer = remotePeer
        self.direction = direction
        self.remoteAddr = remoteAddr
        self.localAddr = localAddr
        self.session = session

    def openStream(self):
        return self.session.openStream()


class FakeHost:
    def __init__(self, clock, addrs=("/ip4/127.0.0.1/tcp/4001",), key=None):
        self.key = key or PrivateKey.generate()
        self.peerID = self.key.peerID()
        self.clock = clock
        self.peerstore = PeerStore(clock)
        self.agentVersion = "tau/test"
        self.addrs = list(addrs)
        self.connections = {}
        self.failures = []
        self._handlers = {}
        self._observers = []

    # the host API used by the protocols

    def listenAddresses(self):
        return list(self.addrs)

    announcedAddresses = listenAddresses

    def protocols(self):
        return list(self._handlers)

    def setStreamHandler(self, protocolID, handler, *, allowLimited=False, maxInbound=None):
        self._handlers[protocolID] = ("async", handler)

    def setProtocolFactory(self, protocolID, factory, *, allowLimited=False, maxInbound=None):
        self._handlers[protocolID] = ("raw", factory)

    def addConnectionObserver(self, observer):
        self._observers.append(observer)

    async def _negotiated(self, peerID, protocols):
        conn = self.connections[peerID]
        stream = conn.openStream()
        stream.remotePeer = peerID
        stream.connection = conn
        negotiator = MultistreamNegotiator.dialer(list(protocols))
        stream.setProtocol(negotiator)
        protocolID, leftover = await negotiator.whenNegotiated()
        stream.protocolID = protocolID
        return stream, negotiator, protocolID, leftover

    async def newStream(self, peerID, protocols, *, allowLimited=False):
        stream, negotiator, protocolID, leftover = await self._negotiated(peerID, protocols)
        sp = StreamProtocol(protocolID, peerID, stream.connection)
        negotiator.switchProtocol(sp, leftover)
        return sp

    async def newRawStream(self, peerID, protocols, protocol, *, allowLimited=False):
        stream, negotiator, protocolID, leftover = await self._negotiated(peerID, protocols)
        negotiator.switchProtocol(protocol, leftover)
        return protocol

    # inbound

    def _inbound(self, connection, stream):
        stream.remotePeer = connection.remotePeer
        stream.connection = connection
        negotiator = MultistreamNegotiator.listener(self._handlers)
        stream.setProtocol(negotiator)
        negotiator.whenNegotiated().addCallbacks(
            self._dispatch, lambda f: None, callbackArgs=(stream, negotiator)
        )

    def _dispatch(self, result, stream, negotiator):
        protocolID, leftover = result
        stream.protocolID = protocolID
        kind, function = self._handlers[protocolID]
        if kind == "raw":
            negotiator.switchProtocol(function(stream), leftover)
            return
        sp = StreamProtocol(protocolID, stream.remotePeer, stream.connection)
        negotiator.switchProtocol(sp, leftover)

        def failed(failure):
            self.failures.append(failure)
            sp.reset()

        Deferred.fromCoroutine(function(sp)).addErrback(failed)


class Pair:
    """
    Two fake hosts, C{a} (the dialer) and C{b}, connected by yamux over
    iosim.  C{a} is at 10.0.0.1:1111, C{b} at 10.0.0.2:2222.
    """

    def __init__(self, a=None, b=None, observe=False):
        self.clock = Clock()
        self.a = a or FakeHost(self.clock, ["/ip4/10.0.0.1/tcp/1111"])
        self.b = b or FakeHost(self.clock, ["/ip4/10.0.0.2/tcp/2222"])
        holder = {}

        def server():
            session = YamuxSession(
                False, self.clock, lambda s: self.b._inbound(holder["b"], s), NO_KEEPALIVE
            )
            holder["b"] = FakeConnection(
                self.a.peerID, "inbound", "/ip4/10.0.0.1/tcp/1111", "/ip4/10.0.0.2/tcp/2222", session
            )
            return session

        def client():
            session = YamuxSession(
                True, self.clock, lambda s: self.a._inbound(holder["a"], s), NO_KEEPALIVE
            )
            holder["a"] = FakeConnection(
                self.b.peerID, "outbound", "/ip4/10.0.0.2/tcp/2222", "/ip4/10.0.0.1/tcp/1111", session
            )
            return session

        self.client, self.server, self.pump = iosim.connectedServerAndClient(
            server, client, clock=self.clock
        )
        self.connA = holder["a"]  # a's connection to b
        self.connB = holder["b"]  # b's connection to a
        self.a.connections[self.b.peerID] = self.connA
        self.b.connections[self.a.peerID] = self.connB

    def run(self, d=None, step=0.0):
        """
        Pump until quiet, advancing the clock by C{step} seconds before
        each round; return C{d} (a coroutine is wrapped in a Deferred).
        """
        if d is not None and not isinstance(d, Deferred):
            d = Deferred.fromCoroutine(d)
        while True:
            self.clock.advance(step)
            if not self.pump.pump():
                break
        return d
