"""
One replicated database on one node: the Merkle-CRDT logic, with its I/O
handed in (the view, the block store, a fetch function, a publish function
and a clock), so it runs the same against real nodes and in-memory fakes.

- A write is a signed delta block linking to the current heads; writes
  that arrive while one is being committed are committed together, as one
  delta (group commit; see L{tau.kvdb.writes}).
- Heads announced by others are merged by an incremental walk down the
  parent links that keeps its state in the view, so it resumes where it
  stopped (see L{tau.kvdb.walk}); the heads are announced with
  L{tau.kvdb.announce}.
- Per key the write with the largest C{(height, delta CID)} wins, deletes
  included (a deleted key keeps its tombstone).  This order does not depend
  on the order deltas arrive in, so replicas holding the same deltas hold
  the same state.
- Every C{snapshotEvery} deltas a snapshot is stored and announced; a
  replica with no state merges the latest snapshot instead of replaying the
  history, then checks it in the background (see L{tau.kvdb.snapshots}).
- A database with writers (a C{genesis}) takes deltas and snapshots from
  its writers only, each writer up to its quota (see L{tau.kvdb.writers}).
"""

import collections

from twisted.internet.defer import DeferredLock
from twisted.logger import Logger

from tau.kvdb import codec
from tau.kvdb.announce import Announcer
from tau.kvdb.snapshots import Snapshots, checkSnapshot
from tau.kvdb.walk import Walker
from tau.kvdb.writers import Authority, RefusalLog
from tau.kvdb.writes import GroupCommit, Stopped, checkWrite, pinRoot
from tau.oneshot import OneShot

__all__ = ["Replica", "Stopped", "checkSnapshot", "checkWrite", "pinRoot"]


class Replica(GroupCommit, Announcer, Walker, Snapshots):
    """
    @ivar heads: C{{cid: height}}, the current heads (kept in memory; the view
        holds them too).
    @ivar announceDelay: seconds between two announcements at least: the
        heads (and new blocks) of writes made meanwhile go out together.
    @ivar mergeDelay: seconds between the starts of two merge rounds at
        least: heads announced meanwhile are merged together (one store
        sync and one view transaction for all of them).
    @ivar authority: the L{Authority} of a database with writers, else None.
    """

    log = Logger()

    def __init__(self, name, view, blocks, fetch, publish, key, reactor, *, fetchTimeout=30.0, snapshotEvery=1000, notify=None, announceDelay=0.0, mergeDelay=0.0, clock=None, space=None, genesis=None, admission=None, refusals=None):
        self.name = name
        # where in the view its rows are: its name, or NAME/verify for the
        # replica that checks a snapshot
        self.space = space or name
        self.view = view
        self.blocks = blocks
        self._fetch = fetch
        self._publish = publish
        self.key = key
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.fetchTimeout = fetchTimeout
        self.snapshotEvery = snapshotEvery
        self.announceDelay = announceDelay
        self.mergeDelay = mergeDelay
        self._lastRound = None
        self._notify = notify
        self.heads = {}
        self.snapshotCID = None
        self.snapshotHeight = 0
        self._snapshotDeltas = 0
        self._deltaCount = 0
        self._lock = DeferredLock()
        self._queued = {}
        self._inline = {}
        self._inlineBytes = 0
        self._decoded = {}
        self._decodedBytes = 0
        self._snapshotMerging = None
        self._snapshotTask = None
        self._merging = False
        self._mergeTask = None
        self._resume = False
        self._nextRound = OneShot()
        self._bad = {}
        self._observers = []
        self._snapshotting = None
        self._pending = collections.deque()
        self._commitCall = None
        self._committer = None
        self._announceCall = None
        self._announceBlocks = []
        self._lastAnnounce = None
        self._stopped = False
        self._snapshotTrusted = True
        self._verifyCall = None
        self._verifyTask = None
        self._verifier = None
        self._verifyWake = None
        self._pinRoot = pinRoot(f"tau-kvdb:{name}")
        self.genesis = genesis
        #: this node's L{tau.cloud.Admission}, or None
        self.admission = admission
        self.refusals = refusals if refusals is not None else RefusalLog(self.clock)
        self.authority = None if genesis is None else Authority(name, genesis, self._fetchBlock, self._keepWriterSet)

    @property
    def quota(self):
        return None if self.authority is None else self.authority.quota

    async def _keepWriterSet(self, ws):
        await self._store({ws.cid: ws.data})
        if self.space == self.name:
            await self.view.addWriterSet(self.name, ws.cid)

    # lifecycle

    async def open(self):
        """
        Load the state from the view, and resume a walk a restart cut short.
        """
        if self.space == self.name:
            await self.view.addDatabase(self.name)
        if self.authority is not None:
            await self._store({self.genesis.cid: self.genesis.data})
            for c in await self.view.writerSets(self.name):
                try:
                    await self.authority.resolve(c)
                except Exception as e:
                    self.log.warn("kvdb {db}: writer set {cid} not loaded: {why}", db=self.name, cid=codec.cidString(c), why=str(e))
        self.heads = await self.view.heads(self.space)
        snap = await self.view.snapshot(self.space)
        if snap is not None:
            self.snapshotCID, self.snapshotHeight, self._snapshotDeltas = snap
        self._deltaCount = await self.view.deltaCount(self.space)
        if self.space == self.name:
            unverified = await self.view.unverified(self.name)
            if unverified is not None:
                self._snapshotTrusted = False
                self._scheduleVerify(unverified)
        wanted, fetched = await self.view.walkState(self.space)
        if wanted or fetched:
            self.log.info("kvdb {db}: resuming the walk ({w} deltas to fetch, {f} to apply)", db=self.name, w=wanted, f=fetched)
            # a new start: what failed before may be found now
            await self.view.retryNow(self.space)
            self._resume = True
            self._startMerging()

    async def stop(self):
        """
        Stop: the writes asked for so far are committed (new ones fail with
        L{Stopped}), merges and fetches in flight are cancelled and waited
        for (the walk resumes from the view after a restart), a snapshot
        being made ends.
        """
        self._stopped = True
        if self._announceCall is not None and self._announceCall.active():
            self._announceCall.cancel()
        self._announceCall = None
        if self._commitCall is not None and self._commitCall.active():
            self._commitCall.cancel()
            self._startCommitting()
        self._commitCall = None
        if self._verifyCall is not None and self._verifyCall.active():
            self._verifyCall.cancel()
        self._verifyCall = None
        if self._verifyTask is not None:
            self._verifyTask.cancel()
            try:
                await self._verifyTask
            except BaseException:
                pass
        for task in (self._mergeTask, self._snapshotTask):
            if task is not None:
                task.cancel()
        for task in (self._committer, self._mergeTask, self._snapshotTask, self._snapshotting):
            if task is not None:
                try:
                    await task
                except BaseException:
                    pass
        self._nextRound.fire(0)

    def onChange(self, observer):
        """
        Call C{observer(replica)} after every write or merge that changed
        something; returns a function that removes it.
        """
        self._observers.append(observer)
        return lambda: self._observers.remove(observer) if observer in self._observers else None

    def _changed(self):
        for observer in list(self._observers):
            try:
                observer(self)
            except Exception:
                self.log.failure("kvdb observer failed")

    # reads

    async def get(self, key):
        return await self.view.get(self.space, key)

    async def list(self, prefix=b"", limit=None, values=False):
        return await self.view.list(self.space, prefix, limit, values)
