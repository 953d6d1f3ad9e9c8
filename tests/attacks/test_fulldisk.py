"""
A full disk, against a real node process: its root on a small tmpfs.

 - request bodies are checked before a byte is spooled: a 100 MiB body
   from a web page, to a command that takes none, or bigger than the free
   space is refused at once, and nothing of it is spooled;
 - every disk-full path is answered as store full (507): a small add, a
   spooled add, a chunked add, a kv/put; reads still work;
 - gc frees a full disk (it writes nothing before it deletes), and an
   unpin works on a full disk (the store's spare room), so a user can
   always get space back;
 - a node stopped and started again on a disk full to the last byte
   starts (SQLite cannot open its WAL there: the spare room), serves what
   it holds and frees space.

Needs root to mount the tmpfs (CI runs as root); fails without it.  The
tmpfs is unmounted when the test ends, passed or failed.
"""

import io
import json
import os
from pathlib import Path
from types import SimpleNamespace

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.trial.unittest import TestCase
from twisted.web.client import FileBodyProducer

from tau.control.client import readAPIAddress
from tau.diskfull import freeBytes
from tests.processes import TWISTD, run, spawn, stopped

MiB = 1 << 20
DISK = 32 * MiB


def d(coroutine):
    return Deferred.fromCoroutine(coroutine)


class _Chunked:
    """A body of unknown length (sent chunked)."""

    def __init__(self, data):
        self._f = io.BytesIO(data)

    def read(self, n=-1):
        return self._f.read(n)

    def close(self):
        self._f.close()


