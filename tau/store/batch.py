"""
Write batches of the block store (L{tau.store.blockstore.BlockStore.batch}):
many blocks written without an fsync each, then made durable and indexed
together before the batch is acknowledged.
"""

from __future__ import annotations

import ctypes
import functools
import os
from typing import TYPE_CHECKING, Iterable

from twisted.internet.defer import Deferred, DeferredList, FirstError, gatherResults
from twisted.logger import Logger

from tau.diskfull import StoreFull, isFull
from tau.store.blockstore import _fsyncDir, _items, _unlinkQuiet, multihashOf

if TYPE_CHECKING:
    from tau.store.blockstore import BlockStore

log = Logger()

#: Threads that fsync a batch's files at once (the disk sees them together).
SYNC_THREADS = 8
#: Threads that write a batch's files at once.
WRITE_THREADS = 4
#: From this many files on, a batch is made durable with one syncfs(2).
SYNCFS_MIN_FILES = 16


class WriteBatch:
    """
    Blocks written without an fsync each and made durable together: what
    an import or a DAG fetch uses.  C{putMany} writes the files; once
    C{syncBehind} bytes are pending they are synced and indexed in the
    background (so a big import never holds much unsynced data and the
    disk works while the next blocks are hashed); C{commit} waits for that,
    syncs and indexes the rest in one transaction (pinning every block of
    the batch on behalf of C{pin}, when given) and only then returns: from
    then on every block of the batch survives a crash.  C{abort} removes
    what the batch wrote and nobody else indexed.  Blocks the batch holds
    (written or found already stored) are left alone by GC until it ends.

    @ivar keys: the multihashes of every block put through the batch.
    """

    def __init__(self, store: BlockStore, syncBehind: int):
        self._store = store
        self._syncBehind = syncBehind
        self.keys: set[bytes] = set()
        self._pending: dict[bytes, int] = {}   # written, not yet synced: key -> size
        self.sizes: dict[bytes, int] = {}      # every block the batch wrote: key -> size
        self._pendingBytes = 0
        self._jobs: list[Deferred] = []
        self._failure: BaseException | None = None
        self._written: list[bytes] = []
        self._open = True
        self._fsFd: int | None = None   # the store's folder, open since the first write
        store._batches.add(self)

    def _check(self) -> None:
        if not self._open:
            raise RuntimeError("the write batch is over")
        if self._failure is not None:
            raise self._failure

    async def putMany(self, blocks: Iterable, verified: bool = False) -> None:
        """As L{BlockStore.putMany}, but not durable before L{commit}."""
        self._check()
        store = self._store
        items = _items(blocks)
        fresh = sorted(k for k in items if k not in self.keys)
        self.keys.update(fresh)
        if not fresh:
            return
        if self._fsFd is None:
            # a write-back error from now on shows in this fd's syncfs
            self._fsFd = await store._io(os.open, store._root, os.O_RDONLY | os.O_DIRECTORY)
        locks = [(k, await store._lock(k)) for k in fresh]
        try:
            existing = await store._index(store._existingSync, fresh, store._flushTouches())
            now = store._now()
            for k in existing:
                store._touched[k] = now
            new = [(k, items[k]) for k in fresh if k not in existing]
            if new:
                n = min(WRITE_THREADS, len(new))
                parts = [new[i::n] for i in range(n)]
                # every writer is done (its temp files gone) before this
                # returns or raises, so an abort finds what was written
                results = await DeferredList(
                    [store._io(store._writeSync, part, verified, False) for part in parts],
                    consumeErrors=True)
                error = None
                for part, (ok, result) in zip(parts, results):
                    if not ok:
                        error = error or result.value
                        continue
                    for k, data in part:
                        self._pending[k] = self.sizes[k] = len(data)
                        self._pendingBytes += len(data)
                        self._written.append(k)
                if error is not None:
                    if isFull(error):
                        raise StoreFull(f"no space left in {store._root}") from error
                    raise error
        finally:
            for k, d in locks:
                store._unlock(k, d)
        if self._pendingBytes >= self._syncBehind:
            self._startSync()

    def _startSync(self) -> None:
        pending, self._pending, self._pendingBytes = self._pending, {}, 0
        job = Deferred.fromCoroutine(self._sync(pending))

        def failed(f):
            if self._failure is None:
                self._failure = f.value
        job.addErrback(failed)
        self._jobs.append(job)

    async def _sync(self, pending: dict, pinRows: list = ()) -> None:
        """fsync the files of ``pending`` and their directories, then index them."""
        store = self._store
        keys = sorted(pending)
        locks = [(k, await store._lock(k)) for k in keys]
        try:
            missing: set = set()
            if keys:
                missing = await _makeDurable(store, self._fsFd, [(k, store._path(k)) for k in keys])
            now = store._now()
            rows = [(k, pending[k], now) for k in keys if k not in missing]
            if missing:
                log.warn("write batch: {n} block files vanished before their commit",
                         n=len(missing))
            await store._index(store._commitSync, rows, list(pinRows))
            store._wrote(sum(r[1] for r in rows))
        except BaseException as e:
            if isFull(e):
                raise StoreFull(f"no space left in {store._root}") from e
            raise
        finally:
            for k, d in locks:
                store._unlock(k, d)

    async def commit(self, pin=None) -> None:
        """
        Make every block of the batch durable and indexed; with ``pin`` (a
        CID), pin ``pin`` directly and every other block of the batch on
        its behalf, in the same transaction.
        """
        self._check()
        try:
            if self._jobs:
                await gatherResults(self._jobs)
            self._check()
            pinRows = []
            if pin is not None:
                rootKey = multihashOf(pin)
                cidBytes = bytes(pin.buffer) if hasattr(pin, "buffer") else rootKey
                pinRows = [(k, rootKey, k) for k in self.keys if k != rootKey]
                pinRows.append((rootKey, rootKey, cidBytes))
            pending, self._pending, self._pendingBytes = self._pending, {}, 0
            await self._sync(pending, pinRows)
        finally:
            self._end()

    async def abort(self) -> None:
        """Remove the block files this batch wrote that are not indexed."""
        if not self._open:
            return
        store = self._store
        try:
            for job in self._jobs:
                job.addErrback(lambda f: None)
            if self._jobs:
                await gatherResults(self._jobs)
            keys = sorted(set(self._written))
            locks = [(k, await store._lock(k)) for k in keys]
            try:
                indexed = await store._index(store._existingSync, keys, {})
                gone = [k for k in keys if k not in indexed]
                await store._io(lambda: [_unlinkQuiet(store._path(k)) for k in gone])
            finally:
                for k, d in locks:
                    store._unlock(k, d)
        finally:
            self._end()

    def _end(self) -> None:
        self._open = False
        if self._fsFd is not None:
            os.close(self._fsFd)
            self._fsFd = None
        self.sizes = {}
        self._store._batches.discard(self)


