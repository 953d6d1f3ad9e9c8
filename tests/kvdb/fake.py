"""
An in-memory stand-in for L{tau.kvdb.service.KVDBService}'s reads and
writes (C{open}, C{get}, C{list}, C{put}, C{delete}, C{write}), for the tests
of the services that store in it.
"""

from tau.kvdb.service import asKey


class FakeKVDB:
    def __init__(self):
        self.databases = {}
        self.replicas = {}
        self.writes = 0

    async def open(self, name):
        self.databases.setdefault(name, {})
        return self.replicas.setdefault(name, FakeReplica(self, name))

    async def serviceDatabase(self, service, name, quota=None):
        """
        The database of C{service} (the real one is named C{NAME@GENESIS};
        here C{NAME@SERVICE}).
        """
        return await self.open(f"{name}@{service}")

    def _db(self, name):
        if name not in self.databases:
            raise KeyError(f"database {name!r} is not open")
        return self.databases[name]

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
        return {name: dict(db) for name, db in self.databases.items()}


class FakeReplica:
    """
    What C{open} returns: the heads (one, named after the count of writes
    made) and C{onChange}.
    """

    def __init__(self, kvdb, name):
        self.kvdb = kvdb
        self.name = name
        self.observers = []

    @property
    def heads(self):
        return {b"head-%d" % self.kvdb.writes: self.kvdb.writes} if self.kvdb.writes else {}

    def onChange(self, observer):
        self.observers.append(observer)
        return lambda: self.observers.remove(observer)
