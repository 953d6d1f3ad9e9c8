"""BlockStore on a real temp directory with real threads."""

import errno
import os
import sqlite3
import sys
from pathlib import Path

import cid as pycid
import multihash
from twisted.internet import reactor, protocol
from twisted.internet.defer import Deferred
from twisted.trial import unittest

from tau.store import batch, blockstore
from tau.store.blockstore import (
    BadBlock, BlockPinned, CorruptBlock, StoreFull, keyName)

from .helpers import StoreMixin, rawCid, dagpbCid


def d(coro):
    return Deferred.fromCoroutine(coro)


class BasicTests(StoreMixin, unittest.TestCase):
    def test_putGetHasDelete(self):
        async def t():
            s = await self.openStore()
            data = b"hello world\n"
            c = rawCid(data)
            self.assertEqual(
                c.encode("base32").decode(),
                "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4")
            self.assertFalse(await s.has(c))
            self.assertIsNone(await s.get(c))
            await s.put(c, data)
            await s.put(c, data)  # idempotent
            self.assertTrue(await s.has(c))
            self.assertEqual(await s.get(c), data)
            self.assertEqual(await s.size(c), len(data))
            self.assertEqual(await s.stat(), {"blocks": 1, "bytes": 12, "pinned": 0})
            # flatfs-like layout: base32 multihash, next-to-last/2 shard
            name = keyName(bytes(c.multihash))
            self.assertTrue(name.startswith("CIQ"))
            self.assertTrue((self.root / "blocks" / name[-3:-1] / (name + ".data")).exists())
            await s.delete(c)
            self.assertFalse(await s.has(c))
            self.assertIsNone(await s.get(c))
            self.assertEqual((await s.stat())["blocks"], 0)
        return d(t())

    def test_dedupeV0V1(self):
        async def t():
            s = await self.openStore()
            data = b"\x0a\x02\x08\x01"  # the empty directory
            v0, v1 = dagpbCid(data, 0), dagpbCid(data, 1)
            self.assertEqual(str(v0), "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn")
            await s.put(v0, data)
            self.assertTrue(await s.has(v1))
            self.assertEqual(await s.get(v1), data)
            await s.put(v1, data)
            self.assertEqual((await s.stat())["blocks"], 1)
        return d(t())

    def test_badHashRefused(self):
        async def t():
            s = await self.openStore()
            c = rawCid(b"right")
            with self.assertRaises(BadBlock):
                await s.put(c, b"wrong")
            self.assertFalse(await s.has(c))
            self.assertEqual(self.temps(), [])
        return d(t())

    def test_identityNotStored(self):
        async def t():
            s = await self.openStore()
            mh = bytes([0x00, 4]) + b"tiny"  # identity multihash
            c = pycid.CIDv1("raw", mh)
            await s.put(c, b"tiny")
            self.assertEqual(await s.get(c), b"tiny")
            self.assertTrue(await s.has(c))
            self.assertEqual((await s.stat())["blocks"], 0)
            with self.assertRaises(BadBlock):
                await s.put(c, b"other")
        return d(t())

    def test_otherHashes(self):
        async def t():
            s = await self.openStore()
            data = b"blake and sha512"
            for name in ("sha2-512", "blake2b-256", "sha3-256"):
                mh = multihash.digest(data, name).encode()
                c = pycid.CIDv1("raw", mh)
                await s.put(c, data)
                self.assertEqual(await s.get(c), data)
                with self.assertRaises(BadBlock):
                    await s.put(pycid.CIDv1("raw", multihash.digest(b"x", name).encode()), data)
        return d(t())

    def test_corruptOnDiskDetected(self):
        async def t():
            s = await self.openStore()
            data = b"a block that will rot" * 100
            c = rawCid(data)
            await s.put(c, data)
            path = s._path(bytes(c.multihash))
            raw = bytearray(path.read_bytes())
            raw[10] ^= 1
            path.write_bytes(bytes(raw))
            with self.assertRaises(CorruptBlock):
                await s.get(c)
            # not served again, out of the index, kept aside for inspection
            self.assertFalse(await s.has(c))
            self.assertIsNone(await s.get(c))
            self.assertEqual(len(list((self.root / "corrupt").iterdir())), 1)
            # and a good copy can be stored again
            await s.put(c, data)
            self.assertEqual(await s.get(c), data)
        return d(t())

    def test_concurrentPutsSameKey(self):
        async def t():
            s = await self.openStore()
            data = os.urandom(10000)
            c = rawCid(data)
            from twisted.internet.defer import gatherResults
            await gatherResults([d(s.put(c, data)) for _ in range(10)]
                                + [d(s.get(c)) for _ in range(5)])
            self.assertEqual(await s.get(c), data)
            self.assertEqual((await s.stat())["blocks"], 1)
        return d(t())


