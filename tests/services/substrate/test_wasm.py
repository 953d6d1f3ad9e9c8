"""
The substrate's wasm runtime (L{tau.services.substrate.wasm}) with guest
modules written here in WAT: the HTTP event ABI, traps, timeouts, memory
limits, lengths from the guest, statuses, the warm pool and the module cache.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from tau.services.substrate.wasm import HttpRequest, Limits, Runtime

SDK = "taubyte/sdk"

IMPORTS = f"""
 (import "{SDK}" "getEventType" (func $type (param i32 i32)))
 (import "{SDK}" "getHttpEventMethodSize" (func $methodSize (param i32 i32) (result i32)))
 (import "{SDK}" "getHttpEventMethod" (func $method (param i32 i32 i32) (result i32)))
 (import "{SDK}" "getHttpEventPathSize" (func $pathSize (param i32 i32) (result i32)))
 (import "{SDK}" "getHttpEventPath" (func $path (param i32 i32 i32) (result i32)))
 (import "{SDK}" "getHttpEventHostSize" (func $hostSize (param i32 i32) (result i32)))
 (import "{SDK}" "getHttpEventHost" (func $host (param i32 i32 i32) (result i32)))
 (import "{SDK}" "getHttpEventHeadersSize" (func $headerSize (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "getHttpEventHeaders" (func $header (param i32 i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "getHttpEventQueryValueByNameSize" (func $querySize (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "getHttpEventQueryValueByName" (func $query (param i32 i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "getHttpEventRequestQueryKeysSize" (func $queryKeysSize (param i32 i32) (result i32)))
 (import "{SDK}" "getHttpEventRequestQueryKeys" (func $queryKeys (param i32 i32) (result i32)))
 (import "{SDK}" "readHttpEventBody" (func $read (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "eventHttpRetCode" (func $status (param i32 i32) (result i32)))
 (import "{SDK}" "eventHttpHeaderAdd" (func $addHeader (param i32 i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "eventHttpWrite" (func $write (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "eventHttpFlush" (func $flush (param i32) (result i32)))
 (import "{SDK}" "eventHttpRedirect" (func $redirect (param i32 i32 i32 i32) (result i32)))
"""

# Memory layout: 0 event type, 4 a size, 8 a count; strings at 16..; 1024 a
# value buffer, 2048 a body chunk.
GUEST = f"""
(module
{IMPORTS}
 (memory (export "memory") 1)
 (data (i32.const 16) "X-Name")
 (data (i32.const 32) "q")
 (data (i32.const 48) "X-Out")
 (data (i32.const 64) "yes")
 (data (i32.const 80) " ")
 (data (i32.const 96) "hello")
 (data (i32.const 112) "https://example.org/next")
 (global $inits (mut i32) (i32.const 0))

 (func (export "_initialize") (global.set $inits (i32.add (global.get $inits) (i32.const 1))))

 (func $emit (param $ev i32) (param $ptr i32) (param $len i32)
   (if (call $write (local.get $ev) (local.get $ptr) (local.get $len) (i32.const 8)) (then unreachable)))
 (func $space (param $ev i32) (call $emit (local.get $ev) (i32.const 80) (i32.const 1)))
 (func $emitSized (param $ev i32) (param $errno i32)
   ;; the value the host just wrote at 1024, its size at 4
   (if (local.get $errno) (then unreachable))
   (if (i32.load (i32.const 4)) (then (call $emit (local.get $ev) (i32.const 1024) (i32.load (i32.const 4)))))
   (call $space (local.get $ev)))

 ;; answers 201, X-Out: yes, and "METHOD HOST PATH X-NAME Q QUERYKEYS BODY"
 (func (export "echo") (param $ev i32) (result i32) (local $r i32)
   (call $type (local.get $ev) (i32.const 0))
   (if (i32.ne (i32.load (i32.const 0)) (i32.const 1)) (then unreachable))
   (drop (call $addHeader (local.get $ev) (i32.const 48) (i32.const 5) (i32.const 64) (i32.const 3)))
   (drop (call $status (local.get $ev) (i32.const 201)))
   (drop (call $methodSize (local.get $ev) (i32.const 4)))
   (call $emitSized (local.get $ev) (call $method (local.get $ev) (i32.const 1024) (i32.load (i32.const 4))))
   (drop (call $hostSize (local.get $ev) (i32.const 4)))
   (call $emitSized (local.get $ev) (call $host (local.get $ev) (i32.const 1024) (i32.load (i32.const 4))))
   (drop (call $pathSize (local.get $ev) (i32.const 4)))
   (call $emitSized (local.get $ev) (call $path (local.get $ev) (i32.const 1024) (i32.load (i32.const 4))))
   (drop (call $headerSize (local.get $ev) (i32.const 4) (i32.const 16) (i32.const 6)))
   (call $emitSized (local.get $ev) (call $header (local.get $ev) (i32.const 16) (i32.const 6) (i32.const 1024) (i32.load (i32.const 4))))
   (drop (call $querySize (local.get $ev) (i32.const 4) (i32.const 32) (i32.const 1)))
   (call $emitSized (local.get $ev) (call $query (local.get $ev) (i32.const 32) (i32.const 1) (i32.const 1024) (i32.load (i32.const 4))))
   (drop (call $queryKeysSize (local.get $ev) (i32.const 4)))
   (call $emitSized (local.get $ev) (call $queryKeys (local.get $ev) (i32.const 1024)))
   ;; the body, 5 bytes at a time, until EOF (8)
   (block $done
     (loop $more
       (local.set $r (call $read (local.get $ev) (i32.const 2048) (i32.const 5) (i32.const 8)))
       (if (i32.load (i32.const 8)) (then (call $emit (local.get $ev) (i32.const 2048) (i32.load (i32.const 8)))))
       (br_if $done (i32.eq (local.get $r) (i32.const 8)))
       (if (local.get $r) (then unreachable))
       (br $more)))
   (drop (call $flush (local.get $ev)))
   (i32.const 0))

 (func (export "hello") (param $ev i32)
   (call $emit (local.get $ev) (i32.const 96) (i32.const 5)))
 (func (export "inits") (param $ev i32)
   (i32.store (i32.const 0) (i32.add (i32.const 48) (global.get $inits)))
   (call $emit (local.get $ev) (i32.const 0) (i32.const 1)))
 (func (export "redirect") (param $ev i32)
   (drop (call $redirect (local.get $ev) (i32.const 112) (i32.const 24) (i32.const 307))))
 (func (export "boom") (param $ev i32) unreachable)
 (func (export "spin") (param $ev i32) (loop $forever (br $forever)))
 (func $deeper (param $n i32) (call $deeper (i32.add (local.get $n) (i32.const 1))))
 (func (export "recurse") (param $ev i32) (call $deeper (i32.const 0)))

 ;; memory.grow by N pages; -1 (refused) traps, as tinygo's allocator does
 (func $grow (param $ev i32) (param $pages i32)
   (if (i32.eq (memory.grow (local.get $pages)) (i32.const -1)) (then unreachable))
   (call $emit (local.get $ev) (i32.const 96) (i32.const 5)))
 (func (export "grow1") (param $ev i32) (call $grow (local.get $ev) (i32.const 1)))
 (func (export "grow2") (param $ev i32) (call $grow (local.get $ev) (i32.const 2)))

 ;; eventHttpWrite of LEN bytes from 0; its errno is answered as status 200+errno
 (func $writeLen (param $ev i32) (param $len i32)
   (drop (call $status (local.get $ev)
     (i32.add (i32.const 200) (call $write (local.get $ev) (i32.const 0) (local.get $len) (i32.const 8))))))
 (func (export "writeAll") (param $ev i32) (call $writeLen (local.get $ev) (i32.const 65536)))
 (func (export "writeOnePast") (param $ev i32) (call $writeLen (local.get $ev) (i32.const 65537)))
 (func (export "writeHuge") (param $ev i32) (call $writeLen (local.get $ev) (i32.const 0xFFFFFFF0)))
 (func (export "readHuge") (param $ev i32)
   (drop (call $status (local.get $ev)
     (i32.add (i32.const 200) (call $read (local.get $ev) (i32.const 16) (i32.const 0xFFFFFFF0) (i32.const 8))))))

 (func $code (param $ev i32) (param $code i32)
   (drop (call $status (local.get $ev) (local.get $code))))
 (func (export "status99") (param $ev i32) (call $code (local.get $ev) (i32.const 99)))
 (func (export "status100") (param $ev i32) (call $code (local.get $ev) (i32.const 100)))
 (func (export "status599") (param $ev i32) (call $code (local.get $ev) (i32.const 599)))
 (func (export "status600") (param $ev i32) (call $code (local.get $ev) (i32.const 600)))
)
"""

PAGE = 65536


class RuntimeTests(TestCase):
    timeout = 60

    def setUp(self):
        self.cacheFolder = self.mktemp()
        self.runtime = self.newRuntime()

    def newRuntime(self):
        runtime = Runtime(reactor, self.cacheFolder)
        runtime.start()
        self.addCleanup(lambda: Deferred.fromCoroutine(runtime.stop()))
        return runtime

    async def call(self, export, request=None, limits=Limits(), runtime=None, guest=GUEST):
        runtime = runtime or self.runtime
        cid = await runtime.load(guest.encode())
        return await runtime.call(cid, export, request or HttpRequest(), limits)

    def inReactor(self, coroutine):
        return Deferred.fromCoroutine(coroutine)

    def test_echo(self):
        """
        A function reads the method, host, path, a header (any case), a query
        value, the query keys and the body in chunks, and answers its status,
        a header and a body.
        """
        async def go():
            request = HttpRequest("POST", "/a%20b/c?q=x&r=y&q=z", "fn.example.com", [("x-name", "v1"), ("X-Name", "v2")], b"hello world")
            status, headers, body = await self.call("echo", request)
            self.assertEqual(status, 201)
            self.assertEqual(headers, [("X-Out", "yes")])
            self.assertEqual(body, b"POST fn.example.com /a b/c v1 x q\0r\0 hello world")
        return self.inReactor(go())

    def test_defaultStatus(self):
        """
        A function that only writes answers 200.
        """
        async def go():
            self.assertEqual(await self.call("hello"), (200, [], b"hello"))
        return self.inReactor(go())

    def test_redirect(self):
        """
        C{eventHttpRedirect} answers like Go's C{http.Redirect} for a GET.
        """
        async def go():
            status, headers, body = await self.call("redirect")
            self.assertEqual(status, 307)
            self.assertEqual(headers, [("Location", "https://example.org/next"), ("Content-Type", "text/html; charset=utf-8")])
            self.assertEqual(body, b'<a href="https://example.org/next">Temporary Redirect</a>.\n\n')
        return self.inReactor(go())

    def test_trap(self):
        """
        A function that traps answers 500, and its instance is not reused.
        """
        async def go():
            self.assertEqual(await self.call("boom"), (500, [], b""))
            self.assertEqual(await self.call("hello"), (200, [], b"hello"))
            self.assertEqual(self.runtime.coldStarts, 2)
        return self.inReactor(go())

    def test_stackOverflow(self):
        """
        Endless recursion answers 500.
        """
        async def go():
            self.assertEqual(await self.call("recurse"), (500, [], b""))
        return self.inReactor(go())

    def test_loopDoesNotStall(self):
        """
        While one call loops, another function call answers.
        """
        async def go():
            cid = await self.runtime.load(GUEST.encode())
            spinning = Deferred.fromCoroutine(self.runtime.call(cid, "spin", HttpRequest(), Limits(timeout=2)))
            self.assertEqual(await self.call("hello"), (200, [], b"hello"))
            self.assertFalse(spinning.called)
            self.assertEqual(await spinning, (504, [], b""))
        return self.inReactor(go())

    def test_missingExport(self):
        """
        Calling an export the module does not have answers 500.
        """
        async def go():
            self.assertEqual(await self.call("nope"), (500, [], b""))
        return self.inReactor(go())

    def test_timeout(self):
        """
        A function that loops answers 504 once its timeout is over, and the
        reactor runs meanwhile; its
        instance is dropped (the next call is a cold start), and the runtime
        still answers.
        """
        async def go():
            limits = Limits(timeout=0.2)
            start = reactor.seconds()
            ran = []
            reactor.callLater(0.05, ran.append, "reactor")
            cid = await self.runtime.load(GUEST.encode())
            call = Deferred.fromCoroutine(self.runtime.call(cid, "spin", HttpRequest(), limits))
            self.assertTrue(self.runtime.ticking)
            self.assertEqual(await call, (504, [], b""))
            self.assertEqual(ran, ["reactor"])
            self.assertGreaterEqual(reactor.seconds() - start, 0.2)
            self.assertEqual(await self.call("hello", limits=limits), (200, [], b"hello"))
            self.assertEqual(self.runtime.coldStarts, 2)
        return self.inReactor(go())

    def test_memoryLimit(self):
        """
        With a limit of two pages, growing the one-page memory by one page is
        allowed; by two more pages (the warm instance from the first call) it
        is refused (the guest traps: 500), and the next call is a new
        instance.
        """
        async def go():
            limits = Limits(memory=2 * PAGE)
            self.assertEqual(await self.call("grow1", limits=limits), (200, [], b"hello"))
            self.assertEqual(await self.call("grow2", limits=limits), (500, [], b""))
            self.assertEqual(await self.call("hello", limits=limits), (200, [], b"hello"))
            self.assertEqual(self.runtime.coldStarts, 2)
        return self.inReactor(go())

    def test_memoryPages(self):
        """
        The memory limit is rounded up to whole pages, as Taubyte does: one
        byte over one page allows two pages; exactly one page does not.
        """
        async def go():
            self.assertEqual(await self.call("grow1", limits=Limits(memory=PAGE + 1)), (200, [], b"hello"))
            self.assertEqual(await self.call("grow1", limits=Limits(memory=PAGE)), (500, [], b""))
        return self.inReactor(go())

    def test_memoryBelowModule(self):
        """
        A module whose initial memory is over the limit answers 500.
        """
        async def go():
            big = GUEST.replace('(memory (export "memory") 1)', '(memory (export "memory") 3)')
            self.assertEqual(await self.call("hello", limits=Limits(memory=2 * PAGE), guest=big), (500, [], b""))
            self.assertEqual(await self.call("hello", limits=Limits(memory=3 * PAGE), guest=big), (200, [], b"hello"))
        return self.inReactor(go())

    def test_limits(self):
        """
        Limits of 0 are refused; a tns function entry gives the timeout in
        nanoseconds and the memory in bytes.
        """
        for field in ("memory", "timeout", "maxBody", "maxHeaders"):
            with self.assertRaises(ValueError) as e:
                Limits(**{field: 0})
            self.assertEqual(str(e.exception), f"invalid {field} 0: must be more than 0")
        limits = Limits.ofFunction({"timeout": 2_500_000_000, "memory": 10_000_000})
        self.assertEqual((limits.timeout, limits.memory, limits.memoryBytes), (2.5, 10_000_000, 153 * PAGE))

    def test_guestLengths(self):
        """
        A length the guest hands over is checked against its memory: the
        whole memory is accepted, one byte past it and a huge length are
        refused with C{ErrorAddressOutOfMemory} (3) and nothing is written.
        """
        async def go():
            status, _, body = await self.call("writeAll")
            self.assertEqual((status, len(body)), (200, PAGE))
            self.assertEqual(await self.call("writeOnePast"), (203, [], b""))
            self.assertEqual(await self.call("writeHuge"), (203, [], b""))
            self.assertEqual(await self.call("readHuge", HttpRequest("POST", body=b"x")), (203, [], b""))
        return self.inReactor(go())

    def test_responseBodyLimit(self):
        """
        A write past the function's C{maxBody} fails with C{ErrorHttpWrite}
        (5); a body of exactly C{maxBody} is answered.
        """
        async def go():
            status, _, body = await self.call("writeAll", limits=Limits(maxBody=PAGE))
            self.assertEqual((status, len(body)), (200, PAGE))
            self.assertEqual(await self.call("writeAll", limits=Limits(maxBody=PAGE - 1)), (205, [], b""))
        return self.inReactor(go())

    def test_statusRange(self):
        """
        A status outside 100-599 answers 500; 599 is answered as it is, 100 is
        informational (the final status stays 200).
        """
        async def go():
            self.assertEqual(await self.call("status99"), (500, [], b""))
            self.assertEqual(await self.call("status600"), (500, [], b""))
            self.assertEqual(await self.call("status599"), (599, [], b""))
            self.assertEqual(await self.call("status100"), (200, [], b""))
        return self.inReactor(go())

    def test_warm(self):
        """
        1,000 calls in a row to one function with a large memory setting cost
        one cold start, and C{_initialize} ran once; once they are over, the
        epoch ticker no longer wakes the reactor.
        """
        async def go():
            limits = Limits(memory=1 << 30)
            for _ in range(1000):
                self.assertEqual(await self.call("hello", limits=limits), (200, [], b"hello"))
            self.assertEqual(self.runtime.coldStarts, 1)
            self.assertEqual(await self.call("inits", limits=limits), (200, [], b"1"))
            self.assertFalse(self.runtime.ticking)
        return self.inReactor(go())

    def test_cacheFileDamaged(self):
        """
        A cached file that does not load (damaged, or from another wasmtime)
        is compiled again and replaced.
        """
        async def go():
            await self.call("hello")
            await self.runtime.stop()
            [cached] = FilePath(self.cacheFolder).children()
            cached.setContent(b"\x7fELF not a module")
            restarted = self.newRuntime()
            self.assertEqual(await self.call("hello", runtime=restarted), (200, [], b"hello"))
            self.assertEqual((restarted.cache.compiled, restarted.cache.loaded), (1, 0))
            third = self.newRuntime()
            self.assertEqual(await self.call("hello", runtime=third), (200, [], b"hello"))
            self.assertEqual((third.cache.compiled, third.cache.loaded), (0, 1))
        return self.inReactor(go())

    def test_cacheSurvivesRestart(self):
        """
        A new runtime on the same cache folder loads the compiled module
        from disk instead of compiling it.
        """
        async def go():
            await self.call("hello")
            self.assertEqual((self.runtime.cache.compiled, self.runtime.cache.loaded), (1, 0))
            await self.runtime.stop()
            restarted = self.newRuntime()
            self.assertEqual(await self.call("hello", runtime=restarted), (200, [], b"hello"))
            self.assertEqual((restarted.cache.compiled, restarted.cache.loaded), (0, 1))
        return self.inReactor(go())


WASI_GUEST = f"""
(module
 (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
 (import "wasi_snapshot_preview1" "args_sizes_get" (func $argsSizes (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_write" (func $fdWrite (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "eventHttpWrite" (func $write (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "getHttpEventRequestHeaderKeysSize" (func $keysSize (param i32 i32) (result i32)))
 (import "{SDK}" "getHttpEventRequestHeaderKeys" (func $keys (param i32 i32 i32) (result i32)))
 (import "{SDK}" "getHttpEventMethod" (func $method (param i32 i32 i32) (result i32)))
 (import "{SDK}" "newIpfsClient" (func $newIpfsClient (param i32) (result i32)))
 (memory (export "memory") 1)
 (data (i32.const 64) "ok")
 ;; an iovec at 32: "ok", 2 bytes
 (data (i32.const 32) "\\40\\00\\00\\00\\02\\00\\00\\00")
 (global $status (mut i32) (i32.const 0))
 (func (export "_initialize")
   (global.set $status (i32.or (i32.or
     (call $random (i32.const 0) (i32.const 16))
     (call $clock (i32.const 0) (i64.const 1) (i32.const 16)))
     (i32.or (call $argsSizes (i32.const 0) (i32.const 4))
             (call $fdWrite (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 8))))))
 ;; "ok" if every WASI call in _initialize answered 0
 (func (export "wasi") (param $ev i32)
   (if (global.get $status) (then unreachable))
   (drop (call $write (local.get $ev) (i32.const 64) (i32.const 2) (i32.const 8))))
 ;; the header keys, NUL-separated
 (func (export "headerKeys") (param $ev i32)
   (drop (call $keysSize (local.get $ev) (i32.const 0)))
   (drop (call $keys (local.get $ev) (i32.const 1024) (i32.const 0)))
   (drop (call $write (local.get $ev) (i32.const 1024) (i32.load (i32.const 0)) (i32.const 8))))
 ;; getHttpEventMethod with a buffer one byte short: its errno as the body's byte
 (func (export "methodShort") (param $ev i32)
   (i32.store8 (i32.const 0) (i32.add (i32.const 48) (call $method (local.get $ev) (i32.const 1024) (i32.const 2))))
   (drop (call $write (local.get $ev) (i32.const 0) (i32.const 1) (i32.const 8))))
 (func (export "database") (param $ev i32)
   (drop (call $newIpfsClient (i32.const 0))))
)
"""


class ImportsTests(TestCase):
    timeout = 60

    def setUp(self):
        self.runtime = Runtime(reactor)
        self.runtime.start()
        self.addCleanup(lambda: Deferred.fromCoroutine(self.runtime.stop()))

    async def call(self, export, request=None):
        cid = await self.runtime.load(WASI_GUEST.encode())
        return await self.runtime.call(cid, export, request or HttpRequest())

    def test_wasi(self):
        """
        The WASI calls a TinyGo reactor makes in C{_initialize} (random,
        clock, args, a write to stdout) answer 0; stdout goes nowhere.
        """
        return Deferred.fromCoroutine(self._check("wasi", HttpRequest(), b"ok"))

    def test_headerKeys(self):
        """
        C{getHttpEventRequestHeaderKeys} gives the canonical names, once each,
        NUL-separated.
        """
        request = HttpRequest(headers=[("x-a", "1"), ("content-type", "t"), ("X-A", "2")])
        return Deferred.fromCoroutine(self._check("headerKeys", request, b"X-A\0Content-Type\0"))

    def test_methodBufferSize(self):
        """
        C{getHttpEventMethod} needs a buffer of exactly the method's length:
        C{ErrorBufferTooSmall} (2) otherwise.
        """
        return Deferred.fromCoroutine(self._check("methodShort", HttpRequest("GET"), b"2"))

    async def _check(self, export, request, body):
        self.assertEqual(await self.call(export, request), (200, [], body))

    def test_otherSdkImports(self):
        """
        A module importing C{taubyte/sdk} functions the runtime does not
        provide yet links; calling one traps (500).
        """
        async def go():
            self.assertEqual(await self.call("database"), (500, [], b""))
            self.assertEqual(await self.call("wasi"), (200, [], b"ok"))
        return Deferred.fromCoroutine(go())
