"""
The host functions of the HTTP event (module C{taubyte/sdk}), as
pkg/vm-low-orbit answers them; see the spec sheet's section 3a.  All values
are u32 (wasmtime-py hands them over signed: they are masked); the answer is
an errno (L{tau.services.substrate.wasm.errno}).

Host-to-guest values use the two-call protocol (C{xxxSize} then C{xxx}); the
value call writes the whole value at the guest's pointer, checked against its
memory.  A guest never makes the host allocate by a length it supplies: a
length is checked against the guest's memory before any copy.

The functions are defined once per module in a shared linker
(L{defineDispatching}): each finds the instance it answers for in
L{running}, the instance whose guest code runs on the calling thread (an
instance runs on one thread at a time), and calls that instance's own
function (L{hostTable}).  Defining ~100 host functions costs ~2 ms, which a
linker per instance paid on every cold start.
"""

import threading
import types

from wasmtime import FuncType, ValType

from tau.services.substrate.wasm import errno, events, selfabi
from tau.services.substrate.wasm.database import databaseFunctions
from tau.services.substrate.wasm.guestmem import GuestMemory, OutOfBounds, U32WriteFailed
from tau.services.substrate.wasm.http import ResponseTooLarge
from tau.services.substrate.wasm.httpclient import httpClientFunctions
from tau.services.substrate.wasm.messaging import messagingFunctions
from tau.services.substrate.wasm.storage import storageFunctions

MODULE = "taubyte/sdk"

HTTP_EVENT = 1


class NotHttp(Exception):
    """
    The event id names no event, or not an HTTP one.
    """

    def __init__(self, code):
        self.code = code


def _strings(values):
    return b"".join(v.encode("utf-8", "surrogateescape") + b"\0" for v in values)


