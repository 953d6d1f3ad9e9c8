"""
One replicated database on one node: the Merkle-CRDT logic, with its I/O
handed in (the view, the block store, a fetch function, a publish function
and a clock), so it runs the same against real nodes and in-memory fakes.

- A write is a signed delta block linking to the current heads, with height
  1 + the heads' largest height.  It is stored and pinned, applied to the
  view, and the new heads are announced.
- Heads announced by others are merged: the missing deltas are fetched
  (walking parent links down to known deltas), verified (hash, canonical
  encoding, signature, height = 1 + the parents' largest), and applied
  parents first.
- Per key the write with the largest C{(height, delta CID)} wins, deletes
  included (a deleted key keeps its tombstone).  This order does not depend
  on the order deltas arrive in, so replicas holding the same deltas hold
  the same state.
- Every C{snapshotEvery} deltas a snapshot (the whole state, its heads and
  the CIDs it covers) is stored and announced with the heads; a replica with
  no state, or far behind, merges the latest snapshot instead of replaying
  the history.
"""

from twisted.internet.defer import Deferred, DeferredLock, DeferredSemaphore, gatherResults
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from tau.bitswap import cids
from tau.kvdb import codec
from tau.oneshot import OneShot

#: Most deltas one merge fetches (a longer history is fetched over several
#: announcements, oldest parts first once snapshots exist).
MAX_WALK = 200_000
#: Most bytes of deltas one merge holds in memory (the walk keeps every
#: delta it fetched until it reaches known ones); past it the walk stops
#: like past MAX_WALK.
MAX_WALK_BYTES = 512 << 20
#: Fetches in flight per merge.
PARALLEL_FETCHES = 32
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
#: announcement), and how many such blocks are remembered.
MISSING_RETRY = 60.0
MAX_MISSING = 10_000


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
    """

    log = Logger()

    def __init__(self, name, view, blocks, fetch, publish, key, reactor, *, fetchTimeout=30.0, snapshotEvery=1000, notify=None):
        self.name = name
        self.view = view
        self.blocks = blocks
        self._fetch = fetch
        self._publish = publish
        self.key = key
        self.reactor = reactor
        self.fetchTimeout = fetchTimeout
        self.snapshotEvery = snapshotEvery
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
        self._snapshotMerging = None
        self._merging = False
        self._nextRound = OneShot()
        self._bad = {}
        self._missing = {}
        self._observers = []
        self._snapshotting = None
        self._pinRoot = pinRoot(f"tau-kvdb:{name}")

    # lifecycle

    async def open(self):
        await self.view.addDatabase(self.name)
        self.heads = await self.view.heads(self.name)
        snap = await self.view.snapshot(self.name)
        if snap is not None:
            self.snapshotCID, self.snapshotHeight, self._snapshotDeltas = snap
        self._deltaCount = await self.view.deltaCount(self.name)

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
        return await self.view.get(self.name, key)

    async def list(self, prefix=b"", limit=None, values=False):
        return await self.view.list(self.name, prefix, limit, values)

    # writes

    async def write(self, entries):
        """
        Write C{[(key, value or None)]} as one delta.

        @return: the L{codec.Delta}.
        @raise codec.InvalidBlock: when the write breaks a limit.
        """
        async with self._lock:
            height = max(self.heads.values(), default=0) + 1
            # at most MAX_PARENTS heads can be linked (others may have made
            # more, each writing on its own): the highest, so the height is
            # still 1 + the largest; the rest are linked by the next writes
            parents = sorted(self.heads, key=lambda c: (self.heads[c], c), reverse=True)[: codec.MAX_PARENTS]
            # signing and encoding up to MAX_BLOCK bytes: not in the reactor
            delta = await deferToThreadPool(
                self.reactor, self.reactor.getThreadPool(), codec.makeDelta, self.key, self.name, height, parents, entries
            )
            await self._store([(delta.cid, delta.data)])
            await self.view.apply(self.name, [delta])
            self._applied([delta])
        if self._notify is not None:
            self._notify([codec.cidObject(delta.cid)])
        self._changed()
        self.announce([delta.data] if len(delta.data) <= codec.MAX_INLINE else [])
        self._maybeSnapshot()
        return delta

    async def _store(self, blocks):
        await self.blocks.putMany([(codec.cidObject(c), data) for c, data in blocks], verified=True)
        await self.blocks.pinMany([codec.cidObject(c) for c, _ in blocks], self._pinRoot)

    def _applied(self, deltas):
        for d in deltas:
            for p in d.parents:
                self.heads.pop(p, None)
            self.heads[d.cid] = d.height
        self._deltaCount += len(deltas)

    # announcing

    def headsMessage(self, blocks=()):
        return codec.encodeHeads(list(self.heads), self.snapshotCID, blocks)

    def announce(self, blocks=()):
        """
        Publish the heads (and the latest snapshot, and C{blocks}: new
        delta blocks sent along); failures are logged.
        """
        if not self.heads:
            return None
        d = Deferred.fromCoroutine(self._announce(blocks))
        d.addErrback(lambda f: self.log.info("kvdb {db}: announcing heads failed: {why}", db=self.name, why=f.getErrorMessage()))
        return d

    async def _announce(self, blocks=()):
        await self._publish(self.headsMessage(blocks))

    # merging

    async def merge(self, heads, snapshot=None, source=None, blocks=None):
        """
        Merge the heads C{heads} (binary CIDs) someone announced, after
        the snapshot C{snapshot} when this replica has no state or is far
        behind it.

        @param blocks: C{{cid: bytes}} of blocks that came with the
            announcement (checked like fetched ones).
        @return: how many deltas were applied.
        """
        for c, data in (blocks or {}).items():
            self._keepInline(c, data)
        if self._snapshotMerging is not None:
            # one snapshot at a time; its heads may be these
            await self._snapshotMerging.whenFired()
        elif snapshot is not None and snapshot != self.snapshotCID and self._wantsSnapshot(heads):
            self._snapshotMerging = done = OneShot()
            try:
                await self.mergeSnapshot(snapshot, onlyIfEmpty=True)
            except Exception as e:
                self.log.info("kvdb {db}: snapshot {cid} from {peer} not merged: {why}", db=self.name, cid=codec.cidString(snapshot), peer=str(source), why=str(e))
            finally:
                self._snapshotMerging = None
                done.fire(None)
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
            Deferred.fromCoroutine(self._mergeLoop()).addErrback(lambda f: self.log.failure("kvdb {db}: merge loop failed", f, db=self.name))
        return await round.whenFired()

    async def _mergeLoop(self):
        """
        Merge the queued heads, one round at a time: heads announced while a
        round runs are merged together in the next, so a burst of
        announcements costs a few walks, not one walk each.
        """
        self._merging = True
        try:
            while self._queued:
                queued, self._queued = self._queued, {}
                round, self._nextRound = self._nextRound, OneShot()
                try:
                    applied = await self._merge(list(queued), next(iter(queued.values())))
                except Exception:
                    self.log.failure("kvdb {db}: merge failed", db=self.name)
                    applied = 0
                round.fire(applied)
        finally:
            self._merging = False

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
        C{{cid: bytes}} for those of C{wanted} fetched in time.
        """
        out = {}
        limit = DeferredSemaphore(PARALLEL_FETCHES)

        now = self.reactor.seconds()

        async def one(c):
            try:
                out[c] = await self._fetchBlock(c)
            except Exception as e:
                self.log.info("kvdb {db}: delta {cid} not fetched: {why}", db=self.name, cid=codec.cidString(c), why=str(e) or e.__class__.__name__)
                self._markMissing(c)
            else:
                self._missing.pop(c, None)

        wanted = [c for c in wanted if self._missing.get(c, 0) <= now]
        await gatherResults([limit.run(lambda c=c: Deferred.fromCoroutine(one(c))) for c in wanted])
        return out

    def retryMissing(self, cids):
        """
        Fetch C{cids} again even if they could not be fetched lately (a
        peer pushing them says it has them now).
        """
        for c in cids:
            self._missing.pop(c, None)

    def _markMissing(self, c):
        self._missing.pop(c, None)
        while len(self._missing) >= MAX_MISSING:
            self._missing.pop(next(iter(self._missing)))
        self._missing[c] = self.reactor.seconds() + MISSING_RETRY

    def _decodeMany(self, blocks):
        """
        Decode and verify fetched deltas (in a thread).
        """
        good, bad = {}, {}
        for c, data in blocks.items():
            if data is None:
                continue
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
        known = await self.view.known(self.name, heads)
        frontier = [c for c in heads if c not in known]
        fetched = {}
        held = 0
        heights = dict(known)
        while frontier:
            if len(fetched) + len(frontier) > MAX_WALK:
                self.log.warn("kvdb {db}: history walk over {n} deltas stopped", db=self.name, n=MAX_WALK)
                break
            if held > MAX_WALK_BYTES:
                self.log.warn("kvdb {db}: history walk over {n} bytes of deltas stopped", db=self.name, n=MAX_WALK_BYTES)
                break
            blocks = await self._fetchAll(frontier)
            good, bad = await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._decodeMany, blocks)
            for c, why in bad.items():
                self._markBad(c, why, source)
            fetched.update(good)
            held += sum(len(d.data) for d in good.values())
            parents = {p for d in good.values() for p in d.parents if p not in fetched and p not in self._bad}
            found = await self.view.known(self.name, parents)
            heights.update(found)
            frontier = [p for p in parents if p not in found]
        if not fetched:
            return 0
        async with self._lock:
            accepted = []
            for d in sorted(fetched.values(), key=lambda d: (d.height, d.cid)):
                missing = [p for p in d.parents if p not in heights]
                if missing:
                    continue  # an ancestor is bad or was not fetched: later
                expected = max((heights[p] for p in d.parents), default=0) + 1
                if d.height != expected:
                    self._markBad(d.cid, f"height {d.height}, its parents say {expected}", source)
                    continue
                heights[d.cid] = d.height
                accepted.append(d)
            if not accepted:
                return 0
            await self._store([(d.cid, d.data) for d in accepted])
            applied = await self.view.apply(self.name, accepted)
            self._applied(applied)
        if applied:
            if self._notify is not None:
                self._notify([codec.cidObject(d.cid) for d in applied])
            self._changed()
            self._maybeSnapshot()
        return len(applied)

    # snapshots

    def _maybeSnapshot(self):
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
        heads, entries, covered, count = await self.view.state(self.name)
        if not heads:
            return None
        root, blocks = await deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), codec.makeSnapshot, self.key, self.name, heads, entries, covered
        )
        await self._pinSnapshot(root, blocks)
        previous = self.snapshotCID
        height = max(h for _, h in heads)
        await self.view.recordSnapshot(self.name, root, height, count)
        self.snapshotCID, self.snapshotHeight, self._snapshotDeltas = root, height, count
        if previous is not None and previous != root:
            await self.blocks.unpinRoot(pinRoot(f"tau-kvdb-snapshot:{codec.cidString(previous)}"))
        self.log.info("kvdb {db}: snapshot {cid} of {n} keys, {d} deltas", db=self.name, cid=codec.cidString(root), n=len(entries), d=count)
        self.announce()
        return root

    async def _pinSnapshot(self, root, blocks):
        await self.blocks.putMany([(codec.cidObject(c), data) for c, data in blocks], verified=True)
        await self.blocks.pinMany([codec.cidObject(c) for c, _ in blocks], pinRoot(f"tau-kvdb-snapshot:{codec.cidString(root)}"))
        if self._notify is not None:
            self._notify([codec.cidObject(c) for c, _ in blocks])

    async def mergeSnapshot(self, root, onlyIfEmpty=False):
        """
        Fetch, verify and merge the snapshot C{root}.

        A snapshot is its signer's word for the state and the deltas it
        covers (they are not fetched), so it is checked for what can be
        checked without them: every entry is the write of a covered delta
        at that delta's height, the heads are covered deltas, and the
        covered heights fill every level up to the snapshot's height (a
        chain of height H has a delta at each level), so a snapshot cannot
        claim heights above what it covers.

        @param onlyIfEmpty: merge only into a replica with no state yet
            (checked again once the view is ours).
        @return: how many covered deltas were new here.
        """
        pool = self.reactor.getThreadPool()
        data = await self._fetchBlock(root)
        snap = await deferToThreadPool(self.reactor, pool, codec.decodeSnapshot, root, data, self.name)
        if len(snap.state) + len(snap.covered) > MAX_SNAPSHOT_PAGES:
            raise codec.InvalidBlock(f"snapshot of {len(snap.state) + len(snap.covered)} pages, limit {MAX_SNAPSHOT_PAGES}")
        pages = await self._fetchAll(snap.state + snap.covered)
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
            new = await self.view.mergeSnapshot(self.name, snap.heads, entries, covered)
            await self._pinSnapshot(root, [(root, data)] + [(c, pages[c]) for c in snap.state + snap.covered])
            self.heads = await self.view.heads(self.name)
            self._deltaCount = await self.view.deltaCount(self.name)
            await self.view.recordSnapshot(self.name, root, snap.height, self._deltaCount)
            previous = self.snapshotCID
            self.snapshotCID, self.snapshotHeight, self._snapshotDeltas = root, snap.height, self._deltaCount
        if previous is not None and previous != root:
            await self.blocks.unpinRoot(pinRoot(f"tau-kvdb-snapshot:{codec.cidString(previous)}"))
        self.log.info("kvdb {db}: merged snapshot {cid} ({n} keys, {d} deltas new here)", db=self.name, cid=codec.cidString(root), n=len(entries), d=new)
        self._changed()
        return new