class PinGcTests(StoreMixin, unittest.TestCase):
    def test_pinsAndGcOrder(self):
        async def t():
            s = await self.openStore()
            blocks = [bytes([i]) * 1000 for i in range(6)]
            cids = [rawCid(b) for b in blocks]
            for c, b in zip(cids, blocks):
                await s.put(c, b)
            await s.get(cids[0])  # 0 becomes the most recently used
            await s.pin(cids[1])
            self.assertEqual([str(p) for p in await s.pins()], [str(cids[1])])
            with self.assertRaises(BlockPinned):
                await s.delete(cids[1])
            # budget 4000: 6000 stored, remove the two least recently used
            # unpinned blocks: 2 and 3 (0 was touched, 1 is pinned)
            self.assertEqual(await s.gc(4000), (2, 2000))
            present = [await s.has(c) for c in cids]
            self.assertEqual(present, [True, True, False, False, True, True])
            self.assertEqual(await s.gc(4000), (0, 0))
            # no budget: every unpinned block goes
            self.assertEqual(await s.gc(), (3, 3000))
            self.assertEqual(await s.stat(), {"blocks": 1, "bytes": 1000, "pinned": 1})
            await s.unpin(cids[1])
            self.assertEqual(await s.pins(), [])
            self.assertEqual(await s.gc(), (1, 1000))
            self.assertEqual(list((self.root / "blocks").rglob("*.data")), [])
        return d(t())

    def test_gcOnAnIndexStillFull(self):
        """
        gc removes block files before their rows; rows it cannot drop (the
        disk still full, spare room or not) count as gone: has and size say
        so, the next gc drops them, and a new put stores the block again.
        """
        async def t():
            s = await self.openStore()
            data = b"x" * 1000
            c = rawCid(data)
            await s.put(c, data)

            def full(write, *a):
                raise sqlite3.OperationalError("database or disk is full")
            s._spare.freeing = full
            self.assertEqual(await s.gc(), (1, 1000))
            self.assertEqual(list((self.root / "blocks").rglob("*.data")), [])
            self.assertEqual((await s.has(c), await s.size(c), await s.hasMany([c])), (False, None, set()))
            del s._spare.freeing
            self.assertEqual(await s.gc(), (0, 0))
            self.assertEqual((await s.stat())["blocks"], 0)
            await s.put(c, data)
            self.assertEqual(await s.get(c), data)
        return d(t())

    def test_recursivePinsShareBlocks(self):
        async def t():
            s = await self.openStore()
            shared = b"shared" * 100
            c = rawCid(shared)
            await s.put(c, shared)
            rootA, rootB = rawCid(b"A"), rawCid(b"B")
            await s.pinMany([c], rootA)
            await s.pinMany([c], rootB)
            await s.unpinRoot(rootA)
            self.assertEqual(await s.gc(), (0, 0))
            await s.unpinRoot(rootB)
            self.assertEqual(await s.gc(), (1, len(shared)))
        return d(t())

    def test_lruSurvivesRestart(self):
        async def t():
            s = self.makeStore()
            await s.open()
            cids = []
            for i in range(3):
                b = bytes([i]) * 100
                cids.append(rawCid(b))
                await s.put(cids[-1], b)
            await s.get(cids[0])
            await s.close()
            s = await self.openStore()
            self.assertEqual(await s.gc(200), (1, 100))
            self.assertFalse(await s.has(cids[1]))
            self.assertTrue(await s.has(cids[0]))
        return d(t())