class HttpEventAbi:
    """
    The host functions, bound to one instance's event table (C{events}: id ->
    L{tau.services.substrate.wasm.instance.Event}).
    """

    def __init__(self, events):
        self._events = events

    def _event(self, ev):
        event = self._events.get(ev)
        if event is None:
            raise NotHttp(errno.EVENT_NOT_FOUND)
        if event.type != HTTP_EVENT:
            raise NotHttp(errno.NIL_ADDRESS)
        return event

    # -- the functions; each takes (mem, *u32 args) ---------------------------

    def getEventType(self, mem, ev, typePtr):
        event = self._events.get(ev)
        if event is not None:
            try:
                mem.writeU32(typePtr, event.type)
            except OutOfBounds:
                pass

    def _valueSize(self, value, mem, ev, sizePtr):
        return self._writeSize(mem, sizePtr, len(value(self._event(ev))))

    def _writeSize(self, mem, sizePtr, size):
        mem.writeU32(sizePtr, size)
        return errno.NONE

    def _value(self, value, mem, ev, bufPtr, *unused):
        mem.write(bufPtr, value(self._event(ev)))
        return errno.NONE

    def getHttpEventMethod(self, mem, ev, bufPtr, bufSize):
        method = self._event(ev).request.method.encode()
        if bufSize != len(method):
            return errno.BUFFER_TOO_SMALL
        mem.write(bufPtr, method)
        return errno.NONE

    def getHttpEventHeadersSize(self, mem, ev, sizePtr, keyPtr, keyLen):
        key = mem.readString(keyPtr, keyLen)
        return self._writeSize(mem, sizePtr, len(self._event(ev).request.header(key).encode("utf-8", "surrogateescape")))

    def getHttpEventHeaders(self, mem, ev, keyPtr, keyLen, bufPtr, bufSize):
        key = mem.readString(keyPtr, keyLen)
        mem.write(bufPtr, self._event(ev).request.header(key).encode("utf-8", "surrogateescape"))
        return errno.NONE

    def getHttpEventQueryValueByNameSize(self, mem, ev, sizePtr, keyPtr, keyLen):
        key = mem.readString(keyPtr, keyLen)
        return self._writeSize(mem, sizePtr, len(self._event(ev).request.query(key).encode("utf-8", "surrogateescape")))

    def getHttpEventQueryValueByName(self, mem, ev, keyPtr, keyLen, bufPtr, bufSize):
        key = mem.readString(keyPtr, keyLen)
        mem.write(bufPtr, self._event(ev).request.query(key).encode("utf-8", "surrogateescape"))
        return errno.NONE

    def readHttpEventBody(self, mem, ev, bufPtr, bufSize, countPtr):
        request = self._event(ev).request
        mem.check(bufPtr, bufSize)
        try:
            data, eof = request.readBody(bufSize)
        except ValueError:
            return errno.HTTP_READ_BODY
        mem.write(bufPtr, data)
        mem.writeU32(countPtr, len(data))
        return errno.END_OF_BODY if eof else errno.NONE

    def closeHttpEventBody(self, mem, ev):
        self._event(ev).request.closeBody()
        return errno.NONE

    def eventHttpWrite(self, mem, ev, bufPtr, bufSize, wroteNPtr):
        response = self._event(ev).response
        mem.check(bufPtr, bufSize)
        if len(response.body) + bufSize > response.maxBody:
            return errno.HTTP_WRITE
        data = mem.read(bufPtr, bufSize)
        try:
            response.write(data)
        except ResponseTooLarge:
            return errno.HTTP_WRITE
        mem.writeU32(wroteNPtr, len(data))
        return errno.NONE

    def eventHttpFlush(self, mem, ev):
        self._event(ev).response.flush()
        return errno.NONE

    def _checkCode(self, ev, code):
        if 100 <= code <= 599:
            return True
        event = self._events.get(ev)
        if event is not None and event.type == HTTP_EVENT:
            event.response.invalid = True
        return False

    def eventHttpRetCode(self, mem, ev, code):
        if not self._checkCode(ev, code):
            return errno.HTTP_WRITE
        self._event(ev).response.writeHeader(code)
        return errno.NONE

    def eventHttpHeaderAdd(self, mem, ev, keyPtr, keyLen, valPtr, valLen):
        event = self._event(ev)
        if len(event.response.headers) >= event.maxHeaders:
            return errno.HTTP_WRITE
        key = mem.readString(keyPtr, keyLen)
        value = mem.readString(valPtr, valLen)
        event.response.addHeader(key, value)
        return errno.NONE

    def eventHttpRedirect(self, mem, ev, urlPtr, urlLen, code):
        if not self._checkCode(ev, code):
            return errno.HTTP_WRITE
        event = self._event(ev)
        url = mem.readString(urlPtr, urlLen)
        try:
            event.response.redirect(event.request, url, code)
        except ResponseTooLarge:
            return errno.HTTP_WRITE
        return errno.NONE

    def functions(self):
        """
        C{(name, nparams, has result, callable(mem, *args))} for every
        host function.
        """
        def get(attr):
            return lambda e: getattr(e.request, attr).encode("utf-8", "surrogateescape")

        def keys(which):
            return lambda e: _strings(getattr(e.request, which)())

        def size(value):
            return lambda mem, ev, sizePtr: self._valueSize(value, mem, ev, sizePtr)

        def valueFn(value):
            return lambda mem, ev, bufPtr, *rest: self._value(value, mem, ev, bufPtr)

        table = [
            ("getEventType", 2, False, self.getEventType),
            ("getHttpEventMethod", 3, True, self.getHttpEventMethod),
            ("getHttpEventHeadersSize", 4, True, self.getHttpEventHeadersSize),
            ("getHttpEventHeaders", 5, True, self.getHttpEventHeaders),
            ("getHttpEventQueryValueByNameSize", 4, True, self.getHttpEventQueryValueByNameSize),
            ("getHttpEventQueryValueByName", 5, True, self.getHttpEventQueryValueByName),
            ("readHttpEventBody", 4, True, self.readHttpEventBody),
            ("closeHttpEventBody", 1, True, self.closeHttpEventBody),
            ("eventHttpWrite", 4, True, self.eventHttpWrite),
            ("eventHttpFlush", 1, True, self.eventHttpFlush),
            ("eventHttpRetCode", 2, True, self.eventHttpRetCode),
            ("eventHttpHeaderAdd", 5, True, self.eventHttpHeaderAdd),
            ("eventHttpRedirect", 4, True, self.eventHttpRedirect),
            ("getHttpEventMethodSize", 2, True, size(get("method"))),
        ]
        for name, value in (("Path", get("path")), ("Host", get("host")), ("UserAgent", get("userAgent"))):
            table.append((f"getHttpEvent{name}Size", 2, True, size(value)))
            table.append((f"getHttpEvent{name}", 3, True, valueFn(value)))
        # the Go SDK imports the header-key list under the ById names (2 args)
        for name, which, n in (
            ("getHttpEventRequestHeaderKeys", "headerKeys", 3),
            ("getHttpEventHeaderVarNameById", "headerKeys", 2),
            ("getHttpEventRequestQueryKeys", "queryKeys", 2),
        ):
            table.append((name + "Size", 2, True, size(keys(which))))
            table.append((name, n, True, valueFn(keys(which))))
        return table


