"""
L{FunctionRunner}: the one place a substrate turns a function record into
a call of the runtime, whatever triggered it (an HTTP request through
L{tau.services.substrate.serving}, a pubsub message or a p2p command
through L{tau.services.substrate.triggers}).

A function record is what tns lookups answer: C{{project, application
(None or C{""} at project level), id, branch, commit, config}}.  Its build
CID is the tns value at L{tau.project.indexes.assetKey}; the build is
fetched through the node's content (over bitswap when elsewhere),
unwrapped (L{tau.services.substrate.assets}) and compiled once (the
runtime's module cache, on disk, keyed by the build's CID, so a restart
does not fetch or compile it again); a build that is not a module is
remembered per CID (a CID's bytes never change).  Its export is the
config's C{call}, its limits the config's C{memory} and C{timeout}
(L{limitsOf}), its L{FunctionContext} names it and carries the node's
L{tau.services.substrate.wasm.services.FunctionServices}.

At most the runtime's C{workers} calls are under way at once, of every
trigger together (the others wait): each holds an instance, and more than
the pool keeps would be cold ones.
"""

import dataclasses
from collections import OrderedDict

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from wasmtime import WasmtimeError

from tau.oneshot import OneShot
from tau.project.indexes import assetKey
from tau.services.commands import RemoteError
from tau.services.framework import ServiceError
from tau.services.substrate.assets import AssetError, assetCID, fetchBuild, moduleOf
from tau.services.substrate.wasm import Limits
from tau.services.substrate.wasm.context import FunctionContext

#: the most CIDs whose broken build is remembered
MAX_REMEMBERED = 10_000
#: seconds a build's blocks may take to come (a gateway waits 30 s at most)
FETCH_TIMEOUT = 20.0


class _NeedBytes(Exception):
    """
    The module is not compiled here: its bytes are needed.
    """


def _noBytes():
    raise _NeedBytes()


def limitsOf(config):
    """
    The L{Limits} of a function's tns config (C{memory} in bytes,
    C{timeout} in nanoseconds); the defaults for what it lacks.
    """
    given = {}
    memory, timeout = config.get("memory"), config.get("timeout")
    if isinstance(memory, int) and not isinstance(memory, bool) and memory > 0:
        given["memory"] = memory
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
        given["timeout"] = timeout / 1e9
    return Limits(**given)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """
    A function ready to call: its build's C{cid} (loaded in the runtime),
    its C{export}, C{limits} and C{context}; C{loaded}: whether preparing
    it fetched or compiled the build.
    """

    cid: str
    export: str
    limits: Limits
    context: FunctionContext
    loaded: bool


