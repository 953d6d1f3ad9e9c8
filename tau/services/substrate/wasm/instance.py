"""
One instantiated function (L{Instance}: its store, its host functions, its
event table) and the L{Pool} of warm instances.

An instance belongs to one thread at a time: the pool hands it out on the
reactor thread, one worker thread runs it, and it comes back to the pool (on
the reactor thread) only after a clean call; an instance whose call trapped,
timed out or failed is dropped.
"""

from collections import OrderedDict
from dataclasses import dataclass

from wasmtime import Func, Linker, Memory, Store, WasiConfig, WasmtimeError

from tau.services.substrate.wasm import hostabi
from tau.services.substrate.wasm.context import NO_CONTEXT
from tau.services.substrate.wasm.http import HttpResponse

MIB = 1 << 20
PAGE = 1 << 16
MAX_PAGES = 1 << 16


@dataclass(frozen=True)
class Limits:
    """
    A function's limits: C{memory} bytes of linear memory (a store limit,
    rounded up to whole 64 KiB pages, at most 65536 pages, as Taubyte's
    C{MemoryLimitPages}), C{timeout} seconds per call (epoch deadline),
    C{maxBody} bytes of response body, C{maxHeaders} response headers.

    @raise ValueError: a limit is not more than 0.
    """

    memory: int = 64 * MIB
    timeout: float = 10.0
    maxBody: int = 8 * MIB
    maxHeaders: int = 100

    def __post_init__(self):
        for name in ("memory", "timeout", "maxBody", "maxHeaders"):
            if not getattr(self, name) > 0:
                raise ValueError(f"invalid {name} {getattr(self, name)!r}: must be more than 0")

    @classmethod
    def ofFunction(cls, function):
        """
        The limits of a function's tns entry (C{timeout} in nanoseconds,
        C{memory} in bytes).
        """
        return cls(memory=function["memory"], timeout=function["timeout"] / 1e9)

    @property
    def memoryBytes(self):
        return min(-(-self.memory // PAGE), MAX_PAGES) * PAGE


@dataclass
class Event:
    """
    One event in an instance's table: C{type} (L{hostabi.HTTP_EVENT}, or
    L{tau.services.substrate.wasm.events.PUBSUB_EVENT} or C{P2P_EVENT}); an
    HTTP event has C{request}, C{response} and C{maxHeaders}, a pubsub
    event C{message}, a p2p event C{p2p}.
    """

    type: int
    request: object = None
    response: HttpResponse = None
    maxHeaders: int = 0
    message: object = None
    p2p: object = None


def makeLinker(engine):
    """
    A linker with WASI and the host functions of
    L{hostabi.defineDispatching} (each call answered by the instance running
    on the calling thread), for any module: build it once per engine.
    """
    linker = Linker(engine)
    linker.define_wasi()
    hostabi.defineDispatching(linker)
    return linker


def link(engine, module, linker=None):
    """
    What instantiates C{module} (an C{InstancePre}, or the linker where
    wasmtime-py has none): with C{linker} (L{makeLinker}'s, shared) when it
    defines all the module's imports, else with a linker of its own that
    also traps on any other import (defining the host functions again costs
    ~2 ms).  May be used by several threads at once, as wasmtime allows.
    """
    pre = getattr(linker, "instantiate_pre", None)
    if pre is not None:
        try:
            return pre(module)
        except WasmtimeError:
            pass   # an import it lacks (or of another type)
    own = makeLinker(engine)
    own.define_unknown_imports_as_traps(module)
    if hasattr(own, "instantiate_pre"):
        return own.instantiate_pre(module)
    return _Linked(own, module)


class _Linked:
    def __init__(self, linker, module):
        self._linker = linker
        self._module = module

    def instantiate(self, store):
        return self._linker.instantiate(store, self._module)


class Instance:
    """
    A function instantiated in its own store under C{limits}.  L{create}
    instantiates it and runs C{_initialize} (a reactor module) once.

    @ivar events: the event table, id -> L{Event} (what the host functions
        look an event id up in).
    @ivar context: the L{FunctionContext} its host functions answer from.
    @ivar clock: C{seconds()} (the reactor's, safe from any thread): when
        a call started.
    """

    def __init__(self, engine, module, name, limits, context=NO_CONTEXT, clock=None):
        self._engine = engine
        self._module = module
        self._name = name
        self.limits = limits
        self.context = context
        self.clock = clock
        self.events = {}
        self._nextId = 0
        self._store = None
        self._exports = None
        #: C{clock.seconds()} when the running call started (None between
        #: calls, or without a clock): host functions that wait on the node
        #: stop at its deadline
        self.callStarted = None
        #: the running call's number (1, 2, ...; None between calls, as in
        #: C{_initialize}): what a call opened is known by it
        self.callNumber = None
        self.calls = 0
        #: the host functions bound to this instance, by name
        #: (L{hostabi.hostTable}), and its C{memory} export
        self.hostFunctions = None
        self.memory = None

    def create(self, deadline, linked=None):
        """
        Instantiate with C{linked} (what L{link} answered for this module;
        linked here when None) and run C{_initialize}.
        """
        store = Store(self._engine)
        store.set_limits(memory_size=self.limits.memoryBytes)
        store.set_epoch_deadline(deadline)
        # stdout and stderr are left to wasmtime's default, a sink: what the
        # guest writes (TinyGo's fmt.Println) is answered in full and dropped
        wasi = WasiConfig()
        wasi.argv = [self._name]
        store.set_wasi(wasi)
        self.hostFunctions = hostabi.hostTable(self)
        if linked is None:
            linked = link(self._engine, self._module)
        hostabi.running.instance = self
        try:
            instance = linked.instantiate(store)
            self._store = store
            self._exports = instance.exports(store)
            memory = self._exports.get("memory")
            self.memory = memory if isinstance(memory, Memory) else None
            initialize = self._exports.get("_initialize")
            if isinstance(initialize, Func):
                initialize(store)
        finally:
            hostabi.running.instance = None

    def httpEvent(self, request):
        """
        A new HTTP event for C{request}, its response bounded by the limits.
        """
        return Event(hostabi.HTTP_EVENT, request, HttpResponse(self.limits.maxBody), self.limits.maxHeaders)

    def call(self, export, request, deadline):
        """
        Call C{export(eventId)} for C{request}; the L{HttpResponse} the guest
        filled.  Traps (timeouts included) propagate.

        @raise LookupError: the module has no such exported function.
        """
        return self.callEvent(export, self.httpEvent(request), deadline).response

    def callEvent(self, export, event, deadline):
        """
        Call C{export(eventId)} with C{event} (an L{Event} of any type) in
        the table under the next id; C{event} once the call returned.
        Traps (timeouts included) propagate.

        @raise LookupError: the module has no such exported function.
        """
        fn = self._exports.get(export)
        if not isinstance(fn, Func):
            raise LookupError(f"the module exports no function {export!r}")
        eventId = self._nextId
        self._nextId = (self._nextId + 1) & 0xFFFFFFFF
        self.events[eventId] = event
        hostabi.running.instance = self
        try:
            self.calls += 1
            self.callNumber = self.calls
            self.callStarted = self.clock.seconds() if self.clock is not None else None
            self._store.set_epoch_deadline(deadline)
            fn(self._store, eventId - (eventId >> 31 << 32))
        finally:
            hostabi.running.instance = None
            self.callNumber = self.callStarted = None
            del self.events[eventId]
        return event


class Pool:
    """
    Idle warm instances by key (module CID, limits and context): at most C{size} per
    key and C{total} in all (the instance idle longest goes first).  Used on
    the reactor thread only.
    """

    def __init__(self, size, total):
        self._size = size
        self._total = total
        self._idle = OrderedDict()
        self._count = 0

    def take(self, key):
        idle = self._idle.get(key)
        if not idle:
            return None
        self._count -= 1
        instance = idle.pop()
        if not idle:
            del self._idle[key]
        return instance

    def give(self, key, instance):
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self._size:
            return
        idle.append(instance)
        self._idle.move_to_end(key)
        self._count += 1
        while self._count > self._total:
            oldest = next(iter(self._idle))
            self._idle[oldest].pop(0)
            self._count -= 1
            if not self._idle[oldest]:
                del self._idle[oldest]

    def idle(self, key):
        return len(self._idle.get(key, ()))
