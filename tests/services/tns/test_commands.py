"""
tns's commands as the spec sheet gives them, on a fake kvdb: what a push
stores and announces, what fetch, lookup, list and stats answer, and
every limit at its edge.
"""

import cbor2
from twisted.trial.unittest import TestCase

from tau.project import compileProject
from tau.services.commands import RemoteError
from tau.services.tns.paths import decodeValue, encodeValue, updatesTopic
from tau.services.tns.client import TNSClient
from tests.project.helpers import PROJECT_ID
from tests.services.tns.helpers import GET_ITEMS, calls, makeCommands, shopProject


def failed(name, why):
    return f'router: executing command "{name}" failed: {why}'


class CommandTestCase(TestCase):
    maxKeys = 100_000

    def setUp(self):
        self.commands, self.kvdb, self.pubsub = makeCommands(maxKeys=self.maxKeys)
        self.calls = calls(self.commands)

    def call(self, name, body):
        return self.calls.call(name, body)

    async def failure(self, name, body):
        try:
            await self.call(name, body)
        except RemoteError as e:
            return str(e)
        self.fail(f"{name} {body!r} succeeded")

    async def publish(self, commit="c0ffee", root=None):
        compiled = compileProject(root or shopProject(self.mktemp()))
        client = TNSClient(None, None, None, None, calls=self.calls)
        await client.publish(compiled, commit)
        return compiled


class PushTests(CommandTestCase):
    async def test_publish(self):
        """
        Taubyte's three pushes store the object under the commit, the
        indexes at the root and the branch's current pointer, one key per
        leaf, each value the cbor multicodec and its CBOR.
        """
        compiled = await self.publish()
        stored = self.kvdb.stored["tns@service:tns"]
        self.assertEqual(stored[f"/tns/v1/projects/{PROJECT_ID}/branches/main/current/current".encode()],
                         b"\x51" + cbor2.dumps("c0ffee"))
        self.assertEqual(decodeValue(stored[f"/tns/v1/branches/main/commit/c0ffee/projects/{PROJECT_ID}/functions/"
                                            f"{GET_ITEMS}/method".encode()]), "GET")
        self.assertIn(f"branches/main/projects/{PROJECT_ID}/functions/{GET_ITEMS}",
                      decodeValue(stored[b"/tns/v1/http/functions/com/example/api/links"]))
        self.assertEqual(await self.call("fetch", {"path": ["branches", "main", "commit", "c0ffee", "projects",
                                                             PROJECT_ID]}), {"object": compiled.object})

    async def test_pointerLast(self):
        """
        The current pointer is written after every key of the config it
        names: the last write holds it alone.
        """
        written = []
        write = self.kvdb.write

        async def recording(db, entries, replicas=1, timeout=30.0):
            written.append([k for k, _ in entries])
            return await write(db, entries, replicas, timeout)

        self.kvdb.write = recording
        await self.publish()
        self.assertEqual(written[-1], [f"/tns/v1/projects/{PROJECT_ID}/branches/main/current/current".encode()])
        self.assertEqual(len(written), 3)

    async def test_announced(self):
        """
        A stored push is announced on its updates topic, and on the topic
        of every key it wrote (so a cached index is dropped too).
        """
        await self.publish()
        topics = [t for t, _ in self.pubsub.published]
        self.assertIn(f"/tns/updates/projects/{PROJECT_ID}/branches/main", topics)
        self.assertIn("/tns/updates/http/functions/com/example", topics)
        self.assertIn("/tns/updates/branches/main/commit/c0ffee", topics)
        self.assertEqual({d for _, d in self.pubsub.published}, {b""})

    async def test_placeholderKept(self):
        """
        A null (a domain's placeholder) is set only where nothing is.
        """
        await self.call("push", {"path": ["domains", "com", "example", "api", "links"], "data": ["x"]})
        await self.call("push", {"path": ["domains", "com", "example", "api", "links"], "data": None})
        self.assertEqual(await self.call("fetch", {"path": ["domains", "com", "example", "api", "links"]}),
                         {"object": ["x"]})

    async def test_refusedWhole(self):
        """
        A push with one key tns does not store stores nothing.
        """
        before = self.kvdb.snapshot()
        for data, why in [
            ({"a": 1, "b": {"..": 2}}, "path segment '..' would escape its key (a /, . or .. or a control character)"),
            ({"a": 1, "b//c": 2}, "a path segment is non-empty text, found ''"),
            ({"a": 1, "x" * 257: 2}, "a path segment is at most 256 characters"),
        ]:
            self.assertEqual(await self.failure("push", {"path": ["p"], "data": data}), failed("push", why))
        self.assertEqual(await self.failure("push", {"data": 1}),
                         failed("push", "path: expected a list of text segments"))
        self.assertEqual(await self.failure("push", {"path": [], "data": 1}),
                         failed("push", "a push at the root is a map of keys"))
        self.assertEqual(self.kvdb.snapshot(), before)

    async def test_segmentLengthEdge(self):
        await self.call("push", {"path": ["p"], "data": {"x" * 256: 1}})
        self.assertEqual(await self.call("fetch", {"path": ["p", "x" * 256]}), {"object": 1})

    async def test_depthEdge(self):
        await self.call("push", {"path": ["s"] * 64, "data": 1})
        self.assertEqual(await self.failure("push", {"path": ["s"] * 65, "data": 1}),
                         failed("push", "path: at most 64 segments"))
        self.assertEqual(await self.failure("push", {"path": ["s"] * 64, "data": {"t": 1}}),
                         failed("push", "path: at most 64 segments"))


