"""
The control API's add/tar: a folder sent as one tar stream, from Python's
tarfile and from GNU tar, and the streams it refuses.
"""

import io
import os
import random
import subprocess
import tarfile
import tempfile
from pathlib import Path

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.web.client import FileBodyProducer
from twisted.trial.unittest import TestCase

from tau.control import store as controlStore
from tau.store import unixfs
from tests.bitswap.fakes import MemoryBlockStore
from tests.test_node import api, startedNode


def d(coro):
    return Deferred.fromCoroutine(coro)


def tarOf(members) -> bytes:
    """members: (name, bytes | None for a folder | ("link", target))."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, value in members:
            info = tarfile.TarInfo(name)
            if value is None:
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            elif isinstance(value, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, value[1]
                t.addfile(info)
            else:
                info.size = len(value)
                t.addfile(info, io.BytesIO(value))
    return out.getvalue()


class NodeAPI:
    timeout = 120

    async def startNode(self):
        return await startedNode(self)



class AddTarTests(NodeAPI, TestCase):
    async def expected(self, entries):
        store = MemoryBlockStore()
        return unixfs.cidText((await unixfs.importDirectory(store, entries, reactor)).cid)

    def test_pythonTarfile(self):
        """
        A stream from Python's tarfile (GNU long names, a folder entry before
        its files, an empty folder): the folder's CID is the importer's over
        the same entries, each file's CID is listed, everything is pinned.
        """
        async def t():
            node = await self.startNode()
            long = "l" * 150 + ".txt"
            big = os.urandom(700_000)
            members = [("docs", None), ("docs/a.txt", b"alpha\n"), (f"docs/{long}", big),
                       ("empty", None), ("./top.bin", b"")]
            code, answer = await api(node, "add/tar", tarOf(members))
            self.assertEqual(code, 200, answer)
            self.assertEqual(answer["Hash"], await self.expected(
                [("docs", None), ("docs/a.txt", b"alpha\n"), (f"docs/{long}", big), ("empty", None),
                 ("top.bin", b"")]))
            names = [e["Name"] for e in answer["Entries"]]
            self.assertEqual(names, ["docs/a.txt", f"docs/{long}", "top.bin"])
            store = MemoryBlockStore()
            self.assertEqual(answer["Entries"][1]["Hash"],
                             unixfs.cidText((await unixfs.importFile(store, big, reactor)).cid))
            code, stat = await api(node, "repo/stat")
            self.assertEqual(stat["NumObjects"], stat["Pinned"])
            self.assertGreater(stat["NumObjects"], 4)
        return d(t())

    def test_gnuTar(self):
        """A folder packed by GNU tar imports as importPath imports the folder itself."""
        async def t():
            node = await self.startNode()
            _, before = await api(node, "repo/stat")
            top = Path(self.mktemp()).resolve() / "site"
            (top / "sub" / "deeper").mkdir(parents=True)
            (top / "index.html").write_bytes(b"<h1>hi</h1>\n")
            (top / "sub" / "data.bin").write_bytes(os.urandom(300_000))
            (top / "sub" / "\u00e9t\u00e9.txt").write_text("summer\n")
            packed = subprocess.run(["tar", "-C", str(top), "-cf", "-", "."],
                                    check=True, capture_output=True).stdout
            code, answer = await api(node, "add/tar", packed, pin="false")
            self.assertEqual(code, 200, answer)
            expected = await unixfs.importPath(MemoryBlockStore(), top, reactor)
            self.assertEqual(answer["Hash"], unixfs.cidText(expected.cid))
            self.assertEqual(sorted(e["Name"] for e in answer["Entries"]),
                             ["index.html", "sub/data.bin", "sub/\u00e9t\u00e9.txt"])
            code, stat = await api(node, "repo/stat")
            # pinned: what the node's services keep, nothing of the folder
            self.assertEqual(stat["Pinned"], before["Pinned"])
        return d(t())

    def test_refused(self):
        """
        Unsafe paths, links, cut or foreign streams and too many entries get
        a 400 that says why, and leave nothing in the store.
        """
        async def t():
            node = await self.startNode()
            _, before = await api(node, "repo/stat")
            good = tarOf([("a", b"x" * 600_000), ("b", b"y" * 600_000)])
            self.patch(controlStore, "MAX_DIRECTORY_ENTRIES", 3)
            for body, words in [
                (tarOf([("ok", b"1"), ("../escape", b"2")]), "refusing the path"),
                (tarOf([("/etc/passwd", b"2")]), "refusing the path"),
                (tarOf([("ok", b"1"), ("link", ("link", "/etc/passwd"))]), "only files and folders"),
                (good[: 512 + 300_000], "not a valid tar stream"),       # cut inside a file
                (b"PK\x03\x04" + os.urandom(2000), "not a valid tar stream"),
                (tarOf([(f"f{i}", b"%d" % i) for i in range(4)]), "more than 3 entries"),
            ]:
                code, answer = await api(node, "add/tar", body)
                self.assertEqual(code, 400, answer)
                self.assertIn(words, answer["Message"])
                code, stat = await api(node, "repo/stat")
                self.assertEqual(stat["NumObjects"], before["NumObjects"], words)
        return d(t())

    def test_corruptedStreams(self):
        """
        A valid stream with a few bytes changed (in its headers mostly), 60
        times over: 200 or 400 each time, never a failure of the node.
        """
        async def t():
            node = await self.startNode()
            base = tarOf([("dir", None), ("dir/f.txt", b"content " * 80), ("g", b"")])
            rng = random.Random(5)
            for _ in range(60):
                body = bytearray(base)
                for _ in range(rng.randint(1, 4)):
                    block = rng.choice([0, 512, 1536])      # the three headers
                    body[block + rng.randrange(512)] = rng.randrange(256)
                code, answer = await api(node, "add/tar", bytes(body))
                self.assertIn(code, (200, 400), answer)
            code, _ = await api(node, "id")
            self.assertEqual(code, 200)
        return d(t())


class _Unsized:
    """A body of unknown length: sent chunked."""

    def __init__(self, data):
        self._f = io.BytesIO(data)

    def read(self, n=-1):
        return self._f.read(n)

    def close(self):
        self._f.close()


class UploadSpoolTests(NodeAPI, TestCase):
    def test_bigBodiesSpoolInTheDataFolder(self):
        """
        A body of 100 kB or more waits in the node's data folder, not in the
        system's temporary folder (here made unusable), sized or chunked.
        """
        async def t():
            node = await self.startNode()
            self.patch(tempfile, "tempdir", str(Path(self.mktemp()) / "nowhere"))
            data = os.urandom(300_000)
            expected = unixfs.cidText((await unixfs.importFile(MemoryBlockStore(), data, reactor)).cid)
            code, answer = await api(node, "add", data)
            self.assertEqual((code, answer["Hash"]), (200, expected))
            code, answer = await api(node, "add", FileBodyProducer(_Unsized(data)))
            self.assertEqual((code, answer["Hash"]), (200, expected))
        return d(t())


class GetTests(NodeAPI, TestCase):
    async def answer(self, node, **args):
        url = f"http://127.0.0.1:{node.ports()['api']}/api/v0/get"
        response = await treq.post(url, params=args, persistent=False)
        return response.code, response.headers.getRawHeaders("content-type"), await response.content()

    def test_folderAsTar(self):
        """
        get answers a folder as a tar stream GNU tar unpacks into the same
        files, under a top folder named after the CID; a file alone is one
        entry named after its CID.
        """
        async def t():
            node = await self.startNode()
            top = Path(self.mktemp()).resolve() / "site"
            (top / "sub" / "empty").mkdir(parents=True)
            (top / "index.html").write_bytes(b"<h1>hi</h1>\n")
            (top / "sub" / "big.bin").write_bytes(os.urandom(700_000))
            (top / "sub" / ("n" * 120)).write_bytes(b"")
            store = node.store.blocks
            folder = unixfs.cidText((await unixfs.importPath(store, top, reactor)).cid)
            code, kind, body = await self.answer(node, arg=folder)
            self.assertEqual((code, kind), (200, ["application/x-tar"]))
            out = Path(self.mktemp()).resolve()
            out.mkdir()
            subprocess.run(["tar", "-x", "-C", str(out)], input=body, check=True)
            self.assertEqual(sorted(p.relative_to(out / folder).as_posix() for p in (out / folder).rglob("*")),
                             sorted(p.relative_to(top).as_posix() for p in top.rglob("*")))
            for p in top.rglob("*"):
                if p.is_file():
                    self.assertEqual((out / folder / p.relative_to(top)).read_bytes(), p.read_bytes())

            big = (top / "sub" / "big.bin").read_bytes()
            file = unixfs.cidText((await unixfs.importFile(store, big, reactor)).cid)
            code, _, body = await self.answer(node, arg=file)
            with tarfile.open(fileobj=io.BytesIO(body)) as archive:
                members = archive.getmembers()
                self.assertEqual([(m.name, m.size) for m in members], [(file, len(big))])
                self.assertEqual(archive.extractfile(members[0]).read(), big)
        return d(t())

    def test_unsafeNameCutsTheStream(self):
        """A directory naming an entry "..": the answer is cut short, never a full archive."""
        async def t():
            node = await self.startNode()
            store = node.store.blocks
            ok = await unixfs.importFile(store, b"fine", reactor)
            c, block, _ = unixfs.directoryNode({"a": ok, "..": ok})
            await store.put(c, block)
            url = f"http://127.0.0.1:{node.ports()['api']}/api/v0/get"
            response = await treq.post(url, params={"arg": unixfs.cidText(c)}, persistent=False)
            self.assertEqual(response.code, 200)     # the status went before the walk got there
            with self.assertRaises(Exception):
                await response.content()
        return d(t())