class FullDiskNode:
    """A node process whose root is a tmpfs of DISK bytes."""

    timeout = 180

    async def mountDisk(self):
        if os.geteuid() != 0:
            self.fail("needs root to mount a small tmpfs as the node's disk (CI runs as root)")
        path = Path(self.mktemp()).resolve()
        path.mkdir(parents=True)
        status, _, err = await run(reactor, ["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(path)], timeout=30)
        if status != 0:
            self.fail(f"cannot mount a tmpfs at {path}: {err.strip()}")
        self.addCleanup(lambda: d(run(reactor, ["umount", "-l", str(path)], timeout=30)))
        return path

    async def startNode(self):
        if getattr(self, "root", None) is None:
            self.root = await self.mountDisk()
        self.node = spawn(reactor, TWISTD + ["-n", "--pidfile=", "taubyte", f"--root={self.root}",
                                             "--listen=/ip4/127.0.0.1/tcp/0"])
        self.addCleanup(stopped, self.node)
        await self.node.waitFor(b"reachable at", timeout=60)
        addr = readAPIAddress(SimpleNamespace(apiFile=self.root / "storage" / "full" / "api", shape="full", root=self.root))
        self.base = f"http://127.0.0.1:{addr.value_for_protocol('tcp')}/api/v0/"

    async def stopNode(self):
        self.node.kill()
        self.assertEqual(await self.node.ended(), 0, self.node.output()[-3000:])

    async def post(self, command, body=None, headers=None, **args):
        response = await treq.post(self.base + command, params=args, data=body, headers=headers,
                                   persistent=False, timeout=60)
        text = await response.content()
        try:
            return response.code, json.loads(text)
        except ValueError:
            return response.code, text

    def fill(self):
        """Take every free byte of the node's disk; a cleanup gives them back."""
        path = self.root / "filler"
        with open(path, "ab", buffering=0) as f:
            for size in (MiB, 4096, 512, 1):
                for _ in range(DISK // size + 1):
                    try:
                        f.write(b"\xff" * size)
                    except OSError:
                        break
        self.addCleanup(lambda: path.unlink(missing_ok=True))
        return path

    def assertStoreFull(self, answer, command):
        code, body = answer
        self.assertEqual(code, 507, f"{command}: {body}\n{self.node.output()[-3000:]}")
        self.assertIn("the disk is full", body["Message"])


class BodyChecksTests(FullDiskNode, TestCase):
    def test_bodiesRefusedBeforeSpooled(self):
        """
        A 100 MiB body (three times the disk) from a web page, to a command
        that takes no body, or to add when it is bigger than the free space,
        is refused at once (403, 400, 507): the disk's free space, watched
        every 5 ms while it is sent, never drops by a MiB (nothing spooled).
        """
        async def t():
            await self.startNode()
            big = Path(self.mktemp())
            with open(big, "wb") as f:
                f.truncate(100 * MiB)   # sparse, on the test machine's disk
            before = freeBytes(self.root)
            lowest = [before]
            watch = LoopingCall(lambda: lowest.append(min(lowest[0], freeBytes(self.root))))
            watch.start(0.005)
            try:
                for command, headers, status in [
                    ("add", {"Origin": ["http://evil.example"]}, 403),
                    ("repo/gc", None, 400),
                    ("add", None, 507),
                ]:
                    with open(big, "rb") as f:
                        producer = FileBodyProducer(f)
                        code, body = await self.post(command, producer, headers)
                        producer.stopProducing()   # the answer came: send no more
                    self.assertEqual(code, status, body)
            finally:
                watch.stop()
            self.assertGreater(min(lowest), before - MiB)
            self.assertEqual((await self.post("id"))[0], 200)
        return d(t())


class StoreFullTests(FullDiskNode, TestCase):
    def test_everyFullPathIsStoreFull(self):
        """
        On a full disk: a small add, a spooled add, a chunked add and a
        kv/put are answered 507 (store full); reads still work; once room
        is back, add works and what was stored before is intact.
        """
        async def t():
            await self.startNode()
            kept = os.urandom(300_000)
            code, added = await self.post("add", kept)
            self.assertEqual(code, 200, added)
            filler = self.fill()
            self.assertStoreFull(await self.post("add", os.urandom(50_000)), "add (small)")
            self.assertStoreFull(await self.post("add", os.urandom(200_000)), "add (spooled)")
            self.assertStoreFull(await self.post("add", FileBodyProducer(_Chunked(os.urandom(300_000)))), "add (chunked)")
            self.assertStoreFull(await self.post("kv/put", os.urandom(1000), arg=["db", "key"]), "kv/put")
            code, pins = await self.post("pin/ls")
            self.assertEqual((code, pins["Keys"]), (200, [added["Hash"]]))
            self.assertEqual((await self.post("cat", arg=added["Hash"]))[1], kept)
            filler.unlink()
            code, body = await self.post("add", os.urandom(200_000))
            self.assertEqual(code, 200, body)
            self.assertEqual((await self.post("cat", arg=added["Hash"]))[1], kept)
        return d(t())


class CollectOnAFullDiskTests(FullDiskNode, TestCase):
    def test_gcAndUnpinFreeAFullDisk(self):
        """
        A disk filled to the last byte: repo/gc removes every unpinned
        block (files first, nothing written before); pin/rm of a pinned
        file works (the store's spare room) and the next gc frees it; a
        pinned file stays intact throughout.
        """
        async def t():
            await self.startNode()
            unpinned = [os.urandom(2 * MiB) for _ in range(3)]
            for data in unpinned:
                code, body = await self.post("add", data, pin="false")
                self.assertEqual(code, 200, body)
                self.assertEqual((await self.post("cat", arg=body["Hash"]))[1], data)
            pinned = os.urandom(MiB)
            code, kept = await self.post("add", pinned)
            self.assertEqual(code, 200, kept)
            code, dropped = await self.post("add", os.urandom(MiB))
            self.assertEqual(code, 200, dropped)

            self.fill()
            self.assertStoreFull(await self.post("add", os.urandom(50_000)), "add")
            code, body = await self.post("repo/gc")
            self.assertEqual(code, 200, f"{body}\n{self.node.output()[-3000:]}")
            self.assertGreaterEqual(body["Freed"], 6 * MiB)
            self.assertEqual((await self.post("cat", arg=kept["Hash"]))[1], pinned)

            self.fill()
            code, body = await self.post("pin/rm", arg=dropped["Hash"])
            self.assertEqual(code, 200, f"{body}\n{self.node.output()[-3000:]}")
            code, body = await self.post("repo/gc")
            self.assertEqual(code, 200, body)
            self.assertTrue(MiB < body["Freed"] < MiB + 4096, body)   # its leaves and its root
            self.assertEqual((await self.post("cat", arg=kept["Hash"]))[1], pinned)
            code, pins = await self.post("pin/ls")
            self.assertEqual(pins["Keys"], [kept["Hash"]])
        return d(t())


class RestartOnAFullDiskTests(FullDiskNode, TestCase):
    def test_restartOnAFullDisk(self):
        """
        A node stopped, its disk filled to the last byte, started again:
        it starts (on its spare room), its pinned file is intact; filled
        again, an add is answered 507 and repo/gc frees the unpinned data.
        """
        async def t():
            await self.startNode()
            pinned = os.urandom(MiB)
            code, kept = await self.post("add", pinned)
            self.assertEqual(code, 200, kept)
            code, body = await self.post("add", os.urandom(3 * MiB), pin="false")
            self.assertEqual(code, 200, body)
            await self.stopNode()
            self.fill()
            await self.startNode()
            self.assertEqual((await self.post("cat", arg=kept["Hash"]))[1], pinned)
            self.fill()   # the spare room it gave back to start, too
            self.assertStoreFull(await self.post("add", os.urandom(50_000)), "add")
            code, body = await self.post("repo/gc")
            self.assertEqual(code, 200, f"{body}\n{self.node.output()[-3000:]}")
            self.assertGreaterEqual(body["Freed"], 3 * MiB)
            code, body = await self.post("add", os.urandom(50_000))
            self.assertEqual(code, 200, body)
        return d(t())