class CrashTests(StoreMixin, unittest.TestCase):
    def test_reconcile(self):
        async def t():
            s = self.makeStore()
            await s.open()
            keep, orphanFile, orphanRow = b"kept", b"file without row", b"row without file"
            for b in (keep, orphanFile, orphanRow):
                await s.put(rawCid(b), b)
            await s.close()
            # simulate a crash: a temp file, a file whose row never got
            # written, a row whose file is gone, and a bad unindexed file
            half = s._path(bytes(rawCid(b"half").multihash))
            half.parent.mkdir(exist_ok=True)
            half.with_name(half.name + ".7.tmp").write_bytes(b"half a blo")
            (self.root / "tmp").mkdir()      # where earlier versions wrote them
            (self.root / "tmp" / "x.tmp").write_bytes(b"half a blo")
            import sqlite3
            db = sqlite3.connect(self.root / "index.sqlite")
            db.execute("DELETE FROM blocks WHERE key = ?", [bytes(rawCid(orphanFile).multihash)])
            db.commit()
            db.close()
            os.unlink(s._path(bytes(rawCid(orphanRow).multihash)))
            bad = rawCid(b"expected")
            p = s._path(bytes(bad.multihash))
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(b"something else")

            s = await self.openStore()
            self.assertEqual(self.temps(), [])
            self.assertFalse((self.root / "tmp").exists())
            self.assertEqual(await s.get(rawCid(keep)), keep)
            self.assertTrue(await s.has(rawCid(orphanFile)))
            self.assertEqual(await s.get(rawCid(orphanFile)), orphanFile)
            self.assertFalse(await s.has(rawCid(orphanRow)))
            self.assertFalse(await s.has(bad))
            self.assertFalse(p.exists())
            self.assertEqual((await s.stat())["blocks"], 2)
        return d(t())

    def test_enospcOnWrite(self):
        async def t():
            s = await self.openStore()
            await s.put(rawCid(b"before"), b"before")
            calls = []

            def full(f, data):
                calls.append(1)
                f.write(data[:3])
                raise OSError(errno.ENOSPC, "No space left on device")
            self.patch(blockstore, "_writeAll", full)
            c = rawCid(b"too big")
            with self.assertRaises(StoreFull):
                await s.put(c, b"too big")
            self.assertEqual(calls, [1])
            self.assertFalse(await s.has(c))
            self.assertFalse(s._path(bytes(c.multihash)).exists())
            self.assertEqual(self.temps(), [])
            self.assertEqual(await s.stat(), {"blocks": 1, "bytes": 6, "pinned": 0})
            self.patch(blockstore, "_writeAll", lambda f, data: f.write(data))
            await s.put(c, b"too big")
            self.assertEqual(await s.get(c), b"too big")
        return d(t())

    def test_fullIndex(self):
        async def t():
            s = await self.openStore()
            import sqlite3

            def full(rows):
                raise sqlite3.OperationalError("database or disk is full")
            self.patch(s, "_insertSync", full)
            c = rawCid(b"no room in the index")
            with self.assertRaises(StoreFull):
                await s.put(c, b"no room in the index")
            self.assertFalse(s._path(bytes(c.multihash)).exists())
            self.assertFalse(await s.has(c))
        return d(t())


