"""
UnixFS on dag-pb: a streaming importer and a streaming exporter.

Defaults (``DEFAULT``, also called ``HELIA`` and ``KUBO``) are those of
``ipfs-unixfs-importer`` 17 with no options and no profile: CIDv1, raw leaves,
256 KiB fixed chunks, balanced layout with 174 links per node, a file of one
chunk is that raw leaf.  ``kubo``'s ``ipfs add --cid-version=1 --raw-leaves``
(boxo: size-262144, balanced, 174 links) uses the same parameters, hence gives
the same CIDs.  ``HELIA_UNIXFS`` is what ``@helia/unixfs`` 8 ``addBytes`` /
``addAll`` give with default options: they override the importer's chunker
and layout with 1 MiB chunks and 1024 links per node.  ``KUBO_V0`` is plain
``ipfs add`` (CIDv0, dag-pb leaves).

Directories whose links outgrow ``Params.shardThreshold`` become HAMT-sharded
directories (L{tau.store.hamt}) by ipfs-unixfs-importer's rule (checked live
against it in tests/store/test_helia_cids.py; kubo's own rule has not been
checked against a kubo binary); the exporter reads plain and sharded
directories, whoever made them.

The importer reads and chunks in a worker thread, a batch of chunks at a time,
and hashes and stores up to ``IMPORT_DEPTH`` batches at once in other threads
while the next one is read, so a file is never held in memory: only those
batches and the links of the unfinished tree nodes are (174 per level).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cid as pycid
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.threads import deferToThreadPool

from tau import cids
from tau.pb import unixfs_pb2
from tau.store import dagpb, hamt
from tau.store.chunker import FixedSize
from tau.store.dagpb import Link
from tau.store.unixfsread import Entry, pinRecursive

SHA256 = 0x12
DATA = unixfs_pb2.Data


@dataclass(frozen=True)
class Params:
    chunker: object = field(default_factory=FixedSize)
    maxLinks: int = 174
    rawLeaves: bool = True
    cidVersion: int = 1
    reduceSingleLeafToSelf: bool = True
    batchBytes: int = 4 << 20   # bytes read, then hashed and written, per thread hop
    # a directory whose links weigh more than this becomes a HAMT (see
    # hamt.ShardRule); ipfs-unixfs-importer's shardSplitThresholdBytes
    shardThreshold: int = hamt.SHARD_SPLIT_THRESHOLD
    shardFanout: int = hamt.DEFAULT_FANOUT


DEFAULT = Params()
HELIA = DEFAULT                                   # ipfs-unixfs-importer 17, no options
KUBO = DEFAULT                                    # ipfs add --cid-version=1 --raw-leaves
KUBO_V0 = Params(rawLeaves=False, cidVersion=0)   # ipfs add
HELIA_UNIXFS = Params(chunker=FixedSize(1 << 20), maxLinks=1024)   # @helia/unixfs 8 defaults

BadShard = hamt.BadShard

#: Batches of an import hashed and written at once.
IMPORT_DEPTH = 4


cidText = cids.cidText  # base58btc for v0, base32 for v1, as kubo and helia print them


def _mh(data: bytes) -> bytes:
    return b"\x12\x20" + hashlib.sha256(data).digest()


def makeCid(codec: str, block: bytes, version: int):
    mh = _mh(block)
    if version == 0:
        if codec != "dag-pb":
            raise ValueError("CIDv0 is dag-pb only")
        return pycid.CIDv0(mh)
    return pycid.CIDv1(codec, mh)


def _cidBytes(c) -> bytes:
    return bytes(c.buffer)


def fileNode(links: list[tuple[object, int, int]], version: int) -> tuple[object, bytes, int, int]:
    """A File node over children (cid, tsize, filesize) -> (cid, block, tsize, filesize)."""
    d = DATA(Type=DATA.File)
    total = 0
    for _, _, fs in links:
        d.blocksizes.append(fs)
        total += fs
    d.filesize = total
    block = dagpb.encodeNode(
        [Link(_cidBytes(c), "", ts) for c, ts, _ in links], d.SerializeToString())
    c = makeCid("dag-pb", block, version)
    return c, block, len(block) + sum(ts for _, ts, _ in links), total


def _leaf(chunk: bytes, p: Params):
    """(cid, block, tsize, filesize) of one chunk."""
    if p.rawLeaves:
        return pycid.CIDv1("raw", _mh(chunk)), chunk, len(chunk), len(chunk)
    d = DATA(Type=DATA.File, filesize=len(chunk))
    if chunk:
        d.Data = chunk  # an empty Data field is left out, as js and go do
    block = dagpb.encodeNode([], d.SerializeToString())
    return makeCid("dag-pb", block, p.cidVersion), block, len(block), len(chunk)


class _Tree:
    """
    Streaming balanced tree: keeps at most maxLinks items per level.  A level
    is folded into a parent when it holds maxLinks items and one more item
    arrives, or at the end -- so a level whose items all fit in one node is
    the root (this is what batching by maxLinks level by level gives).
    """

    def __init__(self, p: Params):
        self.p = p
        self.levels: list[list] = [[]]
        self.made: list = []

    def add(self, item, level=0):
        if level == len(self.levels):
            self.levels.append([])
        if len(self.levels[level]) == self.p.maxLinks:
            self._fold(level)
        self.levels[level].append(item)

    def _fold(self, level):
        items, self.levels[level] = self.levels[level], []
        c, block, ts, fs = fileNode(items, self.p.cidVersion)
        self.made.append((c, block))
        self.add((c, ts, fs), level + 1)

    def finish(self):
        level = 0
        while True:
            pending = self.levels[level]
            top = not any(self.levels[level + 1 :])
            if top and len(pending) == 1:
                if level == 0 and not (self.p.rawLeaves and self.p.reduceSingleLeafToSelf):
                    if not self.p.reduceSingleLeafToSelf:
                        self._fold(0)
                        return self.levels[1][0]
                return pending[0]
            if pending:
                self._fold(level)
            level += 1


def _read(chunks, p: Params) -> list[bytes]:
    """Worker thread: the next chunks, about ``p.batchBytes`` of them; [] at the end."""
    out, got = [], 0
    for chunk in chunks:
        out.append(chunk)
        got += len(chunk)
        if got >= p.batchBytes:
            break
    return out


def _leaves(chunks: list[bytes], p: Params) -> list:
    """Worker thread: [(cid, block, tsize, filesize)] of ``chunks`` (hashing releases the GIL)."""
    return [_leaf(chunk, p) for chunk in chunks]


async def importFile(store, source, reactor, threadpool=None, params: Params = HELIA,
                     pin: bool = False) -> Entry:
    """
    Import a file into ``store``.  ``source``: bytes, a path, or a binary file
    object with ``read(n)`` (read in a worker thread).  With a store that
    has ``batch()`` (L{tau.store.blockstore.BlockStore}) the blocks go
    through one write batch, durable (and pinned) once this returns.
    """
    pool = threadpool or reactor.getThreadPool()

    async def work(writer):
        return Entry(*await _importFile(writer, source, reactor, pool, params))
    return await _inBatch(store, work, pin)


async def _inBatch(store, work, pin: bool) -> Entry:
    """
    ``await work(writer)`` -> L{Entry}, ``writer`` one write batch of
    ``store`` (when it has ``batch()``: nothing acknowledged, GC keeping
    off every block, until it commits, pinning the entry when ``pin``;
    aborted on any error) or else ``store`` itself.
    """
    bulk = getattr(store, "batch", None)
    writer = bulk() if bulk is not None else store
    try:
        entry = await work(writer)
        if writer is not store:
            await writer.commit(pin=entry.cid if pin else None)
    except BaseException:
        if writer is not store:
            await writer.abort()
        raise
    if pin and writer is store:
        await pinRecursive(store, entry.cid)
    return entry


async def _importFile(store, source, reactor, pool, params: Params):
    """
    The pipeline: chunks are read in order, one batch at a time, in a worker
    thread; up to C{IMPORT_DEPTH} batches are then hashed and written at
    once, each in its own threads (so hashing runs on every core while the
    disk writes); the tree takes the leaves back in file order.
    """
    close = None
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    elif isinstance(source, (str, Path)):
        source = close = await deferToThreadPool(reactor, pool, open, source, "rb")

    async def stage(chunks):
        leaves = await deferToThreadPool(reactor, pool, _leaves, chunks, params)
        await store.putMany([(c, block) for c, block, _, _ in leaves], verified=True)
        return leaves

    inflight: deque[Deferred] = deque()

    async def land(d: Deferred) -> None:
        for c, _, ts, fs in await d:
            tree.add((c, ts, fs))
        if tree.made:
            made, tree.made = tree.made, []
            await store.putMany(made, verified=True)

    try:
        chunks = params.chunker(source.read)
        tree = _Tree(params)
        while batch := await deferToThreadPool(reactor, pool, _read, chunks, params):
            inflight.append(Deferred.fromCoroutine(stage(batch)))
            while inflight and (len(inflight) >= IMPORT_DEPTH or inflight[0].called):
                await land(inflight.popleft())
        while inflight:
            await land(inflight.popleft())
        root = tree.finish()
        if tree.made:
            await store.putMany(tree.made, verified=True)
    except BaseException:
        # every stage is over (its files written or gone) before an abort looks
        await DeferredList(list(inflight), consumeErrors=True)
        raise
    finally:
        if close is not None:
            close.close()
    return root


# -- directories ----------------------------------------------------------------

def directoryNode(children: dict[str, Entry], version: int = 1):
    """A plain (unsharded) directory: links sorted by name bytes, as @ipld/dag-pb sorts."""
    names = sorted(children, key=lambda n: n.encode("utf-8"))
    links = [Link(_cidBytes(children[n].cid), n, children[n].size) for n in names]
    block = dagpb.encodeNode(links, DATA(Type=DATA.Directory).SerializeToString())
    c = makeCid("dag-pb", block, version)
    return c, block, len(block) + sum(children[n].size for n in names)


def shardedDirectoryNodes(children: dict[str, Entry], version: int = 1, fanout: int = hamt.DEFAULT_FANOUT):
    """
    A HAMT-sharded directory over ``children``: ``(cid, tsize, blocks)``,
    ``blocks`` every node as ``(cid, block)``.
    """
    byBytes = {}

    def cidFor(block):
        c = makeCid("dag-pb", block, version)
        raw = _cidBytes(c)
        byBytes[raw] = c
        return raw
    rootCid, _, size, blocks = hamt.buildShard(
        [hamt.Child(n, _cidBytes(e.cid), e.size) for n, e in children.items()], cidFor, fanout)
    return byBytes[rootCid], size, [(byBytes[c], block) for c, block in blocks]


# directories with more entries than this are built in a worker thread
_THREAD_ENTRIES = 2000


class _DirNode:
    """
    A directory being imported: its children (L{Entry} or L{_DirNode}),
    and whether ipfs-unixfs-importer would have made it a HAMT by now.
    ``explicit``: added as an (empty) directory entry of its own, which
    the importer counts in its parent's estimate until something is put
    below it.
    """

    __slots__ = ("children", "rule", "explicit")

    def __init__(self, threshold, explicit=False):
        self.children: dict = {}
        self.rule = hamt.ShardRule(threshold)
        self.explicit = explicit


class _DirTree:
    """
    Puts entries into a tree the way ipfs-unixfs-importer's tree builder
    does, keeping each directory's shard estimate (hamt.ShardRule), then
    builds the directory nodes bottom up.
    """

    def __init__(self, params: Params):
        self.params = params
        self.root = _DirNode(params.shardThreshold)
        emptyCid, _, _ = directoryNode({}, params.cidVersion)
        self._emptyWeight = len(_cidBytes(emptyCid))

    def _weight(self, name, value):
        if isinstance(value, Entry):
            return hamt.linkWeight(name, len(_cidBytes(value.cid)))
        if value.explicit:
            return hamt.linkWeight(name, self._emptyWeight)
        return 0

    def put(self, path: str, value, replace: bool = True):
        """
        ``value``: an L{Entry}, or None for an (empty) directory.
        """
        parts = [x for x in path.split("/") if x]
        if not parts:
            raise ValueError("an empty path")
        node = self.root
        for part in parts[:-1]:
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = _DirNode(self.params.shardThreshold)
            elif isinstance(child, Entry):
                raise ValueError(f"{path}: a file is in the way")
            elif child.explicit:
                node.rule.drop(self._weight(part, child))
                child.explicit = False
            node = child
        name = parts[-1]
        old = node.children.get(name)
        if value is None:
            if old is not None:
                if isinstance(old, Entry):
                    raise ValueError(f"{path}: a file is in the way")
                return
            value = _DirNode(self.params.shardThreshold, explicit=True)
        elif old is not None and not replace:
            raise ValueError(f"{path}: given twice")
        if old is not None:
            node.rule.drop(self._weight(name, old))
        node.children[name] = value
        node.rule.put(self._weight(name, value))
        node.rule.check()

    async def build(self, store, reactor=None, threadpool=None) -> Entry:
        return await self._build(store, self.root, reactor, threadpool)

    async def _build(self, store, node: _DirNode, reactor, threadpool) -> Entry:
        children = {}
        for name, value in node.children.items():
            children[name] = value if isinstance(value, Entry) else await self._build(
                store, value, reactor, threadpool)
        p = self.params
        if not node.rule.sharded:
            c, block, size = directoryNode(children, p.cidVersion)
            await store.putMany([(c, block)], verified=True)
            return Entry(c, size, 0)
        if reactor is not None and len(children) > _THREAD_ENTRIES:
            c, size, blocks = await deferToThreadPool(
                reactor, threadpool or reactor.getThreadPool(),
                shardedDirectoryNodes, children, p.cidVersion, p.shardFanout)
        else:
            c, size, blocks = shardedDirectoryNodes(children, p.cidVersion, p.shardFanout)
        await store.putMany(blocks, verified=True)
        return Entry(c, size, 0)


async def importDirectory(store, entries, reactor, threadpool=None,
                          params: Params = HELIA, pin: bool = False, onFile=None) -> Entry:
    """
    Import a tree.  ``entries``: (path, source) pairs, an iterable or an
    async iterable (each source read to its end before the next pair is
    asked for), ``path`` with "/" separators, ``source`` as for
    importFile, or None for an (empty) directory.  Returns the root
    directory that wraps them all (what ipfs-unixfs-importer gives with
    ``wrapWithDirectory``, entries in the same order giving the same CID).
    Every file and directory goes through one write batch: durable, and
    pinned when ``pin``, all together once this returns; untouched by GC
    while it runs.  (A path given twice keeps its last file, yet the
    blocks of the earlier one are pinned with the rest.)  ``onFile(path,
    entry)`` is called for each file as it is imported.
    """
    pool = threadpool or reactor.getThreadPool()

    async def work(writer):
        tree = _DirTree(params)
        small: list = []   # (path, bytes) of small files not imported yet
        smallBytes = 0

        def place(path, value):
            tree.put(path, value)
            if value is not None and onFile is not None:
                onFile(path, value)

        async def flush():
            nonlocal smallBytes
            if not small:
                return
            group, small[:], smallBytes = list(small), [], 0
            done = await deferToThreadPool(reactor, pool, _smallFiles, [data for _, data in group], params)
            await writer.putMany([b for _, blocks in done for b in blocks], verified=True)
            for (path, _), (root, _) in zip(group, done):
                place(path, Entry(*root))

        async def put(path, source):
            nonlocal smallBytes
            if not [x for x in path.split("/") if x]:
                raise ValueError("an empty path")
            if isinstance(source, (bytes, bytearray, memoryview)) and len(source) <= SMALL_FILE:
                # many small files: imported together, a group per thread hop
                small.append((path, source))
                smallBytes += len(source)
                if smallBytes >= params.batchBytes or len(small) >= SMALL_GROUP:
                    await flush()
                return
            await flush()   # entries go into the tree in their order
            place(path, None if source is None else Entry(
                *await _importFile(writer, source, reactor, pool, params)))
        if hasattr(entries, "__aiter__"):
            async for path, source in entries:
                await put(path, source)
        else:
            for path, source in entries:
                await put(path, source)
        await flush()
        return await tree.build(writer, reactor, threadpool)
    return await _inBatch(store, work, pin)


#: Files given as bytes up to this size are imported many at a time by
#: importDirectory (a folder of small files costs a thread hop per group,
#: not several per file), up to SMALL_GROUP files or batchBytes a group.
SMALL_FILE = 1 << 20
SMALL_GROUP = 512


def _smallFiles(files: list, p: Params) -> list:
    """Worker thread: for each file's bytes, its root (cid, tsize, filesize) and every block of it."""
    out = []
    for data in files:
        tree = _Tree(p)
        blocks = []
        for chunk in p.chunker(io.BytesIO(data).read):
            c, block, ts, fs = _leaf(chunk, p)
            blocks.append((c, block))
            tree.add((c, ts, fs))
        root = tree.finish()
        out.append((root, blocks + tree.made))
    return out


