"""
A fake of the replicated key/value store (L{tau.interfaces.IKVDB}).
"""

from twisted.internet.defer import succeed
from zope.interface import implementer

from tau.interfaces import IKVDB
from tau.kvdb import writers
from tau.kvdb.service import WRITER_QUOTA, asKey


@implementer(IKVDB)
class FakeKVDB:
    """
    Databases in dicts (C{stored}: name -> {key: value}), every write
    acknowledged at once.  A database made by C{create} is named
    C{NAME@GENESIS} as the real one names it; C{serviceDatabase(service,
    name)} is C{NAME@service:SERVICE}.

    @ivar writes: how many writes were made.
    """

    def __init__(self):
        self.stored = {}
        self.replicas = {}
        self.writers = {}
        self.writes = 0

    async def open(self, name):
        self.stored.setdefault(name, {})
        return self.replicas.setdefault(name, FakeReplica(self, name))

    def databases(self):
        return sorted(self.stored)

    def _db(self, name):
        if name not in self.stored:
            raise KeyError(f"database {name!r} is not open")
        return self.stored[name]

    async def get(self, db, key):
        return self._db(db).get(asKey(key))

    async def list(self, db, prefix=b"", limit=None, values=False):
        prefix = asKey(prefix) if prefix else b""
        keys = sorted(k for k in self._db(db) if k.startswith(prefix))[:limit]
        if values:
            return [(k, self._db(db)[k]) for k in keys]
        return keys

    async def put(self, db, key, value, replicas=1, timeout=30.0):
        self._db(db)[asKey(key)] = bytes(value)
        self._changed(db)
        return None, 1

    async def delete(self, db, key, replicas=1, timeout=30.0):
        self._db(db).pop(asKey(key), None)
        self._changed(db)
        return None, 1

    async def write(self, db, entries, replicas=1, timeout=30.0):
        """
        C{[(key, value or None)]} as one write (None deletes).
        """
        keys = [asKey(k) for k, _ in entries]
        if len(set(keys)) != len(keys):
            raise ValueError("a key appears twice in one write")
        target = self._db(db)
        for key, (_, value) in zip(keys, entries):
            if value is None:
                target.pop(key, None)
            else:
                target[key] = bytes(value)
        self._changed(db)
        return None, 1

    async def create(self, name, writerList, quota=None):
        quota = WRITER_QUOTA if quota is None else quota
        full = writers.databaseName(name, writers.makeGenesis(name, writerList, quota).cid)
        replica = await self.open(full)
        replica.quota = quota
        self.writers.setdefault(full, list(writerList))
        return replica

    def whenReady(self):
        return succeed(self)

    async def serviceDatabase(self, service, name, quota=WRITER_QUOTA):
        replica = await self.open(f"{name}@service:{service}")
        replica.quota = quota
        return replica

    async def writersOf(self, db):
        await self.open(db)
        return self.writers.get(db)

    async def addWriters(self, db, writerList):
        await self.open(db)
        self.writers.setdefault(db, []).extend(w for w in writerList if w not in self.writers[db])

    def _changed(self, db):
        self.writes += 1
        replica = self.replicas.get(db)
        if replica is not None:
            for observer in list(replica.observers):
                observer(replica)

    def snapshot(self):
        """
        A copy of everything stored, to check that a refused request left
        it untouched.
        """
        return {name: dict(db) for name, db in self.stored.items()}


class FakeReplica:
    """
    What C{open} returns: the heads (one, named after the count of writes
    made) and C{onChange}.
    """

    def __init__(self, kvdb, name):
        self.kvdb = kvdb
        self.name = name
        self.quota = None
        self.observers = []

    @property
    def heads(self):
        return {b"head-%d" % self.kvdb.writes: self.kvdb.writes} if self.kvdb.writes else {}

    def onChange(self, observer):
        self.observers.append(observer)
        return lambda: self.observers.remove(observer)
