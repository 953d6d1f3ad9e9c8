"""
UnixFS on dag-pb, read: files streamed (L{cat}, with ranges), directories
listed and walked (plain and HAMT-sharded, whoever made them), paths
resolved, whole DAGs walked, pinned and unpinned.  The importer is
L{tau.store.unixfs}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator

from twisted.internet.defer import Deferred, FirstError, gatherResults

from tau import cids
from tau.cids import cidFromBytes
from tau.pb import unixfs_pb2
from tau.store import dagpb, hamt

DATA = unixfs_pb2.Data


class BlockMissing(Exception):
    """A block of the DAG is not in the store."""


class NotAFile(Exception):
    pass


@dataclass(frozen=True)
class Entry:
    cid: object       # py-cid CID
    size: int         # cumulative size of the DAG (what a parent's Tsize holds)
    filesize: int     # bytes of file content (0 for directories)


_parse = cids.parseCID  # a CID object, text or binary


async def _block(store, c) -> bytes:
    data = await store.get(c)
    if data is None:
        raise BlockMissing(str(c))
    return data


def _decodeUnixfs(block: bytes):
    links, data = dagpb.decodeNode(block)
    if data is None:
        raise NotAFile("dag-pb node without UnixFS data")
    u = DATA()
    u.ParseFromString(data)
    return links, u


async def cat(store, c, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
    """Stream the bytes of the file ``c`` (a CID, its string or bytes), optionally a range."""
    c = _parse(c)
    end = None if length is None else offset + length
    if end is not None and end <= offset:
        return
    async for piece in _cat(store, c, offset, end):
        yield piece


async def _cat(store, c, start, end):
    block = await _block(store, c)
    if c.codec == "raw":
        lo, hi = start, len(block) if end is None else min(end, len(block))
        if lo < hi:
            yield block[lo:hi]
        return
    if c.codec != "dag-pb":
        raise NotAFile(f"codec {c.codec}")
    links, u = _decodeUnixfs(block)
    if u.Type not in (DATA.File, DATA.Raw):
        raise NotAFile(f"UnixFS type {DATA.DataType.Name(u.Type)}")
    if u.blocksizes and len(u.blocksizes) != len(links):
        raise NotAFile("blocksizes and links differ in length")
    pos = 0
    inline = u.Data
    if inline:
        lo, hi = max(start, 0), len(inline) if end is None else min(end, len(inline))
        if lo < hi:
            yield inline[lo:hi]
        pos = len(inline)
    for i, link in enumerate(links):
        size = u.blocksizes[i] if u.blocksizes else None
        if end is not None and pos >= end:
            return
        if size is not None and pos + size <= start:
            pos += size
            continue
        child = cidFromBytes(link.hash)
        got = 0
        async for piece in _cat(store, child, max(start - pos, 0),
                                None if end is None else end - pos):
            got += len(piece)
            yield piece
        pos += size if size is not None else got


async def _gather(awaitables):
    """Await coroutines concurrently; results in order, the first error raised as itself."""
    try:
        return await gatherResults([Deferred.fromCoroutine(x) for x in awaitables], consumeErrors=True)
    except FirstError as e:
        e.subFailure.raiseException()


def _loader(store):
    async def load(raw: bytes):
        links, u = _decodeUnixfs(await _block(store, cidFromBytes(raw)))
        return links, u
    return load


async def _directory(store, c):
    """(links, UnixFS data) of the directory node ``c``; NotAFile otherwise."""
    if c.codec != "dag-pb":
        raise NotAFile("not a directory")
    links, u = _decodeUnixfs(await _block(store, c))
    if u.Type not in (DATA.Directory, DATA.HAMTShard):
        raise NotAFile("not a directory")
    return links, u


async def ls(store, c) -> list[tuple[str, object, int]]:
    """
    Entries (name, cid, tsize) of a directory, plain (in link order) or
    HAMT-sharded (in trie order; the sub-shards of a node are fetched
    together).
    """
    c = _parse(c)
    links, u = await _directory(store, c)
    if u.Type == DATA.Directory:
        return [(l.name, cidFromBytes(l.hash), l.tsize) for l in links]
    found = await hamt.entries(_loader(store), links, u, concurrency=_gather)
    return [(name, cidFromBytes(h), tsize) for name, h, tsize in found]


#: How deep L{tree} follows directories.
MAX_TREE_DEPTH = 64


def safeName(name: str) -> bool:
    """A directory entry name that is a single path component everywhere."""
    return name not in ("", ".", "..") and "/" not in name and "\x00" not in name


async def tree(store, c, depth: int = 0) -> AsyncIterator[tuple[str, object, int | None]]:
    """
    ``c`` and everything below it, depth first, each directory's entries in
    L{ls} order: (path, cid, filesize) for a file, (path, cid, None) for a
    directory; ``path`` is "" for ``c`` itself, "a/b" below it.  A name
    that is not L{safeName}, a node that is neither a file nor a
    directory, or nesting deeper than MAX_TREE_DEPTH raises NotAFile.
    """
    c = _parse(c)
    block = await _block(store, c)
    if c.codec == "raw":
        yield "", c, len(block)
        return
    _, u = _decodeUnixfs(block)
    if u.Type in (DATA.Directory, DATA.HAMTShard):
        if depth >= MAX_TREE_DEPTH:
            raise NotAFile(f"directories nested deeper than {MAX_TREE_DEPTH}")
        yield "", c, None
        for name, child, _ in await ls(store, c):
            if not safeName(name):
                raise NotAFile(f"the unsafe name {name!r} in a directory")
            async for path, grandchild, size in tree(store, child, depth + 1):
                yield (f"{name}/{path}" if path else name), grandchild, size
        return
    if u.Type not in (DATA.File, DATA.Raw):
        raise NotAFile(f"UnixFS type {DATA.DataType.Name(u.Type)}")
    yield "", c, u.filesize


async def lookup(store, c, name: str):
    """
    The CID called ``name`` in the directory ``c`` (in a HAMT, only the
    nodes on the way are fetched), or None.
    """
    c = _parse(c)
    links, u = await _directory(store, c)
    if u.Type == DATA.HAMTShard:
        got = await hamt.find(_loader(store), links, u, name)
        return None if got is None else cidFromBytes(got[0])
    matches = [l for l in links if l.name == name]
    if len(matches) > 1:
        raise NotAFile(f"the name {name!r} twice in one directory")
    return cidFromBytes(matches[0].hash) if matches else None


async def resolve(store, c, path: str):
    """The CID at ``path`` below the directory ``c``."""
    c = _parse(c)
    for part in [x for x in path.split("/") if x]:
        child = await lookup(store, c, part)
        if child is None:
            raise FileNotFoundError(path)
        c = child
    return c


async def walkDag(store, c) -> AsyncIterator:
    """Every CID of the DAG under ``c`` (root first)."""
    stack = [_parse(c)]
    while stack:
        c = stack.pop()
        yield c
        if c.codec == "dag-pb":
            links, _ = dagpb.decodeNode(await _block(store, c))
            stack.extend(cidFromBytes(l.hash) for l in reversed(links))


async def pinRecursive(store, root, fetch=False) -> int:
    """
    Pin ``root`` directly and every block under it on its behalf.

    @param fetch: the DAG may not all be here (``store`` fetches what it
        lacks, from the network): the walk reads the dag-pb nodes only, so
        the raw leaves the store lacks are fetched before they are pinned,
        and a pin never claims a block the store does not have.  False
        for a DAG just imported (nothing to check).
    """
    root = _parse(root)
    cids = [c async for c in walkDag(store, root)]
    leaves = [c for c in cids if c.codec != "dag-pb"] if fetch else []
    if leaves:
        held = await store.hasMany(leaves)
        for c in leaves:
            if bytes(c.multihash) not in held:
                await _block(store, c)
    await store.pinMany(cids[1:], root)
    await store.pin(root)
    return len(cids)


async def unpinRecursive(store, root) -> None:
    root = _parse(root)
    await store.unpinRoot(root)
    await store.unpin(root)


async def entryOf(store, c) -> Entry:
    """
    The L{Entry} of an existing node, computed from its root block (so a
    directory can be built from CIDs without trusting anyone's sizes).
    """
    c = _parse(c)
    block = await _block(store, c)
    if c.codec == "raw":
        return Entry(c, len(block), len(block))
    links, u = _decodeUnixfs(block)
    return Entry(c, len(block) + sum(l.tsize for l in links), u.filesize if u.Type == DATA.File else 0)
