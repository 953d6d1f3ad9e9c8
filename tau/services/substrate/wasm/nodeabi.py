"""
What the node-backed host functions (L{database}, L{storage},
L{httpclient}) share: the errno a call answers (L{Errno}), bounded handle
tables (L{Handles}), the NUL-separated string lists of the go-sdk codec,
and the two-call protocol's cached values.

A length the guest hands over is checked against its memory before
anything is read (L{GuestMemory.read} does), and against the family's own
limit before that, so a guest never makes the host allocate more than
those limits.
"""

from functools import wraps

from tau.services.substrate.wasm import errno
from tau.services.substrate.wasm.guestmem import OutOfBounds

#: the longest name a guest may ask for (a database or storage matcher)
MAX_NAME = 256


class Errno(Exception):
    """
    The host function answers C{code}.
    """

    def __init__(self, code):
        super().__init__(code)
        self.code = code


def answering(fn):
    """
    A host function that may raise L{Errno}: its code is the answer.
    """
    @wraps(fn)
    def call(*args):
        try:
            return fn(*args)
        except Errno as e:
            return e.code
    return call


def services(instance, code):
    """
    The instance's L{FunctionServices}.

    @raise Errno: with C{code} when the function runs without them (C{tau
        run}, a test without a node).
    """
    found = instance.context.services
    if found is None:
        raise Errno(code)
    return found


def readBounded(mem, ptr, size, limit, code):
    """
    C{size} bytes at C{ptr}; more than C{limit} is refused with C{code}
    before anything is read.
    """
    if size > limit:
        raise Errno(code)
    return mem.read(ptr, size)


def readText(mem, ptr, size, limit, code):
    return readBounded(mem, ptr, size, limit, code).decode("utf-8", "surrogateescape")


def encodeStrings(values):
    """
    The go-sdk codec of a string list: each value followed by a NUL.
    """
    return b"".join(v.encode("utf-8", "surrogateescape") + b"\0" for v in values)


def decodeStrings(data):
    """
    The go-sdk decoder: the NUL-terminated values (bytes after the last
    NUL are dropped, as Go drops them).
    """
    return [v.decode("utf-8", "surrogateescape") for v in data.split(b"\0")[:-1]]


class Handles:
    """
    Objects a guest refers to by a u32 id: ids count up from 0 (as
    Taubyte's do), at most C{limit} held at once.

    With an C{instance}, what a call made is dropped when the instance's
    next call first uses the table (what C{_initialize} made stays): a
    pooled instance serves call after call, and a function that opens a
    database or a client per call and never closes it would otherwise fill
    the table (and keep response bodies) for good, as Taubyte's tables
    grow.
    """

    def __init__(self, limit, instance=None):
        self.limit = limit
        self._instance = instance
        self._items = {}
        self._made = {}
        self._call = None
        self._next = 0

    def _sweep(self):
        if self._instance is None:
            return
        call = self._instance.callNumber
        if call == self._call:
            return
        self._call = call
        for handle in [h for h, made in self._made.items() if made is not None and made != call]:
            del self._items[handle]
            del self._made[handle]

    def add(self, item, code):
        """
        The id of C{item}; L{Errno} with C{code} when C{limit} are held.
        """
        self._sweep()
        if len(self._items) >= self.limit:
            raise Errno(code)
        handle = self._next
        self._next = (self._next + 1) & 0xFFFFFFFF
        self._items[handle] = item
        self._made[handle] = self._call
        return handle

    def giveId(self, mem, idPtr, item, code):
        """
        Add C{item} and write its id at C{idPtr} (a u32); nothing is kept
        when that write fails.
        """
        handle = self.add(item, code)
        try:
            mem.writeU32(idPtr, handle)
        except OutOfBounds:
            self.pop(handle, code)
            raise
        return errno.NONE

    def get(self, handle, code):
        self._sweep()
        item = self._items.get(handle)
        if item is None:
            raise Errno(code)
        return item

    def pop(self, handle, code):
        self._sweep()
        item = self._items.pop(handle, None)
        if item is None:
            raise Errno(code)
        del self._made[handle]
        return item

    def __len__(self):
        self._sweep()
        return len(self._items)

    def values(self):
        self._sweep()
        return list(self._items.values())


class SizedValue:
    """
    The two-call protocol, kept consistent: the C{Size} call computes a
    value and keeps it under its key; the value call with the same key (in
    the same call) writes that value (what the guest allocated for), or
    computes it again when the key differs.
    """

    def __init__(self, instance):
        self._instance = instance
        self._key = None
        self._value = None

    def size(self, mem, sizePtr, key, compute):
        value = compute()
        self._key, self._value = (self._instance.callNumber, key), value
        mem.writeU32(sizePtr, len(value))
        return errno.NONE

    def write(self, mem, ptr, key, compute):
        if self._key == (self._instance.callNumber, key) and self._value is not None:
            value = self._value
        else:
            value = compute()
        self._key = self._value = None
        mem.write(ptr, value)
        return errno.NONE
