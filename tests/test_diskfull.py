"""
tau.diskfull: what counts as a full disk, and the spare room given back so
a write that frees space can run on a full disk.
"""

import errno
import sqlite3
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tau import diskfull
from tau.diskfull import Spare, StoreFull, isFull

FULL = sqlite3.OperationalError("database or disk is full")


class IsFullTests(SynchronousTestCase):
    def test_fullErrors(self):
        for e in (OSError(errno.ENOSPC, "x"), OSError(errno.EDQUOT, "x"), FULL, StoreFull("x")):
            self.assertTrue(isFull(e), e)
        for e in (OSError(errno.EIO, "x"), sqlite3.OperationalError("disk I/O error"), ValueError("full")):
            self.assertFalse(isFull(e), e)


class SpareTests(SynchronousTestCase):
    SIZE = 64 * 1024

    def spare(self, free):
        folder = Path(self.mktemp())
        folder.mkdir()
        self.patch(diskfull, "freeBytes", lambda path: free)
        return Spare(folder / "spare", self.SIZE)

    def test_fillLeavesAsMuchFree(self):
        """
        The spare room is allocated when twice its size is free (as much
        stays for others), not when one byte less is.
        """
        spare = self.spare(2 * self.SIZE - 1)
        self.assertFalse(spare.fill())
        self.assertFalse(spare.path.exists())
        spare = self.spare(2 * self.SIZE)
        self.assertTrue(spare.fill())
        self.assertGreaterEqual(spare.path.stat().st_blocks * 512, self.SIZE)
        self.assertTrue(spare.held())

    def test_freeingGivesTheRoomBack(self):
        """
        A freeing write that finds the disk full runs again once the spare
        room is given back; one that fails otherwise keeps the room.
        """
        spare = self.spare(1 << 40)
        spare.fill()
        calls = []

        def write(x):
            calls.append(spare.held())
            if len(calls) == 1:
                raise FULL
            return x
        self.assertEqual(spare.freeing(write, 7), 7)
        self.assertEqual(calls, [True, False])

        spare.fill()

        def broken():
            raise sqlite3.OperationalError("no such table: pins")
        self.assertRaises(sqlite3.OperationalError, spare.freeing, broken)
        self.assertTrue(spare.held())

    def test_noRoomLeft(self):
        """Without spare room held, a full disk is raised as it came."""
        spare = self.spare(0)

        def write():
            raise FULL
        self.assertIs(self.assertRaises(sqlite3.OperationalError, spare.freeing, write), FULL)
