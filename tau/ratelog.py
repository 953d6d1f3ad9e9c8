"""
Log lines about misbehaving peers, rate-limited per peer and reason.

A peer that breaks a protocol in a loop (a flood of yamux SYNs, garbage on
every stream) must not get a log line per frame: the log would grow faster
than the traffic.  L{PeerLog} lets C{burst} lines per peer and reason through
in each C{interval}, counts the rest, and says how many it held back on the
next line it lets through for that peer and reason.

A peer is what the line names in its C{peer} field (a PeerID), unless the
caller gives C{limitBy}: lines about a connection whose peer is not known
yet, or that come from below yamux, are limited by L{connectionKey} (the
remote IP address, its /64 for IPv6, and our local port), so a peer that
reconnects, or comes back with a new identity, stays limited.

It remembers at most C{maxKeys} (peer, reason) pairs per clock, the least
recently seen forgotten first (with their counts).  Its state is kept per
clock, so tests with their own L{twisted.internet.task.Clock} never share it.

Use::

    log = Logger()
    peerLog = PeerLog(log)
    peerLog.info(clock, "bad frame", "bad frame from {peer}: {reason}", peer=peer, reason=...)
"""

from collections import OrderedDict
from weakref import WeakKeyDictionary

from twisted.logger import LogLevel

from tau.addrs import sourceOf

__all__ = ["PeerLog", "connectionKey"]


def connectionKey(transport):
    """
    What lines about a connection are limited by: the remote IP address
    (its /64 for IPv6) and our local port, e.g. C{"192.0.2.1 to port
    4242"}; L{None} when C{transport} has no IP addresses (a relayed
    connection), and the line's peer is used.
    """
    try:
        source, port = sourceOf(transport.getPeer().host), transport.getHost().port
    except Exception:
        return None
    return None if source is None else f"{source} to port {port}"


class PeerLog:
    """
    A L{twisted.logger.Logger} for lines about a peer, rate-limited per
    (peer, reason).

    @ivar interval: seconds of one window.
    @ivar burst: lines per (peer, reason) let through in one window.
    @ivar maxKeys: (peer, reason) pairs remembered per clock.
    """

    def __init__(self, logger, interval=60.0, burst=3, maxKeys=1024):
        self.logger = logger
        self.interval = interval
        self.burst = burst
        self.maxKeys = maxKeys
        self._clocks = WeakKeyDictionary()

    def emit(self, level, clock, what, format, /, *, peer, limitBy=None, **fields):
        """
        Log C{format} with C{fields} at C{level}, unless C{peer} had C{burst}
        lines about C{what} in the current window.

        @param clock: an C{IReactorTime}, or L{None} for no limit.
        @param what: a short fixed text naming the reason (not the varying
            details, which go in C{fields}).
        @param peer: the peer (a L{tau.identity.PeerID} or an address), the
            C{peer} field of the line.
        @param limitBy: what the line counts against instead of C{peer}
            (see L{connectionKey}), or L{None}.
        @return: whether the line was logged.
        """
        if clock is None:
            # Nothing to measure a window with (a negotiator without a
            # timeout): the line goes through.
            self.logger.emit(level, format, peer=peer, **fields)
            return True
        keys = self._clocks.get(clock)
        if keys is None:
            keys = self._clocks[clock] = OrderedDict()
        now = clock.seconds()
        key = (str(peer) if limitBy is None else limitBy, what)
        window = keys.get(key)
        suppressed = 0
        if window is None or not window[0] <= now < window[0] + self.interval:
            if window is not None:
                suppressed = window[2]
            window = keys[key] = [now, 0, 0]
            if len(keys) > self.maxKeys:
                keys.popitem(last=False)
        keys.move_to_end(key)
        if window[1] >= self.burst:
            window[2] += 1
            return False
        window[1] += 1
        if suppressed:
            format += " ({suppressed} similar lines suppressed)"
            fields["suppressed"] = suppressed
        self.logger.emit(level, format, peer=peer, **fields)
        return True

    def debug(self, clock, what, format, /, **fields):
        return self.emit(LogLevel.debug, clock, what, format, **fields)

    def info(self, clock, what, format, /, **fields):
        return self.emit(LogLevel.info, clock, what, format, **fields)

    def warn(self, clock, what, format, /, **fields):
        return self.emit(LogLevel.warn, clock, what, format, **fields)
