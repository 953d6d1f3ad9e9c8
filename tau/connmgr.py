"""
The connection manager: keeps the number of connections between a low and a
high watermark, and closes connections that stay idle.
"""

from twisted.logger import Logger

from tau.configsection import Section, require, seconds, wholeNumbers
from tau.inbound import CONFIG_NAMES, InboundLimits


class ConnectionManager:
    """
    Above C{high} connections, close the least recently used ones that are
    older than C{grace} seconds and not protected, down to C{low}.  Close any
    connection that has had no stream for C{idle} seconds (None: never).

    @param host: the L{tau.host.Host} whose connections are managed.
    @param clock: an L{IReactorTime}.
    """

    log = Logger()

    def __init__(self, host, clock, low=32, high=96, grace=20.0, idle=300.0, interval=10.0):
        if low > high:
            raise ValueError("the low watermark must not be above the high one")
        self.host = host
        self.clock = clock
        self.low = low
        self.high = high
        self.grace = grace
        self.idle = idle
        self.interval = interval
        self._protected = {}
        self._timer = None
        self._trimPending = None

    def start(self):
        if self._timer is None:
            self._timer = self.clock.callLater(self.interval, self._tick)

    def stop(self):
        for call in (self._timer, self._trimPending):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._trimPending = None

    def protect(self, peerID, tag):
        """
        Never trim connections to C{peerID} while C{tag} protects it.
        """
        self._protected.setdefault(peerID, set()).add(tag)

    def unprotect(self, peerID, tag):
        tags = self._protected.get(peerID)
        if tags:
            tags.discard(tag)
            if not tags:
                del self._protected[peerID]

    def isProtected(self, peerID):
        return peerID in self._protected

    def connectionAdded(self):
        """
        A connection was added: trim soon if that took us over the mark.
        """
        if len(self.host.connections()) > self.high and self._trimPending is None:
            self._trimPending = self.clock.callLater(0, self._trimNow)

    def _trimNow(self):
        self._trimPending = None
        self.trim()

    def _tick(self):
        self._timer = self.clock.callLater(self.interval, self._tick)
        self.closeIdle()
        self.trim()

    def closeIdle(self):
        """
        Close connections without streams for longer than C{idle} seconds.
        """
        if self.idle is None:
            return []
        now = self.clock.seconds()
        closed = []
        for conn in self.host.connections():
            if conn.closing or conn.streamCount or self.isProtected(conn.remotePeer):
                continue
            if now - conn.lastActivity >= self.idle:
                self.log.debug("closing idle connection to {peer}", peer=str(conn.remotePeer))
                conn.close()
                closed.append(conn)
        return closed

    def trim(self):
        """
        Close connections down to the low watermark when above the high one.

        @return: the connections closed.
        """
        conns = [c for c in self.host.connections() if not c.closing]
        if len(conns) <= self.high:
            return []
        now = self.clock.seconds()
        candidates = [
            c for c in conns if now - c.opened >= self.grace and not self.isProtected(c.remotePeer)
        ]
        candidates.sort(key=lambda c: (c.streamCount > 0, c.lastActivity))
        excess = len(conns) - self.low
        closing = candidates[:excess]
        if closing:
            self.log.info(
                "trimming {count} connections ({total} open, watermarks {low}-{high})",
                count=len(closing),
                total=len(conns),
                low=self.low,
                high=self.high,
            )
        for conn in closing:
            conn.close()
        return closing


class ConnectionsSection(Section):
    """
    The C{connections} section of a node config: the L{ConnectionManager}'s
    watermarks, grace for new connections and idle close; and the inbound
    limits (L{tau.inbound.InboundLimits}): upgrades in progress in all and
    per address (an IPv4 address, an IPv6 /64), inbound connections per
    address, seconds a new connection may stay silent (0: no limit for the
    counts).
    """

    name = "connections"
    defaults = {
        "low": 32,
        "high": 96,
        "grace": 20.0,
        "idle": 300.0,
        **{key: getattr(InboundLimits, attr) for key, attr in CONFIG_NAMES.items()},
    }

    def clean(self, source, value):
        wholeNumbers(source, "connections", value, ("low", "high"), "expected a whole number of connections")
        wholeNumbers(
            source,
            "connections",
            value,
            ("max-upgrades", "max-upgrades-per-ip", "max-per-ip"),
            "expected a whole number of connections (0: no limit)",
        )
        seconds(source, "connections", value, ("grace", "idle", "first-bytes"))
        return dict(value)

    def finish(self, source, fields, peerID):
        require(source, "connections", fields["low"] <= fields["high"], "low must not be above high")
        return dict(fields)
