"""
The storage host functions (go-sdk C{storage}: C{storageNew},
C{storageGet}, C{storageAddFile}, C{storageGetFile}, C{storageReadFile},
C{storageCloseFile}, C{storageDeleteFile}, C{storageListFiles{Size}},
C{storageListVersions{Size}}, C{storageUsed{Size}},
C{storageCapacity{Size}}, C{storageCid}, C{storageCurrentVersion{Size}}),
backed by the node's content (UnixFS files, added pinned) and kvdb (the
index).

A storage resource of a project has its index in the kvdb database
C{serviceDatabase("substrate", "st-<project>-<resource id>")}:
C{/file/<name>/<version>} = the file's CID (the key form the Go SDK's
C{ListFiles} parses), C{/size/<name>/<version>} its bytes,
C{/version/<name>} its latest version and C{/used} the bytes of all the
files; an add that would take the storage past its config C{size} is
refused (C{ErrorAddFileFailed}).  Versions, as Taubyte numbers them: with
C{versioning} an add makes the next version (with overwrite, replaces the
latest); without, a file has version 1 only and an add of an existing name
needs overwrite.  A deleted file leaves the index; its blocks stay pinned
(they may be shared with any other file of the node).
"""

from dataclasses import dataclass

from twisted.logger import Logger

from tau.cids import cidText, cidToBytes, parseCID
from tau.services.substrate.wasm import errno
from tau.services.substrate.wasm.database import MAX_LIST_BYTES, ListTooLong, ResourceDatabases, sizeOf
from tau.services.substrate.wasm.nodeabi import (
    MAX_NAME, Errno, Handles, SizedValue, answering, encodeStrings, readBounded, readText, services)

log = Logger()

#: the longest file name (no C{/}, no NUL)
MAX_FILE_NAME = 1024
#: the most bytes one read copies, and the most files one list answers
MAX_READ = 1 << 20
MAX_LIST = 10_000
USED = b"/used"


class StorageFull(Exception):
    pass


class FileExists(Exception):
    pass


class NoSuchFile(LookupError):
    pass


@dataclass(frozen=True)
class Storage:
    name: str
    size: int
    versioning: bool


@dataclass
class OpenFile:
    cid: str
    size: int
    offset: int = 0


def _key(*parts):
    return "/".join(("",) + tuple(str(p) for p in parts)).encode("utf-8", "surrogateescape")


def checkFileName(name):
    if not name or len(name) > MAX_FILE_NAME or "/" in name or "\0" in name:
        raise ValueError(f"a file name is 1 to {MAX_FILE_NAME} characters, without '/' or NUL")
    return name


