"""
What one peer may make us hold: received bytes and inbound streams.

Receive-memory budgets (L{ReceiveBudget}): bytes a peer sent and our
protocols have not consumed yet (a yamux stream's buffer while its reader
is paused, a L{tau.streams.StreamProtocol}'s buffer, an unfinished
bitswap message) are held on behalf of one stream and counted in the
budget of its connection, whose parent is the budget of its peer, whose
parent is the host's.  When a stream would make a budget exceed its
limit, the stream holding the most is reset (C{holder.overBudget(budget)}):
one stream may hold one large message, a peer may not pin many.

Inbound streams (L{InboundStreams}): how many streams of each protocol a
peer may have open to us at once; a kad or bitswap peer needs a handful,
a gossipsub peer one.

What the buffers of a closed connection freed is given back to the system
(L{FreedMemory}).
"""

import ctypes
from weakref import WeakValueDictionary

__all__ = ["ReceiveBudget", "PeerBudgets", "InboundStreams", "FreedMemory"]

#: glibc's malloc_trim, or None (another C library)
_mallocTrim = getattr(ctypes.CDLL(None), "malloc_trim", None)


class ReceiveBudget:
    """
    A limit on the bytes held by a set of holders (the streams of a
    connection, or the connections of a peer).

    A holder is any hashable object with C{overBudget(budget)}, which must
    L{drop} itself from the budget it charges before it returns (a yamux
    stream does, and resets itself); C{budget} may be that one's parent.

    @ivar limit: most bytes held at once.
    @ivar parent: a L{ReceiveBudget} that counts the same bytes too (the
        peer's, for a connection's), or None.
    @ivar used: bytes held now.
    @ivar peak: most bytes held at once so far.
    """

    def __init__(self, limit, parent=None, name="connection"):
        if limit < 1:
            raise ValueError("a receive budget needs a positive limit")
        self.limit = limit
        self.parent = parent
        self.name = name
        self.used = 0
        self.peak = 0
        self._held = {}

    def held(self, holder):
        """
        The bytes C{holder} holds in this budget.
        """
        return self._held.get(holder, 0)

    def charge(self, holder, n):
        """
        Count C{n} more bytes held by C{holder}.  While this budget or a
        parent is over its limit, the holder holding the most there is
        reset.

        @return: False when C{holder} itself was reset (its bytes are then
            no longer counted and should be dropped).
        """
        budget = self
        while budget is not None:
            budget._held[holder] = budget._held.get(holder, 0) + n
            budget.used += n
            if budget.used > budget.peak:
                budget.peak = budget.used
            budget = budget.parent
        budget = self
        while budget is not None:
            while budget.used > budget.limit:
                victim = max(budget._held, key=budget._held.__getitem__)
                victim.overBudget(budget)
                if victim in budget._held:
                    raise RuntimeError(f"{victim!r} was reset over budget but still holds bytes")
                if victim is holder:
                    return False
            budget = budget.parent
        return True

    def release(self, holder, n):
        """
        C{holder} no longer holds C{n} of its bytes (at most what it holds).
        """
        budget = self
        while budget is not None:
            have = budget._held.get(holder)
            if have is None:
                return
            if have > n:
                budget._held[holder] = have - n
                budget.used -= n
            else:
                del budget._held[holder]
                budget.used -= have
            budget = budget.parent

    def drop(self, holder):
        """
        Forget C{holder}: it holds nothing any more.
        """
        budget = self
        while budget is not None:
            have = budget._held.pop(holder, None)
            if have is None:
                return
            budget.used -= have
            budget = budget.parent


class FreedMemory:
    """
    Gives memory back to the system once a connection that held much of
    it closed.  glibc keeps what the buffers of such a connection freed in
    its heap, where RSS still counts it; C{malloc_trim} returns it.  Done
    in a thread (it walks the heap), at most once per L{interval} seconds,
    and always after the last request.
    """

    interval = 1.0

    def __init__(self, reactor, trim=_mallocTrim):
        self.reactor = reactor
        self.trim = trim
        self._last = None
        self._call = None

    def request(self):
        if self.trim is None or self._call is not None:
            return
        now = self.reactor.seconds()
        delay = 0 if self._last is None else max(0, self._last + self.interval - now)
        self._call = self.reactor.callLater(delay, self._run)

    def _run(self):
        self._call = None
        self._last = self.reactor.seconds()
        self.reactor.callInThread(self.trim, 0)

    def stop(self):
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


class PeerBudgets:
    """
    One L{ReceiveBudget} per peer, shared by its connections (the parent
    of each connection's budget), forgotten once no connection uses it;
    their parent is the host's budget (C{total}), so many peers cannot
    pin more than that between them.

    @ivar trimAfter: a closed connection whose budget held this many bytes
        at once has the memory freed given back (L{FreedMemory}).
    """

    trimAfter = 4 * 1024 * 1024

    def __init__(self, limit, total, reactor):
        self.limit = limit
        self.total = ReceiveBudget(total, name="host")
        self.freed = FreedMemory(reactor)
        self._budgets = WeakValueDictionary()

    def closed(self, budget):
        """
        A connection with C{budget} closed.
        """
        if budget.peak >= self.trimAfter:
            self.freed.request()

    def __call__(self, peer):
        budget = self._budgets.get(peer)
        if budget is None:
            budget = self._budgets[peer] = ReceiveBudget(self.limit, self.total, name=f"peer {peer}")
        return budget


class InboundStreams:
    """
    Counts the open inbound streams of each peer and protocol.
    """

    def __init__(self):
        self._open = {}

    def count(self, peer, protocolID):
        return self._open.get((peer, protocolID), 0)

    def admit(self, peer, protocolID, limit, closed):
        """
        Count one more stream of C{protocolID} from C{peer} unless C{limit}
        are open; C{closed} is a Deferred that fires when it closes.

        @return: False when refused (the caller resets the stream).
        """
        key = (peer, protocolID)
        count = self._open.get(key, 0)
        if count >= limit:
            return False
        self._open[key] = count + 1
        closed.addBoth(self._closed, key)
        return True

    def _closed(self, result, key):
        count = self._open.pop(key) - 1
        if count:
            self._open[key] = count
        return result
