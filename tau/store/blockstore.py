"""
A content-addressed block store: one file per block, indexed by SQLite.

Layout under ``root``::

    blocks/<shard>/<KEY>.data   the block bytes; KEY = base32 (RFC 4648, upper,
                                no padding) of the multihash, as kubo's flatfs
                                names them; shard = KEY[-3:-1] ("next-to-last/2")
    blocks/<shard>/<KEY>.data.N.tmp   a write in progress (removed on open)
    corrupt/                    blocks that failed their hash check on read
    index.sqlite                the index (sqlite-utils), WAL mode
    spare                       room held back so gc and unpin can delete index
                                rows on a full disk (L{tau.diskfull.Spare})

Blocks are keyed by their multihash, so the CIDv0 and the CIDv1 of the same
bytes share one file.  The index holds, per block, its size and last use, and
the pins (a pin is ``(key, root)``: ``root == key`` for a direct pin; the UnixFS
layer pins the blocks of a DAG with the DAG's root as ``root``, so a block
shared by two pinned DAGs stays pinned while either pin holds -- the number of
pin rows of a block is its reference count).

Writes: temp file in the block's shard folder, fsync, rename to the block's
name, fsync of the shard folder, then the index row.  A put is acknowledged
only after all of this, so a crash (even SIGKILL) can leave a temp file
(deleted on open) or a block file without its row (re-hashed and indexed on
open), never a row whose block is missing or a half-written block under a
real name.  Rows without a file are dropped on open.  (Temp files sit beside
their block, not in one shared folder: writers in different shards then
never wait on the same folder lock.)

Bulk writes (L{BlockStore.batch}, used by the UnixFS importer and by Bitswap
DAG fetches): block files are written (temp file, rename) without an fsync
each; L{tau.store.batch.WriteBatch.commit} then makes them durable with their
shard directories -- on Linux, from 16 files on, with one syncfs(2) of the
store's filesystem (one device-cache flush instead of one per file and per
folder; it also writes out whatever else is dirty on that filesystem),
otherwise with an fsync each from several threads at once -- and only then
indexes (and pins) them in one transaction.  Nothing written in a batch is acknowledged before its
commit returns, and a crash before that leaves block files without rows,
which the reconciliation on open re-hashes and indexes (or sets aside), as
for a single put.  A batch's blocks are found by C{get}, C{has} and C{size}
as soon as they are written (so they can be served), are counted by C{stat}
once indexed, and GC leaves every block a batch holds alone.

Threads: all disk and hashing work runs in a thread pool (the one given, or
the reactor's).  The SQLite connection lives in a dedicated single-thread
pool owned by the store (SQLite connections are per thread), so every index
operation is serialised there.  Operations on one key are serialised in the
reactor thread by a per-key lock.
"""

from __future__ import annotations

import base64
import itertools
import os
import sqlite3
from pathlib import Path
from typing import Iterable

import cid as pycid
import sqlite_utils
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from tau.cids import IDENTITY, UnsupportedHash, canHash, splitMultihash
from tau.cids import verifyMultihash as verifies
from tau.diskfull import Spare, StoreFull, freeBytes, isFull

log = Logger()


class CorruptBlock(Exception):
    """A block on disk does not match its hash; it was taken out of the store."""


class BadBlock(ValueError):
    """The bytes handed to put() do not hash to the CID."""


class BlockPinned(Exception):
    """delete() of a pinned block."""


# -- multihash helpers (pure) -------------------------------------------------

def multihashOf(c) -> bytes:
    """The multihash bytes of a py-cid CID (v0 or v1) or of raw multihash bytes."""
    if isinstance(c, (bytes, bytearray, memoryview)):
        return bytes(c)
    return bytes(c.multihash)


def keyName(mh: bytes) -> str:
    return base64.b32encode(mh).decode("ascii").rstrip("=")


def nameKey(name: str) -> bytes:
    return base64.b32decode(name + "=" * (-len(name) % 8))


