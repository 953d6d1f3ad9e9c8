"""
What the tests of the node-backed host functions share: a tns key tree in
memory (L{FakeTNS}), a runtime whose calls carry a project's
L{FunctionContext}, and WAT pieces for guests that take their arguments
from the request's query and body and answer each host call's errno as
one byte of the body.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tau.fakes import FakeContent, FakeKVDB
from tau.services.substrate.wasm import HttpRequest, Limits, Runtime
from tau.services.substrate.wasm.context import FunctionContext
from tau.services.substrate.wasm.services import FunctionServices

SDK = "taubyte/sdk"
PROJECT_A = "QmProjectAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
PROJECT_B = "QmProjectBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
APP = "QmAppAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


class FakeTNS:
    """
    C{fetch(path)} over a dict of key paths, as a tns client answers them.
    """

    def __init__(self):
        self.tree = {}
        self.fetches = 0

    def addProject(self, project, obj, branch="main", commit="c0ffee"):
        self.tree[("projects", project, "branches", branch, "current")] = commit
        self.tree[("branches", branch, "commit", commit, "projects", project)] = obj

    async def fetch(self, path):
        self.fetches += 1
        return self.tree.get(tuple(path))


# Memory: 0..15 scratch (0: counts, 4: a size, 8: an id, 12: an errno byte), 16.. the
# query keys, 256 the first query value, 512 the second, 1024 a third,
# 4096 the request body (its length in the global $bodyLen), 32768 the
# values the host writes.
PRELUDE = f"""
 (import "{SDK}" "getHttpEventQueryValueByNameSize" (func $querySize (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "getHttpEventQueryValueByName" (func $query (param i32 i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "readHttpEventBody" (func $read (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "eventHttpWrite" (func $write (param i32 i32 i32 i32) (result i32)))
"""

HELPERS = """
 (memory (export "memory") 2)
 (global $bodyLen (mut i32) (i32.const 0))
 ;; the query value of the key at $k (length $n) copied to $dst; its length
 (func $q (param $ev i32) (param $k i32) (param $n i32) (param $dst i32) (result i32)
   (i32.store (i32.const 4) (i32.const 0))
   (drop (call $querySize (local.get $ev) (i32.const 4) (local.get $k) (local.get $n)))
   (drop (call $query (local.get $ev) (local.get $k) (local.get $n) (local.get $dst) (i32.load (i32.const 4))))
   (i32.load (i32.const 4)))
 ;; the request body at 4096
 (func $body (param $ev i32) (local $r i32)
   (global.set $bodyLen (i32.const 0))
   (block $done (loop $more
     (local.set $r (call $read (local.get $ev) (i32.add (i32.const 4096) (global.get $bodyLen)) (i32.const 4096) (i32.const 0)))
     (global.set $bodyLen (i32.add (global.get $bodyLen) (i32.load (i32.const 0))))
     (br_if $done (local.get $r))
     (br $more))))
 (func $emit (param $ev i32) (param $ptr i32) (param $len i32)
   (if (local.get $len) (then (drop (call $write (local.get $ev) (local.get $ptr) (local.get $len) (i32.const 0))))))
 ;; one byte: an errno; its value again, to test it
 (func $err (param $ev i32) (param $e i32) (result i32)
   (i32.store8 (i32.const 12) (local.get $e))
   (call $emit (local.get $ev) (i32.const 12) (i32.const 1))
   (local.get $e))
"""


def resource(match, size, regex=False, **more):
    config = {"match": match, "size": size, **more}
    if regex:
        config["useRegex"] = True
    return config


class NodeTestCase(TestCase):
    """
    A runtime (real threads, the global reactor), fake content and kvdb,
    a L{FakeTNS}, and L{FunctionServices} over them.
    """

    timeout = 60
    guest = None

    def setUp(self):
        self.runtime = Runtime(reactor)
        self.runtime.start()
        self.addCleanup(lambda: Deferred.fromCoroutine(self.runtime.stop()))
        self.content = FakeContent()
        self.kvdb = FakeKVDB()
        self.tns = FakeTNS()
        self.services = self.makeServices()

    def useRealKVDB(self):
        """
        Use the node's real kvdb (in process, a node in no cloud) instead
        of the fake; a Deferred that fires once it is ready.
        """
        from tau.fakes import FakeHost
        from tau.identity import PrivateKey
        from tau.kvdb.service import KVDBService
        from tests.kvdb.fakes import PinningStore
        from tests.kvdb.test_service import FakeStoreService

        async def fetch(c, timeout):
            raise LookupError(c)

        self.kvdb = KVDBService(FakeHost(reactor), None, FakeStoreService(PinningStore()), fetch,
                                PrivateKey.generate(), self.mktemp(), reactor)
        self.kvdb.startService()
        self.addCleanup(self.kvdb.stopService)
        self.services = self.makeServices()
        return self.kvdb.whenReady()

    def makeServices(self, **kw):
        return FunctionServices(reactor, self.content, self.kvdb, self.tns, **kw)

    def context(self, project=PROJECT_A, application="", services=None):
        return FunctionContext(project=project, application=application, resource="QmFunction", commit="c0ffee",
                               branch="main", services=services or self.services)

    async def call(self, export, target="/", body=b"", project=PROJECT_A, application="", limits=Limits(),
                   services=None, context=None):
        cid = await self.runtime.load(self.guest.encode())
        request = HttpRequest("POST", target, body=body)
        context = context or self.context(project, application, services)
        return await self.runtime.call(cid, export, request, limits, context)

    async def body(self, *args, **kw):
        status, _, body = await self.call(*args, **kw)
        self.assertEqual(status, 200)
        return body
