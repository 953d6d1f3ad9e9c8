"""
The node's block store as a service: opened when the node starts, closed
when it stops, and the one place the rest of the node gets blocks from.
"""

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from tau.oneshot import OneShot
from tau.store.blockstore import BlockStore


class StoreService(Service):
    """
    @ivar blocks: the L{BlockStore}, usable once L{whenReady} fired.
    @ivar fetcher: an optional C{async fetch(cid) -> bytes} used by L{get}
        for blocks the store lacks (Bitswap), or None.
    """

    log = Logger()

    def __init__(self, root, reactor):
        self.setName("store")
        self.reactor = reactor
        self.blocks = BlockStore(root, reactor)
        self.fetcher = None
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
        self._opening.addCallbacks(lambda _: self._ready.fire(self), self._ready.fire)

    def whenReady(self):
        return self._ready.whenFired()

    def stopService(self):
        super().stopService()
        if self._opening is None:
            return None
        opening, self._opening = self._opening, None
        return opening.addBoth(lambda _: Deferred.fromCoroutine(self.blocks.close()))

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
