"""
One replicated database on one node: the Merkle-CRDT logic, with its I/O
handed in (the view, the block store, a fetch function, a publish function
and a clock), so it runs the same against real nodes and in-memory fakes.

- A write is a signed delta block linking to the current heads, with height
  1 + the heads' largest height.  It is stored and pinned, applied to the
  view, and the new heads are announced.  Writes that arrive while one is
  being committed are committed together, as one delta (group commit: one
  signature, one fsync, one SQLite transaction, one announcement); each
  returns once that delta is durable.
- Heads announced by others are merged by a walk down the parent links that
  keeps its state in the view (L{tau.kvdb.view}): fetched deltas are
  verified (hash, canonical encoding, signature), stored and pinned at
  once and recorded as fetched; their unknown parents become wanted; and
  fetched deltas are applied, parents first and in bounded batches, as soon
  as their ancestry is complete (their height must be 1 + their parents'
  largest).  So a replica any distance behind catches up with bounded
  memory, and a walk cut short (by its per-round limit, a failed fetch or a
  restart) resumes where it stopped.
- Per key the write with the largest C{(height, delta CID)} wins, deletes
  included (a deleted key keeps its tombstone).  This order does not depend
  on the order deltas arrive in, so replicas holding the same deltas hold
  the same state.
- Every C{snapshotEvery} deltas a snapshot (the whole state, its heads and
  the CIDs it covers) is stored and announced with the heads; a replica with
  no state merges the latest snapshot instead of replaying the history, then
  checks it in the background against the deltas it covers (and rebuilds
  the state from them if it does not match; see L{Replica._verify}).
"""

import collections

from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred, DeferredLock, DeferredSemaphore, gatherResults
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from tau.bitswap import cids
from tau.kvdb import codec
from tau.oneshot import OneShot

#: Most deltas one merge round fetches; the walk then goes on in the next
#: round (its state is in the view), so announcements that came meanwhile
#: are taken in between.
MAX_WALK = 10_000
#: Deltas fetched at once by one step of the walk (so at most
#: WALK_STEP * codec.MAX_BLOCK bytes of fetched blocks are in memory).
WALK_STEP = 64
#: Fetches in flight per merge.
PARALLEL_FETCHES = 32
#: Most deltas, and bytes of deltas, applied in one transaction, and how
#: many are read back from the block store at once.
APPLY_BATCH = 512
APPLY_BYTES = 16 << 20
LOAD_STEP = 32
#: Bytes of fetched deltas kept decoded until they are applied (past it
#: they are read back from the block store).
DECODED_BYTES = 16 << 20
#: Blocks that came with announcements, kept until fetched (count, bytes).
MAX_INLINE_KEPT = 4096
MAX_INLINE_BYTES = 8 << 20
#: Heads waiting for the next merge round; announcements past this are
#: dropped (the heads come again with the next rebroadcast).
MAX_QUEUED = 4 * codec.MAX_PARENTS
#: Most snapshot pages (about 1 MiB each) merged: they are held in memory.
MAX_SNAPSHOT_PAGES = 256
#: Bad CIDs remembered (never fetched again).
MAX_BAD = 10_000
#: Seconds a block nobody could give us is not asked for again (a delta
#: linking to made-up parents would otherwise cost a fetch timeout at every
#: announcement), and after how many failed tries it is given up (with the
#: fetched deltas waiting for it; announcing them again starts over).
MISSING_RETRY = 60.0
MAX_TRIES = 10
#: Seconds after a snapshot was merged before its covered deltas are
#: fetched to check it (see L{Replica.mergeSnapshot}).
VERIFY_DELAY = 10.0
#: Bytes of deltas signed, or fetched deltas decoded and verified, in the
#: reactor thread (about 100 us each): a hop to a thread costs more under
#: load; larger ones go to the thread pool.
INLINE_CPU_BYTES = 16 << 10
#: Blocks stored at once from which a write batch is used (see L{Replica._store}).
BATCH_BLOCKS = 16
#: Entries and (about) bytes of the writes committed together as one delta.
GROUP_ENTRIES = codec.MAX_ENTRIES
GROUP_BYTES = 1 << 20


class Stopped(Exception):
    """
    The replica was stopped (its node is shutting down).
    """


