"""
The in-memory kvdb of the services' tests takes what the real one takes.
"""

import inspect

from twisted.trial.unittest import TestCase

from tau.kvdb.service import KVDBService
from tests.kvdb.fake import FakeKVDB


class FakeKVDBTests(TestCase):
    def test_sameSignatures(self):
        for name in ("open", "get", "list", "put", "delete", "write"):
            self.assertEqual(inspect.signature(getattr(FakeKVDB, name)), inspect.signature(getattr(KVDBService, name)),
                             name)

    async def test_behaviour(self):
        kvdb = FakeKVDB()
        await kvdb.open("d")
        await kvdb.put("d", b"/a/1", b"x")
        await kvdb.put("d", "/a/2", b"y")
        await kvdb.put("d", b"/b", b"z")
        self.assertEqual(await kvdb.list("d", b"/a/"), [b"/a/1", b"/a/2"])
        self.assertEqual(await kvdb.list("d", "/a/", 1, True), [(b"/a/1", b"x")])
        await kvdb.delete("d", b"/a/1")
        self.assertIsNone(await kvdb.get("d", b"/a/1"))
        self.assertEqual(await kvdb.get("d", "/b"), b"z")
