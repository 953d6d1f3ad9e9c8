"""
Dialing the known addresses of one peer: ranked, staggered, bounded, and
the first connection wins.

Like go-libp2p's dial ranker (and RFC 8305, happy eyeballs), addresses are
not dialed one after another with a full timeout each, nor all at once:

  - they are ranked loopback, private (LAN, link-local, ULA, CGNAT),
    public (and DNS), then relayed (C{/p2p-circuit}); the order of the
    caller is kept inside a rank;
  - the next attempt starts when the previous one failed, or when it had
    its chance: 30 ms after a loopback or private one (a LAN answers by
    then), 250 ms after a public one (about one round trip);
  - relayed addresses wait for the direct ones: 500 ms after the last
    direct attempt started, or at once when no direct attempt is left;
  - at most C{maxParallel} attempts run at once, one slot kept for the
    relayed addresses while some wait, so private addresses that drop
    packets cannot hold the relay back for a whole timeout;
  - the first attempt that yields a connection wins and every other one is
    cancelled (a TCP connect is stopped, an upgrade in progress aborted);
    the whole dial gives up after C{deadline} seconds.
"""

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.logger import Logger

from tau.addrs import ipOf


class DialError(Exception):
    """
    No connection could be made to a peer; the message says why.
    """


class LimitedConnectionError(DialError):
    """
    The only connection to a peer is limited (relayed, with a time or data
    limit) and the caller did not allow its stream to run on one, and no
    direct connection could be made.
    """


LOOPBACK, PRIVATE, PUBLIC, RELAYED = range(4)

#: The delay before the next attempt, after one of each rank started.
PRIVATE_DELAY = 0.03
PUBLIC_DELAY = 0.25
#: Relayed addresses wait this long after the last direct attempt started.
RELAY_DELAY = 0.5
MAX_PARALLEL = 8
#: The whole dial of one peer's addresses gives up after this many seconds.
DIAL_DEADLINE = 15.0

log = Logger()


def addrRank(addr) -> int:
    """
    L{LOOPBACK}, L{PRIVATE}, L{PUBLIC} or L{RELAYED} for a multiaddr (text).
    Anything that is not an IP literal (DNS names, unknown protocols) is
    L{PUBLIC}.
    """
    text = str(addr)
    if "/p2p-circuit" in text:
        return RELAYED
    if text.startswith("/ip6zone/"):
        return PRIVATE  # a zone only makes sense for link-local addresses
    ip = ipOf(text)
    if ip is None:
        return PUBLIC
    if ip.is_loopback:
        return LOOPBACK
    if not ip.is_global:
        return PRIVATE
    return PUBLIC


def rankAddrs(addrs) -> list:
    """
    C{addrs} without duplicates, in dialing order: loopback, private,
    public, relayed, each in the order given.
    """
    unique = list(dict.fromkeys(addrs))
    return sorted(unique, key=addrRank)


