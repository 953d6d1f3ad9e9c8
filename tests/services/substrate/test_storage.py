"""
The storage host functions (L{tau.services.substrate.wasm.storage}) with a
WAT guest: add, read, list, versions and delete against content and kvdb,
projects kept apart, the size limit, lengths from the guest; and no file
system for a guest (WASI has no preopened folder).
"""

from twisted.internet.defer import Deferred

from tau.cids import cidToBytes, parseCID
from tests.services.substrate.nodefixtures import HELPERS, PRELUDE, PROJECT_A, PROJECT_B, SDK, NodeTestCase, resource

GUEST = f"""
(module
{PRELUDE}
 (import "wasi_snapshot_preview1" "path_open"
   (func $pathOpen (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
 (import "{SDK}" "storageNew" (func $new (param i32 i32 i32) (result i32)))
 (import "{SDK}" "storageGet" (func $getStorage (param i32 i32 i32) (result i32)))
 (import "{SDK}" "storageAddFile" (func $add (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "storageGetFile" (func $getFile (param i32 i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "storageReadFile" (func $readFile (param i32 i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "storageCloseFile" (func $closeFile (param i32 i32) (result i32)))
 (import "{SDK}" "storageDeleteFile" (func $deleteFile (param i32 i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "storageListFilesSize" (func $listSize (param i32 i32) (result i32)))
 (import "{SDK}" "storageListFiles" (func $list (param i32 i32) (result i32)))
 (import "{SDK}" "storageListVersionsSize" (func $versionsSize (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "storageListVersions" (func $versions (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "storageUsedSize" (func $usedSize (param i32 i32) (result i32)))
 (import "{SDK}" "storageUsed" (func $used (param i32 i32) (result i32)))
 (import "{SDK}" "storageCapacitySize" (func $capacitySize (param i32 i32) (result i32)))
 (import "{SDK}" "storageCapacity" (func $capacity (param i32 i32) (result i32)))
 (import "{SDK}" "storageCid" (func $cid (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "storageCurrentVersionSize" (func $currentSize (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "storageCurrentVersion" (func $current (param i32 i32 i32) (result i32)))
{HELPERS}
 (data (i32.const 16) "st")
 (data (i32.const 24) "name")
 (data (i32.const 64) "/tmp")

 ;; storageNew or storageGet of query st: errno emitted; the id at 8
 (func $open (param $ev i32) (result i32)
   (call $err (local.get $ev)
     (call $new (i32.const 256) (call $q (local.get $ev) (i32.const 16) (i32.const 2) (i32.const 256)) (i32.const 8))))
 (func $openExisting (param $ev i32) (result i32)
   (call $err (local.get $ev)
     (call $getStorage (i32.const 256) (call $q (local.get $ev) (i32.const 16) (i32.const 2) (i32.const 256)) (i32.const 8))))
 (func $name (param $ev i32) (result i32) (call $q (local.get $ev) (i32.const 24) (i32.const 4) (i32.const 512)))
 (func $id (result i32) (i32.load (i32.const 8)))

 (func $addWith (param $ev i32) (param $overwrite i32)
   (if (i32.eqz (call $open (local.get $ev))) (then
     (call $body (local.get $ev))
     (if (i32.eqz (call $err (local.get $ev)
           (call $add (call $id) (i32.const 512) (call $name (local.get $ev)) (i32.const 40)
                      (i32.const 4096) (global.get $bodyLen) (local.get $overwrite)))) (then
       (call $emit (local.get $ev) (i32.const 40) (i32.const 1)))))))
 (func (export "add") (param $ev i32) (call $addWith (local.get $ev) (i32.const 0)))
 (func (export "replace") (param $ev i32) (call $addWith (local.get $ev) (i32.const 1)))

 ;; file VERSION read 7 bytes at a time: the last read's errno, then the data
 (func $readVersion (param $ev i32) (param $version i32) (local $r i32) (local $total i32)
   (if (i32.eqz (call $openExisting (local.get $ev))) (then
     (if (i32.eqz (call $err (local.get $ev)
           (call $getFile (call $id) (i32.const 512) (call $name (local.get $ev)) (local.get $version) (i32.const 44)))) (then
       (block $done (loop $more
         (local.set $r (call $readFile (call $id) (i32.load (i32.const 44))
                         (i32.add (i32.const 32768) (local.get $total)) (i32.const 7) (i32.const 48)))
         (local.set $total (i32.add (local.get $total) (i32.load (i32.const 48))))
         (br_if $done (local.get $r))
         (br $more)))
       (drop (call $err (local.get $ev) (local.get $r)))
       (drop (call $err (local.get $ev) (call $closeFile (call $id) (i32.load (i32.const 44)))))
       (call $emit (local.get $ev) (i32.const 32768) (local.get $total)))))))
 (func (export "read") (param $ev i32) (call $readVersion (local.get $ev) (i32.const 0)))
 (func (export "read1") (param $ev i32) (call $readVersion (local.get $ev) (i32.const 1)))

 (func (export "list") (param $ev i32)
   (if (i32.eqz (call $open (local.get $ev))) (then
     (drop (call $err (local.get $ev) (call $listSize (call $id) (i32.const 4))))
     (drop (call $err (local.get $ev) (call $list (call $id) (i32.const 32768))))
     (call $emit (local.get $ev) (i32.const 32768) (i32.load (i32.const 4))))))

 (func (export "versions") (param $ev i32) (local $n i32)
   (if (i32.eqz (call $open (local.get $ev))) (then
     (local.set $n (call $name (local.get $ev)))
     (if (i32.eqz (call $err (local.get $ev) (call $versionsSize (call $id) (i32.const 512) (local.get $n) (i32.const 4)))) (then
       (drop (call $err (local.get $ev) (call $versions (call $id) (i32.const 512) (local.get $n) (i32.const 32768))))
       (call $emit (local.get $ev) (i32.const 32768) (i32.load (i32.const 4))))))))

 (func (export "current") (param $ev i32) (local $n i32)
   (if (i32.eqz (call $open (local.get $ev))) (then
     (local.set $n (call $name (local.get $ev)))
     (if (i32.eqz (call $err (local.get $ev) (call $currentSize (call $id) (i32.const 512) (local.get $n) (i32.const 4)))) (then
       (drop (call $err (local.get $ev) (call $current (i32.const 512) (local.get $n) (i32.const 32768))))
       (call $emit (local.get $ev) (i32.const 32768) (i32.load (i32.const 4))))))))

 (func $deleteWith (param $ev i32) (param $version i32) (param $all i32)
   (if (i32.eqz (call $open (local.get $ev))) (then
     (drop (call $err (local.get $ev)
       (call $deleteFile (call $id) (i32.const 512) (call $name (local.get $ev)) (local.get $version) (local.get $all)))))))
 (func (export "delete") (param $ev i32) (call $deleteWith (local.get $ev) (i32.const 0) (i32.const 0)))
 (func (export "delete1") (param $ev i32) (call $deleteWith (local.get $ev) (i32.const 1) (i32.const 0)))
 (func (export "deleteAll") (param $ev i32) (call $deleteWith (local.get $ev) (i32.const 0) (i32.const 1)))

 ;; "USED/CAPACITY"
 (func (export "space") (param $ev i32)
   (if (i32.eqz (call $open (local.get $ev))) (then
     (drop (call $usedSize (call $id) (i32.const 4)))
     (drop (call $used (call $id) (i32.const 32768)))
     (call $emit (local.get $ev) (i32.const 32768) (i32.load (i32.const 4)))
     (call $emit (local.get $ev) (i32.const 64) (i32.const 1))
     (drop (call $capacitySize (call $id) (i32.const 4)))
     (drop (call $capacity (call $id) (i32.const 32768)))
     (call $emit (local.get $ev) (i32.const 32768) (i32.load (i32.const 4))))))

 ;; the latest version's CID, in the 64-byte buffer the go-sdk reads
 (func (export "cid") (param $ev i32)
   (if (i32.eqz (call $open (local.get $ev))) (then
     (if (i32.eqz (call $err (local.get $ev) (call $cid (call $id) (i32.const 512) (call $name (local.get $ev)) (i32.const 32768)))) (then
       (call $emit (local.get $ev) (i32.const 32768) (i32.const 64)))))))

 ;; lengths from the guest
 (func $addLen (param $ev i32) (param $len i32)
   (if (i32.eqz (call $open (local.get $ev))) (then
     (drop (call $err (local.get $ev)
       (call $add (call $id) (i32.const 512) (call $name (local.get $ev)) (i32.const 40) (i32.const 0) (local.get $len) (i32.const 1)))))))
 (func (export "addAllMemory") (param $ev i32) (call $addLen (local.get $ev) (i32.const 131072)))
 (func (export "addPastMemory") (param $ev i32) (call $addLen (local.get $ev) (i32.const 131073)))
 (func (export "addHuge") (param $ev i32) (call $addLen (local.get $ev) (i32.const 0xFFFFFFF0)))
 (func (export "readHuge") (param $ev i32)
   (if (i32.eqz (call $open (local.get $ev))) (then
     (if (i32.eqz (call $err (local.get $ev)
           (call $getFile (call $id) (i32.const 512) (call $name (local.get $ev)) (i32.const 0) (i32.const 44)))) (then
       (drop (call $err (local.get $ev)
         (call $readFile (call $id) (i32.load (i32.const 44)) (i32.const 16) (i32.const 0xFFFFFFF0) (i32.const 48)))))))))

 ;; the guest's file system: fd 3 is no preopened folder, /tmp cannot be opened
 (func (export "files") (param $ev i32)
   (drop (call $err (local.get $ev) (call $prestat (i32.const 3) (i32.const 128))))
   (drop (call $err (local.get $ev)
     (call $pathOpen (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 4) (i32.const 0)
                     (i64.const 0x1FFFFFFF) (i64.const 0x1FFFFFFF) (i32.const 0) (i32.const 128))))
   (drop (call $err (local.get $ev)
     (call $pathOpen (i32.const 0) (i32.const 0) (i32.const 64) (i32.const 4) (i32.const 0)
                     (i64.const 0x1FFFFFFF) (i64.const 0x1FFFFFFF) (i32.const 0) (i32.const 128)))))
)
"""

