"""
The materialised view of the replicated databases, in SQLite (sqlite-utils,
WAL), one file for every database a node replicates.

Tables (C{db} is the database name; CIDs are binary CIDv1)::

    dbs(name)                         the databases this node replicates
    entries(db, key, value, h, cid)   per key, the winning write: the one with
                                      the largest (h, cid); value NULL = deleted
    deltas(db, cid, h)                the deltas applied, or covered by a
                                      snapshot that was merged
    heads(db, cid, h)                 the known deltas no known delta links to
    snapshots(db, cid, h, deltas)     the latest snapshot made or merged here,
                                      and how many deltas were known then

Invariant: a delta is in C{deltas} only once all its ancestors are (or are
covered by a merged snapshot), because deltas are applied parents first in
one transaction per batch.  So a crash never leaves a known delta with
unknown ancestors, and C{heads} is exact.

Every method ending in C{Sync} runs in the view's own single thread (SQLite
connections belong to a thread); the async methods hand them to it.  The
reactor thread never touches SQLite.
"""

import sqlite3
from pathlib import Path

import sqlite_utils
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool


def prefixEnd(prefix):
    """
    The smallest byte string greater than every string starting with
    C{prefix}, or None when there is none (C{prefix} is all 0xff).
    """
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return None
    p[-1] += 1
    return bytes(p)


