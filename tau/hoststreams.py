"""
The streams of L{tau.host.Host}: the registry of protocol handlers, inbound
streams negotiated (multistream-select) and dispatched to them within the
per-peer limits, and outbound streams opened (on an unlimited connection
unless the protocol allows a limited one): a part of the host, kept in its
own module.  The connections they run on are L{tau.hostconns}.
"""

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger

from tau.dialer import LimitedConnectionError
from tau.hostconns import DIAL_TIMEOUT
from tau.protocols.lazyselect import lazyStream
from tau.protocols.multistream import MultistreamNegotiator
from tau.ratelog import PeerLog
from tau.streams import StreamProtocol

STREAM_NEGOTIATION_TIMEOUT = 10.0

#: After a failed attempt to replace a limited connection by a direct one,
#: streams that need one fail at once for this many seconds.
DIRECT_RETRY = 60.0

peerLog = PeerLog(Logger())


class HostStreams:
    """
    The host's protocol handlers and streams (a mixin of
    L{tau.host.Host}, whose state it uses).
    """

    def setStreamHandler(self, protocolID, handler, *, allowLimited=False, maxInbound=None):
        """
        Serve C{protocolID} with C{async def handler(stream)}, C{stream} a
        connected L{StreamProtocol}.  The stream is reset if it raises.

        @param maxInbound: streams of C{protocolID} one peer may have open
            to us at once (default L{tau.host.Host.maxInboundStreams}); more are reset.

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
