"""
Snapshots of a L{tau.kvdb.replica.Replica}: every C{snapshotEvery} deltas a
snapshot (the whole state, its heads and the CIDs it covers) is stored and
announced with the heads; a replica with no state merges the latest
snapshot instead of replaying the history, then checks it in the background
against the deltas it covers (and rebuilds the state from them if it does
not match; see L{Snapshots._verify}).
"""

from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from tau.kvdb import codec, walk
from tau.kvdb.writers import NotAWriter
from tau.kvdb.writes import pinRoot
from tau.oneshot import OneShot

#: Most snapshot pages (about 1 MiB each) merged: they are held in memory.
MAX_SNAPSHOT_PAGES = 256
#: Seconds after a snapshot was merged before its covered deltas are
#: fetched to check it (see L{Snapshots.mergeSnapshot}).
VERIFY_DELAY = 10.0


def checkSnapshot(snap, entries, covered):
    """
    The consistency of a snapshot's pages with its root (see
    L{Snapshots.mergeSnapshot}).

    @raise codec.InvalidBlock: when they disagree.
    """
    heights = {}
    for c, h in covered:
        if heights.setdefault(c, h) != h:
            raise codec.InvalidBlock("a delta covered twice at different heights")
        if h > snap.height:
            raise codec.InvalidBlock(f"a covered delta at height {h}, above the snapshot's {snap.height}")
    if len(set(heights.values())) != snap.height:
        raise codec.InvalidBlock(f"the covered deltas do not reach every height up to {snap.height}")
    for c, h in snap.heads:
        if heights.get(c) != h:
            raise codec.InvalidBlock("a snapshot head is not a covered delta at its height")
    previous = None
    for k, _, h, c in entries:
        if previous is not None and k <= previous:
            raise codec.InvalidBlock("snapshot entries are not sorted and unique by key")
        previous = k
        if heights.get(c) != h:
            raise codec.InvalidBlock("a snapshot entry is not the write of a covered delta at its height")


