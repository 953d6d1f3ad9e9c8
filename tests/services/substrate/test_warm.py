"""
The warm path of the substrate's wasm runtime stays warm and leaks nothing
(issue 15, item 6): many calls in a row to one function cost one cold
start whatever its memory setting; after 10,000 calls the process's open
files, threads, delayed calls and live Deferreds are back where they
started; an instance whose call trapped, timed out, overran its memory or
set an invalid status is never handed out again (its state is gone).
"""

import gc
import os
import threading

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from tau.services.substrate.wasm import HttpRequest, Limits, Runtime

SDK = "taubyte/sdk"
PAGE = 65536
MIB = 1 << 20

# A counter kept in the instance: "count" adds one and answers it (one
# digit, wrapping at 10); the others add one and then fail.
GUEST = f"""
(module
 (import "{SDK}" "eventHttpWrite" (func $write (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "eventHttpRetCode" (func $status (param i32 i32) (result i32)))
 (memory (export "memory") 1)
 (global $count (mut i32) (i32.const 0))
 (func $bump (global.set $count (i32.add (global.get $count) (i32.const 1))))
 (func (export "count") (param $ev i32)
   (call $bump)
   (i32.store8 (i32.const 0) (i32.add (i32.const 48) (i32.rem_u (global.get $count) (i32.const 10))))
   (drop (call $write (local.get $ev) (i32.const 0) (i32.const 1) (i32.const 8))))
 (func (export "hello") (param $ev i32)
   (i32.store (i32.const 0) (i32.const 0x6c6c6568))
   (i32.store8 (i32.const 4) (i32.const 0x6f))
   (drop (call $write (local.get $ev) (i32.const 0) (i32.const 5) (i32.const 8))))
 (func (export "countTrap") (param $ev i32) (call $bump) unreachable)
 (func (export "countSpin") (param $ev i32) (call $bump) (loop $forever (br $forever)))
 (func (export "countGrow") (param $ev i32)
   (call $bump)
   (if (i32.eq (memory.grow (i32.const 100)) (i32.const -1)) (then unreachable)))
 (func (export "countStatus") (param $ev i32)
   (call $bump)
   (drop (call $status (local.get $ev) (i32.const 600))))
)
"""

HELLO = (200, [], b"hello")


def openFiles():
    return len(os.listdir("/proc/self/fd"))


def liveDeferreds():
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, Deferred))


def footprint():
    """
    What a leak per call would grow: open files, threads, the reactor's
    delayed calls, live Deferreds.
    """
    return {"files": openFiles(), "threads": threading.active_count(),
            "delayed": len(reactor.getDelayedCalls()), "deferreds": liveDeferreds()}


class WarmTests(TestCase):
    timeout = 120

    def setUp(self):
        self.runtime = Runtime(reactor, self.mktemp())
        self.runtime.start()
        self.addCleanup(lambda: Deferred.fromCoroutine(self.runtime.stop()))

    async def load(self):
        return await self.runtime.load(GUEST.encode())

    async def test_oneColdStartPerMemorySetting(self):
        """
        1,000 calls in a row to one function cost exactly one cold start,
        for a memory setting of one page, 16 MiB, 1 GiB and the 4 GiB
        maximum alike.
        """
        cid = await self.load()
        for memory in (PAGE, 16 * MIB, 1 << 30, 1 << 32):
            before = self.runtime.coldStarts
            limits = Limits(memory=memory)
            for _ in range(1000):
                self.assertEqual(await self.runtime.call(cid, "hello", HttpRequest(), limits), HELLO)
            self.assertEqual(self.runtime.coldStarts - before, 1, f"memory {memory}")

    async def test_noLeak(self):
        """
        After 10,000 calls the open files, threads, delayed calls and live
        Deferreds are where they were after the first ones (the runtime's
        threads had started, the instance was warm); the ticker is stopped.
        """
        cid = await self.load()
        request = HttpRequest()
        # calls at once first, so the runtime has started every thread it
        # may (a thread pool starts one when a call comes while the others
        # are busy, which sequential calls hit now and then)
        for _ in range(3):
            await gatherResults([Deferred.fromCoroutine(self.runtime.call(cid, "hello", request))
                                 for _ in range(4 * self.runtime.workers)])
        before = footprint()
        cold = self.runtime.coldStarts
        for _ in range(10_000):
            answer = await self.runtime.call(cid, "hello", request)
        self.assertEqual(answer, HELLO)
        after = footprint()
        self.assertEqual(self.runtime.coldStarts, cold)
        self.assertFalse(self.runtime.ticking)
        for what in ("files", "threads", "delayed"):
            self.assertLessEqual(after[what], before[what], (what, before, after))
        # a few Deferreds of trial's own may come and go; one per call would be 10,000
        self.assertLessEqual(after["deferreds"], before["deferreds"] + 5, (before, after))


