"""
The content service (tau.store.content): adds stored durably, pinned,
announced and provided in one place; reads, pins and their typed errors.
"""

import io
import os
import tarfile
from pathlib import Path
from types import SimpleNamespace

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from tau.fakes import FakeRouting
from tau.interfaces import IContent
from tau.store import content, unixfs
from tau.store.content import BadInput, ContentService, NotFound, NotInTime, NotPinned
from tau.store.service import StoreService
from tests.bitswap.fakes import MemoryBlockStore


def tarOf(members) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        for name, value in members:
            info = tarfile.TarInfo(name)
            if value is None:
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            else:
                info.size = len(value)
                t.addfile(info, io.BytesIO(value))
    return out.getvalue()


async def joined(chunks):
    return b"".join([c async for c in chunks])


class ContentCase(TestCase):
    async def service(self, answers=()):
        store = StoreService(Path(self.mktemp()), reactor)
        store.startService()
        self.addCleanup(store.stopService)
        await store.whenReady()
        self.notified = []
        self.routing = FakeRouting(answers)
        return ContentService(store, reactor, notify=self.notified.extend, routing=self.routing)

    async def expected(self, source):
        return (await unixfs.importFile(MemoryBlockStore(), source, reactor)).cid


class AddTests(ContentCase):
    async def test_provides(self):
        c = await self.service()
        self.assertTrue(verifyObject(IContent, c))

    async def test_addAnnouncesProvidesAndPins(self):
        """
        One add: the CID the importer gives, pinned, the root announced to
        Bitswap and provided in the DHT by its multihash.
        """
        c = await self.service()
        data = os.urandom(300_000)
        entry = await c.add(data)
        self.assertEqual(entry.cid, await self.expected(data))
        self.assertEqual(entry.filesize, len(data))
        self.assertEqual(await c.pins(), [entry.cid])
        self.assertEqual(self.notified, [entry.cid])
        self.assertEqual(self.routing.provided, [bytes(entry.cid.multihash)])

    async def test_sourcesGiveTheSameCID(self):
        """Bytes, a path and a file object of the same bytes are the same file."""
        c = await self.service()
        data = os.urandom(70_000)
        path = Path(self.mktemp())
        path.write_bytes(data)
        got = {(await c.add(source, pin=False)).cid for source in (data, path, str(path), io.BytesIO(data))}
        self.assertEqual(got, {await self.expected(data)})
        self.assertEqual(await c.pins(), [])

    async def test_aFailedProvideDoesNotFailTheAdd(self):
        c = await self.service(answers=[RuntimeError("no peers")])
        entry = await c.add(b"hello")
        self.assertTrue(await c.has(entry.cid))
        self.assertEqual(len(self.routing.provided), 1)

    async def test_chunker(self):
        """kubo's chunker names; anything else is BadInput and nothing is stored."""
        c = await self.service()
        data = os.urandom(5000)
        small = await c.add(data, chunker="size-1024")
        self.assertEqual(small.cid, (await unixfs.importFile(
            MemoryBlockStore(), data, reactor, params=content.params("size-1024"))).cid)
        self.assertNotEqual(small.cid, await self.expected(data))
        for bad in ("size-1023", "size-1048577", "rabin", "size-x"):
            with self.assertRaises(BadInput):
                await c.add(data, chunker=bad)
        self.assertEqual(content.params("size-1048576").chunker.size, 1 << 20)

    async def test_tarAtTheEntryLimit(self):
        """
        A tar stream of exactly maxEntries entries is taken; one more is
        BadInput, and nothing of it is left in the store.
        """
        c = await self.service()
        members = [("d", None)] + [(f"d/f{i}", b"%d" % i) for i in range(3)]
        files = []
        root = await c.addTar(io.BytesIO(tarOf(members)), maxEntries=4, onFile=lambda p, e: files.append(p))
        self.assertEqual(root.cid, (await unixfs.importDirectory(
            MemoryBlockStore(), [("d/f0", b"0"), ("d/f1", b"1"), ("d/f2", b"2")], reactor)).cid)
        self.assertEqual(files, ["d/f0", "d/f1", "d/f2"])
        self.assertEqual(self.notified, [root.cid])
        c2 = await self.service()
        with self.assertRaises(BadInput) as e:
            await c2.addTar(io.BytesIO(tarOf(members + [("d/f3", b"3")])), maxEntries=4)
        self.assertIn("more than 4 entries", str(e.exception))
        self.assertEqual((await c2.stat())["blocks"], 0)
        self.assertEqual(self.notified, [])

    async def test_tarRefusals(self):
        c = await self.service()
        for body, words in [(tarOf([("../x", b"1")]), "refusing the path"),
                            (b"not a tar" * 100, "not a valid tar stream"),
                            (tarOf([("a", b"x" * 5000)])[:1200], "not a valid tar stream")]:
            with self.assertRaises(BadInput) as e:
                await c.addTar(io.BytesIO(body))
            self.assertIn(words, str(e.exception))
        self.assertEqual((await c.stat())["blocks"], 0)

    async def test_addDirectory(self):
        """A folder over stored nodes; unsafe paths and unknown blocks are refused."""
        c = await self.service()
        a = await c.add(b"alpha")
        root = await c.addDirectory({"x/a.txt": unixfs.cidText(a.cid)})
        self.assertEqual([name for name, _, _ in await c.ls(root.cid)], ["x"])
        self.assertIn(root.cid, await c.pins())
        with self.assertRaises(BadInput):
            await c.addDirectory({"../a": a.cid})
        with self.assertRaises(BadInput):
            await c.addDirectory({"a": a.cid, "b": a.cid}, maxEntries=1)
        elsewhere = await unixfs.importFile(MemoryBlockStore(), b"not here", reactor)
        with self.assertRaises(NotFound) as e:
            await c.addDirectory({"gone": elsewhere.cid})
        self.assertIn("gone: ", str(e.exception))
        with self.assertRaises(BadInput):
            await c.addDirectoryJSON(b'{"entries": []}')


