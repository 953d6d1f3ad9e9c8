"""
The database host functions (L{tau.services.substrate.wasm.database}) with
a WAT guest: get, put, list, delete and close against the kvdb, the
project (and application) scope of a name, Taubyte's match and regex
rules, the size limit, lengths from the guest, and time limits.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred

from tau.services.substrate.wasm import Limits, database
from tau.services.substrate.wasm.database import MAX_VALUE, DatabaseAbi
from tests.services.substrate.nodefixtures import APP, HELPERS, PRELUDE, PROJECT_A, PROJECT_B, SDK, NodeTestCase, resource

GUEST = f"""
(module
{PRELUDE}
 (import "{SDK}" "newDatabase" (func $newDatabase (param i32 i32 i32) (result i32)))
 (import "{SDK}" "databaseGetSize" (func $getSize (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "databaseGet" (func $get (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "databasePut" (func $put (param i32 i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "databaseDelete" (func $delete (param i32 i32 i32) (result i32)))
 (import "{SDK}" "databaseListSize" (func $listSize (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "databaseList" (func $list (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "databaseClose" (func $close (param i32) (result i32)))
{HELPERS}
 (data (i32.const 16) "db")
 (data (i32.const 24) "key")

 ;; newDatabase(query db): its errno (emitted); the id at 8
 (func $open (param $ev i32) (result i32)
   (call $err (local.get $ev)
     (call $newDatabase (i32.const 256) (call $q (local.get $ev) (i32.const 16) (i32.const 2) (i32.const 256)) (i32.const 8))))
 ;; the query key at 512; its length
 (func $key (param $ev i32) (result i32) (call $q (local.get $ev) (i32.const 24) (i32.const 3) (i32.const 512)))
 (func $id (result i32) (i32.load (i32.const 8)))

 (func (export "put") (param $ev i32)
   (if (i32.eqz (call $open (local.get $ev))) (then
     (call $body (local.get $ev))
     (drop (call $err (local.get $ev)
       (call $put (call $id) (i32.const 512) (call $key (local.get $ev)) (i32.const 4096) (global.get $bodyLen)))))))

 (func (export "get") (param $ev i32) (local $n i32)
   (if (i32.eqz (call $open (local.get $ev))) (then
     (local.set $n (call $key (local.get $ev)))
     (if (i32.eqz (call $err (local.get $ev) (call $getSize (call $id) (i32.const 512) (local.get $n) (i32.const 4)))) (then
       (if (i32.eqz (call $err (local.get $ev) (call $get (call $id) (i32.const 512) (local.get $n) (i32.const 32768)))) (then
         (call $emit (local.get $ev) (i32.const 32768) (i32.load (i32.const 4))))))))))

 (func (export "list") (param $ev i32) (local $n i32)
   (if (i32.eqz (call $open (local.get $ev))) (then
     (local.set $n (call $key (local.get $ev)))
     (if (i32.eqz (call $err (local.get $ev) (call $listSize (call $id) (i32.const 512) (local.get $n) (i32.const 4)))) (then
       (if (i32.eqz (call $err (local.get $ev) (call $list (call $id) (i32.const 512) (local.get $n) (i32.const 32768)))) (then
         (call $emit (local.get $ev) (i32.const 32768) (i32.load (i32.const 4))))))))))

 (func (export "delete") (param $ev i32)
   (if (i32.eqz (call $open (local.get $ev))) (then
     (drop (call $err (local.get $ev) (call $delete (call $id) (i32.const 512) (call $key (local.get $ev))))))))

 ;; close twice, then a get on the closed id
 (func (export "close") (param $ev i32)
   (if (i32.eqz (call $open (local.get $ev))) (then
     (drop (call $err (local.get $ev) (call $close (call $id))))
     (drop (call $err (local.get $ev) (call $close (call $id))))
     (drop (call $err (local.get $ev) (call $getSize (call $id) (i32.const 512) (i32.const 1) (i32.const 4)))))))

 ;; lengths from the guest: a put of LEN bytes from 0
 (func $putLen (param $ev i32) (param $len i32)
   (if (i32.eqz (call $open (local.get $ev))) (then
     (drop (call $err (local.get $ev)
       (call $put (call $id) (i32.const 512) (call $key (local.get $ev)) (i32.const 0) (local.get $len)))))))
 (func (export "putAllMemory") (param $ev i32) (call $putLen (local.get $ev) (i32.const 131072)))
 (func (export "putPastMemory") (param $ev i32) (call $putLen (local.get $ev) (i32.const 131073)))
 (func (export "putHuge") (param $ev i32) (call $putLen (local.get $ev) (i32.const 0xFFFFFFF0)))
 (func (export "putOverValue") (param $ev i32) (call $putLen (local.get $ev) (i32.const {MAX_VALUE + 1})))
 (func (export "openHuge") (param $ev i32)
   (drop (call $err (local.get $ev) (call $newDatabase (i32.const 0) (i32.const 0xFFFFFFF0) (i32.const 8)))))
 (func (export "openPastMemory") (param $ev i32)
   (drop (call $err (local.get $ev) (call $newDatabase (i32.const 130973) (i32.const 100) (i32.const 8)))))
 (func (export "openBadIdPtr") (param $ev i32)
   (drop (call $err (local.get $ev)
     (call $newDatabase (i32.const 256) (call $q (local.get $ev) (i32.const 16) (i32.const 2) (i32.const 256)) (i32.const 131070)))))
 (func (export "getBadSizePtr") (param $ev i32)
   (if (i32.eqz (call $open (local.get $ev))) (then
     (drop (call $err (local.get $ev)
       (call $getSize (call $id) (i32.const 512) (call $key (local.get $ev)) (i32.const 131072)))))))
)
"""

OK = b"\0"


def e(*codes):
    return bytes(codes)


class DatabaseTests(NodeTestCase):
    guest = GUEST

    def setUp(self):
        super().setUp()
        self.tns.addProject(PROJECT_A, {
            "id": PROJECT_A,
            "databases": {
                "QmDbCarts": resource("carts", 1_000_000),
                "QmDbSmall": resource("small", 20),
                "QmDbPics": resource("^pics/", 1000, regex=True),
            },
            "applications": {APP: {"name": "shop", "databases": {"QmDbAppCarts": resource("carts", 1000)}}},
        })
        self.tns.addProject(PROJECT_B, {"id": PROJECT_B, "databases": {"QmDbB": resource("carts", 1000)}})

    def go(self, coroutine):
        return Deferred.fromCoroutine(coroutine)

    def test_putGet(self):
        """
        A value put under a key is read back, through the two-call
        protocol.
        """
        async def go():
            self.assertEqual(await self.body("put", "/?db=carts&key=k1", b"hello"), OK + OK)
            self.assertEqual(await self.body("get", "/?db=carts&key=k1"), OK * 3 + b"hello")
        return self.go(go())

    def test_getMissing(self):
        """
        A key never put answers C{ErrorDatabaseKeyNotFound} (29).
        """
        async def go():
            self.assertEqual(await self.body("get", "/?db=carts&key=nope"), OK + e(29))
        return self.go(go())

    def test_list(self):
        """
        The keys under a prefix, in order, NUL-terminated.
        """
        async def go():
            for key in ("a2", "b1", "a1"):
                await self.body("put", f"/?db=carts&key={key}", b"v")
            self.assertEqual(await self.body("list", "/?db=carts&key=a"), OK * 3 + b"a1\0a2\0")
            self.assertEqual(await self.body("list", "/?db=carts&key=z"), OK * 3)
        return self.go(go())

    def test_listLimit(self):
        """
        A list answers at most C{MAX_LIST} keys: exactly that many are
        listed, one more is C{ErrorDatabaseListFailed} (27).
        """
        self.patch(database, "MAX_LIST", 2)

        async def go():
            await self.body("put", "/?db=carts&key=a1", b"v")
            await self.body("put", "/?db=carts&key=a2", b"v")
            self.assertEqual(await self.body("list", "/?db=carts&key=a"), OK * 3 + b"a1\0a2\0")
            await self.body("put", "/?db=carts&key=a3", b"v")
            self.assertEqual(await self.body("list", "/?db=carts&key=a"), OK + e(27))
        return self.go(go())

    def test_delete(self):
        """
        A deleted key is gone; deleting a missing key is no error.
        """
        async def go():
            await self.body("put", "/?db=carts&key=k1", b"hello")
            self.assertEqual(await self.body("delete", "/?db=carts&key=k1"), OK + OK)
            self.assertEqual(await self.body("get", "/?db=carts&key=k1"), OK + e(29))
            self.assertEqual(await self.body("delete", "/?db=carts&key=k1"), OK + OK)
        return self.go(go())

    def test_openPerCall(self):
        """
        A function that opens its database in every call and never closes
        it keeps working on its warm instance: what a call opened is let go
        at the next call (at most C{maxOpen} are held).
        """
        self.patch(DatabaseAbi, "maxOpen", 2)

        async def go():
            for i in range(5):
                self.assertEqual(await self.body("put", f"/?db=carts&key=k{i}", b"v"), OK + OK)
            self.assertEqual(self.runtime.coldStarts, 1)
        return self.go(go())

    def test_close(self):
        """
        A closed database id is unknown: C{ErrorDatabaseNotFound} (25).
        """
        async def go():
            self.assertEqual(await self.body("close", "/?db=carts"), OK + OK + e(25, 25))
        return self.go(go())

    def test_projectsApart(self):
        """
        Two projects that both declare C{carts} get their own databases: one
        cannot read what the other wrote; a name only the other project
        declares is not found (C{ErrorDatabaseCreateFailed}, 22).
        """
        async def go():
            await self.body("put", "/?db=carts&key=k1", b"from A", project=PROJECT_A)
            self.assertEqual(await self.body("get", "/?db=carts&key=k1", project=PROJECT_B), OK + e(29))
            await self.body("put", "/?db=carts&key=k1", b"from B", project=PROJECT_B)
            self.assertEqual(await self.body("get", "/?db=carts&key=k1", project=PROJECT_A), OK * 3 + b"from A")
            self.assertEqual(await self.body("get", "/?db=small&key=k1", project=PROJECT_B), e(22))
            self.assertEqual(sorted(self.kvdb.databases()), [
                f"db-{PROJECT_A}-QmDbCarts@service:substrate",
                f"db-{PROJECT_B}-QmDbB@service:substrate",
            ])
        return self.go(go())

    def test_applicationScope(self):
        """
        A function of an application gets its application's database of a
        name before its project's; a project-level function the project's.
        """
        async def go():
            await self.body("put", "/?db=carts&key=k1", b"app", application=APP)
            self.assertEqual(await self.body("get", "/?db=carts&key=k1"), OK + e(29))
            self.assertEqual(await self.body("get", "/?db=carts&key=k1", application=APP), OK * 3 + b"app")
            self.assertIn(f"db-{PROJECT_A}-QmDbAppCarts@service:substrate", self.kvdb.databases())
        return self.go(go())

    def test_regex(self):
        """
        A database with C{regex} matches names its C{match} is found in
        (unanchored search, here anchored by the pattern); others do not.
        """
        async def go():
            self.assertEqual(await self.body("put", "/?db=pics/2024&key=k", b"x"), OK + OK)
            self.assertEqual(await self.body("get", "/?db=pics/other&key=k"), OK * 3 + b"x")
            self.assertEqual(await self.body("put", "/?db=xpics/1&key=k", b"x"), e(22))
            self.assertEqual(await self.body("put", "/?db=nope&key=k", b"x"), e(22))
        return self.go(go())

    def test_unsafeRegex(self):
        """
        A project's regex that could backtrack without bound (a repeat
        inside a repeat) matches nothing, rather than stalling the node.
        """
        async def go():
            self.tns.addProject(PROJECT_B, {"databases": {"QmDbBad": resource("(a+)+$", 100, regex=True)}})
            self.assertEqual(await self.body("put", "/?db=" + "a" * 40 + "b&key=k", b"x", project=PROJECT_B), e(22))
        return self.go(go())

    def test_size(self):
        """
        Keys and values may take the database's C{size} in bytes, exactly;
        one byte more is refused (C{ErrorDatabasePutFailed}, 24); a value
        replaced counts once.
        """
        async def go():
            self.assertEqual(await self.body("put", "/?db=small&key=k1", b"x" * 18), OK + OK)
            self.assertEqual(await self.body("put", "/?db=small&key=k2", b""), OK + e(24))
            self.assertEqual(await self.body("put", "/?db=small&key=k1", b"x" * 10), OK + OK)
            self.assertEqual(await self.body("put", "/?db=small&key=k2", b"123456"), OK + OK)
            self.assertEqual(await self.body("put", "/?db=small&key=k2", b"1234567"), OK + e(24))
            await self.body("delete", "/?db=small&key=k1")
            self.assertEqual(await self.body("put", "/?db=small&key=k2", b"x" * 18), OK + OK)
        return self.go(go())

    def test_guestLengths(self):
        """
        A length from the guest is checked against the limit (before
        anything is read) and against its memory: the whole memory is
        accepted, one byte past it is C{ErrorAddressOutOfMemory} (3), a
        value over the kvdb's value limit or a huge length is refused (24,
        22); an id or size written outside the memory is
        C{ErrorMemoryWriteFailed} (12).
        """
        async def go():
            self.assertEqual(await self.body("putAllMemory", "/?db=carts&key=k"), OK + OK)
            self.assertEqual(await self.body("putPastMemory", "/?db=carts&key=k"), OK + e(3))
            self.assertEqual(await self.body("putOverValue", "/?db=carts&key=k"), OK + e(24))
            self.assertEqual(await self.body("putHuge", "/?db=carts&key=k"), OK + e(24))
            self.assertEqual(await self.body("openHuge"), e(22))
            self.assertEqual(await self.body("openPastMemory"), e(3))
            self.assertEqual(await self.body("openBadIdPtr", "/?db=carts"), e(12))
            self.assertEqual(await self.body("getBadSizePtr", "/?db=carts&key=k"), OK + e(12))
        return self.go(go())

    def test_noServices(self):
        """
        Without node services (C{tau run}), newDatabase answers
        C{ErrorDatabaseCreateFailed}.
        """
        async def go():
            context = self.context()
            from dataclasses import replace
            self.assertEqual(await self.body("put", "/?db=carts&key=k", context=replace(context, services=None)), e(22))
        return self.go(go())

    def test_nodeTooSlow(self):
        """
        A host call waits on the node at most C{opTimeout} seconds, and never
        past the call's own timeout: the call ends in time (with the host
        call's errno, or 504 when the guest reaches its deadline first).
        """
        never = Deferred()
        self.addCleanup(lambda: never.called or never.cancel())

        async def hang(path):
            return await never
        self.tns.fetch = hang

        async def go():
            self.services.opTimeout = 0.2
            start = reactor.seconds()
            self.assertEqual(await self.body("put", "/?db=carts&key=k"), e(22))
            self.assertLess(reactor.seconds() - start, 2)
            self.services.opTimeout = 30
            start = reactor.seconds()
            status, _, body = await self.call("put", "/?db=carts&key=k", limits=Limits(timeout=0.3))
            self.assertIn((status, body), [(200, e(22)), (504, b"")])
            self.assertLess(reactor.seconds() - start, 1)
        return self.go(go())


class RealKVDBTests(DatabaseTests):
    """
    The same guest on the node's real kvdb (in process, one node): a
    database resource is a cloud-of-one service database.
    """

    def setUp(self):
        super().setUp()
        return self.useRealKVDB()

    def test_projectsApart(self):
        """
        Two projects' C{carts} are two kvdb databases; one cannot read the
        other's.
        """
        async def go():
            await self.body("put", "/?db=carts&key=k1", b"from A", project=PROJECT_A)
            self.assertEqual(await self.body("get", "/?db=carts&key=k1", project=PROJECT_B), OK + e(29))
            names = self.kvdb.databases()
            self.assertEqual(len(names), 2)
            self.assertTrue(any(n.startswith(f"db-{PROJECT_A}-QmDbCarts@") for n in names), names)
            self.assertTrue(any(n.startswith(f"db-{PROJECT_B}-QmDbB@") for n in names), names)
        return self.go(go())

    def test_applicationScope(self):
        async def go():
            await self.body("put", "/?db=carts&key=k1", b"app", application=APP)
            self.assertEqual(await self.body("get", "/?db=carts&key=k1"), OK + e(29))
            self.assertEqual(await self.body("get", "/?db=carts&key=k1", application=APP), OK * 3 + b"app")
        return self.go(go())