class MaxKeysTests(CommandTestCase):
    maxKeys = 5

    async def test_pushEdge(self):
        """
        A push of exactly max-keys leaves is stored, one more is refused.
        """
        await self.call("push", {"path": ["a"], "data": {str(i): i for i in range(5)}})
        before = self.kvdb.snapshot()
        self.assertEqual(await self.failure("push", {"path": ["b"], "data": {str(i): i for i in range(6)}}),
                         failed("push", "data: 6 keys, limit 5"))
        self.assertEqual(self.kvdb.snapshot(), before)

    async def test_fetchEdge(self):
        """
        A fetch reading exactly max-keys keys answers, one more is refused.
        """
        await self.call("push", {"path": ["a"], "data": {str(i): i for i in range(5)}})
        self.assertEqual(len((await self.call("fetch", {"path": ["a"]}))["object"]), 5)
        await self.call("push", {"path": ["a"], "data": {"5": 5}})
        self.assertEqual(await self.failure("fetch", {"path": ["a"]}), failed("fetch", "more than 5 keys under /a"))


class ReadTests(CommandTestCase):
    async def setUp(self):
        super().setUp()
        await self.call("push", {"path": ["t"], "data": {"a": {"x": 1, "y": [1, 2]}, "b": "leaf", "c": None,
                                                         "ab": {"z": b"\x00"}}})

    async def test_fetch(self):
        """
        Null when absent, the value bare for one leaf, else the map (null
        leaves dropped); a path is a whole segment (C{a} is not C{ab}).
        """
        self.assertEqual(await self.call("fetch", {"path": ["t", "nope"]}), {"object": None})
        self.assertEqual(await self.call("fetch", {"path": ["t", "b"]}), {"object": "leaf"})
        self.assertEqual(await self.call("fetch", {"path": ["t", "a"]}), {"object": {"x": 1, "y": [1, 2]}})
        self.assertEqual(await self.call("fetch", {"path": ["t", "c"]}), {"object": None})
        self.assertEqual(await self.call("fetch", {"path": ["t", "ab"]}), {"object": b"\x00"})
        self.assertEqual(await self.failure("fetch", {"path": "t/a"}),
                         failed("fetch", "path: expected a list of text segments"))

    async def test_siblingsSortedFirst(self):
        """
        Keys beside the path that sort before its children (C{a-x} before
        C{a/}) neither hide them nor count against the limit.
        """
        await self.call("push", {"path": ["s"], "data": {f"a-{i}": i for i in range(10)}})
        await self.call("push", {"path": ["s", "a"], "data": {"k": 1}})
        self.commands.maxKeys = 1
        self.assertEqual(await self.call("fetch", {"path": ["s", "a"]}), {"object": 1})
        self.assertEqual(await self.call("lookup", {"prefix": ["s", "a"], "regex": False}), {"keys": ["/s/a/k"]})

    async def test_lookup(self):
        self.assertEqual(await self.call("lookup", {"prefix": ["t", "a"], "regex": False}),
                         {"keys": ["/t/a/x", "/t/a/y"]})
        self.assertEqual(await self.call("lookup", {"prefix": ["t", "a[b]?", "[xz]"], "regex": True}),
                         {"keys": ["/t/a/x", "/t/ab/z"]})
        self.assertEqual(await self.call("lookup", {"prefix": ["nothing"], "regex": False}), {"keys": []})

    async def test_lookupRegexGuard(self):
        """
        What could backtrack for long is refused; RE2's syntax is what is
        accepted.
        """
        for prefix, why in [
            (["(a+)+b"], "prefix: a repeat inside a repeat is not supported"),
            (["(a)\\1"], "prefix: back-references and lookarounds are not supported (RE2 has none)"),
            (["(?=a)"], "prefix: back-references and lookarounds are not supported (RE2 has none)"),
            (["a*"] * 9, "prefix: at most 8 repeats"),
            (["x" * 505], "prefix: a regex of at most 512 characters"),
        ]:
            self.assertEqual(await self.failure("lookup", {"prefix": prefix, "regex": True}), failed("lookup", why))
        await self.call("lookup", {"prefix": ["a*"] * 8, "regex": True})
        await self.call("lookup", {"prefix": ["x" * 504], "regex": True})

    async def test_list(self):
        self.assertEqual(await self.call("list", {"depth": 2}),
                         {"keys": [["t"], ["t", "a"], ["t", "ab"], ["t", "b"], ["t", "c"]]})
        self.assertEqual(await self.call("list", {"depth": 0}), {"keys": []})
        self.assertEqual(await self.failure("list", {"depth": "2"}), failed("list", "depth: expected an integer"))

    async def test_stats(self):
        stats = cbor2.loads((await self.call("stats", {"action": "db"}))["stats"])
        self.assertEqual(stats, {1: [b"head-1"], 2: 1, 3: 0})
        self.assertEqual(await self.failure("stats", {"action": "x"}), failed("stats", "stats action `x` not recognized"))


class TopicTests(TestCase):
    def test_updatesTopic(self):
        """
        Taubyte's GetChannelFor: the first segment for one, at most four
        and at most all but the last for more, none for the root.
        """
        self.assertIsNone(updatesTopic([]))
        self.assertEqual(updatesTopic(["a"]), "/tns/updates/a")
        self.assertEqual(updatesTopic(["a", "b"]), "/tns/updates/a")
        self.assertEqual(updatesTopic(["a", "b", "c", "d", "e", "f"]), "/tns/updates/a/b/c/d")
        self.assertEqual(updatesTopic(["a", "b", "c", "d"]), "/tns/updates/a/b/c")

    def test_value(self):
        self.assertEqual(encodeValue({"a": 1}), bytes.fromhex("51a1616101"))