class BatchTests(StoreMixin, unittest.TestCase):
    """WriteBatch: many blocks, no fsync each, durable and indexed at commit."""

    def blocks(self, n, tag=b"b"):
        out = []
        for i in range(n):
            data = tag + bytes([i]) * 3000
            out.append((rawCid(data), data))
        return out

    def test_commitIndexesAndSyncs(self):
        """
        Before commit the blocks are on disk (get finds them) but not
        indexed; commit fsyncs every file and directory first, then indexes
        them all in one transaction.
        """
        async def t():
            s = await self.openStore()
            synced, order = [], []
            fsyncFiles, commitSync = batch._fsyncFiles, s._commitSync

            def recordFiles(paths):
                synced.extend(p for _, p in paths)
                order.append("fsync")
                return fsyncFiles(paths)

            def recordCommit(rows, pins):
                order.append("index")
                return commitSync(rows, pins)
            self.patch(batch, "_fsyncFiles", recordFiles)
            self.patch(s, "_commitSync", recordCommit)
            fsyncs = []
            realFsync = os.fsync
            self.patch(blockstore.os, "fsync", lambda fd: (fsyncs.append(fd), realFsync(fd))[1])
            b = s.batch()
            blocks = self.blocks(10)
            await b.putMany(blocks[:6])
            await b.putMany(blocks[4:])          # overlapping keys: written once
            self.assertEqual(fsyncs, [])         # nothing synced yet
            c0, d0 = blocks[0]
            self.assertTrue(await s.has(c0))     # seen at once (can be served) ...
            self.assertEqual(await s.get(c0), d0)
            self.assertEqual(await s.size(c0), len(d0))
            self.assertEqual((await s.stat())["blocks"], 0)   # ... indexed at commit
            await b.commit()
            self.assertEqual(sorted(synced), sorted(s._path(bytes(c.multihash)) for c, _ in blocks))
            self.assertEqual(order[-1], "index")
            self.assertEqual(set(order[:-1]), {"fsync"})
            for c, data in blocks:
                self.assertTrue(await s.has(c))
                self.assertEqual(await s.get(c), data)
            self.assertEqual((await s.stat())["blocks"], 10)
            self.assertEqual(self.temps(), [])
            with self.assertRaises(RuntimeError):
                await b.putMany(self.blocks(1, b"late"))
        return d(t())

    def test_commitManyFilesOneSyncfs(self):
        """
        From SYNCFS_MIN_FILES files on, commit makes the batch durable with
        one syncfs of the store's filesystem (no fsync per file or folder:
        each would flush the device cache again), then indexes it.
        """
        async def t():
            s = await self.openStore()
            calls, order = [], []
            realSyncfs, commitSync = batch._syncfs, s._commitSync

            def recordSyncfs(fd):
                calls.append(os.path.realpath(f"/proc/self/fd/{fd}"))
                order.append("syncfs")
                return realSyncfs(fd)

            def recordCommit(rows, pins):
                order.append("index")
                return commitSync(rows, pins)
            self.patch(batch, "_syncfs", recordSyncfs)
            self.patch(s, "_commitSync", recordCommit)
            fsyncs = []
            self.patch(blockstore.os, "fsync", lambda fd: fsyncs.append(fd))
            b = s.batch()
            blocks = self.blocks(batch.SYNCFS_MIN_FILES)
            await b.putMany(blocks)
            await b.commit()
            self.assertEqual(calls, [os.path.realpath(self.root)])
            self.assertEqual(order, ["syncfs", "index"])
            self.assertEqual(fsyncs, [])
            self.assertEqual((await s.stat())["blocks"], len(blocks))
            self.assertEqual(b._fsFd, None)      # the folder's fd is closed at the end
        return d(t())

    def test_syncfsErrorFailsCommit(self):
        """A write-back error reported by syncfs fails the commit: nothing is indexed."""
        async def t():
            s = await self.openStore()
            for err, raised in ((errno.EIO, OSError), (errno.ENOSPC, StoreFull)):
                def failing(fd):
                    raise OSError(err, os.strerror(err))
                self.patch(batch, "_syncfs", failing)
                b = s.batch()
                await b.putMany(self.blocks(batch.SYNCFS_MIN_FILES, tag=bytes([err])))
                with self.assertRaises(raised) as e:
                    await b.commit()
                if raised is OSError:
                    self.assertEqual(e.exception.errno, errno.EIO)
                self.assertEqual((await s.stat())["blocks"], 0)
        return d(t())

    def test_commitPins(self):
        """commit(pin=root) pins the root directly and every block on its behalf."""
        async def t():
            s = await self.openStore()
            old = self.blocks(1, b"old")[0]
            await s.put(*old)                    # already stored: pinned too
            blocks = self.blocks(5) + [old]
            root = blocks[0][0]
            b = s.batch()
            await b.putMany(blocks)
            await b.commit(pin=root)
            self.assertEqual([str(p) for p in await s.pins()], [str(root)])
            self.assertEqual(await s.gc(), (0, 0))
            await s.unpinRoot(root)
            await s.unpin(root)
            self.assertEqual(await s.gc(), (6, sum(len(x) for _, x in blocks)))
        return d(t())

    def test_gcSparesOpenBatch(self):
        """An open batch's blocks, new or found stored, are not collected."""
        async def t():
            s = await self.openStore()
            held, other = self.blocks(1, b"held")[0], self.blocks(1, b"other")[0]
            await s.put(*held)
            await s.put(*other)
            b = s.batch()
            await b.putMany([held] + self.blocks(3))
            self.assertEqual(await s.gc(), (1, len(other[1])))
            self.assertTrue(await s.has(held[0]))
            await b.commit()
            self.assertEqual(await s.gc(), (4, len(held[1]) + 3 * len(self.blocks(1)[0][1])))
        return d(t())

    def test_abort(self):
        """abort removes the files the batch wrote, not blocks indexed by others."""
        async def t():
            s = await self.openStore()
            blocks = self.blocks(4)
            b = s.batch()
            await b.putMany(blocks)
            await s.put(*blocks[0])              # someone stores one durably meanwhile
            await b.abort()
            self.assertEqual(await s.get(blocks[0][0]), blocks[0][1])
            for c, _ in blocks[1:]:
                self.assertIsNone(await s.get(c))
                self.assertFalse(await s.has(c))
                self.assertFalse(s._path(bytes(c.multihash)).exists())
            self.assertEqual((await s.stat())["blocks"], 1)
        return d(t())

    def test_syncBehind(self):
        """
        Past syncBehind bytes a batch syncs and indexes what it wrote while
        it goes on; commit waits for that and does the rest.
        """
        async def t():
            s = await self.openStore()
            blocks = self.blocks(6)
            b = s.batch(syncBehind=2 * 3001)
            await b.putMany(blocks[:3])
            self.assertEqual(len(b._jobs), 1)
            await b._jobs[0]
            for c, _ in blocks[:3]:
                self.assertTrue(await s.has(c))
            await b.putMany(blocks[3:4])
            self.assertEqual((await s.stat())["blocks"], 3)
            await b.commit()
            self.assertEqual((await s.stat())["blocks"], 4)
            for c, _ in blocks[:4]:
                self.assertTrue(await s.has(c))
        return d(t())

    def test_hasMany(self):
        """
        hasMany tells, in one index query, which blocks are stored: indexed
        ones, identity CIDs and those an open batch wrote.
        """
        async def t():
            s = await self.openStore()
            stored, batched, missing = self.blocks(1, b"s")[0], self.blocks(1, b"b")[0], self.blocks(1, b"m")[0]
            identity = pycid.CIDv1("raw", bytes([0x00, 3]) + b"abc")
            await s.put(*stored)
            b = s.batch()
            await b.putMany([batched])
            queries = []
            existing = s._existingSync
            self.patch(s, "_existingSync", lambda keys, touched: (queries.append(keys), existing(keys, touched))[1])
            found = await s.hasMany([stored[0], batched[0], missing[0], identity])
            self.assertEqual(found, {bytes(c.multihash) for c in (stored[0], batched[0], identity)})
            self.assertEqual(len(queries), 1)
            await b.commit()
            self.assertEqual(await s.hasMany([]), set())
        return d(t())

    def test_badBlockRefused(self):
        async def t():
            s = await self.openStore()
            b = s.batch()
            with self.assertRaises(BadBlock):
                await b.putMany([(rawCid(b"this"), b"that")])
            await b.abort()
            self.assertEqual((await s.stat())["blocks"], 0)
        return d(t())

    def test_enospc(self):
        """A full disk during a batch write is StoreFull; abort leaves nothing."""
        async def t():
            s = await self.openStore()
            b = s.batch()

            def full(f, data):
                raise OSError(errno.ENOSPC, "No space left on device")
            self.patch(blockstore, "_writeAll", full)
            with self.assertRaises(StoreFull):
                await b.putMany(self.blocks(3))
            await b.abort()
            self.assertEqual(self.temps(), [])
            self.assertEqual(list((self.root / "blocks").rglob("*.data")), [])
        return d(t())


