"""
L{tau.services.substrate.wasm.guestmem.GuestMemory}: checked copies in and
out of a guest's memory, at its edges.
"""

from twisted.trial.unittest import SynchronousTestCase
from wasmtime import Limits, Memory, MemoryType, Store

from tau.services.substrate.wasm.engine import makeEngine
from tau.services.substrate.wasm.guestmem import GuestMemory, OutOfBounds, U32WriteFailed

PAGE = 65536


class GuestMemoryTests(SynchronousTestCase):
    def memory(self, pages):
        store = Store(makeEngine())
        memory = Memory(store, MemoryType(Limits(pages, None)))
        # a store answers what a caller does (data_len, data_ptr)
        return GuestMemory(store, memory), memory, store

    def test_edge(self):
        """
        The last bytes of the memory can be written and read; one byte
        further is refused, and nothing is written.
        """
        mem, memory, store = self.memory(1)
        mem.write(PAGE - 4, b"abcd")
        self.assertEqual(mem.read(PAGE - 4, 4), b"abcd")
        self.assertEqual(bytes(memory.read(store, PAGE - 4, PAGE)), b"abcd")
        self.assertRaises(OutOfBounds, mem.write, PAGE - 3, b"wxyz")
        self.assertRaises(OutOfBounds, mem.read, PAGE - 3, 4)
        self.assertEqual(mem.read(PAGE - 4, 4), b"abcd")

    def test_u32(self):
        """
        A u32 is written little-endian; one that does not fit is
        L{U32WriteFailed}.
        """
        mem, memory, store = self.memory(1)
        mem.writeU32(PAGE - 4, 0x01020304)
        self.assertEqual(mem.read(PAGE - 4, 4), b"\x04\x03\x02\x01")
        self.assertRaises(U32WriteFailed, mem.writeU32, PAGE - 3, 1)

    def test_empty(self):
        """
        A memory of no pages holds only empty ranges.
        """
        mem, memory, store = self.memory(0)
        self.assertEqual(mem.read(0, 0), b"")
        mem.write(0, b"")
        self.assertRaises(OutOfBounds, mem.read, 0, 1)

    def test_noMemory(self):
        """
        A guest that exports no memory has no range at all.
        """
        mem = GuestMemory(Store(makeEngine()), "not a memory")
        self.assertRaises(OutOfBounds, mem.read, 0, 0)