class ReadTests(ContentCase):
    async def test_catRanges(self):
        c = await self.service()
        data = os.urandom(600_000)
        entry = await c.add(data)
        self.assertEqual(await joined(await c.cat(entry.cid)), data)
        self.assertEqual(await joined(await c.cat(unixfs.cidText(entry.cid), 262_000, 1000)), data[262_000:263_000])
        self.assertEqual(await joined(await c.cat("/ipfs/" + unixfs.cidText(entry.cid), len(data))), b"")
        with self.assertRaises(BadInput):
            await c.cat(entry.cid, -1)

    async def test_typedErrors(self):
        c = await self.service()
        folder = await c.addFolder([("a", b"x")])
        for call, error in [(c.cat("nonsense"), BadInput), (c.cat(folder.cid), BadInput),
                            (c.ls((await c.add(b"file")).cid), BadInput)]:
            with self.assertRaises(error):
                await call
        missing = (await unixfs.importFile(MemoryBlockStore(), os.urandom(300_000), reactor)).cid
        self.assertEqual(missing.codec, "dag-pb")
        with self.assertRaises(NotFound):
            await c.cat(missing)
        with self.assertRaises(NotFound):
            await c.pin(missing)

    def test_notInTime(self):
        """A block nobody sends: NotInTime once the timeout has passed, not before."""
        clock = Clock()
        never = Deferred()
        store = SimpleNamespace(blocks=MemoryBlockStore(), get=lambda cid: never)
        c = ContentService(store, clock)
        missing = unixfs.makeCid("raw", b"nowhere", 1)
        d = Deferred.fromCoroutine(c.cat(missing, timeout=5))
        clock.advance(4.9)
        self.assertNoResult(d)
        clock.advance(0.1)
        self.failureResultOf(d, NotInTime)

    async def test_getIsATarOfTheTree(self):
        c = await self.service()
        root = await c.addFolder([("docs/a.txt", b"alpha"), ("b.bin", os.urandom(3000))])
        name = unixfs.cidText(root.cid)
        body = await joined(await c.get(root.cid))
        with tarfile.open(fileobj=io.BytesIO(body)) as archive:
            self.assertEqual(sorted(m.name for m in archive.getmembers()),
                             [name, f"{name}/b.bin", f"{name}/docs", f"{name}/docs/a.txt"])
            self.assertEqual(archive.extractfile(f"{name}/docs/a.txt").read(), b"alpha")


class EntryTests(ContentCase):
    async def test_entryOfFileAndFolder(self):
        """
        A file's length from its root block (several chunks, and one raw
        leaf), a folder's filesize 0.
        """
        c = await self.service()
        big = await c.add(os.urandom(600_000))
        small = await c.add(b"hello")
        folder = await c.addFolder([("a", b"x")])
        self.assertEqual((await c.entry(big.cid)).filesize, 600_000)
        self.assertEqual((await c.entry(unixfs.cidText(small.cid))).filesize, 5)
        self.assertEqual((await c.entry(folder.cid)).filesize, 0)


class PinTests(ContentCase):
    async def test_pinUnpinGC(self):
        c = await self.service()
        entry = await c.add(os.urandom(300_000), pin=False)
        self.assertEqual(await c.pin(entry.cid), 3)       # the root and two leaves
        self.assertEqual(await c.pins(), [entry.cid])
        self.assertEqual(await c.gc(), (0, 0))
        await c.unpin(entry.cid)
        with self.assertRaises(NotPinned):
            await c.unpin(entry.cid)
        removed, freed = await c.gc()
        self.assertEqual(removed, 3)
        self.assertFalse(await c.has(entry.cid))
        self.assertEqual((await c.stat())["blocks"], 0)

    async def test_provide(self):
        c = await self.service()
        entry = await c.add(b"x", pin=False)
        self.notified.clear()
        told = await c.provide(unixfs.cidText(entry.cid))
        self.assertEqual(told, 1)
        self.assertEqual(self.notified, [entry.cid])
        self.assertEqual(self.routing.provided[-1], bytes(entry.cid.multihash))