class Storages:
    """
    The storage operations, on the reactor thread.
    """

    def __init__(self, kvdb, content):
        self._kvdb = kvdb
        self._content = content
        self._resources = ResourceDatabases(kvdb, "st")

    async def open(self, project, resourceId, config):
        name = await self._resources.nameOf(project, resourceId)
        return Storage(name, sizeOf(config), config.get("versioning") is True)

    async def _int(self, st, key):
        raw = await self._kvdb.get(st.name, key)
        return int(raw) if raw else None

    async def used(self, st):
        return await self._int(st, USED) or 0

    async def addFile(self, st, name, data, overwrite):
        """
        Store C{data} as file C{name}; its version.
        """
        checkFileName(name)
        async with self._lock(st.name):
            latest = await self._int(st, _key("version", name))
            version = 1
            if st.versioning and latest is not None:
                version = latest if overwrite else latest + 1
            old = await self._int(st, _key("size", name, version))
            if old is not None and not overwrite:
                raise FileExists(f"{name} version {version} exists")
            used = await self.used(st) - (old or 0) + len(data)
            if used > st.size:
                raise StorageFull(f"{used} bytes would be over the storage's {st.size}")
            entry = await self._content.add(data, pin=True)
            await self._kvdb.write(st.name, [
                (_key("file", name, version), cidText(entry.cid).encode()),
                (_key("size", name, version), b"%d" % len(data)),
                (_key("version", name), b"%d" % max(version, latest or 0)),
                (USED, b"%d" % used),
            ])
            return version

    async def _latest(self, st, name):
        latest = await self._int(st, _key("version", name))
        if latest is None:
            raise NoSuchFile(name)
        return latest

    async def openFile(self, st, name, version):
        """
        An L{OpenFile} of C{name} at C{version} (0: the latest).
        """
        if version == 0:
            version = await self._latest(st, name)
        cid = await self._kvdb.get(st.name, _key("file", name, version))
        size = await self._int(st, _key("size", name, version))
        if cid is None or size is None:
            raise NoSuchFile(f"{name} version {version}")
        return OpenFile(cid.decode(), size)

    async def read(self, st, file, size):
        """
        At most C{size} bytes of C{file} from its offset (fewer at its end).
        """
        chunks = await self._content.cat(file.cid, file.offset, min(size, file.size - file.offset))
        data = b"".join([chunk async for chunk in chunks])
        file.offset += len(data)
        return data

    async def versions(self, st, name):
        prefix = _key("file", name) + b"/"
        keys = await self._kvdb.list(st.name, prefix, MAX_LIST)
        return sorted((int(k[len(prefix):]) for k in keys if k[len(prefix):].isdigit()))

    async def listFiles(self, st):
        keys = await self._kvdb.list(st.name, b"/file/", MAX_LIST + 1)
        if len(keys) > MAX_LIST or sum(len(k) + 1 for k in keys) > MAX_LIST_BYTES:
            raise ListTooLong(f"more than {MAX_LIST} files or {MAX_LIST_BYTES} bytes of them")
        return [k.decode("utf-8", "surrogateescape") for k in keys]

    async def deleteFile(self, st, name, version, allVersions):
        """
        Delete C{version} of C{name} (0: the latest; all of them with
        C{allVersions}).
        """
        async with self._lock(st.name):
            have = await self.versions(st, name)
            if not have:
                raise NoSuchFile(name)
            if allVersions:
                gone = have
            else:
                gone = [have[-1] if version == 0 else version]
                if gone[0] not in have:
                    raise NoSuchFile(f"{name} version {version}")
            freed = 0
            entries = []
            for v in gone:
                freed += await self._int(st, _key("size", name, v)) or 0
                entries += [(_key("file", name, v), None), (_key("size", name, v), None)]
            left = [v for v in have if v not in gone]
            entries.append((_key("version", name), b"%d" % left[-1] if left else None))
            entries.append((USED, b"%d" % max(0, await self.used(st) - freed)))
            await self._kvdb.write(st.name, entries)

    def _lock(self, name):
        return self._resources.lock(name)