class NeverReusedTests(TestCase):
    """
    An instance whose call failed is dropped: the next call gets a new
    instance (its counter starts again), where a clean call's instance is
    handed out again (its counter goes on).
    """

    timeout = 60

    def setUp(self):
        self.runtime = Runtime(reactor)
        self.runtime.start()
        self.addCleanup(lambda: Deferred.fromCoroutine(self.runtime.stop()))

    async def check(self, export, answer, limits=Limits()):
        cid = await self.runtime.load(GUEST.encode())
        self.assertEqual(await self.runtime.call(cid, "count", HttpRequest(), limits), (200, [], b"1"))
        self.assertEqual(await self.runtime.call(cid, "count", HttpRequest(), limits), (200, [], b"2"))
        self.assertEqual(await self.runtime.call(cid, export, HttpRequest(), limits), answer)
        # the failed instance (counter 3) is gone: a fresh one answers 1
        self.assertEqual(await self.runtime.call(cid, "count", HttpRequest(), limits), (200, [], b"1"))
        self.assertEqual(self.runtime.coldStarts, 2)

    def test_trapped(self):
        return Deferred.fromCoroutine(self.check("countTrap", (500, [], b"")))

    def test_timedOut(self):
        return Deferred.fromCoroutine(self.check("countSpin", (504, [], b""), Limits(timeout=0.1)))

    def test_memoryOverrun(self):
        return Deferred.fromCoroutine(self.check("countGrow", (500, [], b""), Limits(memory=2 * PAGE)))

    def test_invalidStatus(self):
        return Deferred.fromCoroutine(self.check("countStatus", (500, [], b"")))

    async def test_timedOutAmongWarm(self):
        """
        Two instances of one function are warm; one times out: the other
        is handed out next, then a new one, never the one that timed out.
        """
        cid = await self.runtime.load(GUEST.encode())
        limits = Limits(timeout=0.2)
        first = Deferred.fromCoroutine(self.runtime.call(cid, "count", HttpRequest(), limits))
        second = Deferred.fromCoroutine(self.runtime.call(cid, "count", HttpRequest(), limits))
        self.assertEqual([await first, await second], [(200, [], b"1")] * 2)
        self.assertEqual(self.runtime.coldStarts, 2)
        self.assertEqual(await self.runtime.call(cid, "countSpin", HttpRequest(), limits), (504, [], b""))
        self.assertEqual(await self.runtime.call(cid, "count", HttpRequest(), limits), (200, [], b"2"))
        self.assertEqual(self.runtime.coldStarts, 2)
        spinning = Deferred.fromCoroutine(self.runtime.call(cid, "countSpin", HttpRequest(), limits))
        self.assertEqual(await spinning, (504, [], b""))
        self.assertEqual(await self.runtime.call(cid, "count", HttpRequest(), limits), (200, [], b"1"))
        self.assertEqual(self.runtime.coldStarts, 3)