class FunctionRunner:
    """
    @param tns: has C{async fetch(path)} (a L{tau.services.tns.client.TNSClient}).
    @param content: L{tau.interfaces.IContent}.
    @param runtime: a started L{tau.services.substrate.wasm.Runtime}.
    @param reactor: IReactorTime and IReactorThreads (unzipping runs in
        its thread pool).
    @param maxModule: bytes of a function build, and of its module.
    @param services: the node-backed services of the functions' host
        calls (L{FunctionContext.services}), or None.
    """

    def __init__(self, tns, content, runtime, reactor, *, maxModule, services=None):
        self.tns = tns
        self.content = content
        self.runtime = runtime
        self.reactor = reactor
        self.maxModule = maxModule
        self.services = services
        self._loaded = set()
        self._loading = {}
        self._broken = OrderedDict()
        self._calls = DeferredSemaphore(runtime.workers)

    # -- what to call ----------------------------------------------------------

    async def assetOf(self, found):
        """
        The build CID (text) of the resource C{found}, or None.

        @raise ServiceError: tns could not be asked.
        """
        try:
            value = await self.tns.fetch(assetKey(found["project"], found["id"], found["branch"]))
        except RemoteError as e:
            raise ServiceError(f"tns: {e}") from None
        return assetCID(value)

    def isLoaded(self, cid):
        """
        Whether the build C{cid} is compiled here (loaded, or in the
        module cache).
        """
        return cid in self._loaded or self.runtime.cache.has(cid)

    def contextOf(self, function):
        return FunctionContext(project=function["project"], application=function.get("application") or "",
                               resource=function["id"], commit=function.get("commit") or "",
                               branch=function.get("branch") or "main", services=self.services)

    async def prepare(self, function, cid=None):
        """
        The L{Prepared} call of C{function} (its build looked up unless
        C{cid} is given, and loaded).

        @raise AssetError: no build yet or not available (503), not a
            module or no export named (500).
        @raise ServiceError: tns could not be asked.
        """
        config = function["config"]
        export = config.get("call")
        if not isinstance(export, str) or not export:
            raise AssetError(f"function {function['id']} names no export to call", 500)
        if cid is None:
            cid = await self.assetOf(function)
            if cid is None:
                raise AssetError(f"function {function['id']} of project {function['project']} has no build yet", 503)
        loaded = await self.load(cid)
        return Prepared(cid, export, limitsOf(config), self.contextOf(function), loaded)

    # -- calling ---------------------------------------------------------------

    async def invoke(self, call):
        """
        C{await call()} once fewer than the runtime's workers calls are
        under way; its result.
        """
        await self._calls.acquire()
        try:
            return await call()
        finally:
            self._calls.release()

    async def runPubsub(self, function, topic, data):
        """
        Run C{function} for a pubsub message (a
        L{tau.services.substrate.triggers.PubsubTriggers} runner).

        @raise FunctionFailed: it trapped, timed out or failed.
        @raise AssetError: its build cannot be had.
        """
        p = await self.prepare(function)
        await self.invoke(lambda: self.runtime.callPubsub(p.cid, p.export, topic, data, p.limits, p.context))

    async def runP2P(self, function, command, body, fromPeer, toPeer):
        """
        Run C{function} for a p2p command (a
        L{tau.services.substrate.triggers.P2PTriggers} runner); the bytes
        it answered, or None.

        @raise FunctionFailed: it trapped, timed out or failed.
        @raise AssetError: its build cannot be had.
        """
        p = await self.prepare(function)
        return await self.invoke(lambda: self.runtime.callP2P(p.cid, p.export, command, body, fromPeer, toPeer,
                                                              p.limits, p.context))

    # -- broken builds -----------------------------------------------------------

    def brokenWhy(self, cid):
        """
        Why build C{cid} is known to be broken, or None.
        """
        return self._broken.get(cid)

    def remember(self, cid, broken):
        """
        Remember that build C{cid} is broken (C{broken}: why).
        """
        self._broken[cid] = broken
        while len(self._broken) > MAX_REMEMBERED:
            self._broken.popitem(last=False)

    # -- loading -------------------------------------------------------------------

    async def load(self, cid):
        """
        Have the module of build C{cid} ready in the runtime (once, whoever
        asks meanwhile); whether this call loaded it.

        @raise AssetError: it cannot be had (503) or is not a module (500).
        """
        if cid in self._loaded:
            return False
        broken = self._broken.get(cid)
        if broken is not None:
            raise AssetError(broken, 500)
        shot = self._loading.get(cid)
        if shot is None:
            shot = self._loading[cid] = OneShot()
            d = Deferred.fromCoroutine(self._load(cid))
            d.addBoth(self._loadDone, cid, shot)
        await shot.whenFired()
        return True

    def _loadDone(self, result, cid, shot):
        del self._loading[cid]
        if not isinstance(result, Failure):
            self._loaded.add(cid)
        elif result.check(AssetError) and result.value.status == 500:
            self.remember(cid, str(result.value))
        shot.fire(result)

    async def _load(self, cid):
        if self.runtime.cache.has(cid):
            try:
                await self.runtime.load(_noBytes, cid)
                return
            except _NeedBytes:
                pass
        data = await fetchBuild(self.content, cid, self.maxModule, FETCH_TIMEOUT)
        module = await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), moduleOf, data, self.maxModule)
        try:
            await self.runtime.load(module, cid)
        except WasmtimeError as e:
            raise AssetError(f"the build {cid} does not compile: {e}", 500) from None
