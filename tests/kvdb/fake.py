"""
An in-memory stand-in for L{tau.kvdb.service.KVDBService}'s reads and
writes (C{open}, C{get}, C{list}, C{put}, C{delete}), for the tests of the
services that store in it.
"""

from tau.kvdb.service import asKey


class FakeKVDB:
    def __init__(self):
        self.databases = {}

    async def open(self, name):
        self.databases.setdefault(name, {})

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
        return None, 1

    async def delete(self, db, key, replicas=1, timeout=30.0):
        self._db(db).pop(asKey(key), None)
        return None, 1

    def snapshot(self):
        """
        A copy of everything stored, to check that a refused request left
        it untouched.
        """
        return {name: dict(db) for name, db in self.databases.items()}
