"""
The libp2p host: listens, dials, upgrades connections, keeps one connection
per peer, and dispatches streams to protocol handlers by protocol id.
"""

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tau._version import __version__
from tau.addrs import UnsupportedAddress, addressGroup, clientEndpoint, expandUnspecified, fromSocketAddress, listenEndpoint
from tau.connection import OUTBOUND, RawConnection, UpgradeFailed
from tau.connmgr import ConnectionManager
from tau.dialer import DIAL_DEADLINE, MAX_PARALLEL, DialError, DialRace, LimitedConnectionError, rankAddrs
from tau.inbound import CONFIG_NAMES as INBOUND_CONFIG, InboundGate, InboundLimits
from tau.interfaces import IHost
from tau.listen import Listener
from tau.oneshot import OneShot
from tau.peerstore import PeerStore, stripPeer
from tau.protocols.multistream import MultistreamNegotiator
from tau.protocols.lazyselect import lazyStream
from tau.protocols.yamux import YamuxConfig
from tau.ratelog import PeerLog
from tau.resources import InboundStreams, PeerBudgets
from tau.security import DEFAULT as DEFAULT_SECURITY, makeSecurities
from tau.streams import StreamProtocol

STREAM_NEGOTIATION_TIMEOUT = 10.0
DIAL_TIMEOUT = 10.0

peerLog = PeerLog(Logger())


#: After a failed attempt to replace a limited connection by a direct one,
#: streams that need one fail at once for this many seconds.
DIRECT_RETRY = 60.0


class _RawFactory(Factory):
    noisy = False

    def __init__(self, host, isClient, expectedPeer=None):
        self.host = host
        self.isClient = isClient
        self.expectedPeer = expectedPeer

    def buildProtocol(self, addr):
        raw = RawConnection(self.host, self.isClient, self.expectedPeer)
        if not self.isClient and not self.host._admitInbound(raw, addressGroup(fromSocketAddress(addr))):
            return None
        return raw


