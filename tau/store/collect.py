"""
Garbage collection of the block store (L{tau.store.blockstore.BlockStore.gc}),
made to free space on a disk that is full:

 - nothing is written before something is freed: the last uses still in
   memory order the candidates, they are not written to the index first;
 - the block files go first (under their key locks, after a last look at
   the pins, all in the index thread, so no pin can slip in between), then
   their index rows, in chunks; a row delete that finds the disk full still
   (room taken by another writer in between) gives the store's spare room
   back and tries again (L{tau.diskfull.Spare});
 - rows whose file is gone but that could not be deleted are remembered
   (C{BlockStore._gone}): the store treats them as absent and the next
   collection deletes them;
 - the spare room is allocated anew once there is room again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from tau.diskfull import isFull
from tau.store.blockstore import _unlinkQuiet

if TYPE_CHECKING:
    from tau.store.blockstore import BlockStore

log = Logger()

#: Index rows deleted per transaction (each one's WAL pages stay few).
CHUNK = 500


async def collect(store: BlockStore, budgetBytes: int | None) -> tuple[int, int]:
    candidates, total = await store._index(_candidatesSync, store, dict(store._touched))
    if budgetBytes is not None and total <= budgetBytes:
        return 0, 0
    chosen, locks, excess = [], [], (total - budgetBytes) if budgetBytes is not None else None
    freed = 0
    held = set().union(*(b.keys for b in store._batches)) if store._batches else ()
    for key, size in candidates:
        if excess is not None and freed >= excess:
            break
        if key in held:
            continue
        d = store._tryLock(key)
        if d is None:
            continue
        locks.append((key, d))
        chosen.append(key)
        freed += size
    try:
        removed = await store._index(_removeSync, store, chosen)
        for key, _ in removed:
            store._touched.pop(key, None)
    finally:
        for k, d in locks:
            store._unlock(k, d)
    n, b = len(removed), sum(s for _, s in removed)
    log.info("gc removed {n} blocks, {b} bytes", n=n, b=b)
    return n, b


def _candidatesSync(store: BlockStore, touched: dict):
    """
    (Index thread) the unpinned blocks [(key, size)], least recently used
    first, and the bytes the store holds; reads only.
    """
    db = store._db
    total = db.execute("SELECT COALESCE(SUM(size), 0) FROM blocks").fetchone()[0]
    rows = db.execute(
        "SELECT key, size, last_used FROM blocks WHERE key NOT IN (SELECT key FROM pins) "
        "ORDER BY last_used, rowid").fetchall()
    late = {**store._lateTouches, **touched}
    if late:
        rows.sort(key=lambda r: late.get(r[0], r[2]))
    return [(k, s) for k, s, _ in rows if k not in store._gone], total


def _removeSync(store: BlockStore, keys: list) -> list:
    """
    (Index thread) remove the blocks ``keys`` that are still unpinned and
    indexed: files first, then rows; [(key, size)] removed.
    """
    db = store._db
    if store._gone:
        _dropRows(store, sorted(store._gone))
    removed = []
    for i in range(0, len(keys), CHUNK):
        part = keys[i : i + CHUNK]
        q = ",".join("?" * len(part))
        pinned = {r[0] for r in db.execute(f"SELECT DISTINCT key FROM pins WHERE key IN ({q})", part)}
        sizes = dict(db.execute(f"SELECT key, size FROM blocks WHERE key IN ({q})", part).fetchall())
        chunk = [(k, sizes[k]) for k in part if k in sizes and k not in pinned]
        for k, _ in chunk:
            _unlinkQuiet(store._path(k))
            store._lateTouches.pop(k, None)
        removed.extend(chunk)
        _dropRows(store, [k for k, _ in chunk])
    store._spare.fill()
    return removed


def _dropRows(store: BlockStore, keys: list) -> None:
    """
    Delete the rows of ``keys``, whose files are gone; on a disk still full
    remember them (the store treats them as absent, the next collection
    deletes them).
    """
    def drop():
        with store._db.conn:
            store._db.conn.executemany("DELETE FROM blocks WHERE key = ?", [(k,) for k in keys])
    try:
        store._spare.freeing(drop)
    except Exception as e:
        if not isFull(e):
            raise
        store._gone.update(keys)
        log.warn("gc: the disk is still full, {n} index rows left for later", n=len(keys))
        return
    store._gone.difference_update(keys)
