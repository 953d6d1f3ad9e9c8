"""
A fake of the content store (L{tau.interfaces.IContent}): the real UnixFS
importer and exporter over blocks in memory.
"""

from twisted.internet.defer import maybeDeferred, succeed
from zope.interface import implementer

from tau import cids, tarstream
from tau.interfaces import IContent
from tau.store import content as _content
from tau.store import unixfs, unixfsread


class _Blocks:
    """Blocks in memory, with what the UnixFS importer and exporter use."""

    def __init__(self):
        self.data = {}

    async def get(self, c):
        return self.data.get(bytes(c.multihash))

    async def has(self, c):
        return bytes(c.multihash) in self.data

    async def put(self, c, block):
        self.data[bytes(c.multihash)] = bytes(block)

    async def putMany(self, blocks, verified=False):
        for c, block in blocks:
            if not verified and not cids.verifyBlock(c, block):
                raise ValueError("a block does not match its CID")
            self.data[bytes(c.multihash)] = bytes(block)


def _now(f, *args):
    return maybeDeferred(f, *args)


@implementer(IContent)
class FakeContent:
    """
    L{IContent} in memory: the real importer (so the CIDs are those a node
    gives), files read whole, no network (a block not here is
    L{_content.NotFound} at once).

    @ivar provided: the CIDs provided (adds included), in order.
    @ivar pinned: the pinned roots (CIDs).
    """

    def __init__(self):
        self.blocks = _Blocks()
        self.provided = []
        self.pinned = []

    def _read(self, source):
        if isinstance(source, (bytes, bytearray, memoryview)):
            return bytes(source)
        if hasattr(source, "read"):
            return source.read()
        with open(source, "rb") as f:
            return f.read()

    async def _store(self, entry, pin):
        if pin and entry.cid not in self.pinned:
            self.pinned.append(entry.cid)
        self.provide(entry.cid)
        return entry

    async def _import(self, source, params):
        [(root, blocks)] = unixfs._smallFiles([self._read(source)], params)
        await self.blocks.putMany(blocks, verified=True)
        return unixfs.Entry(*root)

    async def add(self, source, pin=True, chunker=None):
        return await self._store(await self._import(source, _content.params(chunker)), pin)

    async def addFolder(self, entries, pin=True, chunker=None, onFile=None):
        params = _content.params(chunker)
        found = {}

        async def place(path, source):
            if source is None:   # a folder
                found[path] = None
                return
            entry = found[path] = await self._import(source, params)
            if onFile is not None:
                onFile(path, entry)
        if hasattr(entries, "__aiter__"):
            async for path, source in entries:
                await place(path, source)
        else:
            for path, source in entries:
                await place(path, source)
        root = await _content.typed(unixfs.buildDirectory(self.blocks, found, params))
        return await self._store(root, pin)

    async def addTar(self, stream, pin=True, chunker=None, onFile=None, maxEntries=_content.MAX_DIRECTORY_ENTRIES):
        entries = tarstream.entries(stream, _now, maxEntries)
        return await _content.typed(self.addFolder(entries, pin=pin, chunker=chunker, onFile=onFile))

    async def addDirectory(self, entries, pin=True, maxEntries=_content.MAX_DIRECTORY_ENTRIES):
        if not isinstance(entries, dict) or len(entries) > maxEntries:
            raise _content.BadInput(f"expected at most {maxEntries} entries, as a mapping of paths to CIDs")
        found = {}
        for path, value in entries.items():
            if not all(unixfsread.safeName(name) for name in path.split("/")):
                raise _content.BadInput(f"refusing the path {path[:200]!r}")
            found[path] = await _content.typed(unixfsread.entryOf(self.blocks, _content.parse(value)))
        root = await _content.typed(unixfs.buildDirectory(self.blocks, found))
        return await self._store(root, pin)

    async def cat(self, cid, offset=0, length=None, timeout=_content.DEFAULT_TIMEOUT):
        c = _content.parse(cid)
        data = b"".join([chunk async for chunk in _content.typedItems(unixfsread.cat(self.blocks, c, offset, length))])

        async def chunks():
            if data:
                yield data
        return chunks()

    async def get(self, cid, timeout=_content.DEFAULT_TIMEOUT):
        c = _content.parse(cid)
        name = unixfs.cidText(c)
        out = []
        async for path, child, size in _content.typedItems(unixfsread.tree(self.blocks, c)):
            full = f"{name}/{path}" if path else name
            out.append(tarstream.header(full, size))
            if size is not None:
                out.append(b"".join([x async for x in unixfsread.cat(self.blocks, child)]))
                out.append(tarstream.padding(size))
        out.append(tarstream.END)

        async def archive():
            for piece in out:
                yield piece
        return archive()

    async def ls(self, cid, timeout=_content.DEFAULT_TIMEOUT):
        return await _content.typed(unixfsread.ls(self.blocks, _content.parse(cid)))

    async def entry(self, cid, timeout=_content.DEFAULT_TIMEOUT):
        return await _content.typed(unixfsread.entryOf(self.blocks, _content.parse(cid)))

    async def has(self, cid):
        return await self.blocks.has(_content.parse(cid))

    async def pin(self, cid):
        c = _content.parse(cid)
        count = 0
        async for _ in _content.typedItems(unixfsread.walkDag(self.blocks, c)):
            count += 1
        if c not in self.pinned:
            self.pinned.append(c)
        return count

    async def unpin(self, cid):
        c = _content.parse(cid)
        if c not in self.pinned:
            raise _content.NotPinned(f"{unixfs.cidText(c)} is not pinned")
        self.pinned.remove(c)

    async def pins(self):
        return list(self.pinned)

    async def _kept(self):
        kept = set()
        for root in self.pinned:
            async for c in unixfsread.walkDag(self.blocks, root):
                kept.add(bytes(c.multihash))
        return kept

    async def gc(self, budget=None):
        kept = await self._kept()
        gone = [k for k in self.blocks.data if k not in kept]
        freed = sum(len(self.blocks.data.pop(k)) for k in gone)
        return len(gone), freed

    async def stat(self):
        return {"blocks": len(self.blocks.data), "bytes": sum(map(len, self.blocks.data.values())),
                "pinned": len(await self._kept())}

    def provide(self, cid):
        self.provided.append(_content.parse(cid))
        return succeed(0)
