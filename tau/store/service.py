"""
The node's block store as a service: opened when the node starts, closed
when it stops, and the one place the rest of the node gets blocks from.
With a budget it collects garbage by itself (L{AutoGC}).
"""

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from tau.oneshot import OneShot
from tau.store.blockstore import BlockStore


class AutoGC:
    """
    Keeps a block store under a size budget: every C{interval} seconds, and
    soon after every C{budget / 16} bytes written, unpinned blocks are
    removed, least recently used first, until the store holds at most
    C{budget} bytes (L{BlockStore.gc}).  One collection runs at a time.

    @param blocks: the store (C{async gc(budget)}).
    @param clock: an C{IReactorTime}.
    """

    log = Logger()

    def __init__(self, blocks, clock, budget, interval):
        self.blocks = blocks
        self.clock = clock
        self.budget = budget
        self.interval = interval
        self.collections = 0
        self._written = 0
        self._timer = None
        self._soon = None
        self._running = None

    def start(self):
        """Check now (soon) and then every C{interval} seconds."""
        self._schedule(0)

    def stop(self):
        """
        No more collections; the returned Deferred fires once one that is
        running is over.
        """
        for call in (self._timer, self._soon):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._soon = None
        self.budget = None
        running = self._running
        if running is None:
            return succeed(None)
        d = Deferred()
        running.addBoth(lambda r: (d.callback(None), r)[1])
        return d

    def wrote(self, n):
        """C{n} more bytes were stored."""
        if self.budget is None:
            return
        self._written += n
        if self._written >= max(1, self.budget // 16) and self._soon is None:
            self._written = 0
            self._soon = self.clock.callLater(0, self._fromWrite)

    def _fromWrite(self):
        self._soon = None
        self.collect()

    def _schedule(self, delay):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.clock.callLater(delay, self._tick)

    def _tick(self):
        self._timer = None
        d = self.collect()
        d.addBoth(lambda r: (self.budget is not None and self._schedule(self.interval), r)[1])

    def collect(self):
        """
        Collect now (or join the collection under way).

        @return: a Deferred firing with C{(blocks, bytes)} removed.
        """
        if self._running is None:
            if self.budget is None:
                return succeed((0, 0))
            self.collections += 1
            running = Deferred.fromCoroutine(self._collect())
            if running.called:
                return running
            self._running = running
            running.addBoth(self._collected)
        d = Deferred()
        self._running.addBoth(lambda r: (d.callback(r), r)[1])
        return d

    def _collected(self, result):
        self._running = None
        return result

    async def _collect(self):
        try:
            return await self.blocks.gc(self.budget)
        except Exception:
            self.log.failure("automatic GC of the block store failed")
            return (0, 0)


class StoreService(Service):
    """
    @ivar blocks: the L{BlockStore}, usable once L{whenReady} fired.
    @ivar fetcher: an optional C{async fetch(cid) -> bytes} used by L{get}
        for blocks the store lacks (Bitswap), or None.
    @ivar autoGC: the L{AutoGC} when a budget is set, else None.
    """

    log = Logger()

    def __init__(self, root, reactor, budget=None, gcInterval=3600.0):
        self.setName("store")
        self.reactor = reactor
        self.blocks = BlockStore(root, reactor)
        self.fetcher = None
        self.budget = budget
        self.gcInterval = gcInterval
        self.autoGC = None
        self._opening = None
        self._ready = OneShot()

    def startService(self):
        super().startService()
        if self._ready.fired:
            self._ready = OneShot()
        # Once the reactor runs: opening starts threads, and a node that
        # fails to start before that (twistd, a port in use) must be able to
        # exit without waiting for them.
        self.reactor.callWhenRunning(self._open)

    def _open(self):
        if not self.running:
            return
        self._opening = Deferred.fromCoroutine(self.blocks.open())
        self._opening.addCallback(self._opened)
        self._opening.addCallbacks(lambda _: self._ready.fire(self), self._ready.fire)

    def _opened(self, _):
        if self.budget is not None and self.running:
            self.autoGC = AutoGC(self.blocks, self.reactor, self.budget, self.gcInterval)
            self.blocks.onWrite = self.autoGC.wrote
            self.autoGC.start()

    def whenReady(self):
        return self._ready.whenFired()

    def stopService(self):
        super().stopService()
        if self._opening is None:
            return None
        opening, self._opening = self._opening, None

        def close(_):
            gc, self.autoGC = self.autoGC, None
            self.blocks.onWrite = None
            stopped = gc.stop() if gc is not None else succeed(None)
            return stopped.addCallback(lambda _: Deferred.fromCoroutine(self.blocks.close()))
        return opening.addBoth(close)

    async def get(self, cid):
        """
        The block C{cid}: from the store, else fetched (and stored) when a
        fetcher is set; None when it is nowhere to be had.
        """
        data = await self.blocks.get(cid)
        if data is None and self.fetcher is not None:
            data = await self.fetcher(cid)
        return data


class NetworkBlocks:
    """
    A block source for the UnixFS exporter: the store, then the network.
    """

    def __init__(self, service):
        self._service = service

    async def get(self, cid):
        return await self._service.get(cid)

    def __getattr__(self, name):
        return getattr(self._service.blocks, name)