def _writeAll(f, data) -> None:
    """Write data to an open binary file (a seam for ENOSPC tests)."""
    f.write(data)


class BlockStore:
    #: Bytes held back in ``ROOT/spare`` for the index deletes that free
    #: space (gc, unpin) on a full disk (L{tau.diskfull.Spare}).
    spareBytes = 4 << 20

    def __init__(self, root: Path, reactor, threadpool: ThreadPool | None = None):
        self._root = Path(root)
        self._reactor = reactor
        self._pool = threadpool
        self._indexPool: ThreadPool | None = None
        self._db: sqlite_utils.Database | None = None
        self._tails: dict[bytes, Deferred] = {}
        self._touched: dict[bytes, float] = {}
        self._lateTouches: dict[bytes, float] = {}  # not written: the disk was full (index thread)
        self._gone: set[bytes] = set()   # rows whose file gc removed, not deleted yet (index thread)
        self._spare: Spare | None = None
        self._tick = 0
        self._batches: set = set()  # open tau.store.batch.WriteBatch-es
        #: called with the number of bytes of every write indexed (for GC)
        self.onWrite = None

    # -- plumbing -------------------------------------------------------------

    @property
    def threadpool(self) -> ThreadPool | None:
        """The pool the store's disk and hashing work runs in (once open)."""
        return self._pool

    @property
    def _blocks(self) -> Path:
        return self._root / "blocks"

    def _path(self, key: bytes) -> Path:
        name = keyName(key)
        return self._blocks / name[-3:-1] / (name + ".data")

    def _io(self, f, *a, **kw) -> Deferred:
        return deferToThreadPool(self._reactor, self._pool, f, *a, **kw)

    def _index(self, f, *a, **kw) -> Deferred:
        if self._indexPool is None:
            raise RuntimeError("BlockStore is not open")
        return deferToThreadPool(self._reactor, self._indexPool, f, *a, **kw).addErrback(self._full)

    def _full(self, failure):
        if isFull(failure.value) and not failure.check(StoreFull):
            raise StoreFull(f"no space left in {self._root}") from failure.value
        return failure

    def _now(self) -> float:
        # reactor time, made strictly increasing so LRU order is exact
        self._tick += 1
        return self._reactor.seconds() + self._tick * 1e-9

    def _tryLock(self, key: bytes) -> Deferred | None:
        if key in self._tails:
            return None
        d = self._tails[key] = Deferred()
        return d

    async def _lock(self, key: bytes) -> Deferred:
        while True:
            prev = self._tails.get(key)
            if prev is None:
                d = self._tails[key] = Deferred()
                return d
            waiter = Deferred()
            prev.addBoth(lambda r, w=waiter: (w.callback(None), r)[1])
            await waiter

    def _unlock(self, key: bytes, d: Deferred) -> None:
        if self._tails.get(key) is d:
            del self._tails[key]
        d.callback(None)

    # -- lifecycle --------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is None:
            self._pool = self._reactor.getThreadPool()
        self._indexPool = ThreadPool(1, 1, name=f"tau-blockstore-index:{self._root}")
        self._indexPool.start()
        try:
            await self._index(self._openSync)
        except BaseException:
            await self._io(self._indexPool.stop)
            self._indexPool = None
            raise

    async def close(self) -> None:
        if self._indexPool is None:
            return
        try:
            await self._index(self._closeSync, dict(self._touched))
            self._touched.clear()
        finally:
            pool, self._indexPool = self._indexPool, None
            await self._io(pool.stop)

    def _openSync(self) -> None:
        for d in ("blocks", "corrupt"):
            (self._root / d).mkdir(parents=True, exist_ok=True)
        self._spare = Spare(self._root / "spare", self.spareBytes)
        try:
            self._openIndexSync()
        except sqlite3.OperationalError:
            # On a full disk SQLite cannot even open its WAL ("disk I/O
            # error", not SQLITE_FULL): the spare room lets the node start.
            if self._db is not None:
                self._db.close()
                self._db = None
            if freeBytes(self._root) >= self.spareBytes or not self._spare.release():
                raise
            log.warn("block store {root} opened on a full disk: its spare room given back", root=str(self._root))
            self._openIndexSync()
        self._reconcileSync()
        if not self._spare.fill():
            log.warn("block store {root}: no room for its spare space", root=str(self._root))

    def _openIndexSync(self) -> None:
        db = self._db = sqlite_utils.Database(self._root / "index.sqlite")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db["blocks"].create(
            {"key": bytes, "size": int, "last_used": float},
            pk="key", if_not_exists=True,
        )
        db["blocks"].create_index(["last_used"], if_not_exists=True)
        db["pins"].create(
            {"key": bytes, "root": bytes, "cid": bytes},
            pk=("key", "root"), if_not_exists=True,
        )
        db["pins"].create_index(["root"], if_not_exists=True)

    def _closeSync(self, touched) -> None:
        if self._db is not None:
            self._touchSync(touched)
            self._db.close()
            self._db = None

    def _reconcileSync(self) -> None:
        db = self._db
        removedTmp = 0
        oldTemps = self._root / "tmp"   # where earlier versions wrote them
        if oldTemps.is_dir():
            for entry in os.scandir(oldTemps):
                os.unlink(entry.path)
                removedTmp += 1
            oldTemps.rmdir()
        indexed = {row[0]: row[1] for row in db.execute("SELECT key, size FROM blocks")}
        added, bad, dropped = [], 0, 0
        for shard in os.scandir(self._blocks):
            if not shard.is_dir():
                continue
            for entry in os.scandir(shard.path):
                name = entry.name
                if name.endswith(".tmp"):
                    _unlinkQuiet(entry.path)
                    removedTmp += 1
                    continue
                if not name.endswith(".data"):
                    continue
                try:
                    key = nameKey(name[: -len(".data")])
                    splitMultihash(key)
                except ValueError:
                    continue
                size = indexed.pop(key, None)
                if size is not None and size == entry.stat().st_size:
                    continue
                data = Path(entry.path).read_bytes()
                try:
                    ok = verifies(key, data)
                except UnsupportedHash:
                    ok = False
                if ok:
                    added.append({"key": key, "size": len(data), "last_used": 0.0})
                else:
                    os.replace(entry.path, self._root / "corrupt" / name)
                    bad += 1
                    if size is not None:
                        dropped += 1
                        db.execute("DELETE FROM blocks WHERE key = ?", [key])
        with db.conn:
            if added:
                db["blocks"].upsert_all(added, pk="key")
            for key in indexed:
                db.execute("DELETE FROM blocks WHERE key = ?", [key])
        if removedTmp or added or bad or indexed:
            log.info(
                "block store {root} reconciled: {tmp} temp files removed, {added} "
                "unindexed blocks indexed, {bad} bad files set aside, {missing} "
                "rows without a file dropped",
                root=str(self._root), tmp=removedTmp, added=len(added), bad=bad,
                missing=len(indexed),
            )

    # -- index helpers (index thread) ------------------------------------------

    def _touchSync(self, touched: dict) -> None:
        """
        Write last uses; on a full disk they wait in memory for the next
        try (reading a block must not need room).
        """
        if self._lateTouches:
            touched = {**self._lateTouches, **touched}
        if not touched:
            return
        try:
            with self._db.conn:
                self._db.conn.executemany(
                    "UPDATE blocks SET last_used = ? WHERE key = ?",
                    [(t, k) for k, t in touched.items()],
                )
        except sqlite3.Error as e:
            if not isFull(e):
                raise
            self._lateTouches = touched
        else:
            self._lateTouches = {}

    def _wrote(self, n: int) -> None:
        if self.onWrite is not None and n:
            try:
                self.onWrite(n)
            except Exception:
                log.failure("block store write observer failed")

    def _flushTouches(self) -> dict:
        touched, self._touched = self._touched, {}
        return touched

    def _existingSync(self, keys: list, touched: dict) -> set:
        self._touchSync(touched)
        found = set()
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            q = ",".join("?" * len(part))
            found.update(r[0] for r in self._db.execute(
                f"SELECT key FROM blocks WHERE key IN ({q})", part))
        return found - self._gone if self._gone else found

    def _insertSync(self, rows: list) -> None:
        with self._db.conn:
            self._db.conn.executemany(
                "INSERT OR REPLACE INTO blocks (key, size, last_used) VALUES (?, ?, ?)",
                [(r["key"], r["size"], r["last_used"]) for r in rows],
            )
        self._gone.difference_update(r["key"] for r in rows)

    # -- file helpers (io threads) --------------------------------------------

    def _writeSync(self, items: list, verified: bool, durable: bool = True) -> None:
        """
        Write (key, data) blocks under their real names: durably (each file
        and its directory fsync'd), or with ``durable=False`` without any
        fsync (a L{tau.store.batch.WriteBatch} syncs them later).
        """
        if not verified:
            for key, data in items:
                if not verifies(key, data):
                    raise BadBlock(f"data does not match multihash {keyName(key)}")
        dirs = set()
        done = []
        tmp = None
        try:
            for key, data in items:
                path = self._path(key)
                tmp, fd = _createTemp(path)
                with os.fdopen(fd, "wb") as f:
                    _writeAll(f, data)
                    if durable:
                        f.flush()
                        os.fsync(f.fileno())
                os.replace(tmp, path)
                tmp = None
                done.append(path)
                dirs.add(path.parent)
            if durable:
                for d in dirs:
                    _fsyncDir(d)
        except BaseException:
            if tmp is not None:
                _unlinkQuiet(tmp)
            for path in done:
                _unlinkQuiet(path)
            raise

    def _commitSync(self, rows: list, pinRows: list) -> None:
        with self._db.conn:
            self._db.conn.executemany(
                "INSERT OR REPLACE INTO blocks (key, size, last_used) VALUES (?, ?, ?)", rows)
            if pinRows:
                self._db.conn.executemany(
                    "INSERT OR IGNORE INTO pins (key, root, cid) VALUES (?, ?, ?)", pinRows)
        self._gone.difference_update(r[0] for r in rows)

    def _readSync(self, key: bytes):
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if not verifies(key, data):
            try:
                os.replace(path, self._root / "corrupt" / path.name)
            except OSError:
                _unlinkQuiet(path)
            raise CorruptBlock(f"block {keyName(key)} does not match its hash")
        return data

    # -- public API --------------------------------------------------------------

    def batch(self, syncBehind: int = 64 << 20):
        """
        A L{tau.store.batch.WriteBatch}: many blocks written at the disk's speed, acknowledged
        together by its C{commit}.
        """
        if self._indexPool is None:
            raise RuntimeError("BlockStore is not open")
        from tau.store.batch import WriteBatch

        return WriteBatch(self, syncBehind)

    async def put(self, cid, data: bytes) -> None:
        await self.putMany([(cid, data)])

    async def putMany(self, blocks: Iterable, verified: bool = False) -> None:
        """
        Store several blocks with one index transaction.  ``verified=True``
        skips re-hashing, for callers that computed the CIDs themselves from
        these very bytes (the UnixFS importer).
        """
        items = _items(blocks)
        if not items:
            return
        keys = sorted(items)  # sorted lock order: no deadlock between batches
        locks = [(k, await self._lock(k)) for k in keys]
        try:
            existing = await self._index(self._existingSync, keys, self._flushTouches())
            now = self._now()
            for k in existing:
                self._touched[k] = now
            new = [(k, items[k]) for k in keys if k not in existing]
            if not new:
                return
            try:
                await self._io(self._writeSync, new, verified)
            except OSError as e:
                if isFull(e):
                    raise StoreFull(f"no space left in {self._root}") from e
                raise
            rows = [{"key": k, "size": len(d), "last_used": now} for k, d in new]
            try:
                await self._index(self._insertSync, rows)
            except BaseException as e:
                # not acknowledged: take the files away again
                await self._io(lambda: [_unlinkQuiet(self._path(k)) for k, _ in new])
                if isFull(e):
                    raise StoreFull(f"no space left in {self._root}") from e
                raise
            self._wrote(sum(r["size"] for r in rows))
        finally:
            for k, d in locks:
                self._unlock(k, d)

    async def get(self, cid) -> bytes | None:
        key = multihashOf(cid)
        code, digest = splitMultihash(key)
        if code == IDENTITY:
            return digest
        lock = await self._lock(key)
        try:
            try:
                data = await self._io(self._readSync, key)
            except CorruptBlock:
                log.warn("corrupt block {key} set aside", key=keyName(key))
                self._touched.pop(key, None)
                await self._index(self._dropRowSync, key)
                raise
            if data is None:
                self._touched.pop(key, None)
                await self._index(self._dropRowSync, key)
                return None
            self._touched[key] = self._now()
            if len(self._touched) >= 1024:
                await self._index(self._touchSync, self._flushTouches())
            return data
        finally:
            self._unlock(key, lock)

    def _dropRowSync(self, key: bytes) -> None:
        def drop():
            with self._db.conn:
                self._db.execute("DELETE FROM blocks WHERE key = ?", [key])
        self._spare.freeing(drop)
        self._gone.discard(key)

    def _rowSync(self, key: bytes):
        r = self._db.execute("SELECT size FROM blocks WHERE key = ?", [key]).fetchone()
        return None if r is None or key in self._gone else r[0]

    async def has(self, cid) -> bool:
        return (await self.size(cid)) is not None

    async def hasMany(self, cids: Iterable) -> set[bytes]:
        """
        The multihashes of those of ``cids`` the store holds (indexed, or
        written by a batch under way), in one index query.
        """
        keys = {multihashOf(c) for c in cids}
        found = {k for k in keys if splitMultihash(k)[0] == IDENTITY}
        rest = sorted(keys - found)
        if rest:
            found.update(await self._index(self._existingSync, rest, self._flushTouches()))
            for batch in self._batches:
                found.update(k for k in rest if k in batch.sizes)
        return found

    async def size(self, cid) -> int | None:
        key = multihashOf(cid)
        code, digest = splitMultihash(key)
        if code == IDENTITY:
            return len(digest)
        size = await self._index(self._rowSync, key)
        if size is None:
            for batch in self._batches:
                size = batch.sizes.get(key)
                if size is not None:
                    break
        return size

    async def delete(self, cid) -> None:
        key = multihashOf(cid)
        if splitMultihash(key)[0] == IDENTITY:
            return
        lock = await self._lock(key)
        try:
            self._touched.pop(key, None)
            await self._index(self._deleteRowSync, key)
            await self._io(_unlinkQuiet, self._path(key))
        finally:
            self._unlock(key, lock)

    def _deleteRowSync(self, key: bytes) -> None:
        if self._db.execute("SELECT 1 FROM pins WHERE key = ? LIMIT 1", [key]).fetchone():
            raise BlockPinned(f"block {keyName(key)} is pinned")
        self._dropRowSync(key)

    async def pin(self, cid, root=None) -> None:
        """
        Pin a block.  Without ``root`` a direct pin; with ``root`` (the CID of
        the DAG the block belongs to) a pin held on behalf of that root.
        """
        key = multihashOf(cid)
        rootKey = key if root is None else multihashOf(root)
        cidBytes = bytes(cid.buffer) if root is None and hasattr(cid, "buffer") else key
        await self._index(self._pinSync, [(key, rootKey, cidBytes)])

    async def pinMany(self, cids: Iterable, root) -> None:
        """Pin many blocks on behalf of ``root`` in one transaction."""
        rootKey = multihashOf(root)
        await self._index(
            self._pinSync, [(multihashOf(c), rootKey, multihashOf(c)) for c in cids])

    def _pinSync(self, rows) -> None:
        with self._db.conn:
            self._db.conn.executemany(
                "INSERT OR IGNORE INTO pins (key, root, cid) VALUES (?, ?, ?)", rows)

    async def unpin(self, cid, root=None) -> None:
        """Drop the direct pin of ``cid``, or with ``root`` the pin ``root`` holds on it."""
        key = multihashOf(cid)
        rootKey = key if root is None else multihashOf(root)
        await self._index(self._unpinSync, key, rootKey)

    async def unpinRoot(self, root) -> int:
        """Drop every pin held on behalf of ``root`` (a recursive unpin)."""
        return await self._index(self._unpinRootSync, multihashOf(root))

    def _unpinSync(self, key, rootKey) -> None:
        def unpin():
            with self._db.conn:
                self._db.execute("DELETE FROM pins WHERE key = ? AND root = ?", [key, rootKey])
        self._spare.freeing(unpin)

    def _unpinRootSync(self, rootKey) -> int:
        def unpin():
            with self._db.conn:
                return self._db.execute("DELETE FROM pins WHERE root = ? AND key != root", [rootKey]).rowcount
        return self._spare.freeing(unpin)

    async def pins(self) -> list:
        """The directly pinned CIDs (as given to pin())."""
        rows = await self._index(lambda: self._db.execute(
            "SELECT cid FROM pins WHERE key = root ORDER BY cid").fetchall())
        return [pycid.from_bytes(r[0]) if r[0][:1] in (b"\x01",) else _v0(r[0]) for r in rows]

    async def isPinned(self, cid) -> bool:
        key = multihashOf(cid)
        return await self._index(lambda: self._db.execute(
            "SELECT 1 FROM pins WHERE key = ? LIMIT 1", [key]).fetchone() is not None)

    async def gc(self, budgetBytes: int | None = None) -> tuple[int, int]:
        """
        Remove unpinned blocks, least recently used first, until the store
        holds at most ``budgetBytes`` (None: remove every unpinned block).
        Blocks with an operation in flight are skipped.  Works on a full
        disk (L{tau.store.collect}).
        """
        from tau.store.collect import collect

        return await collect(self, budgetBytes)

    async def stat(self) -> dict:
        def q():
            n, b = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blocks").fetchone()
            p = self._db.execute("SELECT COUNT(DISTINCT key) FROM pins").fetchone()[0]
            return {"blocks": n, "bytes": b, "pinned": p}
        return await self._index(q)

    async def keys(self) -> list[bytes]:
        """The multihashes of all stored blocks."""
        return await self._index(lambda: [r[0] for r in self._db.execute("SELECT key FROM blocks")])