async def _makeDurable(store: BlockStore, fsFd: int | None, paths: list) -> set:
    """
    Make the files ``paths`` [(key, path)] and their directory entries
    durable; the keys whose file is gone.  Many files: one C{syncfs(2)} of
    the store's filesystem through ``fsFd`` (every dirty page, inode and
    directory written, then the device cache flushed once; a write-back
    error since ``fsFd`` was opened fails it) instead of an fsync per file
    and per directory, each of which flushes the device cache again.
    """
    if fsFd is not None and len(paths) >= SYNCFS_MIN_FILES and _syncfsCall() is not None:
        return set(await store._io(_syncfsFiles, fsFd, paths))
    missing: set = set()
    n = min(SYNC_THREADS, len(paths))
    try:
        results = await gatherResults(
            [store._io(_fsyncFiles, paths[i::n]) for i in range(n)], consumeErrors=True)
        for r in results:
            missing.update(r)
        dirs = sorted({p.parent for _, p in paths})
        n = min(SYNC_THREADS, len(dirs))
        await gatherResults(
            [store._io(lambda part: [_fsyncDir(d) for d in part], dirs[i::n]) for i in range(n)],
            consumeErrors=True)
    except FirstError as e:
        raise e.subFailure.value from None
    return missing


@functools.cache
def _syncfsCall():
    """libc's syncfs (Linux), or None."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.syncfs
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int]
    call.restype = ctypes.c_int
    return call


def _syncfs(fd: int) -> None:
    if _syncfsCall()(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"syncfs: {os.strerror(err)}")


def _syncfsFiles(fd: int, paths: list) -> list:
    """Thread: the keys of ``paths`` whose file is gone, after one syncfs through ``fd``."""
    missing = [key for key, path in paths if not os.path.exists(path)]
    _syncfs(fd)
    return missing


def _fsyncFiles(paths: list) -> list:
    """fsync each (key, path); the keys whose file is gone."""
    missing = []
    for key, path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            missing.append(key)
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return missing