class View:
    def __init__(self, path, reactor):
        self._path = Path(path)
        self._reactor = reactor
        self._pool = None
        self._db = None

    # plumbing

    def _run(self, f, *a):
        if self._pool is None:
            raise RuntimeError("the kvdb view is not open")
        return deferToThreadPool(self._reactor, self._pool, f, *a)

    async def open(self):
        self._pool = ThreadPool(1, 1, name=f"tau-kvdb:{self._path}")
        self._pool.start()
        try:
            await self._run(self._openSync)
        except BaseException:
            await self.close()
            raise

    async def close(self):
        if self._pool is None:
            return
        try:
            await self._run(self._closeSync)
        finally:
            pool, self._pool = self._pool, None
            await deferToThreadPool(self._reactor, self._reactor.getThreadPool(), pool.stop)

    def _openSync(self):
        self._path.parent.mkdir(parents=True, exist_ok=True)
        db = self._db = sqlite_utils.Database(sqlite3.connect(str(self._path), isolation_level=None, check_same_thread=False))
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(
            """
            CREATE TABLE IF NOT EXISTS dbs (name TEXT PRIMARY KEY);
            CREATE TABLE IF NOT EXISTS entries (db TEXT, key BLOB, value BLOB, h INTEGER, cid BLOB,
                PRIMARY KEY (db, key)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS deltas (db TEXT, cid BLOB, h INTEGER, PRIMARY KEY (db, cid)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS heads (db TEXT, cid BLOB, h INTEGER, PRIMARY KEY (db, cid)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS snapshots (db TEXT PRIMARY KEY, cid BLOB, h INTEGER, deltas INTEGER);
            """
        )

    def _closeSync(self):
        if self._db is not None:
            self._db.conn.close()
            self._db = None

    def _q(self, sql, params=()):
        return self._db.execute(sql, params).fetchall()

    # databases

    async def databases(self):
        return await self._run(lambda: [r[0] for r in self._q("SELECT name FROM dbs ORDER BY name")])

    async def addDatabase(self, name):
        return await self._run(lambda: self._q("INSERT OR IGNORE INTO dbs(name) VALUES (?)", (name,)))

    # reads

    async def heads(self, db):
        return await self._run(lambda: {bytes(c): h for c, h in self._q("SELECT cid, h FROM heads WHERE db = ?", (db,))})

    async def known(self, db, cids):
        """
        C{{cid: height}} for those of C{cids} that are known.
        """
        return await self._run(self._knownSync, db, list(cids))

    def _knownSync(self, db, cids):
        out = {}
        for i in range(0, len(cids), 500):
            chunk = cids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for c, h in self._q(f"SELECT cid, h FROM deltas WHERE db = ? AND cid IN ({marks})", (db, *chunk)):
                out[bytes(c)] = h
        return out

    async def get(self, db, key):
        """
        The value of C{key}, or None when it is absent or deleted.
        """
        rows = await self._run(self._q, "SELECT value FROM entries WHERE db = ? AND key = ?", (db, key))
        return None if not rows or rows[0][0] is None else bytes(rows[0][0])

    async def entry(self, db, key):
        """
        C{(value or None, height, cid)} of the winning write of C{key}, or None.
        """
        rows = await self._run(self._q, "SELECT value, h, cid FROM entries WHERE db = ? AND key = ?", (db, key))
        if not rows:
            return None
        v, h, c = rows[0]
        return (None if v is None else bytes(v), h, bytes(c))

    async def list(self, db, prefix=b"", limit=None, values=False):
        """
        C{[key]} (or C{[(key, value)]}) of the live keys starting with C{prefix}, in
        byte order.
        """
        return await self._run(self._listSync, db, prefix, limit, values)

    def _listSync(self, db, prefix, limit, values):
        end = prefixEnd(prefix)
        sql = "SELECT key, value FROM entries WHERE db = ? AND key >= ? AND value IS NOT NULL"
        params = [db, prefix]
        if end is not None:
            sql += " AND key < ?"
            params.append(end)
        sql += " ORDER BY key"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self._q(sql, params)
        if values:
            return [(bytes(k), bytes(v)) for k, v in rows]
        return [bytes(k) for k, _ in rows]

    async def state(self, db):
        """
        Everything a snapshot holds: C{(heads [(cid, h)], entries [(key,
        value|None, h, cid)] by key, covered [(cid, h)], deltaCount)}, read in one
        transaction.
        """
        return await self._run(self._stateSync, db)

    def _stateSync(self, db):
        self._db.execute("BEGIN")
        try:
            heads = [(bytes(c), h) for c, h in self._q("SELECT cid, h FROM heads WHERE db = ? ORDER BY cid", (db,))]
            entries = [
                (bytes(k), None if v is None else bytes(v), h, bytes(c))
                for k, v, h, c in self._q("SELECT key, value, h, cid FROM entries WHERE db = ? ORDER BY key", (db,))
            ]
            covered = [(bytes(c), h) for c, h in self._q("SELECT cid, h FROM deltas WHERE db = ? ORDER BY cid", (db,))]
        finally:
            self._db.execute("COMMIT")
        return heads, entries, covered, len(covered)

    async def deltaCount(self, db):
        return await self._run(lambda: self._q("SELECT count(*) FROM deltas WHERE db = ?", (db,))[0][0])

    async def snapshot(self, db):
        """
        C{(cid, height, deltaCount)} of the latest snapshot, or None.
        """
        rows = await self._run(self._q, "SELECT cid, h, deltas FROM snapshots WHERE db = ?", (db,))
        return None if not rows else (bytes(rows[0][0]), rows[0][1], rows[0][2])

    async def recordSnapshot(self, db, cid, height, deltas):
        await self._run(self._q, "INSERT OR REPLACE INTO snapshots(db, cid, h, deltas) VALUES (?, ?, ?, ?)", (db, cid, height, deltas))

    # writes

    async def apply(self, db, deltas):
        """
        Apply verified deltas (parents first, all parents known or earlier in
        the list) in one transaction; deltas already known are skipped.

        @return: the deltas applied.
        """
        return await self._run(self._applySync, db, deltas)

    _UPSERT = (
        "INSERT INTO entries(db, key, value, h, cid) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(db, key) DO UPDATE SET value = excluded.value, h = excluded.h, cid = excluded.cid "
        "WHERE excluded.h > entries.h OR (excluded.h = entries.h AND excluded.cid > entries.cid)"
    )

    def _applySync(self, db, deltas):
        applied = []
        conn = self._db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for d in deltas:
                if conn.execute("SELECT 1 FROM deltas WHERE db = ? AND cid = ?", (db, d.cid)).fetchone():
                    continue
                conn.execute("INSERT INTO deltas(db, cid, h) VALUES (?, ?, ?)", (db, d.cid, d.height))
                conn.executemany("DELETE FROM heads WHERE db = ? AND cid = ?", [(db, p) for p in d.parents])
                conn.execute("INSERT INTO heads(db, cid, h) VALUES (?, ?, ?)", (db, d.cid, d.height))
                conn.executemany(self._UPSERT, [(db, k, v, d.height, d.cid) for k, v in d.entries])
                applied.append(d)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return applied

    async def mergeSnapshot(self, db, heads, entries, covered):
        """
        Merge a snapshot: entries by last write wins, its covered deltas
        become known, and the heads are recomputed.

        @return: how many covered deltas were new here.
        """
        return await self._run(self._mergeSync, db, heads, entries, covered)

    def _mergeSync(self, db, heads, entries, covered):
        conn = self._db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            ours = {bytes(c) for (c,) in conn.execute("SELECT cid FROM heads WHERE db = ?", (db,))}
            wasKnown = set()
            for c, _ in heads:
                if conn.execute("SELECT 1 FROM deltas WHERE db = ? AND cid = ?", (db, c)).fetchone():
                    wasKnown.add(c)
            before = conn.execute("SELECT count(*) FROM deltas WHERE db = ?", (db,)).fetchone()[0]
            conn.executemany("INSERT OR IGNORE INTO deltas(db, cid, h) VALUES (?, ?, ?)", [(db, c, h) for c, h in covered])
            conn.executemany("INSERT OR IGNORE INTO deltas(db, cid, h) VALUES (?, ?, ?)", [(db, c, h) for c, h in heads])
            after = conn.execute("SELECT count(*) FROM deltas WHERE db = ?", (db,)).fetchone()[0]
            snapHeads = {c for c, _ in heads}
            coveredSet = {c for c, _ in covered} | snapHeads
            # our heads that the snapshot covers, other than its own heads,
            # are ancestors of its heads
            conn.executemany("DELETE FROM heads WHERE db = ? AND cid = ?", [(db, c) for c in ours if c in coveredSet and c not in snapHeads])
            conn.executemany(
                "INSERT OR IGNORE INTO heads(db, cid, h) VALUES (?, ?, ?)",
                [(db, c, h) for c, h in heads if c not in wasKnown or c in ours],
            )
            conn.executemany(self._UPSERT, [(db, k, v, h, c) for k, v, h, c in entries])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return after - before