def _items(blocks: Iterable) -> dict[bytes, bytes]:
    """(cid, data) pairs -> {multihash: data}, identity blocks checked and left out."""
    items: dict[bytes, bytes] = {}
    for c, data in blocks:
        key = multihashOf(c)
        code, _ = splitMultihash(key)
        if code == IDENTITY:
            if not verifies(key, data):
                raise BadBlock("data does not match identity multihash")
            continue
        if not canHash(code):
            raise UnsupportedHash(f"multihash function 0x{code:x} not supported")
        if not (isinstance(data, bytes) or (isinstance(data, memoryview) and data.readonly)):
            data = bytes(data)  # a read-only view is kept: nobody changes what it shows
        items[key] = data
    return items


def _v0(mh: bytes):
    return pycid.CIDv0(mh)


_temps = itertools.count()
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _createTemp(path: Path) -> tuple[Path, int]:
    """
    A new temporary file beside ``path`` (in its shard folder, made if
    missing: writers in different shards never share a folder lock), named
    ``NAME.data.N.tmp``; (its path, an fd open for writing).
    """
    while True:
        tmp = path.with_name(f"{path.name}.{next(_temps)}.tmp")
        try:
            return tmp, os.open(tmp, _TEMP_FLAGS, 0o644)
        except FileNotFoundError:
            path.parent.mkdir(exist_ok=True)
        except FileExistsError:
            pass  # left by another process that wrote here: take the next name


def _unlinkQuiet(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsyncDir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