class StorageAbi:
    """
    The storage host functions of one instance: its open storages (at
    most C{maxOpen}) and each one's open files (at most C{maxFiles}).
    """

    maxOpen = 64
    maxFiles = 64
    maxVersionsKept = 256

    def __init__(self, instance):
        self._instance = instance
        self._open = Handles(self.maxOpen, instance)
        self._sized = SizedValue(instance)
        self._currentVersions = {}

    def _wait(self, code, fn, *args):
        node = services(self._instance, code)
        try:
            return node.wait(self._instance, fn, *args)
        except Errno:
            raise
        except Exception as e:
            log.info("storage call failed: {error}", error=repr(e))
            raise Errno(code) from None

    def _storage(self, storageId):
        # Taubyte answers ErrorEventNotFound for an unknown storage id
        return self._open.get(storageId, errno.EVENT_NOT_FOUND)

    def _fileName(self, mem, ptr, size, code):
        return readText(mem, ptr, size, MAX_FILE_NAME * 4, code)

    def _resolve(self, mem, namePtr, nameLen, idPtr, code):
        name = readText(mem, namePtr, nameLen, MAX_NAME, code)
        node = services(self._instance, code)
        context = self._instance.context

        async def open():
            resourceId, config = await node.resolve(context, "storages", name)
            return await node.storages.open(context.project, resourceId, config)

        st = self._wait(code, open)
        return self._open.giveId(mem, idPtr, (st, Handles(self.maxFiles, self._instance)), code)

    @answering
    def storageNew(self, mem, namePtr, nameLen, idPtr):
        # Taubyte answers ErrorDatabaseCreateFailed here
        return self._resolve(mem, namePtr, nameLen, idPtr, errno.DATABASE_CREATE_FAILED)

    @answering
    def storageGet(self, mem, namePtr, nameLen, idPtr):
        return self._resolve(mem, namePtr, nameLen, idPtr, errno.STORAGE_NOT_FOUND)

    @answering
    def storageAddFile(self, mem, storageId, namePtr, nameLen, versionPtr, bufPtr, bufLen, overwrite):
        name = self._fileName(mem, namePtr, nameLen, errno.ADD_FILE_FAILED)
        st, _ = self._storage(storageId)
        data = readBounded(mem, bufPtr, bufLen, st.size, errno.ADD_FILE_FAILED)
        node = services(self._instance, errno.ADD_FILE_FAILED)
        version = self._wait(errno.ADD_FILE_FAILED, node.storages.addFile, st, name, data, overwrite == 1)
        mem.writeU32(versionPtr, version)
        return errno.NONE

    @answering
    def storageGetFile(self, mem, storageId, namePtr, nameLen, version, fdPtr):
        st, files = self._storage(storageId)
        name = self._fileName(mem, namePtr, nameLen, errno.STORAGE_GET_META_FAILED)
        node = services(self._instance, errno.STORAGE_GET_META_FAILED)
        file = self._wait(errno.STORAGE_GET_META_FAILED, node.storages.openFile, st, name, version)
        return files.giveId(mem, fdPtr, file, errno.GET_FILE_FAILED)

    @answering
    def storageReadFile(self, mem, storageId, fd, bufPtr, bufSize, countPtr):
        st, files = self._storage(storageId)
        file = files.get(fd, errno.ADDRESS_OUT_OF_MEMORY)
        mem.check(bufPtr, bufSize)
        if file.offset >= file.size:
            mem.writeU32(countPtr, 0)
            return errno.END_OF_BODY
        node = services(self._instance, errno.GET_FILE_FAILED)
        data = self._wait(errno.GET_FILE_FAILED, node.storages.read, st, file, min(bufSize, MAX_READ))
        mem.write(bufPtr, data)
        mem.writeU32(countPtr, len(data))
        return errno.NONE

    @answering
    def storageCloseFile(self, mem, storageId, fd):
        _, files = self._storage(storageId)
        files.pop(fd, errno.ADDRESS_OUT_OF_MEMORY)
        return errno.NONE

    @answering
    def storageDeleteFile(self, mem, storageId, namePtr, nameLen, version, allVersions):
        st, _ = self._storage(storageId)
        name = self._fileName(mem, namePtr, nameLen, errno.DELETE_FILE_FAILED)
        node = services(self._instance, errno.DELETE_FILE_FAILED)
        self._wait(errno.DELETE_FILE_FAILED, node.storages.deleteFile, st, name, version, allVersions == 1)
        return errno.NONE

    def _listed(self, storageId, code, what, *args):
        st, _ = self._storage(storageId)
        node = services(self._instance, code)
        return self._wait(code, getattr(node.storages, what), st, *args)

    def _fileList(self, storageId):
        return encodeStrings(self._listed(storageId, errno.STORAGE_LIST_FAILED, "listFiles"))

    @answering
    def storageListFilesSize(self, mem, storageId, sizePtr):
        return self._sized.size(mem, sizePtr, ("files", storageId), lambda: self._fileList(storageId))

    @answering
    def storageListFiles(self, mem, storageId, bufPtr):
        return self._sized.write(mem, bufPtr, ("files", storageId), lambda: self._fileList(storageId))

    def _versionList(self, storageId, name):
        versions = self._listed(storageId, errno.LIST_FILE_VERSIONS_FAILED, "versions", name)
        if not versions:
            raise Errno(errno.LIST_FILE_VERSIONS_FAILED)
        return encodeStrings(str(v) for v in versions)

    @answering
    def storageListVersionsSize(self, mem, storageId, namePtr, nameLen, sizePtr):
        name = self._fileName(mem, namePtr, nameLen, errno.LIST_FILE_VERSIONS_FAILED)
        return self._sized.size(mem, sizePtr, ("versions", storageId, name), lambda: self._versionList(storageId, name))

    @answering
    def storageListVersions(self, mem, storageId, namePtr, nameLen, bufPtr):
        name = self._fileName(mem, namePtr, nameLen, errno.LIST_FILE_VERSIONS_FAILED)
        return self._sized.write(mem, bufPtr, ("versions", storageId, name), lambda: self._versionList(storageId, name))

    def _used(self, storageId):
        return b"%d" % self._listed(storageId, errno.LISTING_USED_SPACE_FAILED, "used")

    @answering
    def storageUsedSize(self, mem, storageId, sizePtr):
        return self._sized.size(mem, sizePtr, ("used", storageId), lambda: self._used(storageId))

    @answering
    def storageUsed(self, mem, storageId, bufPtr):
        return self._sized.write(mem, bufPtr, ("used", storageId), lambda: self._used(storageId))

    @answering
    def storageCapacitySize(self, mem, storageId, sizePtr):
        mem.writeU32(sizePtr, len(b"%d" % self._storage(storageId)[0].size))
        return errno.NONE

    @answering
    def storageCapacity(self, mem, storageId, bufPtr):
        mem.write(bufPtr, b"%d" % self._storage(storageId)[0].size)
        return errno.NONE

    @answering
    def storageCid(self, mem, storageId, namePtr, nameLen, cidPtr):
        if not self._hasStorage(storageId):
            return errno.STORAGE_NOT_FOUND
        st, _ = self._storage(storageId)
        name = self._fileName(mem, namePtr, nameLen, errno.ADDRESS_OUT_OF_MEMORY)
        node = services(self._instance, errno.STORAGE_GET_META_FAILED)
        file = self._wait(errno.STORAGE_GET_META_FAILED, node.storages.openFile, st, name, 0)
        mem.write(cidPtr, cidToBytes(parseCID(file.cid)))
        return errno.NONE

    def _hasStorage(self, storageId):
        try:
            self._storage(storageId)
        except Errno:
            return False
        return True

    @answering
    def storageCurrentVersionSize(self, mem, storageId, namePtr, nameLen, sizePtr):
        st, _ = self._storage(storageId)
        name = self._fileName(mem, namePtr, nameLen, errno.ADDRESS_OUT_OF_MEMORY)
        versions = self._listed(storageId, errno.LIST_FILE_VERSIONS_FAILED, "versions", name)
        if not versions:
            raise Errno(errno.LIST_FILE_VERSIONS_FAILED)
        if len(self._currentVersions) >= self.maxVersionsKept:
            self._currentVersions.clear()
        value = self._currentVersions[name] = b"%d" % versions[-1]
        mem.writeU32(sizePtr, len(value))
        return errno.NONE

    @answering
    def storageCurrentVersion(self, mem, namePtr, nameLen, bufPtr):
        name = self._fileName(mem, namePtr, nameLen, errno.ADDRESS_OUT_OF_MEMORY)
        value = self._currentVersions.get(name)
        if value is None:
            return errno.ADDRESS_OUT_OF_MEMORY
        mem.write(bufPtr, value)
        return errno.NONE

    def functions(self):
        return [
            ("storageNew", 3, True, self.storageNew),
            ("storageGet", 3, True, self.storageGet),
            ("storageAddFile", 7, True, self.storageAddFile),
            ("storageGetFile", 5, True, self.storageGetFile),
            ("storageReadFile", 5, True, self.storageReadFile),
            ("storageCloseFile", 2, True, self.storageCloseFile),
            ("storageDeleteFile", 5, True, self.storageDeleteFile),
            ("storageListFilesSize", 2, True, self.storageListFilesSize),
            ("storageListFiles", 2, True, self.storageListFiles),
            ("storageListVersionsSize", 4, True, self.storageListVersionsSize),
            ("storageListVersions", 4, True, self.storageListVersions),
            ("storageUsedSize", 2, True, self.storageUsedSize),
            ("storageUsed", 2, True, self.storageUsed),
            ("storageCapacitySize", 2, True, self.storageCapacitySize),
            ("storageCapacity", 2, True, self.storageCapacity),
            ("storageCid", 4, True, self.storageCid),
            ("storageCurrentVersionSize", 4, True, self.storageCurrentVersionSize),
            ("storageCurrentVersion", 3, True, self.storageCurrentVersion),
        ]


def storageFunctions(instance):
    return StorageAbi(instance).functions()
