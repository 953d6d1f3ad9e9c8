"""
The libp2p host: listens, dials, upgrades connections, keeps one connection
per peer, and dispatches streams to protocol handlers by protocol id.

This module holds L{Host}'s state, addresses, observers and life cycle; its
connections (admission, registration, dialing) are L{tau.hostconns} and its
protocol handlers and streams L{tau.hoststreams} (mixins of it).
"""

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tau._version import __version__
from tau.addrs import UnsupportedAddress, expandUnspecified, fromSocketAddress, listenEndpoint
from tau.connmgr import ConnectionManager
from tau.dialer import DIAL_DEADLINE, MAX_PARALLEL, DialError, LimitedConnectionError
from tau.hostconns import HostConnections, RawFactory
from tau.hoststreams import HostStreams
from tau.inbound import CONFIG_NAMES as INBOUND_CONFIG, InboundGate, InboundLimits
from tau.interfaces import IHost
from tau.listen import Listener
from tau.oneshot import OneShot
from tau.peerstore import PeerStore
from tau.protocols.yamux import YamuxConfig
from tau.resources import InboundStreams, PeerBudgets
from tau.security import DEFAULT as DEFAULT_SECURITY, makeSecurities

# DialError and LimitedConnectionError, which the host's methods raise, are
# L{tau.dialer}'s; they stay importable from here.
__all__ = ["Host", "DialError", "LimitedConnectionError"]


@implementer(IHost)
class Host(HostConnections, HostStreams, Service):
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

    # observers and transports

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
            listener = Listener(f"p2p {addr}", description, RawFactory(self, isClient=False), self.reactor)
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