@implementer(IHost)
class Host(Service):
    """
    A libp2p host for one identity.

    @param key: the host's L{PrivateKey}.
    @param reactor: provides IReactorTCP and IReactorTime.
    @param listen: multiaddrs to listen on.
    @param announce: multiaddrs to announce instead of the listen addresses.
    @param swarmKey: the 32-byte pnet key, or None for the public network.
    @param connections: the connection manager's C{low}, C{high}, C{grace}
        (seconds a new connection is safe from trimming) and C{idle}
        (seconds after which a connection without streams is closed), and
        the limits of inbound connections (L{tau.inbound.InboundLimits}:
        C{max-upgrades}, C{max-upgrades-per-ip}, C{max-per-ip},
        C{first-bytes}).
    @param security: the security protocols' config names (C{tls},
        C{noise}), in the order a dial proposes them.
    @ivar inbound: the L{InboundGate} inbound connections pass.
    @ivar securities: each security protocol by its id, in that order.
    @ivar security: the first of them.
    """

    log = Logger()
    upgradeTimeout = 10.0
    #: dial attempts at once to one peer, and how long dialing one peer's
    #: addresses may take in all (see L{tau.dialer})
    maxParallelDials = MAX_PARALLEL
    dialDeadline = DIAL_DEADLINE
    maxConnections = 1024
    #: bytes received from one peer and not consumed yet, over all its
    #: connections (each connection has its own YamuxConfig.maxReceiveBuffer)
    maxPeerReceiveBuffer = 48 * 1024 * 1024
    #: ... and from all peers together
    maxTotalReceiveBuffer = 256 * 1024 * 1024
    #: open inbound streams of one protocol from one peer, for handlers
    #: registered without their own C{maxInbound}
    maxInboundStreams = 64

    def __init__(self, key, reactor, *, listen=(), announce=(), swarmKey=None, connections=None, yamuxConfig=None,
                 security=DEFAULT_SECURITY):
        self.setName("host")
        self.key = key
        self.peerID = key.peerID()
        self.reactor = reactor
        self.clock = reactor
        self.swarmKey = swarmKey
        self.agentVersion = f"tau/{__version__}"
        self.peerstore = PeerStore(reactor)
        self.securities = makeSecurities(security, key, reactor)
        self.security = next(iter(self.securities.values()))
        self.yamuxConfig = yamuxConfig or YamuxConfig()
        connections = connections or {}
        self.connmgr = ConnectionManager(self, reactor, **{k: v for k, v in connections.items() if k not in INBOUND_CONFIG})
        self.inbound = InboundGate(reactor, InboundLimits.fromConfig(connections))
        self._listenAddrs = list(listen)
        self._announce = list(announce)
        self._listeners = []
        self._handlers = {}
        self._conns = {}
        self._dialing = {}
        self._retiring = {}
        self._observers = []
        self._transports = []
        self._routing = None
        self._extraAddrs = []
        self._changeObservers = []
        self._changePending = None
        self._limitedOK = set()
        self._maxInbound = {}
        self._inbound = InboundStreams()
        self.receiveBudget = PeerBudgets(self.maxPeerReceiveBuffer, self.maxTotalReceiveBuffer, reactor)
        self._directFailed = {}
        self._ready = OneShot()

    # protocol handlers

    def setStreamHandler(self, protocolID, handler, *, allowLimited=False, maxInbound=None):
        """
        Serve C{protocolID} with C{async def handler(stream)}, C{stream} a
        connected L{StreamProtocol}.  The stream is reset if it raises.

        @param maxInbound: streams of C{protocolID} one peer may have open
            to us at once (default L{maxInboundStreams}); more are reset.

        @param allowLimited: serve it on limited connections too (relayed
            ones with a time or data limit, L{tau.connection.Connection}
            C{limited}); otherwise it is refused there, like js-libp2p's
            C{runOnLimitedConnection}.  Identify, ping and the relay's own
            protocols allow it; bulk protocols (DHT, bitswap) do not.
        """
        self._handlers[protocolID] = ("async", handler)
        self._allowLimited(protocolID, allowLimited)
        self._maxInbound[protocolID] = maxInbound or self.maxInboundStreams

    def setProtocolFactory(self, protocolID, factory, *, allowLimited=False, maxInbound=None):
        """
        Serve C{protocolID} with C{factory(stream) -> IProtocol}; the stream
        transport carries C{remotePeer}, C{protocolID} and C{connection}.
        C{allowLimited} and C{maxInbound} as for L{setStreamHandler}.
        """
        self._handlers[protocolID] = ("raw", factory)
        self._allowLimited(protocolID, allowLimited)
        self._maxInbound[protocolID] = maxInbound or self.maxInboundStreams

    def _allowLimited(self, protocolID, allow):
        if allow:
            self._limitedOK.add(protocolID)
        else:
            self._limitedOK.discard(protocolID)

    def removeHandler(self, protocolID):
        self._handlers.pop(protocolID, None)
        self._limitedOK.discard(protocolID)
        self._maxInbound.pop(protocolID, None)

    def protocols(self):
        return list(self._handlers)

    def addConnectionObserver(self, observer):
        """
        Call C{observer(connection)} for each new connection.
        """
        self._observers.append(observer)

    def addTransport(self, transport):
        """
        Dial the addresses C{transport.canDial(addr)} accepts with C{await
        transport.dial(addr, peerID, timeout)}, which returns an upgraded
        L{tau.connection.Connection} (the host registers it) or raises
        L{DialError}.  The circuit relay transport is one.
        """
        self._transports.append(transport)

    def adoptInbound(self, raw, relay):
        """
        Take C{raw}, an inbound L{RawConnection} relayed to us by C{relay}
        (a PeerID), as TCP ones are taken: count it against the limits and
        register its connection once upgraded.  The connections relayed by
        one relay count as one address (the relay bounds them per peer
        too); the peer behind the relay has not proven its identity yet.

        @return: False, and nothing is kept, when the host is at its limits.
        """
        return self.running and self._admitInbound(raw, f"relay {relay}")

    def admitInbound(self, raw, group):
        """
        Take C{raw}, an inbound L{RawConnection} that came in past the
        host's own listeners (tor forwarding from our onion service), as
        TCP ones are taken, its connections counted as address group
        C{group} (a name that is no IP address, e.g. C{"onion"}).

        @return: False, and nothing is kept, when the host is at its limits.
        """
        return self.running and self._admitInbound(raw, group)

    def addChangeObserver(self, observer):
        """
        Call C{observer()} (soon, once per burst of changes) when the
        addresses or protocols this host announces change; identify uses it
        to push the change to connected peers.
        """
        self._changeObservers.append(observer)

    def notifyChanged(self):
        """
        Tell the change observers that announced addresses or protocols
        changed.
        """
        if self._changePending is None or not self._changePending.active():
            self._changePending = self.clock.callLater(0, self._changed)

    def _changed(self):
        self._changePending = None
        for observer in list(self._changeObservers):
            try:
                observer()
            except Exception:
                self.log.failure("change observer failed")

    # addresses

    def listeningPorts(self):
        return [listener.port.getHost().port for listener in self._listeners if listener.port is not None]

    def listenAddresses(self):
        """
        The multiaddrs bound now (unspecified addresses as bound).
        """
        out = []
        for listener in self._listeners:
            if listener.port is not None:
                out.append(fromSocketAddress(listener.port.getHost()))
        return out

    def announcedAddresses(self):
        """
        What peers should dial: the configured announce addresses, or every
        interface address of the listeners.
        """
        if self._announce:
            return list(self._announce) + [a for a in self._extraAddrs if a not in self._announce]
        out = []
        for addr in self.listenAddresses():
            for expanded in expandUnspecified(addr):
                if expanded not in out:
                    out.append(expanded)
        return out + [a for a in self._extraAddrs if a not in out]

    def addAnnouncedAddrs(self, addrs):
        """
        Announce C{addrs} (multiaddr text without C{/p2p/<self>}) besides
        the listening or configured ones, e.g. C{.../p2p/RELAY/p2p-circuit}
        while a relay holds a reservation for us; the change observers are
        told.
        """
        added = False
        for addr in addrs:
            if addr not in self._extraAddrs:
                self._extraAddrs.append(addr)
                added = True
        if added:
            self.notifyChanged()

    def removeAnnouncedAddrs(self, addrs):
        """
        Stop announcing C{addrs} added by L{addAnnouncedAddrs}.
        """
        before = len(self._extraAddrs)
        self._extraAddrs = [a for a in self._extraAddrs if a not in addrs]
        if len(self._extraAddrs) != before:
            self.notifyChanged()

    # running

    def startService(self):
        super().startService()
        if self._ready.fired:
            self._ready = OneShot()
        self._listeners = []
        waits = []
        for addr in self._listenAddrs:
            try:
                description = listenEndpoint(addr)
            except UnsupportedAddress as e:
                self._ready.fire(Failure(e))
                return
            listener = Listener(f"p2p {addr}", description, _RawFactory(self, isClient=False), self.reactor)
            listener.startService()
            self._listeners.append(listener)
            waits.append(listener.whenListening())
        self.connmgr.start()
        gatherResults(waits, consumeErrors=True).addCallbacks(
            lambda _: self._ready.fire(self),
            lambda f: self._ready.fire(f.value.subFailure),
        )

    def whenReady(self):
        return self._ready.whenFired()

    async def _stop(self):
        self.connmgr.stop()
        self.inbound.stop()
        self.receiveBudget.freed.stop()
        if self._changePending is not None and self._changePending.active():
            self._changePending.cancel()
        self._changePending = None
        for call in self._retiring.values():
            if call.active():
                call.cancel()
        self._retiring.clear()
        waits = [listener.stopService() for listener in self._listeners]
        waits = [d for d in waits if d is not None]
        for conn in self.connections():
            waits.append(conn.close())
        if waits:
            await gatherResults(waits, consumeErrors=True)

    def stopService(self):
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    # connections

    def connections(self, peerID=None):
        """
        The open connections, to C{peerID} or to everyone.
        """
        if peerID is not None:
            return list(self._conns.get(peerID, ()))
        return [c for conns in self._conns.values() for c in conns]

    def connectedPeers(self):
        return [peer for peer, conns in self._conns.items() if conns]

    def connectionTo(self, peerID):
        """
        The connection to use for new streams to C{peerID}, or None.
        """
        best = None
        for conn in self._conns.get(peerID, ()):
            if conn.closing:
                continue
            if best is None or _keep(conn, best, self.peerID):
                best = conn
        return best

    def _admitInbound(self, raw, group):
        """
        Take C{raw}, a new inbound connection from C{group} (see
        L{tau.inbound}), and register it once upgraded; or refuse it.
        """
        if len(self.connections()) >= self.maxConnections:
            return self.inbound.refuse(group, f"at the limit of {self.maxConnections} connections")
        if not self.inbound.admit(raw, group):
            return False
        raw.upgraded.whenFired().addBoth(self._inboundUpgraded)
        return True

    def _inboundUpgraded(self, result):
        if not isinstance(result, Failure):
            self._register(result)
        return None

    def addConnection(self, conn):
        """
        Keep C{conn}, an upgraded L{tau.connection.Connection} made outside
        the host's own dialing (a hole punch, L{tau.dcutr}), as if the host
        had dialed it: connection observers are told, and a relayed
        connection to the same peer gives way to it.
        """
        self._register(conn)

    def _register(self, conn):
        """
        Keep a new connection.  Two connections to one peer (both dialed at
        once) are settled the same way on both ends: the one dialed by the
        smaller PeerId is kept, and the other is sent a GoAway and closed
        once its streams are done.
        """
        if not self.running:
            conn.close()
            return
        peer = conn.remotePeer
        conns = self._conns.setdefault(peer, [])
        conns.append(conn)
        conn.whenClosed().addCallback(lambda _: self._forget(conn))
        self.log.debug("{direction} connection with {peer} at {addr}", direction=conn.direction, peer=str(peer), addr=conn.remoteAddr)
        if conn.direction == OUTBOUND:
            self.peerstore.addAddrs(peer, [conn.remoteAddr])
        keep = self.connectionTo(peer)
        for other in conns:
            if other is not keep and not other.closing:
                self.log.debug("closing a redundant connection to {peer}", peer=str(peer))
                self._retire(other)
        for observer in list(self._observers):
            try:
                observer(conn)
            except Exception:
                self.log.failure("connection observer failed")
        self.connmgr.connectionAdded()

    def _retire(self, conn):
        """
        Send C{conn} a GoAway and close it once its streams are done (30 s
        at most).
        """
        conn.goAway()
        self._retiring[conn] = self.clock.callLater(0, self._closeWhenIdle, conn, 30)

    def _closeWhenIdle(self, conn, remaining):
        self._retiring.pop(conn, None)
        if conn.streamCount == 0 or remaining <= 0:
            conn.close()
        else:
            self._retiring[conn] = self.clock.callLater(1.0, self._closeWhenIdle, conn, remaining - 1)

    def _forget(self, conn):
        self.receiveBudget.closed(conn.session.budget)
        call = self._retiring.pop(conn, None)
        if call is not None and call.active():
            call.cancel()
        conns = self._conns.get(conn.remotePeer)
        if conns and conn in conns:
            conns.remove(conn)
            if not conns:
                del self._conns[conn.remotePeer]

    async def connect(self, addr, timeout=DIAL_TIMEOUT):
        """
        Connect to C{addr}, a multiaddr (text) that may end in C{/p2p/<id>};
        the remote must prove that identity.  An open connection to that
        peer is reused (a relayed one only for a relayed address).

        @rtype: L{tau.connection.Connection}
        @raise DialError: when no connection could be made.
        """
        try:
            text, peer = stripPeer(addr)
        except Exception as e:
            raise DialError(f"bad address {addr!r}: {e}") from None
        if peer is not None:
            if peer == self.peerID:
                raise DialError("cannot dial ourselves")
            if not text:
                # /p2p/<id> alone: the peer store or peer routing knows where
                return await self.dial(peer, timeout)
            existing = self.connectionTo(peer)
            # a relayed connection does not stand for a direct address
            if existing is not None and (existing.relay is None or "/p2p-circuit" in text):
                return existing
            self.peerstore.addAddrs(peer, [text], ttl=600)
        return await self._dialAddr(text, peer, timeout)

    def setPeerRouting(self, routing):
        """
        When no known address of a peer works, ask C{routing.findPeer(peerID)}
        (a Deferred firing with multiaddr text, e.g. the DHT's) and dial
        what it finds.  None turns it off.
        """
        self._routing = routing

    async def dial(self, peerID, timeout=DIAL_TIMEOUT, route=True):
        """
        A connection to C{peerID}: an open one, or a new one to an address
        from the peer store, or (with C{route}) found by peer routing when
        none of those works.  Concurrent calls share one dial.  The
        addresses are dialed ranked and staggered, the first connection
        wins (L{_dialAddrs}); C{timeout} is for each attempt.
        """
        if peerID == self.peerID:
            raise DialError("cannot dial ourselves")
        existing = self.connectionTo(peerID)
        if existing is not None:
            return existing
        pending = self._dialing.get(peerID)
        if pending is None:
            pending = self._dialing[peerID] = OneShot()
            d = Deferred.fromCoroutine(self._dialPeer(peerID, timeout, route))
            d.addBoth(self._dialDone, peerID, pending)
        return await pending.whenFired()

    def _dialDone(self, result, peerID, pending):
        self._dialing.pop(peerID, None)
        pending.fire(result)

    async def _dialPeer(self, peerID, timeout, route=True):
        errors = []
        tried = set()
        conn = await self._dialAddrs(peerID, self.peerstore.addrs(peerID), timeout, tried, errors)
        if conn is None and route and self._routing is not None and self.running:
            try:
                found = await self._routing.findPeer(peerID)
            except Exception as e:
                errors.append(f"peer routing: {e.__class__.__name__}: {e}")
            else:
                self.log.debug("peer routing found {peer} at {addrs}", peer=str(peerID), addrs=list(found))
                conn = await self._dialAddrs(peerID, found, timeout, tried, errors)
        if conn is not None:
            return conn
        if not tried and not errors:
            raise DialError(f"no known addresses for {peerID}")
        raise DialError(f"could not reach {peerID}: " + "; ".join(errors))

    async def _dialAddrs(self, peerID, addrs, timeout, tried, errors):
        """
        Dial C{addrs} (those not in C{tried}) as L{tau.dialer.DialRace}
        does: ranked loopback, private, public, relayed; staggered; at most
        L{maxParallelDials} at once; the first connection wins and the other
        attempts are cancelled.  Each attempt has C{timeout}, the whole
        race C{max(timeout, dialDeadline)}.

        @return: the connection, or None (C{errors} then says why).
        """
        addrs = rankAddrs(a for a in addrs if a not in tried)
        if not addrs:
            return None
        tried.update(addrs)
        race = DialRace(
            self.clock,
            lambda addr: Deferred.fromCoroutine(self._dialAddr(addr, peerID, timeout)),
            addrs,
            maxParallel=self.maxParallelDials,
            deadline=max(timeout, self.dialDeadline),
        )
        try:
            return await race.run()
        finally:
            errors.extend(race.errors)

    async def _dialAddr(self, addr, peerID, timeout):
        if not self.running:
            raise DialError("the host is not running")
        for transport in self._transports:
            if transport.canDial(addr):
                conn = await transport.dial(addr, peerID, timeout)
                self._register(conn)
                return self.connectionTo(conn.remotePeer) or conn
        try:
            endpoint = clientEndpoint(self.reactor, addr, timeout=timeout)
        except (UnsupportedAddress, ValueError) as e:
            raise DialError(str(e)) from None
        factory = _RawFactory(self, isClient=True, expectedPeer=peerID)
        try:
            raw = await endpoint.connect(factory)
        except (CancelledError, ConnectingCancelledError):
            raise CancelledError(f"dialing {addr} cancelled") from None
        except Exception as e:
            raise DialError(f"{addr}: {e.__class__.__name__}: {e}") from None
        try:
            conn = await raw.upgraded.whenFired()
        except UpgradeFailed as e:
            raise DialError(f"{addr}: {e}") from None
        except CancelledError:
            # another address won: no half-upgraded connection is left
            if raw.transport is not None:
                raw.transport.abortConnection()
            raise
        self._register(conn)
        return self.connectionTo(conn.remotePeer) or conn

    # streams

    def _inboundStream(self, connection, stream):
        connection.touch()
        stream.remotePeer = connection.remotePeer
        stream.connection = connection
        protocols = self._handlers
        if connection.limited:
            # Only what allows it runs on a limited connection; the rest is
            # answered "na", as if we did not speak it.
            protocols = [p for p in protocols if p in self._limitedOK]
        negotiator = MultistreamNegotiator.listener(protocols, clock=self.clock, timeout=STREAM_NEGOTIATION_TIMEOUT)
        stream.setProtocol(negotiator)
        negotiator.whenNegotiated().addCallbacks(
            self._dispatch,
            lambda f: peerLog.debug(self.clock, "stream not negotiated", "stream from {peer} not negotiated: {reason}", peer=str(connection.remotePeer), reason=f.getErrorMessage()),
            callbackArgs=(stream, negotiator),
        )

    def _dispatch(self, result, stream, negotiator):
        protocolID, leftover = result
        stream.protocolID = protocolID
        handler = self._handlers.get(protocolID)
        if handler is None or (stream.connection.limited and protocolID not in self._limitedOK):
            stream.abortConnection()
            return
        limit = self._maxInbound[protocolID]
        if not self._inbound.admit(stream.remotePeer, protocolID, limit, stream.whenFinished()):
            self.log.info("peer {peer} has {limit} {protocol} streams open; resetting another", peer=str(stream.remotePeer), limit=limit, protocol=protocolID)
            stream.abortConnection()
            return
        kind, function = handler
        if kind == "raw":
            try:
                protocol = function(stream)
            except Exception:
                self.log.failure("handler for {protocol} failed", protocol=protocolID)
                stream.abortConnection()
                return
            negotiator.switchProtocol(protocol, leftover)
            return
        sp = StreamProtocol(protocolID, stream.remotePeer, stream.connection)
        negotiator.switchProtocol(sp, leftover)
        d = Deferred.fromCoroutine(function(sp))
        d.addErrback(self._handlerFailed, sp)

    def _handlerFailed(self, failure, stream):
        peerLog.info(
            self.clock,
            "handler failed",
            "{protocol} stream from {peer} failed: {reason}",
            protocol=stream.protocolID,
            peer=str(stream.remotePeer),
            reason=failure.getErrorMessage() or failure.type.__name__,
        )
        stream.reset()

    async def _negotiatedStream(self, peerID, protocols, timeout, allowLimited):
        conn = await self.dial(peerID)
        if conn.limited and not allowLimited:
            conn = await self._unlimited(peerID, protocols)
        stream = conn.openStream()
        stream.remotePeer = peerID
        stream.connection = conn
        negotiator = MultistreamNegotiator.dialer(list(protocols), self.clock, timeout)
        stream.setProtocol(negotiator)
        try:
            protocolID, leftover = await negotiator.whenNegotiated()
        except CancelledError:
            stream.abortConnection()
            raise
        stream.protocolID = protocolID
        return stream, negotiator, protocolID, leftover

    async def _unlimited(self, peerID, protocols):
        """
        A connection to C{peerID} that is not limited: an open one, or a new
        one to a direct address of the peer store (a relayed peer that also
        listens somewhere we reach).

        @raise LimitedConnectionError: when there is none.
        """
        for conn in self.connections(peerID):
            if not conn.limited and not conn.closing:
                return conn
        failed = self._directFailed.get(peerID)
        addrs = [a for a in self.peerstore.addrs(peerID) if "/p2p-circuit" not in a]
        errors = []
        if addrs and (failed is None or self.clock.seconds() - failed >= DIRECT_RETRY):
            conn = await self._dialAddrs(peerID, addrs, DIAL_TIMEOUT, set(), errors)
            if conn is not None and not conn.limited:
                self._directFailed.pop(peerID, None)
                return conn
            if len(self._directFailed) >= self.maxConnections:
                self._directFailed.pop(next(iter(self._directFailed)))
            self._directFailed[peerID] = self.clock.seconds()
        raise LimitedConnectionError(
            f"the connection to {peerID} is limited (relayed) and {' '.join(protocols)} "
            "is not allowed on one (allowLimited)"
            + (f"; no direct connection: {'; '.join(errors)}" if errors else "")
        )

    async def newStream(self, peerID, protocols, timeout=STREAM_NEGOTIATION_TIMEOUT, *, allowLimited=False,
                        lazy=False):
        """
        Open a stream to C{peerID} speaking the first of C{protocols} it
        supports (dialing it if needed).

        @param allowLimited: the stream may run on a limited connection (a
            relayed one with a time or data limit), like go-libp2p's
            C{WithAllowLimitedConn}; otherwise, when that is all there is,
            a direct address of the peer is dialed, and failing that
            L{LimitedConnectionError} is raised.
        @param lazy: when there is one protocol and the peer store says the
            peer speaks it (identify told us), do not wait for the peer to
            accept it: the stream is returned at once and what is written
            follows the proposal (L{tau.protocols.lazyselect}); a refusal
            then fails the stream's first read instead of this call.
        @rtype: L{StreamProtocol}
        """
        if lazy and len(protocols) == 1 and self.peerstore.supports(peerID, protocols[0]):
            conn = await self.dial(peerID)
            if conn.limited and not allowLimited:
                conn = await self._unlimited(peerID, protocols)
            return lazyStream(conn, peerID, protocols[0], self.clock, timeout)
        stream, negotiator, protocolID, leftover = await self._negotiatedStream(peerID, protocols, timeout, allowLimited)
        sp = StreamProtocol(protocolID, peerID, stream.connection)
        negotiator.switchProtocol(sp, leftover)
        return sp

    async def newRawStream(self, peerID, protocols, protocol, timeout=STREAM_NEGOTIATION_TIMEOUT, *, allowLimited=False):
        """
        Like L{newStream}, but connect C{protocol} (any IProtocol) to it.
        """
        stream, negotiator, protocolID, leftover = await self._negotiatedStream(peerID, protocols, timeout, allowLimited)
        negotiator.switchProtocol(protocol, leftover)
        return protocol


def _keep(a, b, localPeer):
    """
    Which of two connections to one peer both ends keep: a direct one
    rather than a relayed one; then the one dialed by the smaller PeerId;
    between two dialed by the same side, the older.
    """
    directA = getattr(a, "relay", None) is None
    if directA != (getattr(b, "relay", None) is None):
        return directA
    dialerA = localPeer if a.direction == OUTBOUND else a.remotePeer
    dialerB = localPeer if b.direction == OUTBOUND else b.remotePeer
    if dialerA != dialerB:
        return dialerA < dialerB
    return a.opened < b.opened

