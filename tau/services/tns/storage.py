"""
Every read and write tns makes to the replicated key/value store, in one
place: the database C{tns}, keys and values as L{tau.services.tns.paths}
lays them out.
"""

from tau.services.tns.paths import KEY_PREFIX, decodeValue, encodeValue, pathOf, storedKey

DATABASE = "tns"
#: entries of one kvdb write, and their bytes (under the kvdb's delta
#: limits: 10,000 entries, 2 MiB blocks)
WRITE_ENTRIES = 1000
WRITE_BYTES = 1 << 20


class TooMany(ValueError):
    """
    More keys than one answer may hold.
    """


class Storage:
    """
    @param kvdb: has C{open(name)}, C{get(db, key)}, C{list(db, prefix,
        limit, values)} and C{write(db, entries, replicas, timeout)}, as
        L{tau.kvdb.service.KVDBService}.
    @param replicas: nodes that must hold a write before it is done.
    @param timeout: seconds a write may wait for them.
    """

    def __init__(self, kvdb, database=DATABASE, *, replicas=1, timeout=30.0):
        self.kvdb = kvdb
        self.database = database
        self.replicas = replicas
        self.timeout = timeout

    async def open(self):
        """
        Open the service's database: written by the nodes of the cloud
        that run tns (L{tau.interfaces.IKVDB.serviceDatabase}); its full
        name (C{NAME@GENESIS}) is used from then on.
        """
        await self.kvdb.whenReady()
        replica = await self.kvdb.serviceDatabase("tns", self.database)
        self.database = replica.name

    async def get(self, path):
        """
        The value of the leaf at C{path}, or None.
        """
        raw = await self.kvdb.get(self.database, storedKey(path))
        return None if raw is None else decodeValue(raw)

    async def under(self, path, limit):
        """
        C{[(path, value)]} of the leaf at C{path} and every leaf under it,
        in key order.

        @raise TooMany: when there are more than C{limit}.
        """
        return await self._under(path, limit, True)

    async def paths(self, path, limit):
        """
        The paths of the leaf at C{path} and the leaves under it, in order.

        @raise TooMany: when there are more than C{limit}.
        """
        return [p for p, _ in await self._under(path, limit, False)]

    async def _under(self, path, limit, values):
        out = []
        if path:
            raw = await self.kvdb.get(self.database, storedKey(path))
            if raw is not None:
                out.append((list(path), decodeValue(raw) if values else None))
        prefix = (storedKey(path) if path else KEY_PREFIX.encode("utf-8")) + b"/"
        rows = await self.kvdb.list(self.database, prefix, limit + 1 - len(out), values)
        if values:
            out += [(pathOf(k), decodeValue(v)) for k, v in rows]
        else:
            out += [(pathOf(k), None) for k in rows]
        if len(out) > limit:
            raise TooMany(f"more than {limit} keys under /{'/'.join(path)}")
        return out

    async def write(self, entries):
        """
        Store C{[(path, value)]}, in writes of at most L{WRITE_ENTRIES}
        entries and L{WRITE_BYTES} bytes, one after another (so a replica
        that holds a later one holds the earlier ones).
        """
        batch, size = [], 0
        for path, value in entries:
            item = (storedKey(path), encodeValue(value))
            cost = len(item[0]) + len(item[1])
            if batch and (len(batch) >= WRITE_ENTRIES or size + cost > WRITE_BYTES):
                await self._write(batch)
                batch, size = [], 0
            batch.append(item)
            size += cost
        if batch:
            await self._write(batch)

    async def _write(self, batch):
        await self.kvdb.write(self.database, batch, self.replicas, self.timeout)

    async def onChange(self, callback):
        """
        Call C{callback()} after every write or merge that changed the
        database here; returns a function that stops it.
        """
        return (await self.kvdb.open(self.database)).onChange(lambda _replica: callback())

    async def heads(self):
        """
        C{{cid: height}}: the database's current heads.
        """
        return dict((await self.kvdb.open(self.database)).heads)