async def importPath(store, path: Path, reactor, threadpool=None, params: Params = HELIA,
                     pin: bool = False) -> Entry:
    """Import a file or a directory tree from disk (symlinks are not followed)."""
    path = Path(path)
    if path.is_file():
        return await importFile(store, path, reactor, threadpool, params, pin)
    pool = threadpool or reactor.getThreadPool()
    entries = await deferToThreadPool(reactor, pool, folderEntries, path)
    return await importDirectory(store, entries, reactor, threadpool, params, pin)


class TooManyEntries(ValueError):
    """
    A folder holds more entries than the caller takes.
    """


def folderEntries(root: Path, limit: int | None = None) -> list[tuple[str, Path | None]]:
    """
    What a folder on disk imports as (blocking): (relative "/" path, file)
    for each file (symlinks are not followed) and (path, None) for each
    empty folder, in path order.  With C{limit}, the walk stops past that
    many entries and raises L{TooManyEntries}.
    """
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        if not dirnames and not filenames and rel != Path("."):
            out.append((rel.as_posix(), None))
        for name in filenames:
            full = Path(dirpath) / name
            if full.is_file() and not full.is_symlink():
                out.append(((rel / name).as_posix(), full))
        if limit is not None and len(out) > limit:
            raise TooManyEntries(f"{root}: more than {limit} files and empty folders")
    return sorted(out, key=lambda x: x[0])


# -- exporter ---------------------------------------------------------------------

async def buildDirectory(store, entries: dict, params: Params = HELIA,
                         reactor=None, threadpool=None) -> Entry:
    """
    A directory tree over existing nodes: C{entries} maps "a/b/name" paths
    to L{Entry}s (see L{entryOf}).  Big directories are HAMT-sharded as
    importDirectory shards them; with ``reactor``, big shards are built in a
    worker thread.
    """
    tree = _DirTree(params)
    for path, entry in entries.items():
        tree.put(path, entry, replace=False)
    return await tree.build(store, reactor, threadpool)