CHILD = r"""
import os, sys, hashlib
from pathlib import Path
from twisted.internet import task
from tau.store.blockstore import BlockStore
import cid as pycid, multihash

async def main(reactor):
    s = BlockStore(Path(sys.argv[1]), reactor)
    await s.open()
    i = 0
    while True:
        data = hashlib.sha256(str(i).encode()).digest() * 8192   # 256 KiB
        c = pycid.CIDv1("raw", multihash.encode(hashlib.sha256(data).digest(), "sha2-256"))
        await s.put(c, data)
        sys.stdout.write("%d\n" % i)
        sys.stdout.flush()
        i += 1

task.react(lambda r: __import__("twisted.internet.defer", fromlist=["x"]).Deferred.fromCoroutine(main(r)))
"""


IMPORT_CHILD = r"""
import sys, hashlib
from pathlib import Path
from twisted.internet import task
from twisted.internet.defer import Deferred
from tau.store.blockstore import BlockStore
from tau.store import unixfs, unixfsread

def content(i):
    seed = hashlib.sha256(str(i).encode()).digest()
    return seed * (32768 * 3 + i)          # ~3 MiB: several leaves and a root node

async def main(reactor):
    s = BlockStore(Path(sys.argv[1]), reactor)
    await s.open()
    i = 0
    while True:
        e = await unixfs.importFile(s, content(i), reactor, pin=(i % 2 == 0))
        sys.stdout.write("%d %s\n" % (i, e.cid.encode("base32").decode()))
        sys.stdout.flush()
        i += 1

task.react(lambda r: Deferred.fromCoroutine(main(r)))
"""


