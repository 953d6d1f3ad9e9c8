"""
The database host functions (go-sdk C{database}: C{newDatabase},
C{databaseGet{Size}}, C{databasePut}, C{databaseList{Size}},
C{databaseDelete}, C{databaseClose}), backed by the node's kvdb.

A database resource of a project is one kvdb database, opened with
C{IKVDB.serviceDatabase("substrate", "db-<project>-<resource id>")} (so
every substrate node of the cloud opens the same one).  Inside it the
guest's key C{K} is stored at C{k/K}, and C{u} holds the bytes the keys and
values take; a put that would take the database past its config C{size}
is refused (C{ErrorDatabasePutFailed}).  The count is kept in the same
write as the value; writes through one node are serialized per database,
writes through several nodes at once may make it drift (last write wins).
"""

from dataclasses import dataclass

from twisted.internet.defer import DeferredLock
from twisted.logger import Logger

from tau.kvdb import codec
from tau.services.substrate.wasm import errno
from tau.services.substrate.wasm.nodeabi import MAX_NAME, Errno, Handles, SizedValue, answering, readBounded, readText, services

log = Logger()

SERVICE = "substrate"
KEYS = b"k/"
USED = b"u"
#: the longest key and value a guest may put (the kvdb's own limits)
MAX_KEY = codec.MAX_KEY - len(KEYS)
MAX_VALUE = codec.MAX_VALUE
#: the most keys one list answers, and their bytes
MAX_LIST = 10_000
MAX_LIST_BYTES = 1 << 20


class DatabaseFull(Exception):
    """
    A put would take the database past its size.
    """


class ListTooLong(Exception):
    """
    More keys match than one list answers.
    """


@dataclass(frozen=True)
class Database:
    """
    An open database resource: its kvdb C{name} and its C{size} in bytes.
    """

    name: str
    size: int


def kvdbName(prefix, project, resourceId):
    """
    The kvdb name of a resource (C{prefix-project-resource}).

    @raise ValueError: an id that cannot be part of a kvdb name.
    """
    name = f"{prefix}-{project}-{resourceId}"
    codec.checkName(name)
    return name


def sizeOf(config):
    size = config.get("size")
    if type(size) is not int or size <= 0:
        raise ValueError(f"the resource's size {size!r} is not a number of bytes above 0")
    return size


class ResourceDatabases:
    """
    The kvdb database of each resource of one kind (C{prefix}: C{db},
    C{st}), made once and remembered, and a lock per database for the
    writes that read what they change (the used-bytes counter).
    """

    def __init__(self, kvdb, prefix):
        self._kvdb = kvdb
        self._prefix = prefix
        self._names = {}
        self._locks = {}

    async def nameOf(self, project, resourceId):
        base = kvdbName(self._prefix, project, resourceId)
        name = self._names.get(base)
        if name is None:
            await self._kvdb.whenReady()
            name = (await self._kvdb.serviceDatabase(SERVICE, base)).name
            self._names[base] = name
        return name

    def lock(self, name):
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = DeferredLock()
        return lock


class Databases:
    """
    The database operations, on the reactor thread.
    """

    def __init__(self, kvdb):
        self._kvdb = kvdb
        self._resources = ResourceDatabases(kvdb, "db")

    async def open(self, project, resourceId, config):
        return Database(await self._resources.nameOf(project, resourceId), sizeOf(config))

    async def get(self, db, key):
        return await self._kvdb.get(db.name, KEYS + key)

    async def used(self, db):
        raw = await self._kvdb.get(db.name, USED)
        return int(raw) if raw else 0

    async def list(self, db, prefix):
        keys = await self._kvdb.list(db.name, KEYS + prefix, MAX_LIST + 1)
        if len(keys) > MAX_LIST or sum(len(k) - len(KEYS) + 1 for k in keys) > MAX_LIST_BYTES:
            raise ListTooLong(f"more than {MAX_LIST} keys or {MAX_LIST_BYTES} bytes of them")
        return [k[len(KEYS):] for k in keys]

    async def put(self, db, key, value):
        async with self._lock(db.name):
            old = await self.get(db, key)
            used = await self.used(db) - (len(key) + len(old) if old is not None else 0) + len(key) + len(value)
            if used > db.size:
                raise DatabaseFull(f"{used} bytes would be over the database's {db.size}")
            await self._kvdb.write(db.name, [(KEYS + key, value), (USED, b"%d" % used)])

    async def delete(self, db, key):
        async with self._lock(db.name):
            old = await self.get(db, key)
            if old is None:
                return
            used = max(0, await self.used(db) - len(key) - len(old))
            await self._kvdb.write(db.name, [(KEYS + key, None), (USED, b"%d" % used)])

    def _lock(self, name):
        return self._resources.lock(name)


