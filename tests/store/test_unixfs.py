"""
UnixFS import/export against CIDs computed by helia's importer.

Vectors: produced with ipfs-unixfs-importer 17.1.1 (the importer of
@helia/unixfs 8.0.5, which however overrides its chunker and layout with 1 MiB
chunks and 1024 links: see test_helia_cids, which also runs both live) and
blockstore-core's MemoryBlockstore, default options, on Node 20 in a scratch
dir outside the repo:

    npm i ipfs-unixfs-importer blockstore-core multiformats
    for await (const e of importer([{ content: content(n) }], new MemoryBlockstore())) ...

with content(n) defined exactly as ``content`` below (1 KiB segments, segment
k = sha256("tau" + k) repeated 32 times).  The directory vectors import the
entries of ``SMALL_DIR`` / 300 and 6000 files named as below with
``{ wrapWithDirectory: true }``.
"""

import errno
import hashlib
import io
import os
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial import unittest

from tau.store import blockstore, unixfs, unixfsread
from tau.store.blockstore import StoreFull
from tau.store.chunker import Buzhash, FixedSize
from tau.store.unixfs import importDirectory, importFile
from tau.store.unixfsread import BlockMissing, ls

from tests.bitswap.fakes import MemoryBlockStore

from .helpers import StoreMixin


def content(n: int) -> bytes:
    out = bytearray()
    k = 0
    while len(out) < n:
        out += hashlib.sha256(b"tau%d" % k).digest() * 32
        k += 1
    return bytes(out[:n])


FILE_VECTORS = {
    0: "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
    1: "bafkreidhlbxjr6wspwqltfulya42d3zuze43tohfeoul56e5i6darrpm6y",
    1024: "bafkreidul2xg3zppfoheqy7c7rrw2avbvqmtm4tynpcyc7xnr7ldi3s4xu",
    262144: "bafkreibjkesr4zvtmkkzbxbr5k6bekaktpn4xavkxnrw7s3cu4himsdutq",
    262145: "bafybeido7ucin5n4dwuirwm2mabiphvhiwfc7g73gwwpnd4qmkejz7tivi",
    1048576: "bafybeicgeuyn7sbwigklbeekiibrynnfrpten6ssp6rekbe5fkz7o56exq",
    10485760: "bafybeiamcaye2ps3ykapw26nbkijivudycvjpkxcpflo2znd57yvqddiya",
    # 175 chunks: a second level with a single-leaf node (174 + 1)
    45875200: "bafybeif4udwilwnmmhlnhevyx45mzaefdgzihqigxrtpjmjnlqiirroqra",
    45875201: "bafybeifuw4foo5klrkgkpoul5oskyxd6yzo5xrvsge6nivzlijpnwkjliu",
    104857600: "bafybeie4yiu5b4rk3wdtlkh7cq6kmqmpau3mg67tkmddox33fdgiw35be4",
}

SMALL_DIR = [
    ("a.txt", b"alpha\n"),
    ("sub/c.bin", content(300000)),
    ("sub/empty", b""),
    ("b", content(1)),
    ("sub/deeper", None),
]
DIR_VECTORS = {
    "small": "bafybeihtl7bmlnn6e3op3bkj7nzfyw4weuwor45bz75g6o477prg2bfvlu",
    "flat300": "bafybeiges7yo32lkcedfgw6d6h3jz4x3jviz4rp4gnrzsmnwsqqaoeokuq",
    "hamt6000": "bafybeib2fhj6bbbnjfvtqhenlsebxmuk2uzuga35yxevqhwz2jywkxso6m",
    "empty": "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354",
}


def b32(c) -> str:
    return c.encode("base32").decode()


def d(coro):
    return Deferred.fromCoroutine(coro)


async def catAll(store, c, offset=0, length=None) -> bytes:
    return b"".join([p async for p in unixfsread.cat(store, c, offset, length)])


