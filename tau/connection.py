"""
Upgrading a raw byte stream into a libp2p connection, and the connection.

The layers, bottom to top::

    TCP (or a relayed stream)
      [pnet: XSalsa20 with the swarm key]        when the node has a swarmkey
      multistream-select -> /tls/1.0.0 or /noise (the host's order)
      TLS 1.3 or Noise XX, the remote's PeerId verified
      multistream-select -> /yamux/1.0.0
      yamux: one stream per protocol exchange

L{RawConnection} is the protocol of the raw transport and drives the
upgrade; L{Connection} is what the host keeps once it is done.
"""

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from tau.addrs import fromSocketAddress
from tau.oneshot import OneShot
from tau.protocols import pnet
from tau.protocols.multistream import MultistreamNegotiator
from tau.protocols.yamux import YamuxSession
from tau.ratelog import PeerLog, connectionKey

YAMUX = "/yamux/1.0.0"
INBOUND = "inbound"
# Seconds a closing connection waits for the peer's TLS close_notify.
CLOSE_GRACE = 2.0
OUTBOUND = "outbound"

log = Logger()
peerLog = PeerLog(log)


class UpgradeFailed(Exception):
    """
    A raw connection did not become a libp2p connection.
    """


class Connection:
    """
    A secured, multiplexed connection to one peer.

    @ivar remotePeer: the peer's verified L{PeerID}.
    @ivar direction: L{INBOUND} or L{OUTBOUND}.
    @ivar remoteAddr: the multiaddr (text) of the remote end.
    @ivar localAddr: the multiaddr (text) of our end.
    @ivar session: the L{YamuxSession}.
    @ivar relay: for a relayed connection, the relay's L{PeerID}; else None.
    @ivar limited: True when the relay limits its duration or data.
    @ivar security: the security protocol's id (C{/tls/1.0.0}, C{/noise}).
    """

    def __init__(self, remotePeer, direction, remoteAddr, localAddr, session, clock):
        self.remotePeer = remotePeer
        self.direction = direction
        self.remoteAddr = remoteAddr
        self.localAddr = localAddr
        self.session = session
        self.clock = clock
        self.opened = clock.seconds()
        self.lastActivity = self.opened
        self.closing = False
        # A relayed connection: the relay's PeerID and the relay's Limit
        # (tau.relay.messages.Limit, or None).  limited is True when the
        # relay cuts the connection after a time or a number of bytes, so
        # bulk transfers should wait for a direct connection.
        self.limited = False
        self.relay = None
        self.limit = None
        self.security = None

    @property
    def dialer(self):
        """
        True when we opened this connection.
        """
        return self.direction == OUTBOUND

    @property
    def streamCount(self):
        return self.session.streamCount

    def openStream(self):
        """
        A new outbound yamux stream (not negotiated yet).
        """
        self.lastActivity = self.clock.seconds()
        return self.session.openStream()

    def touch(self):
        self.lastActivity = self.clock.seconds()

    def goAway(self):
        """
        Accept no new streams; the streams open now carry on.
        """
        self.closing = True
        self.session.goAway()

    def close(self, grace=CLOSE_GRACE):
        """
        Close the connection: yamux GoAway, TLS close_notify, then the raw
        connection, without waiting for the peer's close_notify (js-libp2p
        does not send one promptly).  Whatever is still open after C{grace}
        seconds is aborted.  The Deferred fires once the connection is gone.
        """
        self.closing = True
        closed = self.session.whenClosed()
        self.session.close()
        # Like go-libp2p: once our close_notify is written, close the raw
        # connection instead of waiting for the peer's close_notify.
        tls = self.session.transport
        lower = getattr(tls, "transport", None)
        if lower is not None and not closed.called:
            lower.loseConnection()
        if not closed.called:
            timer = self.clock.callLater(grace, self.abort)
            self.session.whenClosed().addCallback(lambda _: timer.cancel() if timer.active() else None)
        return closed

    def abort(self):
        self.closing = True
        transport = self.session.transport
        if transport is not None:
            transport.abortConnection()

    def whenClosed(self):
        return self.session.whenClosed()

    def __repr__(self):
        return f"<Connection {self.direction} {self.remotePeer} {self.remoteAddr}>"


class _Forward(Protocol):
    """
    Sits where multistream-select hands the raw transport over, and starts
    the security layer (TLS or Noise) on it: the layer gets every byte and
    the end of the connection.
    """

    def __init__(self, start):
        self._start = start
        self._layer = None

    def makeConnection(self, transport):
        self.transport = transport
        self._layer = self._start(transport)

    def dataReceived(self, data):
        self._layer.dataReceived(data)

    def connectionLost(self, reason=Failure(ConnectionDone())):
        self._layer.connectionLost(reason)