class Snapshots:
    """
    Making, merging and checking the snapshots of a
    L{tau.kvdb.replica.Replica} (mixed into it: the state is the
    replica's).
    """

    def _maybeSnapshot(self):
        if self._stopped:
            return
        if self.snapshotEvery and self._snapshotting is None and self._deltaCount - self._snapshotDeltas >= self.snapshotEvery:
            self._snapshotting = Deferred.fromCoroutine(self.snapshot())
            self._snapshotting.addErrback(lambda f: self.log.failure("kvdb {db}: snapshot failed", f, db=self.name))
            self._snapshotting.addBoth(lambda _: setattr(self, "_snapshotting", None))

    async def snapshot(self):
        """
        Store a snapshot of the current state, pin it (unpinning the one
        before), and announce it.

        @return: its root CID (binary), or None (no state yet, or this node
            is not a writer: its snapshots would be refused).
        """
        version = admission = None
        if self.authority is not None:
            try:
                version, admission = self.authority.signingFields(self.key.peerID(), self.admission)
            except NotAWriter:
                return None
        heads, entries, covered, count = await self.view.state(self.space)
        if not heads:
            return None
        root, blocks = await deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), codec.makeSnapshot, self.key, self.name, heads, entries, covered, version, admission
        )
        await self._pinSnapshot(root, blocks)
        previous = self.snapshotCID
        height = max(h for _, h in heads)
        await self.view.recordSnapshot(self.space, root, height, count)
        self.snapshotCID, self.snapshotHeight, self._snapshotDeltas = root, height, count
        if previous is not None and previous != root:
            await self.blocks.unpinRoot(pinRoot(f"tau-kvdb-snapshot:{codec.cidString(previous)}"))
        self.log.info("kvdb {db}: snapshot {cid} of {n} keys, {d} deltas", db=self.name, cid=codec.cidString(root), n=len(entries), d=count)
        self.announce()
        return root

    async def _pinSnapshot(self, root, blocks):
        snapRoot = pinRoot(f"tau-kvdb-snapshot:{codec.cidString(root)}")
        await self.blocks.pinMany([codec.cidObject(c) for c, _ in blocks], snapRoot)
        await self.blocks.putMany([(codec.cidObject(c), data) for c, data in blocks], verified=True)
        if self._notify is not None:
            self._notify([codec.cidObject(c) for c, _ in blocks])

    async def mergeSnapshot(self, root, onlyIfEmpty=False):
        """
        Fetch, verify and merge the snapshot C{root}.

        A snapshot is first its signer's word for the state and the deltas
        it covers, so it is checked at once for what can be checked without
        them: every entry is the write of a covered delta at that delta's
        height, the heads are covered deltas, and the covered heights fill
        every level up to the snapshot's height (a chain of height H has a
        delta at each level), so a snapshot cannot claim heights above what
        it covers.  Then, VERIFY_DELAY seconds later and in the background,
        the deltas it covers are fetched and applied apart (under
        C{NAME/verify} in the view) and the result compared with it: a
        snapshot that does not match is dropped, and the state rebuilt from
        the deltas (see L{_verify}).  Until then it is not passed on.

        @param onlyIfEmpty: merge only into a replica with no state yet
            (checked again once the view is ours).
        @return: how many covered deltas were new here.
        """
        pool = self.reactor.getThreadPool()
        data = await self._fetchBlock(root)
        snap = await deferToThreadPool(self.reactor, pool, codec.decodeSnapshot, root, data, self.name)
        if self.authority is not None:
            why = await self.authority.check(snap)
            if why is not None:
                self._bad[root] = why
                self.refusals.refused(self.name, snap.writer, "a snapshot", why)
                raise codec.InvalidBlock(why)
        if len(snap.state) + len(snap.covered) > MAX_SNAPSHOT_PAGES:
            raise codec.InvalidBlock(f"snapshot of {len(snap.state) + len(snap.covered)} pages, limit {MAX_SNAPSHOT_PAGES}")
        pages, _ = await self._fetchAll(snap.state + snap.covered)
        if len(pages) != len(snap.state) + len(snap.covered):
            raise codec.InvalidBlock("snapshot pages missing")

        def decodePages():
            entries = [e for c in snap.state for e in codec.decodeStatePage(c, pages[c])]
            covered = [e for c in snap.covered for e in codec.decodeCoveredPage(c, pages[c])]
            if len(entries) != snap.count:
                raise codec.InvalidBlock("snapshot entry count does not match")
            checkSnapshot(snap, entries, covered)
            return entries, covered

        entries, covered = await deferToThreadPool(self.reactor, pool, decodePages)
        async with self._lock:
            if onlyIfEmpty and self.heads:
                return 0
            new = await self.view.mergeSnapshot(self.space, snap.heads, entries, covered)
            await self._pinSnapshot(root, [(root, data)] + [(c, pages[c]) for c in snap.state + snap.covered])
            self.heads = await self.view.heads(self.space)
            self._deltaCount = await self.view.deltaCount(self.space)
            await self.view.recordSnapshot(self.space, root, snap.height, self._deltaCount)
            await self.view.markUnverified(self.name, root)
            self._snapshotTrusted = False
            previous = self.snapshotCID
            self.snapshotCID, self.snapshotHeight, self._snapshotDeltas = root, snap.height, self._deltaCount
            self._decoded.clear()
            self._decodedBytes = 0
        if previous is not None and previous != root:
            await self.blocks.unpinRoot(pinRoot(f"tau-kvdb-snapshot:{codec.cidString(previous)}"))
        self.log.info("kvdb {db}: merged snapshot {cid} ({n} keys, {d} deltas new here)", db=self.name, cid=codec.cidString(root), n=len(entries), d=new)
        self._changed()
        self._scheduleVerify(root)
        return new

    # checking a merged snapshot

    def _scheduleVerify(self, root):
        if self._stopped or self.space != self.name:
            return
        if self._verifyCall is not None and self._verifyCall.active():
            self._verifyCall.cancel()
        self._verifyCall = self.clock.callLater(VERIFY_DELAY, self._startVerify, root)

    def _startVerify(self, root):
        self._verifyCall = None
        if self._stopped or self._verifyTask is not None:
            return
        self._verifyTask = task = Deferred.fromCoroutine(self._verify(root))

        def ended(result):
            if self._verifyTask is task:
                self._verifyTask = None
            if isinstance(result, Failure) and not result.check(CancelledError):
                self.log.failure("kvdb {db}: checking snapshot {cid} failed", result, db=self.name, cid=codec.cidString(root))

        task.addBoth(ended)

    async def _verify(self, root):
        """
        Check the merged snapshot C{root} against the deltas it covers: a
        second replica of this database, under C{NAME/verify} in the view,
        walks the history below the snapshot's heads (fetching, verifying,
        applying like any walk; it resumes after a restart) and the state
        and deltas it ends with are compared with the snapshot's pages.

        - They match: the snapshot is trusted (announced from now on) and
          the second replica's rows are dropped.
        - They do not (or a head is refused): the snapshot was forged; the
          state, deltas and heads become those derived from the deltas, the
          deltas merged since are merged again (their blocks are here), and
          the snapshot is dropped.
        - Part of the history cannot be fetched: the check waits (for the
          next announcement, or MISSING_RETRY seconds) and goes on.

        @return: True when the snapshot matched, False when it was dropped.
        """
        space = self.name + "/verify"

        async def noPublish(data):
            return None

        # a replica of the same class (this is mixed into Replica)
        checker = self._verifier = type(self)(
            self.name, self.view, self.blocks, self._fetch, noPublish, self.key, self.reactor,
            fetchTimeout=self.fetchTimeout, snapshotEvery=0, clock=self.clock, space=space,
            genesis=self.genesis, admission=self.admission, refusals=self.refusals,
        )
        try:
            await checker.open()
            snap = await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), codec.decodeSnapshot, root, await self._fetchBlock(root), self.name)
            heads = [c for c, _ in snap.heads]
            self.log.info("kvdb {db}: checking snapshot {cid} against the deltas it covers", db=self.name, cid=codec.cidString(root))
            while True:
                self._verifyWake = OneShot()
                await checker.merge(heads, source="snapshot check")
                await checker.idle()
                if any(c in checker._bad for c in heads):
                    matches = False
                    break
                if len(await self.view.known(space, heads)) == len(heads):
                    matches = await self._compareSnapshot(snap, space)
                    break
                # history missing for now: at the next announcement, or later
                wake = self._verifyWake.whenFired()
                wake.addTimeout(walk.MISSING_RETRY, self.clock).addErrback(lambda f: f.trap(defer.TimeoutError) and None)
                await wake
        finally:
            self._verifyWake = None
            self._verifier = None
            await checker.stop()
        if matches:
            await self.view.verified(self.name, space)
            self._snapshotTrusted = True
            self.log.info("kvdb {db}: snapshot {cid} matches the deltas it covers", db=self.name, cid=codec.cidString(root))
            return True
        self.log.warn(
            "kvdb {db}: snapshot {cid} signed by {writer} does not match the deltas it covers: dropped, state rebuilt from the deltas",
            db=self.name, cid=codec.cidString(root), writer=str(snap.writer),
        )
        async with self._lock:
            ours = list(self.heads)
            await self.view.adopt(self.name, space)
            self.heads = await self.view.heads(self.name)
            self._deltaCount = await self.view.deltaCount(self.name)
            if self.snapshotCID == root:
                self.snapshotCID, self.snapshotHeight, self._snapshotDeltas = None, 0, 0
            self._snapshotTrusted = True
            self._decoded.clear()
            self._decodedBytes = 0
        self._bad[root] = "a snapshot that does not match its deltas"
        await self.blocks.unpinRoot(pinRoot(f"tau-kvdb-snapshot:{codec.cidString(root)}"))
        self._changed()
        # what was merged or written on top of it: the blocks are here
        Deferred.fromCoroutine(self.merge(ours, source="rebuild")).addErrback(lambda f: f.trap(CancelledError) and None)
        return False

    async def _compareSnapshot(self, snap, space):
        pool = self.reactor.getThreadPool()
        entries = covered = differences = 0
        for c in snap.state:
            page = await deferToThreadPool(self.reactor, pool, codec.decodeStatePage, c, await self._fetchBlock(c))
            entries += len(page)
            differences += await self.view.differences(space, entries=page)
        for c in snap.covered:
            page = await deferToThreadPool(self.reactor, pool, codec.decodeCoveredPage, c, await self._fetchBlock(c))
            covered += len(page)
            differences += await self.view.differences(space, covered=page)
        return differences == 0 and (entries, covered) == await self.view.counts(space)
