"""
L{BuildCache}: the builds of unchanged sources.  A function whose folder
(every file's path, mode and bytes, the C{.taubyte/} config included) is
the same as at an earlier build is not built again: its artefact's CID is
reused, as long as this node's store still holds it.  The cache is a
small JSON file in the monkey's work folder (at most L{MAX_ENTRIES}, the
oldest dropped), read and written in a worker thread.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat

from twisted.internet.threads import deferToThreadPool

#: sources remembered
MAX_ENTRIES = 4096
#: files and bytes read for one digest (a folder past them is not cached)
MAX_FILES = 20_000
MAX_BYTES = 256 << 20


class TooBig(Exception):
    """
    The folder is past L{MAX_FILES} or L{MAX_BYTES}: it is built, not
    cached.
    """


def sourceDigest(folder, salt=""):
    """
    The sha256 (hex) of the files under C{folder}: their relative paths,
    whether executable, and bytes, in path order; symlinks by their target
    text.  C{salt} is mixed in (what else decides the build).

    @raise TooBig: past L{MAX_FILES} or L{MAX_BYTES}.
    """
    digest = hashlib.sha256(salt.encode("utf-8") + b"\0")
    files = []
    for top, dirs, names in os.walk(folder):
        dirs.sort()
        for name in names:
            files.append(os.path.join(top, name))
            if len(files) > MAX_FILES:
                raise TooBig(f"more than {MAX_FILES} files")
    total = 0
    for path in sorted(files):
        relative = os.path.relpath(path, folder)
        info = os.lstat(path)
        digest.update(relative.encode("utf-8", "surrogateescape") + b"\0")
        if stat.S_ISLNK(info.st_mode):
            digest.update(b"l" + os.readlink(path).encode("utf-8", "surrogateescape") + b"\0")
            continue
        digest.update(b"x" if info.st_mode & 0o111 else b"f")
        total += info.st_size
        if total > MAX_BYTES:
            raise TooBig(f"more than {MAX_BYTES} bytes")
        digest.update(info.st_size.to_bytes(8, "big"))
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


class BuildCache:
    """
    @param reactor: for worker threads.
    @param path: the JSON file.
    """

    def __init__(self, reactor, path, maxEntries=MAX_ENTRIES):
        self.reactor = reactor
        self.path = path
        self.maxEntries = maxEntries
        self._entries = None

    def _inThread(self, f, *args):
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f, *args)

    def _read(self):
        try:
            with open(self.path) as f:
                value = json.load(f)
        except (OSError, ValueError):
            return {}
        if not isinstance(value, dict):
            return {}
        return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}

    def _write(self, entries):
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        temporary = self.path + ".tmp"
        with open(temporary, "w") as f:
            json.dump(entries, f)
        os.replace(temporary, self.path)

    async def _loaded(self):
        if self._entries is None:
            self._entries = await self._inThread(self._read)
        return self._entries

    async def key(self, folder, salt=""):
        """
        The cache key of a build of C{folder}, or None when it is too big
        to be cached.
        """
        try:
            return await self._inThread(sourceDigest, folder, salt)
        except TooBig:
            return None

    async def get(self, key):
        """
        The CID built from the source C{key}, or None.
        """
        if key is None:
            return None
        return (await self._loaded()).get(key)

    async def put(self, key, cid):
        """
        Remember that the source C{key} built C{cid}.
        """
        if key is None:
            return
        entries = await self._loaded()
        entries.pop(key, None)
        entries[key] = cid
        while len(entries) > self.maxEntries:
            entries.pop(next(iter(entries)))
        await self._inThread(self._write, dict(entries))