class DatabaseAbi:
    """
    The database host functions of one instance: its open databases (at
    most C{maxOpen}), by id.
    """

    maxOpen = 64

    def __init__(self, instance):
        self._instance = instance
        self._open = Handles(self.maxOpen, instance)
        self._sized = SizedValue(instance)

    def _wait(self, code, fn, *args):
        node = services(self._instance, code)
        try:
            return node.wait(self._instance, fn, *args)
        except Errno:
            raise
        except Exception as e:
            log.info("database call failed: {error}", error=repr(e))
            raise Errno(code) from None

    def _key(self, mem, ptr, size, code):
        return readBounded(mem, ptr, size, MAX_KEY, code)

    @answering
    def newDatabase(self, mem, namePtr, nameLen, idPtr):
        name = readText(mem, namePtr, nameLen, MAX_NAME, errno.DATABASE_CREATE_FAILED)
        node = services(self._instance, errno.DATABASE_CREATE_FAILED)
        context = self._instance.context

        async def open():
            resourceId, config = await node.resolve(context, "databases", name)
            return await node.databases.open(context.project, resourceId, config)

        db = self._wait(errno.DATABASE_CREATE_FAILED, open)
        return self._open.giveId(mem, idPtr, db, errno.DATABASE_CREATE_FAILED)

    def _get(self, db, key):
        node = services(self._instance, errno.DATABASE_GET_FAILED)
        value = self._wait(errno.DATABASE_GET_FAILED, node.databases.get, db, key)
        if value is None:
            raise Errno(errno.DATABASE_KEY_NOT_FOUND)
        return value

    @answering
    def databaseGetSize(self, mem, dbId, keyPtr, keyLen, sizePtr):
        db = self._open.get(dbId, errno.DATABASE_NOT_FOUND)
        key = self._key(mem, keyPtr, keyLen, errno.DATABASE_GET_FAILED)
        return self._sized.size(mem, sizePtr, ("get", dbId, key), lambda: self._get(db, key))

    @answering
    def databaseGet(self, mem, dbId, keyPtr, keyLen, dataPtr):
        db = self._open.get(dbId, errno.DATABASE_NOT_FOUND)
        key = self._key(mem, keyPtr, keyLen, errno.DATABASE_GET_FAILED)
        return self._sized.write(mem, dataPtr, ("get", dbId, key), lambda: self._get(db, key))

    @answering
    def databasePut(self, mem, dbId, keyPtr, keyLen, bufPtr, bufSize):
        db = self._open.get(dbId, errno.DATABASE_NOT_FOUND)
        key = self._key(mem, keyPtr, keyLen, errno.DATABASE_PUT_FAILED)
        value = readBounded(mem, bufPtr, bufSize, min(MAX_VALUE, db.size), errno.DATABASE_PUT_FAILED)
        node = services(self._instance, errno.DATABASE_PUT_FAILED)
        self._wait(errno.DATABASE_PUT_FAILED, node.databases.put, db, key, value)
        return errno.NONE

    @answering
    def databaseDelete(self, mem, dbId, keyPtr, keyLen):
        db = self._open.get(dbId, errno.DATABASE_NOT_FOUND)
        key = self._key(mem, keyPtr, keyLen, errno.DATABASE_DELETE_FAILED)
        node = services(self._instance, errno.DATABASE_DELETE_FAILED)
        self._wait(errno.DATABASE_DELETE_FAILED, node.databases.delete, db, key)
        return errno.NONE

    def _list(self, db, prefix):
        node = services(self._instance, errno.DATABASE_LIST_FAILED)
        keys = self._wait(errno.DATABASE_LIST_FAILED, node.databases.list, db, prefix)
        return b"".join(k + b"\0" for k in keys)

    @answering
    def databaseListSize(self, mem, dbId, prefixPtr, prefixLen, sizePtr):
        db = self._open.get(dbId, errno.DATABASE_NOT_FOUND)
        prefix = self._key(mem, prefixPtr, prefixLen, errno.DATABASE_LIST_FAILED)
        return self._sized.size(mem, sizePtr, ("list", dbId, prefix), lambda: self._list(db, prefix))

    @answering
    def databaseList(self, mem, dbId, prefixPtr, prefixLen, dataPtr):
        db = self._open.get(dbId, errno.DATABASE_NOT_FOUND)
        prefix = self._key(mem, prefixPtr, prefixLen, errno.DATABASE_LIST_FAILED)
        return self._sized.write(mem, dataPtr, ("list", dbId, prefix), lambda: self._list(db, prefix))

    @answering
    def databaseClose(self, mem, dbId):
        self._open.pop(dbId, errno.DATABASE_NOT_FOUND)
        return errno.NONE

    def functions(self):
        return [
            ("newDatabase", 3, True, self.newDatabase),
            ("databaseGetSize", 4, True, self.databaseGetSize),
            ("databaseGet", 4, True, self.databaseGet),
            ("databasePut", 5, True, self.databasePut),
            ("databaseDelete", 3, True, self.databaseDelete),
            ("databaseListSize", 4, True, self.databaseListSize),
            ("databaseList", 4, True, self.databaseList),
            ("databaseClose", 1, True, self.databaseClose),
        ]


def databaseFunctions(instance):
    return DatabaseAbi(instance).functions()