class FileVectorTests(StoreMixin, unittest.TestCase):
    timeout = 300

    def _vector(self, n):
        async def t():
            s = await self.openStore()
            data = content(n)
            e = await importFile(s, data, reactor, self.pool)
            self.assertEqual(b32(e.cid), FILE_VECTORS[n])
            self.assertEqual(e.filesize, n)
            got = hashlib.sha256()
            async for piece in unixfsread.cat(s, e.cid):
                got.update(piece)
            self.assertEqual(got.digest(), hashlib.sha256(data).digest())
        return d(t())

    def test_empty(self):
        return self._vector(0)

    def test_oneByte(self):
        return self._vector(1)

    def test_1KiB(self):
        return self._vector(1024)

    def test_oneChunk(self):
        return self._vector(262144)

    def test_oneChunkPlusOne(self):
        return self._vector(262145)

    def test_1MiB(self):
        return self._vector(1048576)

    def test_10MiB(self):
        return self._vector(10485760)

    def test_175Chunks(self):
        return self._vector(45875200)

    def test_175ChunksPlusOne(self):
        return self._vector(45875201)

    def test_100MiB(self):
        return self._vector(104857600)


class ExportTests(StoreMixin, unittest.TestCase):
    def test_ranges(self):
        async def t():
            s = await self.openStore()
            data = content(3 * 262144 + 12345)
            e = await importFile(s, io.BytesIO(data), reactor, self.pool,
                                 unixfs.Params(chunker=FixedSize(100000), maxLinks=3))
            for off, ln in [(0, 10), (99990, 20), (100000, 100000), (5, None),
                            (len(data) - 1, 10), (len(data), 5), (123456, 400000), (0, 0)]:
                want = data[off:] if ln is None else data[off:off + ln]
                self.assertEqual(await catAll(s, e.cid, off, ln), want, (off, ln))
        return d(t())

    def test_cidStringAndV0Preset(self):
        async def t():
            s = await self.openStore()
            data = content(600000)
            e = await importFile(s, data, reactor, self.pool, unixfs.KUBO_V0)
            self.assertEqual(e.cid.version, 0)
            self.assertEqual(await catAll(s, str(e.cid), 262140, 10), data[262140:262150])
            # a small kubo v0 file is one dag-pb leaf, the empty one the known vector
            e0 = await importFile(s, b"", reactor, self.pool, unixfs.KUBO_V0)
            self.assertEqual(str(e0.cid), "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH")
            self.assertEqual(await catAll(s, e0.cid), b"")
        return d(t())

    def test_missingBlock(self):
        async def t():
            s = await self.openStore()
            data = content(600000)
            e = await importFile(s, data, reactor, self.pool)
            leaves = [c async for c in unixfsread.walkDag(s, e.cid)][1:]
            await s.delete(leaves[1])
            with self.assertRaises(BlockMissing):
                await catAll(s, e.cid)
            # a range that avoids the missing leaf still works
            self.assertEqual(await catAll(s, e.cid, 0, 1000), data[:1000])
        return d(t())

    def test_pinRecursiveFetchesWhatItPins(self):
        """
        Pinning a DAG this store lacks (a hoarder keeping a build it was
        asked to stash) fetches every block, raw leaves included (the walk
        reads only the dag-pb nodes), so the pinned data is still here once
        its source has gone; a raw-block root too.
        """
        async def t():
            remote = await self.openStore(Path(self.mktemp()))
            local = await self.openStore(Path(self.mktemp()))
            tree = await importFile(remote, content(700000), reactor, self.pool)
            single = await importFile(remote, b"one raw block", reactor, self.pool)
            self.assertEqual(single.cid.codec, "raw")

            class Fetching:
                async def get(self, c):
                    block = await local.get(c)
                    if block is None:
                        block = await remote.get(c)
                        await local.put(c, block)
                    return block

                def __getattr__(self, name):
                    return getattr(local, name)

            for entry in (tree, single):
                await unixfsread.pinRecursive(Fetching(), entry.cid, fetch=True)
            await local.gc()
            self.assertEqual(await catAll(local, tree.cid), content(700000))
            self.assertEqual(await catAll(local, single.cid), b"one raw block")
        return d(t())

    def test_pinRecursiveSurvivesGc(self):
        async def t():
            s = await self.openStore()
            a = await importFile(s, content(700000), reactor, self.pool, pin=True)
            b = await importFile(s, os.urandom(300000), reactor, self.pool)
            removed, _ = await s.gc()
            self.assertEqual(removed, 3)  # b's root + 2 leaves
            self.assertEqual(await catAll(s, a.cid), content(700000))
            await unixfsread.unpinRecursive(s, a.cid)
            self.assertEqual((await s.gc())[0], 4)
            self.assertFalse(await s.has(b.cid))
        return d(t())

    def test_diskFullMidImport(self):
        """
        The disk filling up while several batches of an import are being
        written: StoreFull, once every batch in flight has stopped, and the
        store keeps nothing of the import (no block, no temp file).
        """
        async def t():
            s = await self.openStore()
            writes = []
            real = blockstore._writeAll

            def filling(f, data):
                writes.append(len(data))
                if len(writes) > 20:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return real(f, data)
            self.patch(blockstore, "_writeAll", filling)
            data = content(unixfs.IMPORT_DEPTH * unixfs.DEFAULT.batchBytes * 2)
            with self.assertRaises(StoreFull):
                await importFile(s, data, reactor, self.pool)
            self.assertEqual((await s.stat())["blocks"], 0)
            self.assertEqual(self.temps(), [])
            self.assertEqual(list((self.root / "blocks").rglob("*.data")), [])
            self.patch(blockstore, "_writeAll", real)
            e = await importFile(s, data, reactor, self.pool)   # room again: the same import works
            self.assertEqual(await catAll(s, e.cid), data)
        return d(t())


