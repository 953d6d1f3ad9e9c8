"""
WASI as TinyGo's reactor builds (C{-target=wasi -buildmode=c-shared}) use
it: C{_initialize} seeds its hash from C{random_get}, reads C{os.Args}
(C{args_sizes_get}, C{args_get}) and the clock, and C{fmt.Println} writes
with C{fd_write}.  Guest stdout and stderr are discarded (wasmtime's
default sink): a write is answered in full and nothing is kept.
"""

import struct

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tau.services.substrate.wasm import HttpRequest, Limits, Runtime

W = "wasi_snapshot_preview1"

# memory: 0 argc, 4 argv buffer size, 8 argv[0] pointer, 16 random,
# 32 realtime, 40 monotonic, 48 an iovec (1024, 60000), 56 nwritten
# stdout, 60 nwritten stderr, 64 the errnos of _initialize, 256 argv
# strings, 1024 what is written
REACTOR = f"""
(module
 (import "{W}" "fd_write" (func $fdWrite (param i32 i32 i32 i32) (result i32)))
 (import "{W}" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
 (import "{W}" "args_sizes_get" (func $argsSizes (param i32 i32) (result i32)))
 (import "{W}" "args_get" (func $args (param i32 i32) (result i32)))
 (import "{W}" "random_get" (func $random (param i32 i32) (result i32)))
 (import "taubyte/sdk" "eventHttpWrite" (func $write (param i32 i32 i32 i32) (result i32)))
 (memory (export "memory") 2)
 (func $errno (param $at i32) (param $e i32) (i32.store8 (i32.add (i32.const 64) (local.get $at)) (local.get $e)))
 (func (export "_initialize")
   (call $errno (i32.const 0) (call $random (i32.const 16) (i32.const 16)))
   (call $errno (i32.const 1) (call $argsSizes (i32.const 0) (i32.const 4)))
   (call $errno (i32.const 2) (call $args (i32.const 8) (i32.const 256)))
   (call $errno (i32.const 3) (call $clock (i32.const 0) (i64.const 1) (i32.const 32)))
   (call $errno (i32.const 4) (call $clock (i32.const 1) (i64.const 1) (i32.const 40)))
   (i32.store (i32.const 48) (i32.const 1024))
   (i32.store (i32.const 52) (i32.const 60000))
   (call $errno (i32.const 5) (call $fdWrite (i32.const 1) (i32.const 48) (i32.const 1) (i32.const 56)))
   (call $errno (i32.const 6) (call $fdWrite (i32.const 2) (i32.const 48) (i32.const 1) (i32.const 60))))
 ;; answers the first 128 bytes of memory and the argv strings
 (func (export "state") (param $ev i32)
   (drop (call $write (local.get $ev) (i32.const 0) (i32.const 128) (i32.const 120)))
   (drop (call $write (local.get $ev) (i32.const 256) (i32.load (i32.const 4)) (i32.const 120))))
 ;; writes 60000 bytes to stdout 100 times in one call
 (func (export "chatty") (param $ev i32) (local $i i32)
   (loop $more
     (drop (call $fdWrite (i32.const 1) (i32.const 48) (i32.const 1) (i32.const 56)))
     (local.set $i (i32.add (local.get $i) (i32.const 1)))
     (br_if $more (i32.lt_u (local.get $i) (i32.const 100)))))
)
"""


class ReactorModuleTests(TestCase):
    timeout = 60

    def setUp(self):
        self.runtime = Runtime(reactor)
        self.runtime.start()
        self.addCleanup(lambda: Deferred.fromCoroutine(self.runtime.stop()))

    def test_initialize(self):
        """
        The WASI calls of a TinyGo reactor's C{_initialize} answer 0: 16
        random bytes, C{argv} is the module's name (C{functions/<cid>}), both
        clocks run, and writes to stdout and stderr are answered in full.
        """
        async def go():
            cid = await self.runtime.load(REACTOR.encode())
            status, _, body = await self.runtime.call(cid, "state", HttpRequest())
            self.assertEqual(status, 200)
            argc, argvSize, argv0 = struct.unpack_from("<III", body, 0)
            name = f"functions/{cid}".encode() + b"\0"
            self.assertEqual((argc, argvSize, argv0), (1, len(name), 256))
            self.assertEqual(body[128:], name)
            self.assertNotEqual(body[16:32], bytes(16))
            realtime, monotonic = struct.unpack_from("<QQ", body, 32)
            self.assertGreater(realtime, 1_600_000_000 * 10**9)
            self.assertGreater(monotonic, 0)
            self.assertEqual(struct.unpack_from("<II", body, 56), (60000, 60000))
            self.assertEqual(body[64:71], bytes(7))
        return Deferred.fromCoroutine(go())

    def test_outputDiscarded(self):
        """
        A guest that writes 6 MB to stdout in one call is answered, warm,
        and again: nothing is kept for it.
        """
        async def go():
            cid = await self.runtime.load(REACTOR.encode())
            for _ in range(3):
                self.assertEqual(await self.runtime.call(cid, "chatty", HttpRequest(), Limits()), (200, [], b""))
            self.assertEqual(self.runtime.coldStarts, 1)
        return Deferred.fromCoroutine(go())