def checkWrite(entries):
    """
    The entries of one write, checked: C{[(key, value or None)]}, 1 to
    MAX_ENTRIES of them, keys unique.

    @raise codec.InvalidBlock: otherwise.
    """
    entries = [(codec.checkKey(k), codec.checkValue(v)) for k, v in entries]
    if not 0 < len(entries) <= codec.MAX_ENTRIES:
        raise codec.InvalidBlock(f"a write has 1 to {codec.MAX_ENTRIES} entries")
    if len({k for k, _ in entries}) != len(entries):
        raise codec.InvalidBlock("a key appears twice in one write")
    return entries


def _size(entries):
    return sum(len(k) + len(v or b"") + 16 for k, v in entries)


def checkSnapshot(snap, entries, covered):
    """
    The consistency of a snapshot's pages with its root (see
    L{Replica.mergeSnapshot}).

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


def pinRoot(text):
    """
    A CID no block has, under which the blocks of one database (or one
    snapshot) are pinned: C{tau pin ls} lists direct pins only, so these do
    not show, and dropping the root unpins them all.
    """
    return cids.makeCID(text.encode("utf-8"))


class Replica:
    """
    @ivar heads: C{{cid: height}}, the current heads (kept in memory; the view
        holds them too).
    @ivar announceDelay: seconds between two announcements at least: the
        heads (and new blocks) of writes made meanwhile go out together.
    @ivar mergeDelay: seconds between the starts of two merge rounds at
        least: heads announced meanwhile are merged together (one store
        sync and one view transaction for all of them).
    """

    log = Logger()

    def __init__(self, name, view, blocks, fetch, publish, key, reactor, *, fetchTimeout=30.0, snapshotEvery=1000, notify=None, announceDelay=0.0, mergeDelay=0.0, clock=None, space=None):
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

    # lifecycle

    async def open(self):
        """
        Load the state from the view, and resume a walk a restart cut short.
        """
        if self.space == self.name:
            await self.view.addDatabase(self.name)
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

    # writes

    async def write(self, entries):
        """
        Write C{[(key, value or None)]}, and return once it is durable.

        Writes made while another is being committed are committed together
        as one delta (the later of two writes of one key wins); each caller
        gets that delta.

        @return: the L{codec.Delta} holding the write.
        @raise codec.InvalidBlock: when the write breaks a limit.
        @raise Stopped: when the replica stops first.
        """
        if self._stopped:
            raise Stopped(f"kvdb {self.name} is stopped")
        entries = checkWrite(entries)
        done = OneShot()
        self._pending.append((entries, done))
        if self._committer is None and self._commitCall is None:
            # one reactor turn later: the writes of this turn go together
            self._commitCall = self.reactor.callLater(0, self._startCommitting)
        return await done.whenFired()

    def _startCommitting(self):
        self._commitCall = None
        self._committer = Deferred.fromCoroutine(self._commitLoop())
        self._committer.addErrback(lambda f: self.log.failure("kvdb {db}: commit loop failed", f, db=self.name))

    async def _commitLoop(self):
        try:
            while self._pending:
                group, count, size = [], 0, 0
                while self._pending:
                    entries, done = self._pending[0]
                    n = _size(entries)
                    if group and (count + len(entries) > GROUP_ENTRIES or size + n > GROUP_BYTES):
                        break
                    group.append(self._pending.popleft())
                    count += len(entries)
                    size += n
                try:
                    # a group of several writes is at most GROUP_BYTES (half
                    # of MAX_BLOCK), so only a write alone can be too big
                    delta = await self._commit([entries for entries, _ in group])
                except Exception:
                    failure = Failure()
                    for _, done in group:
                        done.fire(failure)
                else:
                    for _, done in group:
                        done.fire(delta)
        finally:
            self._committer = None

    async def _commit(self, writes):
        merged = {}
        for entries in writes:
            merged.update(entries)
        async with self._lock:
            height = max(self.heads.values(), default=0) + 1
            # at most MAX_PARENTS heads can be linked (others may have made
            # more, each writing on its own): the highest, so the height is
            # still 1 + the largest; the rest are linked by the next writes
            parents = sorted(self.heads, key=lambda c: (self.heads[c], c), reverse=True)[: codec.MAX_PARENTS]
            entries = list(merged.items())
            if _size(entries) <= INLINE_CPU_BYTES:
                delta = codec.makeDelta(self.key, self.name, height, parents, entries)
            else:
                # signing and encoding up to MAX_BLOCK bytes: not in the reactor
                delta = await deferToThreadPool(
                    self.reactor, self.reactor.getThreadPool(), codec.makeDelta, self.key, self.name, height, parents, entries
                )
            await self._store({delta.cid: delta.data})
            applied, refused, _ = await self.view.apply(self.space, [delta])
            if refused:
                raise RuntimeError(f"our own write was refused: {refused[delta.cid]}")
            self._applied(applied)
        if self._notify is not None:
            self._notify([codec.cidObject(delta.cid)])
        self._changed()
        self.announce([delta.data])
        self._maybeSnapshot()
        return delta

    async def _store(self, blocks):
        """
        Store and pin C{{cid: bytes}} durably (pinned first, so GC cannot
        take them in between).  Many blocks (a walk catching up) go
        through a write batch: written at once, then synced together from
        several threads; a few (live replication) in one job, which leaves
        the thread pool to others.
        """
        items = [(codec.cidObject(c), data) for c, data in blocks.items()]
        # the pin is asked for first (the store's index thread takes it
        # before the block's row), the blocks are written meanwhile
        pinned = Deferred.fromCoroutine(self.blocks.pinMany([c for c, _ in items], self._pinRoot))
        try:
            if len(items) >= BATCH_BLOCKS and hasattr(self.blocks, "batch"):
                batch = self.blocks.batch()
                try:
                    await batch.putMany(items, verified=True)
                    await batch.commit()
                except BaseException:
                    await batch.abort()
                    raise
            else:
                await self.blocks.putMany(items, verified=True)
        finally:
            await pinned

    async def _unpin(self, cs):
        for c in cs:
            try:
                await self.blocks.unpin(codec.cidObject(c), self._pinRoot)
            except Exception as e:
                self.log.info("kvdb {db}: could not unpin {cid}: {why}", db=self.name, cid=codec.cidString(c), why=str(e))

    def _applied(self, deltas):
        for d in deltas:
            for p in d.parents:
                self.heads.pop(p, None)
            self.heads[d.cid] = d.height
        self._deltaCount += len(deltas)

    # announcing

    def headsMessage(self, blocks=()):
        # a snapshot merged from someone else is passed on once checked
        return codec.encodeHeads(list(self.heads), self.snapshotCID if self._snapshotTrusted else None, blocks)

    def announce(self, blocks=()):
        """
        Publish the heads (and the latest snapshot, and C{blocks}: new
        delta blocks sent along), at most once every C{announceDelay}
        seconds: the announcement after a quiet time goes out at once, the
        next ones wait and go out together.  Failures are logged.
        """
        if self._stopped:
            return
        for data in blocks:
            if len(data) <= codec.MAX_INLINE:
                self._announceBlocks.append(data)
        # the newest first, up to what one announcement carries
        kept, used = [], 0
        for data in reversed(self._announceBlocks):
            if used + len(data) > codec.MAX_INLINE:
                break
            kept.append(data)
            used += len(data)
        self._announceBlocks = kept[::-1]
        if not self.heads or self._announceCall is not None:
            return
        now = self.clock.seconds()
        wait = 0 if self._lastAnnounce is None else self._lastAnnounce + self.announceDelay - now
        if wait > 0:
            self._announceCall = self.clock.callLater(wait, self._announceNow)
        else:
            self._announceNow()

    def _announceNow(self):
        self._announceCall = None
        self._lastAnnounce = self.clock.seconds()
        blocks, self._announceBlocks = self._announceBlocks[::-1], []
        d = Deferred.fromCoroutine(self._announce(blocks))
        d.addErrback(lambda f: self.log.info("kvdb {db}: announcing heads failed: {why}", db=self.name, why=f.getErrorMessage()))

    async def _announce(self, blocks=()):
        await self._publish(self.headsMessage(blocks))

    # merging

    async def merge(self, heads, snapshot=None, source=None, blocks=None):
        """
        Merge the heads C{heads} (binary CIDs) someone announced, after
        the snapshot C{snapshot} when this replica has no state.

        @param blocks: C{{cid: bytes}} of blocks that came with the
            announcement (checked like fetched ones).
        @return: how many deltas the merge round that took these heads
            applied (a long walk goes on in later rounds).
        """
        if self._stopped:
            return 0
        if self._verifyWake is not None:
            self._verifyWake.fire(None)
        for c, data in (blocks or {}).items():
            self._keepInline(c, data)
        if self._snapshotMerging is not None:
            # one snapshot at a time; its heads may be these
            await self._snapshotMerging.whenFired()
        elif snapshot is not None and snapshot != self.snapshotCID and self._wantsSnapshot(heads):
            self._snapshotMerging = done = OneShot()
            self._snapshotTask = task = Deferred.fromCoroutine(self.mergeSnapshot(snapshot, onlyIfEmpty=True))
            try:
                await task
            except Exception as e:
                if not self._stopped:
                    self.log.info("kvdb {db}: snapshot {cid} from {peer} not merged: {why}", db=self.name, cid=codec.cidString(snapshot), peer=str(source), why=str(e) or e.__class__.__name__)
            finally:
                self._snapshotMerging = self._snapshotTask = None
                done.fire(None)
        if self._stopped:
            return 0
        new = [h for h in heads if h not in self.heads and h not in self._bad]
        if not new:
            return 0
        waiting = any(h in self._queued for h in new)
        new = [h for h in new if h not in self._queued]
        room = max(MAX_QUEUED - len(self._queued), 0)
        if len(new) > room:
            self.log.info(
                "kvdb {db}: {n} heads from {peer} left for later, {queued} already wait",
                db=self.name, n=len(new) - room, peer=str(source), queued=len(self._queued),
            )
            new = new[:room]
        if not new and not waiting:
            return 0
        for head in new:
            self._queued[head] = source
        round = self._nextRound
        if not self._merging:
            self._startMerging()
        return await round.whenFired()

    async def idle(self):
        """
        Wait until no merge round runs (a walk with nothing left to fetch
        now, or stopped).
        """
        while self._mergeTask is not None:
            try:
                await self._mergeTask
            except BaseException:
                pass

    def _startMerging(self):
        self._merging = True
        self._mergeTask = task = Deferred.fromCoroutine(self._mergeLoop())

        def ended(result):
            if self._mergeTask is task:
                self._mergeTask = None
            if isinstance(result, Failure) and not result.check(CancelledError):
                self.log.failure("kvdb {db}: merge loop failed", result, db=self.name)

        task.addBoth(ended)

    async def _mergeLoop(self):
        """
        Merge the queued heads, one round at a time: heads announced while a
        round runs are merged together in the next, so a burst of
        announcements costs a few walks, not one walk each; a walk longer
        than a round goes on in the next.
        """
        self._merging = True
        round = None
        try:
            while (self._queued or self._resume) and not self._stopped:
                if self._lastRound is not None and self.mergeDelay:
                    wait = self._lastRound + self.mergeDelay - self.clock.seconds()
                    if wait > 0:
                        await deferLater(self.clock, wait, lambda: None)
                self._lastRound = self.clock.seconds()
                queued, self._queued = self._queued, {}
                self._resume = False
                round, self._nextRound = self._nextRound, OneShot()
                try:
                    applied = await self._merge(list(queued), next(iter(queued.values()), None))
                except CancelledError:
                    raise
                except Exception:
                    if self._stopped:
                        break
                    self.log.failure("kvdb {db}: merge failed", db=self.name)
                    applied = 0
                round.fire(applied)
        finally:
            self._merging = False
            if round is not None:
                round.fire(0)
            if self._stopped:
                self._nextRound.fire(0)

    def _keepInline(self, c, data):
        if c in self._inline or len(data) > MAX_INLINE_BYTES:
            return
        while self._inline and (len(self._inline) >= MAX_INLINE_KEPT or self._inlineBytes + len(data) > MAX_INLINE_BYTES):
            self._inlineBytes -= len(self._inline.pop(next(iter(self._inline))))
        self._inline[c] = data
        self._inlineBytes += len(data)

    def _takeInline(self, c):
        data = self._inline.pop(c, None)
        if data is not None:
            self._inlineBytes -= len(data)
        return data

    def _keepDecoded(self, d):
        if self._decodedBytes + len(d.data) <= DECODED_BYTES and d.cid not in self._decoded:
            self._decoded[d.cid] = d
            self._decodedBytes += len(d.data)

    def _takeDecoded(self, c):
        d = self._decoded.pop(c, None)
        if d is not None:
            self._decodedBytes -= len(d.data)
        return d

    def _wantsSnapshot(self, heads):
        """
        Only a replica with no state yet starts from a snapshot; one with
        state fetches the deltas it misses (merging a snapshot would be as
        correct, since it is last write wins per key, but costs the whole
        state).
        """
        return not self.heads

    async def _fetchBlock(self, c):
        data = self._takeInline(c)
        if data is not None:
            return data
        data = await self.blocks.get(codec.cidObject(c))
        if data is None:
            data = await self._fetch(codec.cidObject(c), self.fetchTimeout)
        return data

    async def _fetchAll(self, wanted):
        """
        C{({cid: bytes}, [cid])}: those of C{wanted} fetched, and those
        that could not be.
        """
        out, failed = {}, []
        limit = DeferredSemaphore(PARALLEL_FETCHES)

        async def one(c):
            try:
                data = await self._fetchBlock(c)
            except CancelledError:
                raise
            except Exception as e:
                self.log.info("kvdb {db}: delta {cid} not fetched: {why}", db=self.name, cid=codec.cidString(c), why=str(e) or e.__class__.__name__)
                failed.append(c)
            else:
                if data is None:
                    failed.append(c)
                else:
                    out[c] = data

        await gatherResults([limit.run(lambda c=c: Deferred.fromCoroutine(one(c))) for c in wanted], consumeErrors=True)
        return out, failed

    async def retryMissing(self, cids):
        """
        Fetch what could not be fetched lately at once again (a peer
        pushing C{cids} says it has them and their ancestors now).
        """
        if not self._stopped:
            await self.view.retryNow(self.space)

    async def _decode(self, blocks):
        if sum(map(len, blocks.values())) <= INLINE_CPU_BYTES:
            return self._decodeMany(blocks)
        return await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._decodeMany, blocks)

    def _decodeMany(self, blocks):
        """
        Decode and verify fetched deltas (in a thread).
        """
        good, bad = {}, {}
        for c, data in blocks.items():
            try:
                good[c] = codec.decodeDelta(c, data, self.name)
            except codec.InvalidBlock as e:
                bad[c] = str(e)
        return good, bad

    def _markBad(self, c, why, source):
        self.log.warn("kvdb {db}: rejected delta {cid} (announced by {peer}): {why}", db=self.name, cid=codec.cidString(c), peer=str(source), why=why)
        if len(self._bad) >= MAX_BAD:
            self._bad.pop(next(iter(self._bad)))
        self._bad[c] = why

    async def _merge(self, heads, source):
        """
        One round of the walk: the new heads become wanted; then, step by
        step, wanted deltas are fetched, verified, stored and recorded, and
        the fetched ones whose ancestry is complete are applied, until
        nothing is left to fetch now or the round fetched MAX_WALK deltas.

        @return: how many deltas were applied.
        """
        applied = fetched = 0
        ready = True
        while not self._stopped:
            if ready:
                applied += await self._applyReady(source)
            if fetched >= MAX_WALK:
                self._resume = True
                break
            wanted = await self.view.want(self.space, heads, self.clock.seconds(), WALK_STEP)
            heads = ()
            bad = [c for c in wanted if c in self._bad]
            if bad:
                await self._unpin(await self.view.drop(self.space, bad))
            wanted = [c for c in wanted if c not in self._bad]
            if not wanted:
                if bad:
                    continue
                break
            blocks, failed = await self._fetchAll(wanted)
            if failed:
                dropped = await self.view.fetchFailed(self.space, failed, self.clock.seconds() + MISSING_RETRY, MAX_TRIES)
                await self._unpin(dropped)
            good, bad = await self._decode(blocks)
            # parents that came with announcements join this step (a chain
            # of new deltas is taken in one step, not one delta per step)
            new = list(good.values())
            while new:
                parents = {p for d in new for p in d.parents if p in self._inline and p not in good and p not in bad and p not in self._bad}
                more, moreBad = await self._decode({p: self._takeInline(p) for p in parents}) if parents else ({}, {})
                good.update(more)
                bad.update(moreBad)
                new = list(more.values())
            ready = False
            if bad:
                for c, why in bad.items():
                    self._markBad(c, why, source)
                await self._unpin(await self.view.drop(self.space, list(bad)))
            if good:
                await self._store({c: d.data for c, d in good.items()})
                ready = await self.view.recordFetched(self.space, [(d.cid, d.height, d.parents) for d in good.values()]) > 0
                for d in good.values():
                    self._keepDecoded(d)
                fetched += len(good)
        return applied

    async def _applyReady(self, source):
        """
        Apply the fetched deltas whose ancestry is complete, in batches of
        at most APPLY_BATCH deltas / APPLY_BYTES bytes (those no longer in
        memory are read back from the block store, LOAD_STEP at a time).
        """
        total = 0
        more = True
        while more and not self._stopped:
            ready, more = await self.view.ready(self.space, APPLY_BATCH)
            if not ready:
                break
            # a prefix of the (parents first) list: nothing in it depends on
            # what is left out
            batch, used, full = [], 0, False
            for i in range(0, len(ready), LOAD_STEP):
                chunk = [c for c, _ in ready[i : i + LOAD_STEP]]
                loaded = await self._loadStored([c for c in chunk if c not in self._decoded])
                for c in chunk:
                    d = self._takeDecoded(c) or loaded.pop(c, None)
                    if d is None or (batch and used + len(d.data) > APPLY_BYTES):
                        full = True
                        if d is not None:
                            self._keepDecoded(d)
                        break
                    batch.append(d)
                    used += len(d.data)
                for d in loaded.values():
                    self._keepDecoded(d)
                if full:
                    more = True
                    break
            if not batch:
                break
            async with self._lock:
                applied, refused, dropped = await self.view.apply(self.space, batch)
                self._applied(applied)
            for c, why in refused.items():
                self._markBad(c, why, source)
            if refused or dropped:
                await self._unpin(list(refused) + dropped)
            if applied:
                total += len(applied)
                if self._notify is not None:
                    self._notify([codec.cidObject(d.cid) for d in applied])
                self._changed()
                self._maybeSnapshot()
        return total

    async def _loadStored(self, cs):
        """
        C{{cid: Delta}} of fetched deltas read back from the block store;
        those gone from it are wanted again.
        """
        if not cs:
            return {}
        datas = await gatherResults([Deferred.fromCoroutine(self._readStored(c)) for c in cs], consumeErrors=True)
        stored = {c: data for c, data in zip(cs, datas) if data is not None}
        decoded, _ = await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._decodeStored, stored)
        gone = [c for c in cs if c not in decoded]
        if gone:
            self.log.warn("kvdb {db}: {n} fetched deltas are no longer in the block store: fetched again", db=self.name, n=len(gone))
            await self.view.unfetch(self.space, gone)
        return decoded

    async def _readStored(self, c):
        try:
            return await self.blocks.get(codec.cidObject(c))
        except CancelledError:
            raise
        except Exception as e:
            self.log.info("kvdb {db}: fetched delta {cid} unreadable: {why}", db=self.name, cid=codec.cidString(c), why=str(e))
            return None

    def _decodeStored(self, blocks):
        """
        Decode stored deltas (in a thread): their signature was checked
        before they were stored.
        """
        good, bad = {}, {}
        for c, data in blocks.items():
            try:
                good[c] = codec.decodeDelta(c, data, self.name, verify=False)
            except codec.InvalidBlock as e:
                bad[c] = str(e)
        return good, bad

    # snapshots

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

        @return: its root CID (binary).
        """
        heads, entries, covered, count = await self.view.state(self.space)
        if not heads:
            return None
        root, blocks = await deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), codec.makeSnapshot, self.key, self.name, heads, entries, covered
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

        checker = self._verifier = Replica(
            self.name, self.view, self.blocks, self._fetch, noPublish, self.key, self.reactor,
            fetchTimeout=self.fetchTimeout, snapshotEvery=0, clock=self.clock, space=space,
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
                wake.addTimeout(MISSING_RETRY, self.clock).addErrback(lambda f: f.trap(defer.TimeoutError) and None)
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
