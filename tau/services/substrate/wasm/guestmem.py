"""
Checked access to the linear memory of the instance that called a host
function: every pointer and length the guest hands over is checked against
the memory's current size before anything is read, written or allocated.
"""

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
    C{memory} export.
    """

    def __init__(self, caller, memory=None):
        self._caller = caller
        if memory is None:
            memory = caller.get("memory")
        self._memory = memory if isinstance(memory, Memory) else None

    def check(self, ptr, size):
        """
        @raise OutOfBounds: C{[ptr, ptr+size)} is not all guest memory.
        """
        if self._memory is None:
            raise OutOfBounds("the guest exports no memory")
        if ptr + size > self._memory.data_len(self._caller):
            raise OutOfBounds(f"[{ptr}, {ptr + size}) is outside the guest's memory")

    def read(self, ptr, size):
        self.check(ptr, size)
        if size == 0:
            return b""
        return bytes(self._memory.read(self._caller, ptr, ptr + size))

    def readString(self, ptr, size):
        return self.read(ptr, size).decode("utf-8", "surrogateescape")

    def write(self, ptr, data):
        self.check(ptr, len(data))
        if data:
            self._memory.write(self._caller, data, ptr)

    def writeU32(self, ptr, value):
        try:
            self.write(ptr, struct.pack("<I", value & 0xFFFFFFFF))
        except OutOfBounds as e:
            raise U32WriteFailed(*e.args) from None