class RawConnection(Protocol):
    """
    The protocol of a raw transport, upgrading it for C{host}.

    @ivar upgraded: a L{OneShot} firing with the L{Connection}, or with the
        failure that ended the upgrade.
    @ivar received: bytes received from the raw transport so far.
    """

    def __init__(self, host, isClient, expectedPeer=None, timeout=None):
        self.host = host
        self.isClient = isClient
        self.expectedPeer = expectedPeer
        self.timeout = timeout if timeout is not None else host.upgradeTimeout
        self.upgraded = OneShot()
        self._next = None
        self._timer = None
        self._secured = None
        self._securityProtocol = None
        self.connection = None
        self.received = 0

    # the raw transport's protocol

    def connectionMade(self):
        host = self.host
        clock = host.clock
        if ITCPTransport.providedBy(self.transport):
            # Like go and js: no Nagle.  Small frames (window updates, acks,
            # requests) must not wait for the ACK of the previous segment.
            self.transport.setTcpNoDelay(True)
        self._timer = clock.callLater(self.timeout, self._timedOut)
        protocols = list(host.securities)
        if self.isClient:
            negotiator = MultistreamNegotiator.dialer(protocols, clock, self.timeout)
        else:
            negotiator = MultistreamNegotiator.listener(protocols, clock=clock, timeout=self.timeout)
        if host.swarmKey is not None:
            self._next = pnet.wrap(self.transport, host.swarmKey, protocol=negotiator)
        else:
            self._next = negotiator
            negotiator.makeConnection(self.transport)
        negotiator.whenNegotiated().addCallbacks(self._securitySelected, self._failed, callbackArgs=(negotiator,))

    def dataReceived(self, data):
        self.received += len(data)
        self._next.dataReceived(data)

    def connectionLost(self, reason=Failure(ConnectionDone())):
        self._cancelTimer()
        if self._next is not None:
            self._next.connectionLost(reason)
        if not self.upgraded.fired:
            self._failed(Failure(UpgradeFailed(f"connection lost during the upgrade: {reason.getErrorMessage()}")))

    # the upgrade

    def _securitySelected(self, result, negotiator):
        protocol, leftover = result
        security = self.host.securities[protocol]
        self._securityProtocol = protocol
        muxer = (
            MultistreamNegotiator.dialer([YAMUX], self.host.clock, self.timeout)
            if self.isClient
            else MultistreamNegotiator.listener([YAMUX], clock=self.host.clock, timeout=self.timeout)
        )

        def startSecurity(transport):
            layer, verified = security.secure(
                transport,
                isClient=self.isClient,
                protocol=muxer,
                expectedPeer=self.expectedPeer,
                timeout=self.timeout,
            )
            verified.addErrback(self._failed)
            self._secured = layer
            return layer

        negotiator.switchProtocol(_Forward(startSecurity), leftover)
        muxer.whenNegotiated().addCallbacks(self._muxerSelected, self._failed, callbackArgs=(muxer,))

    def _muxerSelected(self, result, muxer):
        _protocol, leftover = result
        if self.upgraded.fired:
            return
        self._cancelTimer()
        host = self.host
        remotePeer = self._secured.remotePeer
        session = YamuxSession(
            self.isClient,
            host.clock,
            lambda stream: host._inboundStream(connection, stream),
            host.yamuxConfig,
            host.receiveBudget(remotePeer),
        )
        connection = Connection(
            remotePeer,
            OUTBOUND if self.isClient else INBOUND,
            fromSocketAddress(self.transport.getPeer()) or str(self.transport.getPeer()),
            fromSocketAddress(self.transport.getHost()) or str(self.transport.getHost()),
            session,
            host.clock,
        )
        connection.security = self._securityProtocol
        self.connection = connection
        muxer.switchProtocol(session, leftover)
        self.upgraded.fire(connection)

    def abort(self, reason):
        """
        End the upgrade and drop the connection (the host's limits ask for
        it; logged at debug level, the caller says why).
        """
        self._failed(Failure(UpgradeFailed(reason)), quiet=True)

    def _failed(self, failure, quiet=False):
        self._cancelTimer()
        if self.upgraded.fired:
            return None
        reason = failure.getErrorMessage() or failure.type.__name__
        if self.host.swarmKey is not None and "multistream" in reason.lower():
            reason += " (the peer may not hold this swarm key)"
        (peerLog.debug if quiet else peerLog.info)(
            self.host.clock,
            "upgrade failed",
            "{direction} connection with {peer} failed during the upgrade: {reason}",
            direction="outbound" if self.isClient else "inbound",
            peer=self._peerText(),
            limitBy=connectionKey(self.transport),
            reason=reason,
        )
        self.upgraded.fire(Failure(UpgradeFailed(reason)))
        if self.transport is not None and self.transport.connected:
            self.transport.abortConnection()
        return None

    def _timedOut(self):
        self._timer = None
        if not self.upgraded.fired:
            self._failed(Failure(UpgradeFailed(f"upgrade not done after {self.timeout}s")))

    def _cancelTimer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _peerText(self):
        try:
            return fromSocketAddress(self.transport.getPeer()) or str(self.transport.getPeer())
        except Exception:
            return "?"