class _Kill(protocol.ProcessProtocol):
    def __init__(self, after):
        self.after = after
        self.acked = []
        self.buf = b""
        self.ended = Deferred()
        self.err = b""

    def outReceived(self, data):
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        self.acked += [x.decode() if b" " in x else int(x) for x in lines]
        if len(self.acked) >= self.after and self.transport.pid:
            self.transport.signalProcess("KILL")

    def errReceived(self, data):
        self.err += data

    def processEnded(self, reason):
        self.ended.callback(reason.value)


class SigkillTests(StoreMixin, unittest.TestCase):
    timeout = 60

    def test_sigkillDuringWrites(self):
        """A writer killed with SIGKILL mid-stream loses no acknowledged block."""
        import hashlib

        async def t():
            script = Path(self.mktemp())
            script.write_text(CHILD)
            proto = _Kill(after=40)
            env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
            reactor.spawnProcess(proto, sys.executable, [sys.executable, str(script), str(self.root)], env=env)
            await proto.ended
            self.assertGreaterEqual(len(proto.acked), 40, proto.err.decode())
            s = await self.openStore()
            for i in proto.acked:
                data = hashlib.sha256(str(i).encode()).digest() * 8192
                self.assertEqual(await s.get(rawCid(data)), data)
            # everything indexed verifies, no temp file is left
            self.assertEqual(self.temps(), [])
            for key in await s.keys():
                self.assertIsNotNone(await s.get(pycid.CIDv1("raw", key)))
        return d(t())

    def test_sigkillDuringImports(self):
        """
        Imports through a write batch (no fsync per block) killed with
        SIGKILL: every file whose import returned is whole after a restart,
        and its pin holds.
        """
        import hashlib

        from tau.store import unixfsread

        async def t():
            script = Path(self.mktemp())
            script.write_text(IMPORT_CHILD)
            proto = _Kill(after=6)
            env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
            reactor.spawnProcess(proto, sys.executable, [sys.executable, str(script), str(self.root)], env=env)
            await proto.ended
            self.assertGreaterEqual(len(proto.acked), 6, proto.err.decode())
            s = await self.openStore()
            pinned = {str(p) for p in await s.pins()}
            for line in proto.acked:
                i, text = line.split()
                i = int(i)
                want = hashlib.sha256(str(i).encode()).digest() * (32768 * 3 + i)
                got = b"".join([chunk async for chunk in unixfsread.cat(s, text)])
                self.assertEqual(got, want)
                self.assertEqual(text in {pycid.from_string(p).encode("base32").decode() for p in pinned}, i % 2 == 0)
            self.assertEqual(self.temps(), [])
            for key in await s.keys():
                self.assertIsNotNone(await s.get(pycid.CIDv1("raw", key)))
        return d(t())
