"""
Checked access to the linear memory of the instance that called a host
function: every pointer and length the guest hands over is checked against
the memory's current size before anything is read, written or allocated.
"""

import ctypes
import struct

from wasmtime import Memory


class OutOfBounds(Exception):
    """
    A C{(ptr, len)} pair from the guest does not lie inside its memory.
    """


class U32WriteFailed(OutOfBounds):
    """
    An out-parameter (a u32 the host writes) lies outside the guest's memory.
    """


class GuestMemory:
    """
    The memory of the instance that made a host call: C{memory} when given
    (the instance's C{memory} export, looked up once), else the caller's
    C{memory} export.  Its address and size are asked once per host call
    (only the guest grows its memory, and it waits for the host call to
    return), then reads and writes are plain copies, checked against that
    size.
    """

    def __init__(self, caller, memory=None):
        self._caller = caller
        if memory is None:
            memory = caller.get("memory")
        self._memory = memory if isinstance(memory, Memory) else None
        self._size = None
        self._base = None

    def _bounds(self):
        if self._memory is None:
            raise OutOfBounds("the guest exports no memory")
        self._size = self._memory.data_len(self._caller)
        self._base = ctypes.addressof(self._memory.data_ptr(self._caller).contents) if self._size else 0

    def check(self, ptr, size):
        """
        @raise OutOfBounds: C{[ptr, ptr+size)} is not all guest memory.
        """
        if self._size is None:
            self._bounds()
        if ptr < 0 or size < 0 or ptr + size > self._size:
            raise OutOfBounds(f"[{ptr}, {ptr + size}) is outside the guest's memory")

    def read(self, ptr, size):
        self.check(ptr, size)
        if size == 0:
            return b""
        return ctypes.string_at(self._base + ptr, size)

    def readString(self, ptr, size):
        return self.read(ptr, size).decode("utf-8", "surrogateescape")

    def write(self, ptr, data):
        self.check(ptr, len(data))
        if data:
            ctypes.memmove(self._base + ptr, bytes(data), len(data))

    def writeU32(self, ptr, value):
        try:
            self.write(ptr, struct.pack("<I", value & 0xFFFFFFFF))
        except OutOfBounds as e:
            raise U32WriteFailed(*e.args) from None
