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
    usage(db, writer, bytes)          bytes of the delta blocks applied per
                                      writer (a PeerId), for the quota of a
                                      database with writers
    writersets(db, cid)               the writer sets known (see
                                      L{tau.kvdb.writers})
    unverified(db, cid)               a snapshot merged here whose covered
                                      deltas are being fetched to check it
                                      (re-applied under the name C{db/verify},
                                      which no database can have)

and the state of the walk that fetches missing history (durable, so a walk
resumes after a restart, and never held in memory)::

    wanted(db, cid, tries, retry)     deltas to fetch: announced heads and the
                                      unknown parents of fetched deltas; not
                                      asked for again before C{retry}
    fetched(db, cid, h, missing)      deltas fetched, verified, stored and
                                      pinned, not yet applied; C{missing} =
                                      how many of their parents are not known
    waits(db, parent, child)          one row per parent a fetched delta
                                      still waits for

Invariant: a delta is in C{deltas} only once all its ancestors are (or are
covered by a merged snapshot), because deltas are applied parents first in
one transaction per batch.  So a crash never leaves a known delta with
unknown ancestors, and C{heads} is exact.  A fetched delta is applied as soon
as C{missing} drops to 0 (L{View.ready} gives them parents first, in
bounded batches).

Every method ending in C{Sync} runs in the view's own single thread (SQLite
connections belong to a thread); the async methods hand them to it.  The
reactor thread never touches SQLite.
"""

import sqlite3
from collections import deque
from pathlib import Path

import sqlite_utils
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool


#: How the reason of a delta refused for its writer's quota starts.
OVER_QUOTA = "over the writer's quota"


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
            CREATE TABLE IF NOT EXISTS wanted (db TEXT, cid BLOB, tries INTEGER, retry REAL, UNIQUE (db, cid));
            CREATE INDEX IF NOT EXISTS wanted_next ON wanted(db, retry);
            CREATE TABLE IF NOT EXISTS fetched (db TEXT, cid BLOB, h INTEGER, missing INTEGER,
                PRIMARY KEY (db, cid)) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS fetched_ready ON fetched(db, missing, h);
            CREATE TABLE IF NOT EXISTS waits (db TEXT, parent BLOB, child BLOB,
                PRIMARY KEY (db, parent, child)) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS waits_child ON waits(db, child);
            CREATE TABLE IF NOT EXISTS unverified (db TEXT PRIMARY KEY, cid BLOB);
            CREATE TABLE IF NOT EXISTS usage (db TEXT, writer BLOB, bytes INTEGER, PRIMARY KEY (db, writer)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS writersets (db TEXT, cid BLOB, UNIQUE (db, cid));
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

    async def writerSets(self, db):
        return await self._run(lambda: [bytes(c) for (c,) in self._q("SELECT cid FROM writersets WHERE db = ? ORDER BY rowid", (db,))])

    async def addWriterSet(self, db, cid):
        return await self._run(self._q, "INSERT OR IGNORE INTO writersets(db, cid) VALUES (?, ?)", (db, cid))

    async def usage(self, db):
        """
        C{{writer PeerId bytes: bytes of its deltas applied}}.
        """
        return await self._run(lambda: {bytes(w): n for w, n in self._q("SELECT writer, bytes FROM usage WHERE db = ?", (db,))})

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

    async def apply(self, db, deltas, quota=None):
        """
        Apply verified deltas (parents first, all parents known or earlier in
        the list) in one transaction; deltas already known are skipped, and a
        delta whose height is not 1 + its parents' largest (or with a parent
        not known), or that would take its writer's delta bytes past
        C{quota} (None: no quota), is refused, with the fetched deltas that
        wait for it.

        @return: C{(applied, refused, dropped)}: the deltas applied,
            C{{cid: why}} of the refused ones, and the CIDs of fetched
            deltas dropped because they descend from a refused one.
        """
        return await self._run(self._applySync, db, deltas, quota)

    _UPSERT = (
        "INSERT INTO entries(db, key, value, h, cid) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(db, key) DO UPDATE SET value = excluded.value, h = excluded.h, cid = excluded.cid "
        "WHERE excluded.h > entries.h OR (excluded.h = entries.h AND excluded.cid > entries.cid)"
    )

    def _applySync(self, db, deltas, quota=None):
        applied, refused = [], {}
        conn = self._db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for d in deltas:
                if conn.execute("SELECT 1 FROM deltas WHERE db = ? AND cid = ?", (db, d.cid)).fetchone():
                    self._nowKnownSync(db, d.cid)
                    continue
                heights = [conn.execute("SELECT h FROM deltas WHERE db = ? AND cid = ?", (db, p)).fetchone() for p in d.parents]
                if any(h is None for h in heights):
                    refused[d.cid] = "a parent is not known"
                    continue
                expected = max((h[0] for h in heights), default=0) + 1
                if d.height != expected:
                    refused[d.cid] = f"height {d.height}, its parents say {expected}"
                    continue
                if quota is not None:
                    writer = d.writer.toBytes()
                    row = conn.execute("SELECT bytes FROM usage WHERE db = ? AND writer = ?", (db, writer)).fetchone()
                    used = row[0] if row else 0
                    if used + len(d.data) > quota:
                        refused[d.cid] = f"{OVER_QUOTA}: {used} bytes written, this delta {len(d.data)}, quota {quota}"
                        continue
                    conn.execute(
                        "INSERT INTO usage(db, writer, bytes) VALUES (?, ?, ?) ON CONFLICT(db, writer) DO UPDATE SET bytes = bytes + excluded.bytes",
                        (db, writer, len(d.data)),
                    )
                conn.execute("INSERT INTO deltas(db, cid, h) VALUES (?, ?, ?)", (db, d.cid, d.height))
                conn.executemany("DELETE FROM heads WHERE db = ? AND cid = ?", [(db, p) for p in d.parents])
                conn.execute("INSERT INTO heads(db, cid, h) VALUES (?, ?, ?)", (db, d.cid, d.height))
                conn.executemany(self._UPSERT, [(db, k, v, d.height, d.cid) for k, v in d.entries])
                self._nowKnownSync(db, d.cid)
                applied.append(d)
            dropped = self._dropSync(db, list(refused)) if refused else []
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return applied, refused, dropped

    def _nowKnownSync(self, db, cid):
        """
        C{cid} became known: it is no longer wanted or waiting, and the
        fetched deltas waiting for it wait for one parent less.
        """
        conn = self._db.conn
        conn.execute("DELETE FROM wanted WHERE db = ? AND cid = ?", (db, cid))
        if conn.execute("DELETE FROM fetched WHERE db = ? AND cid = ?", (db, cid)).rowcount:
            conn.execute("DELETE FROM waits WHERE db = ? AND child = ?", (db, cid))
        children = [c for (c,) in conn.execute("SELECT child FROM waits WHERE db = ? AND parent = ?", (db, cid))]
        if children:
            conn.execute("DELETE FROM waits WHERE db = ? AND parent = ?", (db, cid))
            conn.executemany("UPDATE fetched SET missing = missing - 1 WHERE db = ? AND cid = ?", [(db, c) for c in children])

    def _dropSync(self, db, cids):
        """
        Forget C{cids} (refused, or wanted and never found) and every fetched
        delta that waits for them, recursively: those can never be applied.

        @return: the CIDs of the fetched deltas dropped (to unpin).
        """
        conn = self._db.conn
        dropped, stack, seen = [], list(cids), set()
        while stack:
            c = stack.pop()
            if c in seen:
                continue
            seen.add(c)
            conn.execute("DELETE FROM wanted WHERE db = ? AND cid = ?", (db, c))
            if conn.execute("DELETE FROM fetched WHERE db = ? AND cid = ?", (db, c)).rowcount:
                conn.execute("DELETE FROM waits WHERE db = ? AND child = ?", (db, c))
                dropped.append(c)
            children = [bytes(x) for (x,) in conn.execute("SELECT child FROM waits WHERE db = ? AND parent = ?", (db, c))]
            conn.execute("DELETE FROM waits WHERE db = ? AND parent = ?", (db, c))
            stack.extend(children)
        return dropped

    # the walk

    async def want(self, db, cids, now, limit):
        """
        Add C{cids} (announced heads) to the deltas to fetch, those not known
        or fetched already.

        @return: up to C{limit} CIDs to fetch now, oldest wishes first.
        """
        return await self._run(self._wantSync, db, list(cids), now, limit)

    def _wantSync(self, db, cids, now, limit):
        conn = self._db.conn
        if cids:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for c in cids:
                    if conn.execute("SELECT 1 FROM deltas WHERE db = ? AND cid = ?", (db, c)).fetchone():
                        continue
                    if conn.execute("SELECT 1 FROM fetched WHERE db = ? AND cid = ?", (db, c)).fetchone():
                        continue
                    conn.execute("INSERT OR IGNORE INTO wanted(db, cid, tries, retry) VALUES (?, ?, 0, 0)", (db, c))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        rows = conn.execute("SELECT cid FROM wanted WHERE db = ? AND retry <= ? ORDER BY retry, rowid LIMIT ?", (db, now, limit))
        return [bytes(c) for (c,) in rows]

    async def recordFetched(self, db, deltas):
        """
        Record fetched deltas (stored and pinned already): C{[(cid, height,
        parents)]}; their unknown parents become wanted.

        @return: how many have every parent known (ready to apply).
        """
        return await self._run(self._recordSync, db, deltas)

    def _recordSync(self, db, deltas):
        conn = self._db.conn
        ready = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            for cid, h, parents in deltas:
                conn.execute("DELETE FROM wanted WHERE db = ? AND cid = ?", (db, cid))
                if conn.execute("SELECT 1 FROM deltas WHERE db = ? AND cid = ?", (db, cid)).fetchone():
                    continue
                if conn.execute("SELECT 1 FROM fetched WHERE db = ? AND cid = ?", (db, cid)).fetchone():
                    continue
                missing = 0
                for p in parents:
                    if conn.execute("SELECT 1 FROM deltas WHERE db = ? AND cid = ?", (db, p)).fetchone():
                        continue
                    missing += 1
                    conn.execute("INSERT OR IGNORE INTO waits(db, parent, child) VALUES (?, ?, ?)", (db, p, cid))
                    if not conn.execute("SELECT 1 FROM fetched WHERE db = ? AND cid = ?", (db, p)).fetchone():
                        conn.execute("INSERT OR IGNORE INTO wanted(db, cid, tries, retry) VALUES (?, ?, 0, 0)", (db, p))
                conn.execute("INSERT INTO fetched(db, cid, h, missing) VALUES (?, ?, ?, ?)", (db, cid, h, missing))
                ready += missing == 0
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return ready

    async def fetchFailed(self, db, cids, retry, maxTries):
        """
        C{cids} could not be fetched: not asked for again before C{retry};
        after C{maxTries} failures they are dropped (with what waits for
        them).

        @return: the CIDs of fetched deltas dropped.
        """
        return await self._run(self._failedSync, db, list(cids), retry, maxTries)

    def _failedSync(self, db, cids, retry, maxTries):
        conn = self._db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("UPDATE wanted SET tries = tries + 1, retry = ? WHERE db = ? AND cid = ?", [(retry, db, c) for c in cids])
            marks = ",".join("?" * len(cids))
            gone = [bytes(c) for (c,) in conn.execute(f"SELECT cid FROM wanted WHERE db = ? AND tries >= ? AND cid IN ({marks})", (db, maxTries, *cids))] if cids else []
            dropped = self._dropSync(db, gone) if gone else []
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return dropped

    async def drop(self, db, cids):
        """
        Forget C{cids} and what waits for them (see L{_dropSync}).
        """
        return await self._run(self._transaction, self._dropSync, db, list(cids))

    async def unfetch(self, db, cids):
        """
        Fetched deltas whose block is gone: wanted again.
        """
        return await self._run(self._transaction, self._unfetchSync, db, list(cids))

    def _unfetchSync(self, db, cids):
        conn = self._db.conn
        for c in cids:
            if conn.execute("DELETE FROM fetched WHERE db = ? AND cid = ?", (db, c)).rowcount:
                conn.execute("DELETE FROM waits WHERE db = ? AND child = ?", (db, c))
                conn.execute("INSERT OR IGNORE INTO wanted(db, cid, tries, retry) VALUES (?, ?, 0, 0)", (db, c))

    def _transaction(self, f, *a):
        conn = self._db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = f(*a)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return result

    async def retryNow(self, db):
        """
        Every wanted delta may be asked for at once again.
        """
        return await self._run(self._q, "UPDATE wanted SET retry = 0 WHERE db = ?", (db,))

    async def ready(self, db, limit):
        """
        Up to C{limit} fetched deltas that can be applied in this order:
        C{[(cid, height)]}, parents first (those with every parent known,
        then those whose last unknown parents are earlier in the list), and
        whether more may be ready once they are applied.
        """
        return await self._run(self._readySync, db, limit)

    def _readySync(self, db, limit):
        conn = self._db.conn
        queue = deque((bytes(c), h) for c, h in conn.execute(
            "SELECT cid, h FROM fetched WHERE db = ? AND missing = 0 ORDER BY h, cid LIMIT ?", (db, limit)
        ))
        out, remaining, cut = [], {}, False
        while queue and len(out) < limit:
            c, h = queue.popleft()
            out.append((c, h))
            if len(remaining) > 4 * limit:
                cut = True
                continue
            for (child,) in conn.execute("SELECT child FROM waits WHERE db = ? AND parent = ?", (db, c)):
                child = bytes(child)
                if child not in remaining:
                    row = conn.execute("SELECT missing, h FROM fetched WHERE db = ? AND cid = ?", (db, child)).fetchone()
                    if row is None:
                        continue
                    remaining[child] = list(row)
                remaining[child][0] -= 1
                if remaining[child][0] == 0:
                    queue.append((child, remaining[child][1]))
        return out, cut or bool(queue) or len(out) >= limit

    # snapshot verification

    async def markUnverified(self, db, cid):
        await self._run(self._q, "INSERT OR REPLACE INTO unverified(db, cid) VALUES (?, ?)", (db, cid))

    async def unverified(self, db):
        rows = await self._run(self._q, "SELECT cid FROM unverified WHERE db = ?", (db,))
        return bytes(rows[0][0]) if rows else None

    async def verified(self, db, space):
        """
        The snapshot being verified is fine: forget it, and the deltas
        re-applied under C{space} to check it (their writers' bytes are
        added to C{db}'s).
        """
        def run():
            # the deltas the snapshot covers were applied under space only:
            # their writers' bytes count here too
            self._db.conn.execute(
                "INSERT INTO usage(db, writer, bytes) SELECT ?, writer, bytes FROM usage WHERE db = ? AND true "
                "ON CONFLICT(db, writer) DO UPDATE SET bytes = bytes + excluded.bytes",
                (db, space),
            )
            self._dropSpaceSync(space)
            self._db.conn.execute("DELETE FROM unverified WHERE db = ?", (db,))

        await self._run(self._transaction, run)

    def _dropSpaceSync(self, space):
        for table in ("entries", "deltas", "heads", "wanted", "fetched", "waits", "snapshots", "usage"):
            self._db.conn.execute(f"DELETE FROM {table} WHERE db = ?", (space,))

    async def adopt(self, db, space):
        """
        The snapshot being verified was wrong: the state, deltas and heads
        of C{db} become those re-derived under C{space} (the walk of C{db}
        starts over), and the snapshot is forgotten.
        """
        def run():
            conn = self._db.conn
            for table in ("entries", "deltas", "heads", "wanted", "fetched", "waits", "snapshots", "usage"):
                conn.execute(f"DELETE FROM {table} WHERE db = ?", (db,))
            for table in ("entries", "deltas", "heads", "usage"):
                conn.execute(f"UPDATE {table} SET db = ? WHERE db = ?", (db, space))
            self._dropSpaceSync(space)
            conn.execute("DELETE FROM unverified WHERE db = ?", (db,))

        await self._run(self._transaction, run)

    async def differences(self, space, entries=(), covered=()):
        """
        How many of C{entries} C{[(key, value, h, cid)]} are not the state
        under C{space}, plus how many of C{covered} C{[(cid, h)]} are not its
        deltas.
        """
        def run():
            n = 0
            for k, v, h, c in entries:
                row = self._db.conn.execute("SELECT value, h, cid FROM entries WHERE db = ? AND key = ?", (space, k)).fetchone()
                if row is None or (None if row[0] is None else bytes(row[0]), row[1], bytes(row[2])) != (v, h, c):
                    n += 1
            for c, h in covered:
                row = self._db.conn.execute("SELECT h FROM deltas WHERE db = ? AND cid = ?", (space, c)).fetchone()
                if row is None or row[0] != h:
                    n += 1
            return n

        return await self._run(run)

    async def counts(self, space):
        """
        C{(entries, deltas)} under C{space}.
        """
        return await self._run(
            lambda: (
                self._q("SELECT count(*) FROM entries WHERE db = ?", (space,))[0][0],
                self._q("SELECT count(*) FROM deltas WHERE db = ?", (space,))[0][0],
            )
        )

    async def walkState(self, db):
        """
        C{(wanted, fetched)}: how many deltas are still to fetch and how
        many wait to be applied.
        """
        return await self._run(
            lambda: (
                self._q("SELECT count(*) FROM wanted WHERE db = ?", (db,))[0][0],
                self._q("SELECT count(*) FROM fetched WHERE db = ?", (db,))[0][0],
            )
        )

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
            # the walk: covered deltas are known now
            conn.execute("DELETE FROM wanted WHERE db = ? AND cid IN (SELECT cid FROM deltas WHERE db = ?)", (db, db))
            for (c,) in conn.execute("SELECT f.cid FROM fetched f JOIN deltas d ON d.db = f.db AND d.cid = f.cid WHERE f.db = ?", (db,)).fetchall():
                self._nowKnownSync(db, bytes(c))
            for (c,) in conn.execute("SELECT DISTINCT w.parent FROM waits w JOIN deltas d ON d.db = w.db AND d.cid = w.parent WHERE w.db = ?", (db,)).fetchall():
                self._nowKnownSync(db, bytes(c))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return after - before
