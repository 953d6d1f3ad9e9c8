"""
The incremental durable walk of a L{tau.kvdb.replica.Replica}: heads
announced by others are merged by a walk down the parent links that keeps
its state in the view (L{tau.kvdb.view}): fetched deltas are verified
(hash, canonical encoding, signature), stored and pinned at once and
recorded as fetched; their unknown parents become wanted; and fetched
deltas are applied, parents first and in bounded batches, as soon as their
ancestry is complete (their height must be 1 + their parents' largest).
So a replica any distance behind catches up with bounded memory, and a
walk cut short (by its per-round limit, a failed fetch or a restart)
resumes where it stopped.
"""

from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore, gatherResults
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from tau.kvdb import codec, writes
from tau.kvdb.view import OVER_QUOTA
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
#: Bad CIDs remembered (never fetched again).
MAX_BAD = 10_000
#: Seconds a block nobody could give us is not asked for again (a delta
#: linking to made-up parents would otherwise cost a fetch timeout at every
#: announcement), and after how many failed tries it is given up (with the
#: fetched deltas waiting for it; announcing them again starts over).
MISSING_RETRY = 60.0
MAX_TRIES = 10


class Walker:
    """
    The merging of announced heads into a L{tau.kvdb.replica.Replica}
    (mixed into it: the state is the replica's): merge rounds, fetching,
    verifying and applying deltas.
    """

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
        elif snapshot is not None and snapshot != self.snapshotCID and snapshot not in self._bad and self._wantsSnapshot(heads):
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
        if sum(map(len, blocks.values())) <= writes.INLINE_CPU_BYTES:
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

    def _markBad(self, c, why, source, writer=None):
        """
        Never take C{c} again; logged, at most once a minute for a delta
        refused for its C{writer} (not a writer, over its quota).
        """
        if writer is not None:
            self.refusals.refused(self.name, writer, "deltas", why)
        else:
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
            refused, later = {}, []
            if self.authority is not None and good:
                good, refused, later = await self._authorize(good)
            if later:
                # a writer set that cannot be fetched now: like a failed fetch
                await self._unpin(await self.view.fetchFailed(self.space, later, self.clock.seconds() + MISSING_RETRY, MAX_TRIES))
            if bad or refused:
                for c, why in bad.items():
                    self._markBad(c, why, source)
                for c, (why, writer) in refused.items():
                    self._markBad(c, why, source, writer)
                await self._unpin(await self.view.drop(self.space, list(bad) + list(refused)))
            if good:
                await self._store({c: d.data for c, d in good.items()})
                ready = await self.view.recordFetched(self.space, [(d.cid, d.height, d.parents) for d in good.values()]) > 0
                for d in good.values():
                    self._keepDecoded(d)
                fetched += len(good)
        return applied

    async def _authorize(self, deltas):
        """
        Sort verified deltas of a database with writers by their signer
        (see L{tau.kvdb.writers}): C{(accepted {cid: Delta}, refused {cid:
        (why, writer)}, [cid] whose writer set cannot be fetched now)}.
        The writer sets they name are fetched at once, each once.
        """
        versions = list({d.version for d in deltas.values()})
        resolved = {}

        async def resolve(version):
            try:
                await self.authority.resolve(version)
            except CancelledError:
                raise
            except codec.InvalidBlock:
                resolved[version] = True
            except Exception as e:
                self.log.info("kvdb {db}: writer set {cid} not fetched: {why}", db=self.name, cid=codec.cidString(version), why=str(e) or e.__class__.__name__)
                resolved[version] = False
            else:
                resolved[version] = True

        await gatherResults([Deferred.fromCoroutine(resolve(v)) for v in versions], consumeErrors=True)
        accepted, refused, later = {}, {}, []
        for c, d in deltas.items():
            if not resolved[d.version]:
                later.append(c)
                continue
            why = await self.authority.check(d)
            if why is None:
                accepted[c] = d
            else:
                refused[c] = (why, d.writer)
        return accepted, refused, later

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
                applied, refused, dropped = await self.view.apply(self.space, batch, self.quota)
                self._applied(applied)
            writers = {d.cid: d.writer for d in batch}
            for c, why in refused.items():
                self._markBad(c, why, source, writers[c] if why.startswith(OVER_QUOTA) else None)
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
