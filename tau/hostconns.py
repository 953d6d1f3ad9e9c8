"""
The connections of L{tau.host.Host}: inbound ones admitted past the
limits, every upgraded one registered (one per peer kept, a redundant one
retired with a GoAway), and outbound ones dialed (L{HostConnections.connect},
L{HostConnections.dial} with peer routing, ranked and staggered address
races, other transports such as the circuit relay): a part of the host,
kept in its own module.  Streams on them are L{tau.hoststreams}.
"""

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from tau.addrs import UnsupportedAddress, addressGroup, clientEndpoint, fromSocketAddress
from tau.connection import OUTBOUND, RawConnection, UpgradeFailed
from tau.dialer import DialError, DialRace, rankAddrs
from tau.oneshot import OneShot
from tau.peerstore import stripPeer

DIAL_TIMEOUT = 10.0


class RawFactory(Factory):
    """
    Makes the L{RawConnection}s of a host: those its listeners accept
    (admitted or refused by L{HostConnections._admitInbound}) and those it
    dials.
    """

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


class HostConnections:
    """
    The host's connections (a mixin of L{tau.host.Host}, whose state it
    uses).
    """

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
        L{tau.host.Host.maxParallelDials} at once; the first connection wins and the other
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
        factory = RawFactory(self, isClient=True, expectedPeer=peerID)
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
