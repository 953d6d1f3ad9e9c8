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
#: Fetches in flight per merge.
PARALLEL_FETCHES = 32
#: Blocks that came with announcements, kept until fetched.
MAX_INLINE_KEPT = 4096
#: Bad CIDs remembered (never fetched again).
MAX_BAD = 10_000


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
        self._merging = False
        self._nextRound = OneShot()
        self._bad = {}
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
            delta = codec.makeDelta(self.key, self.name, height, list(self.heads), entries)
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
            if c not in self._inline and len(self._inline) >= MAX_INLINE_KEPT:
                self._inline.pop(next(iter(self._inline)))
            self._inline[c] = data
        if snapshot is not None and snapshot != self.snapshotCID and self._wantsSnapshot(heads):
            try:
                await self.mergeSnapshot(snapshot)
            except Exception as e:
                self.log.info("kvdb {db}: snapshot {cid} from {peer} not merged: {why}", db=self.name, cid=codec.cidString(snapshot), peer=str(source), why=str(e))
        new = [h for h in heads if h not in self.heads and h not in self._bad]
        if not new:
            return 0
        for head in new:
            self._queued.setdefault(head, source)
        round = self._nextRound
        if not self._merging:
            Deferred.fromCoroutine(self._mergeLoop())
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

    def _wantsSnapshot(self, heads):
        """
        Only a replica with no state yet starts from a snapshot; one with
        state fetches the deltas it misses (merging a snapshot would be as
        correct, since it is last write wins per key, but costs the whole
        state).
        """
        return not self.heads

    async def _fetchBlock(self, c):
        data = self._inline.pop(c, None)
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

        async def one(c):
            try:
                out[c] = await self._fetchBlock(c)
            except Exception as e:
                self.log.info("kvdb {db}: delta {cid} not fetched: {why}", db=self.name, cid=codec.cidString(c), why=str(e) or e.__class__.__name__)

        await gatherResults([limit.run(lambda c=c: Deferred.fromCoroutine(one(c))) for c in wanted])
        return out

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
        heights = dict(known)
        while frontier:
            if len(fetched) + len(frontier) > MAX_WALK:
                self.log.warn("kvdb {db}: history walk over {n} deltas stopped", db=self.name, n=MAX_WALK)
                break
            blocks = await self._fetchAll(frontier)
            good, bad = await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._decodeMany, blocks)
            for c, why in bad.items():
                self._markBad(c, why, source)
            fetched.update(good)
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

    async def mergeSnapshot(self, root):
        """
        Fetch, verify and merge the snapshot C{root}.
        """
        data = await self._fetchBlock(root)
        snap = codec.decodeSnapshot(root, data, self.name)
        pages = await self._fetchAll(snap.state + snap.covered)
        if len(pages) != len(snap.state) + len(snap.covered):
            raise codec.InvalidBlock("snapshot pages missing")

        def decodePages():
            entries = [e for c in snap.state for e in codec.decodeStatePage(c, pages[c])]
            covered = [e for c in snap.covered for e in codec.decodeCoveredPage(c, pages[c])]
            if len(entries) != snap.count:
                raise codec.InvalidBlock("snapshot entry count does not match")
            return entries, covered

        entries, covered = await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), decodePages)
        async with self._lock:
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