OK = b"\0"
EOF = b"\x08"


def e(*codes):
    return bytes(codes)


class StorageTests(NodeTestCase):
    guest = GUEST

    def setUp(self):
        super().setUp()
        self.tns.addProject(PROJECT_A, {"storages": {
            "QmStPics": resource("pics", 100, versioning=True, type="object"),
            "QmStDocs": resource("docs", 1_000_000, type="object"),
        }})
        self.tns.addProject(PROJECT_B, {"storages": {"QmStB": resource("pics", 100, type="object")}})

    def go(self, coroutine):
        return Deferred.fromCoroutine(coroutine)

    def test_addRead(self):
        """
        A file added is read back in pieces until C{ErrorEOF} (8); it is
        stored in the content store, pinned, and its CID is the file's.
        """
        async def go():
            self.assertEqual(await self.body("add", "/?st=pics&name=a.txt", b"hello world"), OK + OK + e(1))
            self.assertEqual(await self.body("read", "/?st=pics&name=a.txt"), OK + OK + EOF + OK + b"hello world")
            entry = await self.content.add(b"hello world")
            self.assertIn(entry.cid, self.content.pinned)
            cid = await self.body("cid", "/?st=pics&name=a.txt")
            raw = cidToBytes(parseCID(entry.cid))
            self.assertEqual(cid, OK + OK + raw + bytes(64 - len(raw)))
        return self.go(go())

    def test_versions(self):
        """
        With versioning an add makes the next version and an overwrite
        replaces the latest; version 0 reads the latest.
        """
        async def go():
            self.assertEqual(await self.body("add", "/?st=pics&name=f", b"one"), OK + OK + e(1))
            self.assertEqual(await self.body("add", "/?st=pics&name=f", b"two"), OK + OK + e(2))
            self.assertEqual(await self.body("read", "/?st=pics&name=f"), OK + OK + EOF + OK + b"two")
            self.assertEqual(await self.body("read1", "/?st=pics&name=f"), OK + OK + EOF + OK + b"one")
            self.assertEqual(await self.body("replace", "/?st=pics&name=f", b"three"), OK + OK + e(2))
            self.assertEqual(await self.body("read", "/?st=pics&name=f"), OK + OK + EOF + OK + b"three")
            self.assertEqual(await self.body("versions", "/?st=pics&name=f"), OK + OK + OK + b"1\0002\0")
            self.assertEqual(await self.body("current", "/?st=pics&name=f"), OK + OK + OK + b"2")
        return self.go(go())

    def test_noVersioning(self):
        """
        Without versioning a file has version 1; adding an existing name
        needs overwrite (C{ErrorAddFileFailed}, 31, without).
        """
        async def go():
            self.assertEqual(await self.body("add", "/?st=docs&name=f", b"one"), OK + OK + e(1))
            self.assertEqual(await self.body("add", "/?st=docs&name=f", b"two"), OK + e(31))
            self.assertEqual(await self.body("replace", "/?st=docs&name=f", b"two"), OK + OK + e(1))
            self.assertEqual(await self.body("read", "/?st=docs&name=f"), OK + OK + EOF + OK + b"two")
        return self.go(go())

    def test_list(self):
        """
        The files as C{/file/NAME/VERSION} keys, the form the Go SDK's
        C{ListFiles} parses.
        """
        async def go():
            await self.body("add", "/?st=pics&name=b", b"1")
            await self.body("add", "/?st=pics&name=a", b"1")
            await self.body("add", "/?st=pics&name=a", b"2")
            self.assertEqual(await self.body("list", "/?st=pics"), OK * 3 + b"/file/a/1\0/file/a/2\0/file/b/1\0")
        return self.go(go())

    def test_delete(self):
        """
        Deleting the latest version leaves the one before (now the
        latest); deleting all leaves nothing (a read is then
        C{ErrorStorageGetMetaFailed}, 90); a missing file is
        C{ErrorDeleteFileFailed} (33).
        """
        async def go():
            await self.body("add", "/?st=pics&name=f", b"one")
            await self.body("add", "/?st=pics&name=f", b"two")
            self.assertEqual(await self.body("delete", "/?st=pics&name=f"), OK + OK)
            self.assertEqual(await self.body("read", "/?st=pics&name=f"), OK + OK + EOF + OK + b"one")
            await self.body("add", "/?st=pics&name=f", b"three")
            self.assertEqual(await self.body("delete1", "/?st=pics&name=f"), OK + OK)
            self.assertEqual(await self.body("versions", "/?st=pics&name=f"), OK + OK + OK + b"2\0")
            self.assertEqual(await self.body("deleteAll", "/?st=pics&name=f"), OK + OK)
            self.assertEqual(await self.body("read", "/?st=pics&name=f"), OK + e(90))
            self.assertEqual(await self.body("delete", "/?st=pics&name=f"), OK + e(33))
            self.assertEqual(await self.body("list", "/?st=pics"), OK * 3)
            self.assertEqual(await self.body("space", "/?st=pics"), OK + b"0/100")
        return self.go(go())

    def test_size(self):
        """
        Files may take the storage's C{size} exactly; one byte more is
        refused (31); an overwrite counts the replaced file out.
        """
        async def go():
            self.assertEqual(await self.body("add", "/?st=pics&name=a", b"x" * 60), OK + OK + e(1))
            self.assertEqual(await self.body("add", "/?st=pics&name=b", b"x" * 41), OK + e(31))
            self.assertEqual(await self.body("add", "/?st=pics&name=b", b"x" * 40), OK + OK + e(1))
            self.assertEqual(await self.body("space", "/?st=pics"), OK + b"100/100")
            self.assertEqual(await self.body("replace", "/?st=pics&name=b", b"x" * 39), OK + OK + e(1))
            self.assertEqual(await self.body("space", "/?st=pics"), OK + b"99/100")
        return self.go(go())

    def test_projectsApart(self):
        """
        Another project's storage of the same name is its own; a name it
        does not declare is not found (C{storageNew}: 22 as Taubyte
        answers, C{storageGet}: C{ErrorStorageNotFound}, 92).
        """
        async def go():
            await self.body("add", "/?st=pics&name=a", b"secret", project=PROJECT_A)
            self.assertEqual(await self.body("read", "/?st=pics&name=a", project=PROJECT_B), OK + e(90))
            self.assertEqual(await self.body("list", "/?st=pics", project=PROJECT_B), OK * 3)
            self.assertEqual(await self.body("add", "/?st=docs&name=a", b"x", project=PROJECT_B), e(22))
            self.assertEqual(await self.body("read", "/?st=docs&name=a", project=PROJECT_B), e(92))
        return self.go(go())

    def test_guestLengths(self):
        """
        A file of the whole guest memory is added; one byte past it is
        C{ErrorAddressOutOfMemory} (3); a length over the storage's size is
        refused before anything is read (31); a read into a buffer past the
        memory is 3.
        """
        async def go():
            self.assertEqual(await self.body("addAllMemory", "/?st=docs&name=m"), OK + OK)
            self.assertEqual(await self.body("addPastMemory", "/?st=docs&name=m"), OK + e(3))
            self.assertEqual(await self.body("addHuge", "/?st=docs&name=m"), OK + e(31))
            self.assertEqual(await self.body("readHuge", "/?st=docs&name=m"), OK + OK + e(3))
        return self.go(go())

    def test_badFileName(self):
        """
        A file name with C{/} is refused (it would break the index keys).
        """
        async def go():
            self.assertEqual(await self.body("add", "/?st=docs&name=a/b", b"x"), OK + e(31))
        return self.go(go())

    def test_noFileSystem(self):
        """
        A guest has no preopened folder: C{fd_prestat_get(3)} and
        C{path_open} under fd 3 or fd 0 answer C{EBADF} (8) or
        C{ENOTDIR} (54), never a file.
        """
        async def go():
            body = await self.body("files")
            self.assertEqual(body[:2], e(8, 8))
            self.assertIn(body[2], (8, 54))
        return self.go(go())


class RealKVDBStorageTests(StorageTests):
    """
    The same guest with the storages' index on the node's real kvdb.
    """

    def setUp(self):
        super().setUp()
        return self.useRealKVDB()
