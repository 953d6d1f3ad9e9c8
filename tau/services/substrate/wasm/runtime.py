"""
L{Runtime}: runs a function's export for an HTTP request and answers
C{(status, headers, body)}.

The call path never blocks the reactor: compiling, instantiating and calling
run in the runtime's own thread pool (wasmtime-py calls into the native
library through ctypes, which releases the GIL while guest code runs).  The
timeout is wasmtime's epoch deadline: a L{LoopingCall} on the reactor calls
C{Engine.increment_epoch} every C{tick} seconds while calls are running (an
atomic increment that wasmtime allows from any thread; an idle runtime does
not wake the reactor), and a call's store gets a deadline of
C{ceil(timeout / tick) + 1} ticks, so a guest that loops traps in the worker
thread within one tick of its timeout.  A wasmtime C{Store} is not to be used
by two threads at once; each instance (and its store) is used by one worker
thread per call and handed back to the reactor thread between calls (see
L{tau.services.substrate.wasm.instance}), which wasmtime allows (a store is
C{Send}).

A trap, a memory overrun, a bad export or an invalid status answers 500; a
timeout 504.  Such an instance is dropped, never reused; a clean call's
instance goes back to the pool, so a function called again and again stays
warm (C{coldStarts} counts instantiations).
"""

import math

from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThread, deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from wasmtime import Trap, TrapCode, WasmtimeError

from tau.cids import cidText, makeCID
from tau.services.substrate.wasm.context import NO_CONTEXT
from tau.services.substrate.wasm.engine import ModuleCache, makeEngine
from tau.services.substrate.wasm.instance import Instance, Limits, Pool

log = Logger()

INTERNAL_ERROR = (500, [], b"")
TIMEOUT = (504, [], b"")


class Runtime:
    """
    @ivar tick: seconds between two epoch ticks (the timeout's precision).
    @ivar workers: threads running calls at once.
    @ivar poolSize: idle warm instances kept per function.
    @ivar poolTotal: idle warm instances kept in all.
    """

    tick = 0.01
    workers = 2
    poolSize = 4
    poolTotal = 64

    def __init__(self, reactor, cacheFolder=None):
        self._reactor = reactor
        self._cacheFolder = cacheFolder
        self._pool = None
        self.coldStarts = 0
        self.engine = None
        self.cache = None
        self._threads = None
        self._ticker = None
        self._running = 0

    def start(self):
        self.engine = makeEngine()
        self.cache = ModuleCache(self.engine, self._cacheFolder)
        self._pool = Pool(self.poolSize, self.poolTotal)
        self._threads = ThreadPool(minthreads=0, maxthreads=self.workers, name="wasm")
        self._threads.start()
        self._ticker = LoopingCall(self.engine.increment_epoch)
        self._ticker.clock = self._reactor

    async def stop(self):
        # The ticker keeps running until the workers are done: a looping guest
        # still reaches its deadline.
        threads, self._threads = self._threads, None
        if threads is not None:
            await deferToThread(threads.stop)

    @property
    def ticking(self):
        """
        Whether the epoch ticker runs (only while calls are running).
        """
        return self._ticker is not None and self._ticker.running

    def _inThread(self, fn, *args):
        return deferToThreadPool(self._reactor, self._threads, fn, *args)

    async def load(self, wasm, cid=None):
        """
        Compile C{wasm} (or load its compiled form from the cache); its CID.
        """
        if cid is None:
            cid = cidText(await self._inThread(makeCID, wasm))
        await self._inThread(self.cache.module, cid, wasm)
        return cid

    def _deadline(self, limits):
        return math.ceil(limits.timeout / self.tick) + 1

    def _run(self, cid, instance, export, request, limits, context):
        """
        In a worker thread: instantiate if needed, call.  C{(answer, instance
        to give back or None)}.
        """
        try:
            if instance is None:
                instance = Instance(self.engine, self.cache.module(cid, None), f"functions/{cid}", limits, context)
                instance.create(self._deadline(limits))
            response = instance.call(export, request, self._deadline(limits))
        except Trap as e:
            if e.trap_code == TrapCode.INTERRUPT:
                return TIMEOUT, None
            log.info("function {cid} trapped: {error}", cid=cid, error=e.message)
            return INTERNAL_ERROR, None
        except (WasmtimeError, LookupError) as e:
            log.info("function {cid} failed: {error}", cid=cid, error=str(e))
            return INTERNAL_ERROR, None
        return response.final(), (None if response.invalid else instance)

    async def call(self, cid, export, request, limits=Limits(), context=NO_CONTEXT):
        """
        Run C{export} of the loaded module C{cid} for C{request} (an
        L{tau.services.substrate.wasm.http.HttpRequest}) in C{context} (a
        L{tau.services.substrate.wasm.context.FunctionContext}: warm
        instances are kept per module, limits and context); C{(status,
        headers, body)}.
        """
        key = (cid, limits, context)
        instance = self._pool.take(key)
        if instance is None:
            self.coldStarts += 1
        self._running += 1
        if not self._ticker.running:
            self._ticker.start(self.tick, now=False)
        try:
            answer, warm = await self._inThread(self._run, cid, instance, export, request, limits, context)
        finally:
            self._running -= 1
            if not self._running:
                self._ticker.stop()
        if warm is not None:
            self._pool.give(key, warm)
        return answer
