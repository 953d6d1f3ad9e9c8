"""
A full disk: how it is recognised (L{isFull}), how the node says so
(L{StoreFull}, answered 507 by the control API), how much room is left
(L{freeBytes}), and the spare room that lets the node free space on a disk
that is full (L{Spare}).

SQLite needs room to delete: in WAL mode a DELETE appends the pages it
changes to the WAL, so on a full disk even an unpin fails with
SQLITE_FULL.  A L{Spare} file, allocated while there is room, is given
back to the filesystem when a write that frees space finds the disk full,
and that write is tried again; it is allocated anew once there is room.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from twisted.logger import Logger

log = Logger()

NOSPACE = (errno.ENOSPC, errno.EDQUOT)
SQLITE_FULL = 13


class StoreFull(Exception):
    """The disk is full; the write was undone and what is stored is intact."""


def isFull(e: BaseException) -> bool:
    """Whether C{e} says the disk (or a quota, or SQLite's database) is full."""
    if isinstance(e, StoreFull):
        return True
    if isinstance(e, OSError):
        return e.errno in NOSPACE
    if isinstance(e, sqlite3.Error):
        code = getattr(e, "sqlite_errorcode", None)
        return code == SQLITE_FULL or "full" in str(e).lower()
    return False


def freeBytes(path) -> int:
    """The bytes an unprivileged writer can still use on C{path}'s filesystem."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class Spare:
    """
    A file of C{size} allocated bytes at C{path}: room held back for the
    writes that free space (index deletes) when the disk is full.
    Blocking calls: run them in a thread.
    """

    def __init__(self, path: Path, size: int):
        self.path = Path(path)
        self.size = size

    def held(self) -> bool:
        try:
            return self.path.stat().st_blocks * 512 >= self.size
        except FileNotFoundError:
            return False

    def fill(self) -> bool:
        """
        Allocate the spare room if it is not held, and if as much room again
        stays free for others; False when the disk has no room for it.
        """
        if self.size <= 0 or self.held():
            return True
        if freeBytes(self.path.parent) < 2 * self.size:
            return False
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            os.posix_fallocate(fd, 0, self.size)
            os.fsync(fd)
        except OSError as e:
            os.close(fd)
            fd = None
            self.release()
            if e.errno in NOSPACE:
                return False
            raise
        finally:
            if fd is not None:
                os.close(fd)
        return True

    def release(self) -> bool:
        """Give the spare room back to the filesystem; whether there was any."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        return True

    def freeing(self, write, *a):
        """
        C{write(*a)}, a write that frees space; on a full disk, the spare
        room is given back and C{write} tried once more.
        """
        try:
            return write(*a)
        except Exception as e:
            if not isFull(e) or not self.release():
                raise
        log.warn("disk full: the spare room {path} given back to free space", path=str(self.path))
        return write(*a)
