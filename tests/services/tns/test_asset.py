"""
tns/asset and C{tau project asset}: a resource's build (a WASM file, a
website folder) added to a node's store and its CID published at the
resource's asset key, on a cloud of nodes in this process.
"""

import json
import os
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tau.control import tns
from tau.control.client import ControlError, call
from tau.project.indexes import assetKey
from tau.store.unixfs import cidText
from tests.cloud import Cloud, until
from tests.processes import TAU, run
from tests.project.helpers import PROJECT_ID
from tests.services.tns.helpers import GET_ITEMS, SITE

WASM = b"\0asm\1\0\0\0" + os.urandom(300_000)   # more than one chunk


def website(root):
    """
    A website build folder: an index, a page in a sub-folder, an empty folder.
    """
    root = Path(root).resolve()
    (root / "docs").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "index.html").write_bytes(b"<h1>home</h1>")
    (root / "docs" / "page.html").write_bytes(b"<p>a page</p>")
    return root


class AssetTests(TestCase):
    timeout = 120

    async def setUp(self):
        # node 0 runs tns (local calls); node 1 reaches it over the network,
        # trusted as a node of the cloud
        self.cloud = await Cloud(self).start(["tns", "auth"])
        self.tnsNode, self.other = self.cloud.nodes

    async def asset(self, node, *args, branch=None):
        params = [("arg", a) for a in args] + ([("branch", branch)] if branch else [])
        return await call(reactor, node.config, "tns/asset", params)

    async def published(self, node, key, cid):
        async def there():
            return await node.tnsClient.fetch(key) == cid
        await until(there, f"{cid} at /{'/'.join(key)}", limit=30)

    async def test_fileOnTheTNSNode(self):
        """
        A file is one UnixFS file, pinned on the node; its CID is at the
        function's asset key for the branch, which the node's tns client
        reads back.
        """
        path = Path(self.mktemp()).resolve()
        path.write_bytes(WASM)
        answer = await self.asset(self.tnsNode, PROJECT_ID, GET_ITEMS, str(path), branch="dev")
        key = assetKey(PROJECT_ID, GET_ITEMS, "dev")
        self.assertEqual((answer["Project"], answer["Resource"], answer["Branch"], answer["Key"]),
                         (PROJECT_ID, GET_ITEMS, "dev", "/" + "/".join(key)))
        cid = answer["Hash"]
        expected = await self.other.content.add(WASM, pin=False)
        self.assertEqual(cid, cidText(expected.cid))
        self.assertEqual(await self.tnsNode.tnsClient.fetch(key), cid)
        self.assertIn(cid, [cidText(c) for c in await self.tnsNode.content.pins()])
        self.assertIsNone(await self.tnsNode.tnsClient.fetch(assetKey(PROJECT_ID, GET_ITEMS, "main")))

    async def test_folderFromAnotherNode(self):
        """
        A folder is one UnixFS directory, added on the node asked (not a
        tns node): tns takes its push because it is a node of the cloud,
        and the tns node fetches the folder from it (it was provided).
        """
        folder = website(self.mktemp())
        answer = await self.asset(self.other, PROJECT_ID, SITE, str(folder))
        cid = answer["Hash"]
        self.assertEqual(answer["Branch"], "main")
        await self.published(self.tnsNode, assetKey(PROJECT_ID, SITE, "main"), cid)
        self.assertIn(cid, [cidText(c) for c in await self.other.content.pins()])
        listed = await self.tnsNode.content.ls(cid, timeout=20)
        self.assertEqual(sorted(name for name, _, _ in listed), ["docs", "empty", "index.html"])
        [docs] = [child for name, child, _ in listed if name == "docs"]
        [(_, page, _)] = await self.tnsNode.content.ls(docs, timeout=20)
        chunks = await self.tnsNode.content.cat(page, timeout=20)
        self.assertEqual(b"".join([c async for c in chunks]), b"<p>a page</p>")

    async def test_badArguments(self):
        """
        A missing path, a wrong number of arguments and an id that is not
        one are refused with their reason; nothing is published.
        """
        cases = [
            ((PROJECT_ID, SITE, os.path.abspath(self.mktemp())), "no such file or folder"),
            ((PROJECT_ID, SITE, "relative/path"), "relative/path: expected an absolute path"),
            ((PROJECT_ID, SITE), "takes 3 arguments (project, resource, path), found 2"),
            (("", SITE, "/"), "project: expected an id of 1 to 256 characters"),
            ((PROJECT_ID, "a/b", "/"), "resource: expected an id"),
            ((PROJECT_ID, "x" * 257, "/"), "resource: expected an id of 1 to 256"),
        ]
        for args, reason in cases:
            with self.assertRaises(ControlError) as e:
                await self.asset(self.tnsNode, *args)
            self.assertIn(reason, str(e.exception))
        self.assertEqual(await self.tnsNode.tnsClient.lookup(["assets"]), [])

    async def test_entriesAtLimit(self):
        """
        A folder of exactly L{MAX_ASSET_ENTRIES} files and empty folders is
        added; one more entry is refused, and nothing is published.
        """
        self.patch(tns, "MAX_ASSET_ENTRIES", 3)
        folder = website(self.mktemp())   # index.html, docs/page.html, empty
        await self.asset(self.tnsNode, PROJECT_ID, SITE, str(folder))
        (folder / "docs" / "more.html").write_bytes(b"one too many")
        with self.assertRaises(ControlError) as e:
            await self.asset(self.tnsNode, PROJECT_ID, SITE, str(folder), branch="dev")
        self.assertIn("more than 3 files and empty folders", str(e.exception))
        self.assertIsNone(await self.tnsNode.tnsClient.fetch(assetKey(PROJECT_ID, SITE, "dev")))

    async def test_idAtLimit(self):
        """
        An id of exactly 256 characters is taken.
        """
        path = Path(self.mktemp()).resolve()
        path.write_bytes(b"x")
        answer = await self.asset(self.tnsNode, PROJECT_ID, "r" * 256, str(path))
        self.assertEqual(await self.tnsNode.tnsClient.fetch(assetKey(PROJECT_ID, "r" * 256, "main")), answer["Hash"])

    async def test_cli(self):
        """
        C{tau project asset PROJECT RESOURCE PATH [--branch B]} (a real
        process) publishes through the node and says what; a path that
        does not exist is refused before the node is asked.
        """
        folder = website(self.mktemp())
        root = str(self.cloud.roots[1])
        argv = TAU + ["--root", root, "--shape", self.cloud.shapeName(1), "project", "asset"]
        status, out, err = await run(reactor, argv + [PROJECT_ID, SITE, str(folder), "--branch", "dev"])
        self.assertEqual(status, 0, out + err)
        key = assetKey(PROJECT_ID, SITE, "dev")
        cid = (await self.other.content.addFolder([("docs/page.html", b"<p>a page</p>"), ("empty", None),
                                                   ("index.html", b"<h1>home</h1>")], pin=False)).cid
        self.assertEqual(out, f"published {cidText(cid)} as {SITE} of {PROJECT_ID} dev (/{'/'.join(key)})\n")
        await self.published(self.tnsNode, key, cidText(cid))
        status, out, err = await run(reactor, argv + [PROJECT_ID, SITE, str(folder / "nothing")])
        self.assertEqual((status, out), (1, ""))
        self.assertIn("nothing: no such file or folder", err)
        status, out, err = await run(reactor, TAU + ["--root", root, "--shape", self.cloud.shapeName(1),
                                                     "tns", "fetch", "/".join(key)])
        self.assertEqual(json.loads(out), cidText(cid))
