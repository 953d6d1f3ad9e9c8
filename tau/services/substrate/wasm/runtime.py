"""
L{Runtime}: runs a function's export for an event: an HTTP request
(L{Runtime.call} answers C{(status, headers, body)}), a pubsub message
(L{Runtime.callPubsub}) or a p2p command (L{Runtime.callP2P} answers the
bytes the guest wrote).  One instance serves events of every type, one
after the other; its event ids keep growing.

The call path never blocks the reactor: compiling, instantiating and calling
run in the runtime's own threads (L{Workers}; wasmtime-py calls into the native
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
import threading

from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from wasmtime import Trap, TrapCode, WasmtimeError

from tau.cids import cidText, makeCID
from tau.services.substrate.wasm import events
from tau.services.substrate.wasm.context import NO_CONTEXT
from tau.services.substrate.wasm.engine import ModuleCache, makeEngine
from tau.services.substrate.wasm.instance import Event, Instance, Limits, Pool, link, makeLinker
from tau.services.substrate.wasm.workers import Workers

log = Logger()

INTERNAL_ERROR = (500, [], b"")
TIMEOUT = (504, [], b"")


class FunctionFailed(Exception):
    """
    A pubsub or p2p call trapped, overran its memory, failed to
    instantiate, or (C{timeout}) ran past its timeout.  Its instance was
    dropped.
    """

    def __init__(self, message, timeout=False):
        super().__init__(message)
        self.timeout = timeout


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
        # the engine's shared linker, and CID -> what instantiates its module
        # (L{link}), built once per module
        self._linker = None
        self._linked = {}
        self._linking = threading.Lock()

    def start(self):
        self.engine = makeEngine()
        self.cache = ModuleCache(self.engine, self._cacheFolder)
        self._pool = Pool(self.poolSize, self.poolTotal)
        self._threads = Workers(self._reactor, self.workers, "wasm")
        # the shared linker (~2 ms) now rather than on the first cold start
        d = self._threads.submit(self._sharedLinker)
        d.addErrback(lambda f: log.failure("wasm: the shared linker could not be built", f))
        self._ticker = LoopingCall(self.engine.increment_epoch)
        self._ticker.clock = self._reactor

    async def stop(self):
        # The ticker keeps running until the workers are done: a looping guest
        # still reaches its deadline.
        threads, self._threads = self._threads, None
        if threads is not None:
            threads.close()
            await deferToThread(threads.join)

    @property
    def ticking(self):
        """
        Whether the epoch ticker runs (only while calls are running).
        """
        return self._ticker is not None and self._ticker.running

    def _inThread(self, fn, *args):
        return self._threads.submit(fn, *args)

    async def load(self, wasm, cid=None):
        """
        Compile C{wasm} (or load its compiled form from the cache); its CID.
        """
        if cid is None:
            cid = cidText(await self._inThread(makeCID, wasm))
        await self._inThread(self.cache.module, cid, wasm)
        return cid

    def _sharedLinker(self):
        with self._linking:
            if self._linker is None:
                self._linker = makeLinker(self.engine)
            return self._linker

    def _linkedOf(self, cid, module):
        """
        In a worker thread: what instantiates C{module} (of C{cid}), linked
        once.
        """
        linked = self._linked.get(cid)
        if linked is None:
            linker = self._sharedLinker()
            with self._linking:
                linked = self._linked.get(cid)
                if linked is None:
                    linked = self._linked[cid] = link(self.engine, module, linker)
        return linked

    def _deadline(self, limits):
        return math.ceil(limits.timeout / self.tick) + 1

    def _run(self, cid, instance, export, makeEvent, limits, context):
        """
        In a worker thread: instantiate if needed, call C{export} with the
        event C{makeEvent(instance)}.  C{(event or L{FunctionFailed},
        instance to give back or None)}.
        """
        try:
            if instance is None:
                module = self.cache.module(cid, None)
                instance = Instance(self.engine, module, f"functions/{cid}", limits, context, self._reactor)
                instance.create(self._deadline(limits), self._linkedOf(cid, module))
            event = instance.callEvent(export, makeEvent(instance), self._deadline(limits))
        except Trap as e:
            if e.trap_code == TrapCode.INTERRUPT:
                return FunctionFailed(f"function {cid} timed out", timeout=True), None
            log.info("function {cid} trapped: {error}", cid=cid, error=e.message)
            return FunctionFailed(f"function {cid} trapped"), None
        except (WasmtimeError, LookupError) as e:
            log.info("function {cid} failed: {error}", cid=cid, error=str(e))
            why = (str(e).splitlines() or [type(e).__name__])[0]
            return FunctionFailed(f"function {cid} failed: {why}"), None
        if event.response is not None and event.response.invalid:
            return event, None
        return event, instance

    async def _callEvent(self, cid, export, makeEvent, limits, context):
        """
        Run C{export} of the loaded module C{cid} with the event
        C{makeEvent(instance)} on a warm instance (kept per module, limits
        and context) or a new one; the event once the call returned.

        @raise FunctionFailed: the call trapped, timed out or failed.
        """
        key = (cid, limits, context)
        instance = self._pool.take(key)
        if instance is None:
            self.coldStarts += 1
        self._running += 1
        if not self._ticker.running:
            self._ticker.start(self.tick, now=False)
        try:
            event, warm = await self._inThread(self._run, cid, instance, export, makeEvent, limits, context)
        finally:
            self._running -= 1
            if not self._running:
                self._ticker.stop()
        if warm is not None:
            self._pool.give(key, warm)
        if isinstance(event, FunctionFailed):
            raise event
        return event

    async def call(self, cid, export, request, limits=Limits(), context=NO_CONTEXT):
        """
        Run C{export} of the loaded module C{cid} for C{request} (an
        L{tau.services.substrate.wasm.http.HttpRequest}) in C{context} (a
        L{tau.services.substrate.wasm.context.FunctionContext}: warm
        instances are kept per module, limits and context); C{(status,
        headers, body)}.
        """
        try:
            event = await self._callEvent(cid, export, lambda instance: instance.httpEvent(request), limits, context)
        except FunctionFailed as e:
            return TIMEOUT if e.timeout else INTERNAL_ERROR
        return event.response.final()

    async def callPubsub(self, cid, export, topic, data, limits=Limits(), context=NO_CONTEXT):
        """
        Run C{export} of the loaded module C{cid} for a pubsub message:
        C{data} (bytes) received on C{topic} (C{<hash>/<channel>}, what
        C{getMessageChannel} splits).  Taubyte ignores what the export
        returns; so does this.

        @raise FunctionFailed: the call trapped, timed out or failed.
        """
        message = events.PubsubMessage(topic, bytes(data))
        await self._callEvent(cid, export, lambda instance: Event(events.PUBSUB_EVENT, message=message), limits, context)

    async def callP2P(self, cid, export, command, body, fromPeer=None, toPeer=None, limits=Limits(), context=NO_CONTEXT):
        """
        Run C{export} of the loaded module C{cid} for a p2p command:
        C{command} (its name), C{body} (the command's body: C{data} bytes,
        C{protocol}, ...; see L{tau.services.substrate.wasm.events}),
        C{fromPeer}/C{toPeer} the remote and local peers (L{PeerID}, or
        None: the guest's C{getP2PEventFrom}/C{To} answer their errno).

        @return: the bytes the guest answered with C{writeP2PResponse} (at
            most C{limits.maxBody}), or None when it wrote none.
        @raise FunctionFailed: the call trapped, timed out or failed.
        """
        p2p = events.P2PCommand(command, body, fromPeer, toPeer, limits.maxBody)
        event = await self._callEvent(cid, export, lambda instance: Event(events.P2P_EVENT, p2p=p2p), limits, context)
        return event.p2p.response
