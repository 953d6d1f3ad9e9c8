"""
Storing data through the C{tau} CLI against a running node: add, cat, get,
pin, repo gc and stat.
"""

import io
import os
import re
import tarfile
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tau.cli import UsageError
from tau.cli.store import _rename, _unpack
from tau.pb import unixfs_pb2
from tau.store import dagpb, unixfs
from tests.bitswap.fakes import MemoryBlockStore
from tests.processes import TAU, TWISTD, run, spawn, stopped

# helia's CID (ipfs-unixfs-importer defaults: CIDv1, raw leaves, 256 KiB
# chunks) of b"hello\n"
HELLO = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"


class NodeMixin:
    timeout = 180

    async def startNode(self):
        root = Path(self.mktemp()).resolve()
        node = spawn(reactor, TWISTD + ["-n", "--pidfile=", "taubyte", f"--root={root}", "--listen=/ip4/127.0.0.1/tcp/0"])
        self.addCleanup(stopped, node)
        await node.waitFor(b"reachable at")
        return root

    async def tau(self, root, *args):
        return await run(reactor, TAU + ["--root", str(root), *args])

    async def ok(self, root, *args):
        status, out, err = await self.tau(root, *args)
        self.assertEqual(status, 0, out + err)
        return out

    def folder(self):
        top = Path(self.mktemp()).resolve() / "site"
        (top / "sub").mkdir(parents=True)
        (top / "sub" / "a.txt").write_bytes(b"hello\n")
        (top / "big.bin").write_bytes(os.urandom(3_000_000))
        return top


class StoreCommandTests(NodeMixin, TestCase):
    async def test_addCatGetPinGC(self):
        root = await self.startNode()
        # the node's services keep their databases' first blocks
        before = re.search(r"NumObjects: (\d+)", await self.ok(root, "repo", "stat")).group(1)
        top = self.folder()
        out = await self.ok(root, "add", str(top / "sub" / "a.txt"))
        self.assertEqual(out.split(), ["added", HELLO, "a.txt"])
        status, out, err = await run(reactor, TAU + ["--root", str(root), "cat", HELLO])
        self.assertEqual(out, "hello\n")

        big = (await self.ok(root, "add", "-q", str(top / "big.bin"))).strip()
        self.assertTrue(big.startswith("bafybei"))
        target = Path(self.mktemp())
        await self.ok(root, "get", big, "-o", str(target))
        self.assertEqual(target.read_bytes(), (top / "big.bin").read_bytes())

        lines = (await self.ok(root, "add", str(top))).splitlines()
        self.assertEqual(len(lines), 3)
        folder = lines[-1].split()[1]
        self.assertEqual(lines[-1].split()[2], "site")
        copy = Path(self.mktemp())
        await self.ok(root, "get", folder, "-o", str(copy))
        self.assertEqual((copy / "sub" / "a.txt").read_bytes(), b"hello\n")
        self.assertEqual((copy / "big.bin").read_bytes(), (top / "big.bin").read_bytes())

        pins = (await self.ok(root, "pin", "ls")).split()
        self.assertEqual(sorted(pins), sorted({HELLO, big, folder}))
        stat = await self.ok(root, "repo", "stat")
        self.assertRegex(stat, r"NumObjects: \d+")
        for cid in (HELLO, big, folder):
            await self.ok(root, "pin", "rm", cid)
        out = await self.ok(root, "repo", "gc")
        self.assertRegex(out, r"removed [1-9]\d* blocks, freed 30\d{5} bytes")
        self.assertIn(f"NumObjects: {before}\n", await self.ok(root, "repo", "stat"))

    async def test_errors(self):
        root = await self.startNode()
        for args, words in [
            (("cat", "nonsense"), "is not a CID"),
            (("cat", HELLO, "--timeout", "1"), "not found"),
            (("pin", "rm", HELLO), "not pinned"),
            (("add", "/no/such/file"), "no such file"),
            (("get", HELLO, "-o", self.mktemp(), "--timeout", "1"), "not found"),
        ]:
            status, out, err = await self.tau(root, *args)
            self.assertNotEqual(status, 0)
            self.assertNotIn("Traceback", err)
            self.assertEqual(len(err.splitlines()), 1, err)
            self.assertTrue(err.startswith("tau: ") and words in err, err)


