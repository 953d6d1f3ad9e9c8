"""
The C{self*} host functions (which resource of which project a function
is, from its instance's L{FunctionContext}) and C{cryptoRead}, as
pkg/vm-low-orbit answers them (the spec sheet, section 3).

C{selfBranch} answers Taubyte's default branches C{"main\\0master\\0"}, not
the branch the function was found on, as Taubyte does.
"""

import os
import struct

from tau.services.substrate.wasm import errno
from tau.services.substrate.wasm.guestmem import OutOfBounds

#: what C{selfBranch} answers (Taubyte's C{spec.DefaultBranches}, NUL-ended)
DEFAULT_BRANCHES = b"main\0master\0"

#: bytes of random generated at once by C{cryptoRead}
RANDOM_CHUNK = 1 << 16


def _text(value):
    return value.encode("utf-8", "surrogateescape")


def cryptoRead(mem, bufPtr, bufLen, readPtr):
    """
    Fill C{[bufPtr, bufPtr+bufLen)} with random bytes (checked against the
    guest's memory first: 3; 110 when the system has no random) and write
    their count as a u64 LE at C{readPtr} (12 when that is outside the
    memory).
    """
    mem.check(bufPtr, bufLen)
    try:
        for offset in range(0, bufLen, RANDOM_CHUNK):
            mem.write(bufPtr + offset, os.urandom(min(RANDOM_CHUNK, bufLen - offset)))
    except OSError:
        return errno.RAND_READ
    try:
        mem.write(readPtr, struct.pack("<Q", bufLen))
    except OutOfBounds:
        return errno.MEMORY_WRITE_FAILED
    return errno.NONE


def selfFunctions(instance):
    """
    The C{self*} functions and C{cryptoRead} of C{instance} (a
    L{tau.services.substrate.wasm.hostabi.PROVIDERS} entry).
    """
    def size(value):
        def fn(mem, sizePtr):
            mem.writeU32(sizePtr, len(value()))
            return errno.NONE
        return fn

    def write(value):
        def fn(mem, ptr):
            mem.write(ptr, value())
            return errno.NONE
        return fn

    def field(name):
        return lambda: _text(getattr(instance.context, name))

    table = []
    for name, value in (
        ("Project", field("project")),
        ("Application", field("application")),
        ("Id", field("resource")),
        ("Commit", field("commit")),
        ("Branch", lambda: DEFAULT_BRANCHES),
    ):
        table.append((f"self{name}Size", 1, True, size(value)))
        table.append((f"self{name}", 1, True, write(value)))
    table.append(("cryptoRead", 3, True, cryptoRead))
    return table