class DialRace:
    """
    One dial of a peer's ranked addresses (see the module docstring).

    @param clock: an L{IReactorTime}.
    @param dialOne: C{dialOne(addr)} returns a Deferred firing with a
        connection or failing (L{DialError}); cancelling it must
        stop the attempt and release what it holds.
    @param addrs: the addresses in dialing order (L{rankAddrs}).
    @ivar errors: why each failed attempt failed, in the order they failed.
    """

    def __init__(
        self,
        clock,
        dialOne,
        addrs,
        *,
        maxParallel=MAX_PARALLEL,
        deadline=DIAL_DEADLINE,
        privateDelay=PRIVATE_DELAY,
        publicDelay=PUBLIC_DELAY,
        relayDelay=RELAY_DELAY,
    ):
        self.clock = clock
        self._dialOne = dialOne
        self._queue = list(addrs)
        self.maxParallel = max(1, maxParallel)
        self.deadline = deadline
        self.privateDelay = privateDelay
        self.publicDelay = publicDelay
        self.relayDelay = relayDelay
        self.errors = []
        self.started = []
        self._inflight = {}
        self._nextAt = None
        self._lastDirect = None
        self._timer = None
        self._deadlineCall = None
        self._result = None
        self._done = False
        self._pumping = False
        self._again = False

    def run(self) -> Deferred:
        """
        Start dialing.

        @return: a Deferred firing with the first connection, or with None
            when every attempt failed or the deadline passed (L{errors}
            says why).  Cancelling it cancels every attempt.
        """
        self._result = Deferred(self._cancelled)
        self._nextAt = self.clock.seconds()
        self._deadlineCall = self.clock.callLater(self.deadline, self._expired)
        self._pump()
        return self._result

    @property
    def inFlight(self) -> list:
        """
        The addresses being dialed now.
        """
        return [addr for addr, _ in self._inflight.values()]

    def _pump(self):
        if self._pumping:
            self._again = True
            return
        self._pumping = True
        try:
            self._again = True
            while self._again and not self._done:
                self._again = False
                self._startDue()
        finally:
            self._pumping = False
        if not self._done and not self._queue and not self._inflight:
            self._finish(None)

    def _startDue(self):
        while self._queue and not self._done:
            if len(self._inflight) >= self.maxParallel:
                return  # a slot frees when an attempt fails
            addr = self._queue[0]
            if addrRank(addr) != RELAYED and addrRank(self._queue[-1]) == RELAYED:
                if self.maxParallel > 1 and len(self._inflight) >= self.maxParallel - 1:
                    # the last slot is kept for the relayed addresses
                    addr = next(a for a in self._queue if addrRank(a) == RELAYED)
            rank = addrRank(addr)
            now = self.clock.seconds()
            at = self._nextAt
            if rank == RELAYED and any(r != RELAYED for _, r in self._inflight.values()):
                at = max(at, self._lastDirect + self.relayDelay)
            if at > now:
                self._schedule(at - now)
                return
            self._start(addr, rank, now)

    def _schedule(self, delay):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.clock.callLater(delay, self._tick)

    def _tick(self):
        self._timer = None
        self._pump()

    def _start(self, addr, rank, now):
        self._queue.remove(addr)
        self.started.append(addr)
        if rank == RELAYED:
            self._nextAt = now + self.publicDelay
        else:
            self._lastDirect = now
            self._nextAt = now + (self.publicDelay if rank == PUBLIC else self.privateDelay)
        log.debug("dialing {addr}", addr=addr)
        d = maybeDeferred(self._dialOne, addr)
        self._inflight[d] = (addr, rank)
        d.addCallbacks(self._won, self._lost, callbackArgs=(d,), errbackArgs=(d,))

    def _won(self, conn, d):
        self._inflight.pop(d, None)
        if not self._done:
            self._finish(conn)
        # else: a connection that made it past the cancellation; the host
        # registered it and settles it against the winner.
        return None

    def _lost(self, failure, d):
        addr, _ = self._inflight.pop(d, (None, None))
        if self._done:
            return None  # cancelled because another attempt won
        if not failure.check(DialError, CancelledError):
            log.failure("dialing {addr} failed unexpectedly", failure, addr=addr)
        self.errors.append(failure.getErrorMessage() or f"{addr}: {failure.type.__name__}")
        self._nextAt = self.clock.seconds()  # it failed: the next one need not wait
        self._pump()
        return None

    def _expired(self):
        self._deadlineCall = None
        if self._done:
            return
        pending = self.inFlight + self._queue
        self.errors.append(f"gave up after {self.deadline}s (no answer from {', '.join(pending)})")
        self._finish(None)

    def _stop(self):
        self._done = True
        for call in (self._timer, self._deadlineCall):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._deadlineCall = None
        self._queue = []
        for d, (addr, _) in list(self._inflight.items()):
            log.debug("cancelling the dial of {addr}", addr=addr)
            d.cancel()
        self._inflight.clear()

    def _finish(self, result):
        if self._done:
            return
        self._stop()
        self._result.callback(result)

    def _cancelled(self, _):
        if not self._done:
            self._stop()