class TwoNodeTests(NodeMixin, TestCase):
    """
    Data added on one node is read on another, over Bitswap.
    """

    async def test_catAndGetFromAnotherNode(self):
        a, b = await self.startNode(), await self.startNode()
        top = self.folder()
        folder = (await self.ok(a, "add", "-q", str(top))).strip()
        address = (await self.ok(a, "id")).split()[1]
        await self.ok(b, "swarm", "connect", address)
        copy = Path(self.mktemp())
        await self.ok(b, "get", folder, "-o", str(copy), "--timeout", "30")
        self.assertEqual((copy / "big.bin").read_bytes(), (top / "big.bin").read_bytes())
        self.assertEqual((copy / "sub" / "a.txt").read_bytes(), b"hello\n")


class ShardedFolderTests(NodeMixin, TestCase):
    """
    A folder of thousands of files -- a HAMT-sharded directory -- through
    tau add, tau ls and tau get.
    """

    async def test_addListGet(self):
        root = await self.startNode()
        top = Path(self.mktemp()).resolve() / "many"
        (top / "sub").mkdir(parents=True)
        # 2500 links of 100 + 36 bytes: over the 256 KiB sharding threshold
        names = [f"{i:05d}-".ljust(100, "n") for i in range(2500)]
        for i, name in enumerate(names):
            (top / name).write_bytes(b"%d\n" % i * (i % 7))
        (top / "sub" / "x").write_bytes(b"x")
        folder = (await self.ok(root, "add", "-q", str(top))).strip()

        store = MemoryBlockStore()
        expected = await unixfs.importPath(store, top, reactor)
        self.assertEqual(folder, unixfs.cidText(expected.cid))
        _, data = dagpb.decodeNode(store.blocks[expected.cid.multihash])
        self.assertEqual(unixfs_pb2.Data.FromString(data).Type, unixfs_pb2.Data.HAMTShard)

        listing = (await self.ok(root, "ls", folder)).splitlines()
        self.assertEqual(sorted(line.split(" ", 2)[2] for line in listing), sorted(names + ["sub"]))
        copy = Path(self.mktemp())
        await self.ok(root, "get", folder, "-o", str(copy))
        self.assertEqual(sorted(p.name for p in copy.iterdir()), sorted(names + ["sub"]))
        for i, name in enumerate(names):
            self.assertEqual((copy / name).read_bytes(), b"%d\n" % i * (i % 7), name)
        self.assertEqual((copy / "sub" / "x").read_bytes(), b"x")


class UnpackTests(SynchronousTestCase):
    """What tau get does with the tar stream a node answers."""

    def tar(self, members):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as t:
            for name, data in members:
                info = tarfile.TarInfo(name)
                if data is None:
                    info.type = tarfile.DIRTYPE
                    t.addfile(info)
                else:
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
        return io.BytesIO(out.getvalue())

    def unpack(self, members, target):
        part = target.with_name(target.name + ".part")
        _unpack(self.tar(members), part)
        _rename(part, target)

    def test_folder(self):
        target = Path(self.mktemp())
        self.unpack([("bafyx", None), ("bafyx/a", b"A"), ("bafyx/s/b", b"B")], target)
        self.assertEqual((target / "a").read_bytes(), b"A")
        self.assertEqual((target / "s" / "b").read_bytes(), b"B")
        self.assertFalse(target.with_name(target.name + ".part").exists())

    def test_refused(self):
        """Paths out of the top entry, other top entries and links: refused, nothing left outside."""
        base = Path(self.mktemp())
        base.mkdir()
        for members in ([("bafyx", None), ("bafyx/../evil", b"x")],
                        [("bafyx", None), ("other/evil", b"x")],
                        [("bafyx", None), ("bafyx//evil", b"x")]):
            with self.assertRaises(UsageError):
                _unpack(self.tar(members), base / "out.part")
            self.assertFalse((base / "evil").exists())
            self.assertFalse((base / "out").exists())
        link = io.BytesIO()
        with tarfile.open(fileobj=link, mode="w") as t:
            info = tarfile.TarInfo("bafyx")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            t.addfile(info)
        with self.assertRaises(UsageError):
            _unpack(io.BytesIO(link.getvalue()), base / "out.part")
        self.assertFalse((base / "out").exists())

    def test_existingFolder(self):
        target = Path(self.mktemp())
        target.mkdir()
        with self.assertRaises(UsageError) as e:
            self.unpack([("bafyx", None), ("bafyx/a", b"A")], target)
        self.assertIn("exists already", str(e.exception))
