"""
Group-commit writes of a L{tau.kvdb.replica.Replica}: a write is a signed
delta block linking to the current heads, with height 1 + the heads'
largest height.  It is stored and pinned, applied to the view, and the new
heads are announced.  Writes that arrive while one is being committed are
committed together, as one delta (one signature, one fsync, one SQLite
transaction, one announcement); each returns once that delta is durable.
"""

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from tau import cids
from tau.kvdb import codec
from tau.kvdb.view import OVER_QUOTA
from tau.kvdb.writers import NotAWriter, makeWriterSet
from tau.oneshot import OneShot

#: Bytes of deltas signed, or fetched deltas decoded and verified, in the
#: reactor thread (about 100 us each): a hop to a thread costs more under
#: load; larger ones go to the thread pool.
INLINE_CPU_BYTES = 16 << 10
#: Blocks stored at once from which a write batch is used (see L{GroupCommit._store}).
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


def pinRoot(text):
    """
    A CID no block has, under which the blocks of one database (or one
    snapshot) are pinned: C{tau pin ls} lists direct pins only, so these do
    not show, and dropping the root unpins them all.
    """
    return cids.makeCID(text.encode("utf-8"))


class GroupCommit:
    """
    The writes of a L{tau.kvdb.replica.Replica} (mixed into it: the state
    is the replica's), and the storing, pinning and applying of deltas
    that merges use too.
    """

    async def write(self, entries, announceWriters=False):
        """
        Write C{[(key, value or None)]}, and return once it is durable.

        Writes made while another is being committed are committed together
        as one delta (the later of two writes of one key wins); each caller
        gets that delta.

        @param announceWriters: True for an empty write, committed to name
            the newest writer set (see L{addWriters}).
        @return: the L{codec.Delta} holding the write.
        @raise codec.InvalidBlock: when the write breaks a limit.
        @raise NotAWriter: when this node is not a writer of the database,
            or over its quota.
        @raise Stopped: when the replica stops first.
        """
        if self._stopped:
            raise Stopped(f"kvdb {self.name} is stopped")
        if self.authority is not None:
            self.authority.signingFields(self.key.peerID(), self.admission)
        entries = [] if announceWriters and not entries else checkWrite(entries)
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
            version = admission = None
            if self.authority is not None:
                version, admission = self.authority.signingFields(self.key.peerID(), self.admission)
            args = (self.key, self.name, height, parents, entries, version, admission)
            if _size(entries) <= INLINE_CPU_BYTES:
                delta = codec.makeDelta(*args)
            else:
                # signing and encoding up to MAX_BLOCK bytes: not in the reactor
                delta = await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), codec.makeDelta, *args)
            await self._store({delta.cid: delta.data})
            applied, refused, _ = await self.view.apply(self.space, [delta], self.quota)
            if refused:
                await self._unpin([delta.cid])
                if refused[delta.cid].startswith(OVER_QUOTA):
                    raise NotAWriter(f"write refused: {refused[delta.cid]}")
                raise RuntimeError(f"our own write was refused: {refused[delta.cid]}")
            self._applied(applied)
        if self._notify is not None:
            self._notify([codec.cidObject(delta.cid)])
        self._changed()
        self.announce([delta.data])
        self._maybeSnapshot()
        return delta

    async def addWriters(self, writers):
        """
        Add C{writers} to the database's: a writer set (this node's
        predecessor set plus every writer known here plus C{writers}),
        signed by this node, and an empty delta naming it, so every replica
        and the new writers learn it.

        @return: the delta.
        @raise NotAWriter: when this node is not a writer.
        """
        if self.authority is None:
            raise NotAWriter(f"database {self.name} is open: it has no writers to add to")
        version, admission = self.authority.signingFields(self.key.peerID(), self.admission)
        ws = makeWriterSet(self.key, self.name, version or self.genesis.cid, self.authority.current() | set(writers), admission)
        await self._store({ws.cid: ws.data})
        await self.authority.resolve(ws.cid)
        return await self.write([], announceWriters=True)

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