class DirectoryTests(StoreMixin, unittest.TestCase):
    timeout = 120

    def test_smallDir(self):
        async def t():
            s = await self.openStore()
            e = await importDirectory(s, SMALL_DIR, reactor, self.pool)
            self.assertEqual(b32(e.cid), DIR_VECTORS["small"])
            names = [n for n, _, _ in await ls(s, e.cid)]
            self.assertEqual(names, ["a.txt", "b", "sub"])
            sub = await unixfsread.resolve(s, e.cid, "sub")
            self.assertEqual([n for n, _, _ in await ls(s, sub)], ["c.bin", "deeper", "empty"])
            c = await unixfsread.resolve(s, e.cid, "/sub/c.bin")
            self.assertEqual(await catAll(s, c), content(300000))
        return d(t())

    def test_smallFilesGrouped(self):
        """
        Small files imported many at a time give what one at a time gives:
        the same CIDs, blocks and order, with big files, folders and a path
        given twice among them, and groups cut by count and by size.
        """
        async def t():
            entries = []
            for i in range(40):
                entries.append((f"f{i:02d}", content(i * 997)))
                if i % 13 == 0:
                    entries.append((f"big{i}", content(unixfs.SMALL_FILE + 1 + i)))
                if i % 17 == 0:
                    entries.append((f"d{i}/inner", None))
            entries.append(("f05", b"replaced"))
            self.patch(unixfs, "SMALL_GROUP", 7)
            grouped, groupedOnFile = MemoryBlockStore(), []
            a = await importDirectory(grouped, entries, reactor, self.pool,
                                      onFile=lambda p, e: groupedOnFile.append((p, e.cid)))
            self.patch(unixfs, "SMALL_FILE", -1)   # every file on its own
            single, singleOnFile = MemoryBlockStore(), []
            b = await importDirectory(single, entries, reactor, self.pool,
                                      onFile=lambda p, e: singleOnFile.append((p, e.cid)))
            self.assertEqual(a, b)
            self.assertEqual(groupedOnFile, singleOnFile)
            self.assertEqual(grouped.blocks, single.blocks)
        return d(t())

    def test_emptyDir(self):
        async def t():
            s = await self.openStore()
            e = await importDirectory(s, [("x", None)], reactor, self.pool)
            x = await unixfsread.resolve(s, e.cid, "x")
            self.assertEqual(b32(x), DIR_VECTORS["empty"])
        return d(t())

    def test_flat300(self):
        async def t():
            s = await self.openStore()
            entries = [(f"f{i}", str(i).encode()) for i in range(300)]
            e = await importDirectory(s, entries, reactor, self.pool)
            self.assertEqual(b32(e.cid), DIR_VECTORS["flat300"])
            self.assertEqual(len(await ls(s, e.cid)), 300)
        return d(t())

    def test_importPath(self):
        async def t():
            s = await self.openStore()
            from pathlib import Path
            root = Path(self.mktemp())
            for path, data in SMALL_DIR:
                p = root / path
                if data is None:
                    p.mkdir(parents=True)
                else:
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_bytes(data)
            e = await unixfs.importPath(s, root, reactor, self.pool)
            self.assertEqual(b32(e.cid), DIR_VECTORS["small"])
        return d(t())