def _invoke(fn, hasResult, mem, args):
    args = [a & 0xFFFFFFFF for a in args]
    try:
        result = fn(mem, *args)
    except U32WriteFailed:
        result = errno.MEMORY_WRITE_FAILED
    except OutOfBounds:
        result = errno.ADDRESS_OUT_OF_MEMORY
    except NotHttp as e:
        result = e.code
    return result if hasResult else None


def _wrap(fn, hasResult):
    def call(caller, *args):
        return _invoke(fn, hasResult, GuestMemory(caller), args)
    return call


#: C{running.instance}: the instance whose guest code runs on this thread
#: (set by the instance around its instantiation and each call), what the
#: functions of L{defineDispatching} answer for
running = threading.local()


class NotRunning(Exception):
    """
    A host function was called on a thread where no instance runs (a trap
    for the guest).
    """


def _dispatch(name, hasResult):
    def call(caller, *args):
        instance = getattr(running, "instance", None)
        if instance is None:
            raise NotRunning(name)
        return _invoke(instance.hostFunctions[name], hasResult, GuestMemory(caller, instance.memory), args)
    return call


def httpEventFunctions(instance):
    return HttpEventAbi(instance.events).functions()


#: C{provider(instance) -> [(name, nparams, has result, callable(mem,
#: *u32 args))]}: every family of C{taubyte/sdk} host functions, each bound
#: to one L{tau.services.substrate.wasm.instance.Instance} (its C{events}
#: and C{context})
PROVIDERS = [
    httpEventFunctions,
    events.eventFunctions,
    selfabi.selfFunctions,
    databaseFunctions, storageFunctions, httpClientFunctions,  # node-backed: database, storage, HTTP client
    messagingFunctions,  # node-backed: pubsub (setSubscriptionChannel, publishToChannel)
]


def define(linker, instance):
    """
    Define the C{taubyte/sdk} host functions of every provider in
    C{linker}, bound to C{instance}.
    """
    i32 = ValType.i32()
    for provider in PROVIDERS:
        for name, n, hasResult, fn in provider(instance):
            ty = FuncType([i32] * n, [i32] if hasResult else [])
            linker.define_func(MODULE, name, ty, _wrap(fn, hasResult), access_caller=True)


def hostTable(instance):
    """
    C{name -> callable(mem, *u32 args)}: every provider's functions bound
    to C{instance}.
    """
    return {name: fn for provider in PROVIDERS for name, n, hasResult, fn in provider(instance)}


_signatures = []


def signatures():
    """
    C{(name, nparams, has result)} of every host function (the providers
    asked once, bound to nothing).
    """
    if not _signatures:
        template = types.SimpleNamespace(events={}, context=None)
        _signatures[:] = [(name, n, hasResult) for provider in PROVIDERS
                          for name, n, hasResult, fn in provider(template)]
    return _signatures


def defineDispatching(linker):
    """
    Define the C{taubyte/sdk} host functions in C{linker} for any instance:
    each call goes to the function of the instance in L{running}.
    """
    i32 = ValType.i32()
    for name, n, hasResult in signatures():
        ty = FuncType([i32] * n, [i32] if hasResult else [])
        linker.define_func(MODULE, name, ty, _dispatch(name, hasResult), access_caller=True)