class ChunkerTests(StoreMixin, unittest.TestCase):
    def test_buzhashRoundTripAndDedup(self):
        async def t():
            s = await self.openStore()
            base = os.urandom(3_000_000)
            edited = base[:1_500_000] + b"an insertion" + base[1_500_000:]
            p = unixfs.Params(chunker=Buzhash())
            e1 = await importFile(s, base, reactor, self.pool, p)
            before = (await s.stat())["blocks"]
            e2 = await importFile(s, edited, reactor, self.pool, p)
            added = (await s.stat())["blocks"] - before
            self.assertEqual(await catAll(s, e2.cid), edited)
            self.assertEqual(await catAll(s, e1.cid), base)
            # only the chunk around the edit (maybe two) and the root are new
            self.assertLessEqual(added, 3)
        return d(t())

    def test_buzhashNumpyMatchesPure(self):
        import random
        r = random.Random(7)
        data = r.randbytes(2_000_000)
        a = list(Buzhash(useNumpy=True)(io.BytesIO(data).read, bufferSize=1 << 20))
        b = list(Buzhash(useNumpy=False)(io.BytesIO(data).read))
        self.assertEqual(a, b)
        self.assertEqual(b"".join(a), data)
        self.assertTrue(all(128 << 10 <= len(x) <= 512 << 10 for x in a[:-1]))


class ShardingTests(StoreMixin, unittest.TestCase):
    timeout = 120

    def test_hamt6000(self):
        """
        6000 entries exceed the 256 KiB 'links-bytes' threshold: a HAMT,
        helia's CID; listed, looked up, read, pinned through GC.
        """
        async def t():
            s = await self.openStore()
            entries = [(f"file-{i:05d}", str(i).encode()) for i in range(6000)]
            e = await importDirectory(s, entries, reactor, self.pool, pin=True)
            self.assertEqual(b32(e.cid), DIR_VECTORS["hamt6000"])
            listed = await ls(s, e.cid)
            self.assertEqual(sorted(n for n, _, _ in listed), [n for n, _ in entries])
            for name, c, size in listed[:50]:
                self.assertEqual(await catAll(s, c), str(int(name[5:])).encode())
                self.assertEqual(size, len(str(int(name[5:]))))
            c = await unixfsread.resolve(s, e.cid, "/file-04321")
            self.assertEqual(await catAll(s, c), b"4321")
            self.assertIsNone(await unixfsread.lookup(s, e.cid, "file-06000"))
            with self.assertRaises(FileNotFoundError):
                await unixfsread.resolve(s, e.cid, "file-06000")
            with self.assertRaises(unixfsread.NotAFile):
                await catAll(s, e.cid)
            # the entry of the root, as add/dir computes it, is the importer's
            self.assertEqual(await unixfsread.entryOf(s, e.cid), e)
            await importFile(s, b"garbage", reactor, self.pool)
            self.assertEqual((await s.gc())[0], 1)
            self.assertEqual(len(await ls(s, e.cid)), 6000)
        return d(t())

    def test_buildDirectoryShards(self):
        """
        A directory over existing nodes (what add/dir builds) is sharded
        the same way: the same CID as importing the files.
        """
        async def t():
            s = MemoryBlockStore()
            entries = {}
            for i in range(6000):
                entries[f"file-{i:05d}"] = await importFile(s, str(i).encode(), reactor, self.pool)
            e = await unixfs.buildDirectory(s, entries, reactor=reactor, threadpool=self.pool)
            self.assertEqual(b32(e.cid), DIR_VECTORS["hamt6000"])
            nested = await unixfs.buildDirectory(s, {"a/b": e, "c": entries["file-00001"]})
            self.assertEqual(await unixfsread.resolve(s, nested.cid, "a/b/file-00001"), entries["file-00001"].cid)
            with self.assertRaises(ValueError):
                await unixfs.buildDirectory(s, {"x": e, "x/y": e})
        return d(t())

    def test_kuboV0Shards(self):
        """CIDv0 parameters shard too (CIDv0 links weigh 34 bytes, not 36)."""
        async def t():
            s = MemoryBlockStore()
            entries = [(f"file-{i:05d}", str(i).encode()) for i in range(6000)]
            e = await importDirectory(s, entries, reactor, self.pool, unixfs.KUBO_V0)
            self.assertEqual(e.cid.version, 0)
            self.assertEqual(len(await ls(s, e.cid)), 6000)
            self.assertEqual(await catAll(s, await unixfsread.resolve(s, e.cid, "file-00042")), b"42")
        return d(t())
