"""
The tns client: lookups by project, by resource id and by host, path and
method (Taubyte's matching rules), and its cache, dropped on the
C{/tns/updates/...} message a push sends.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from tau.project import compileProject
from tau.services.tns.client import TNSClient
from tau.project.lookups import functionScore, hostKey, websiteScore
from tau.services.tns.paths import PathError
from tests.project.helpers import APP_ID, PROJECT_ID
from tests.services.tns.helpers import DATABASE, GET_ITEMS, POST_ITEMS, SITE, calls, makeCommands, shopProject


class Counting:
    """
    Calls that count the fetches sent.
    """

    def __init__(self, calls):
        self.inner = calls
        self.fetches = 0

    async def peers(self):
        return await self.inner.peers()

    async def call(self, name, body=None, *, peers=None):
        self.fetches += name == "fetch"
        return await self.inner.call(name, body, peers=peers)


class ClientTestCase(TestCase):
    async def setUp(self):
        self.commands, self.kvdb, self.pubsub = makeCommands()
        self.clock = Clock()
        self.calls = Counting(calls(self.commands))
        self.client = TNSClient(None, self.pubsub, None, self.clock, calls=self.calls)
        self.addCleanup(self.client.close)
        self.compiled = compileProject(shopProject(self.mktemp()))
        await self.client.publish(self.compiled, "c1")


class LookupTests(ClientTestCase):
    async def test_project(self):
        found = await self.client.project(PROJECT_ID)
        self.assertEqual((found["commit"], found["object"]), ("c1", self.compiled.object))
        self.assertIsNone(await self.client.project(PROJECT_ID, "dev"))
        self.assertIsNone(await self.client.project("QmNothing"))

    async def test_resource(self):
        found = await self.client.resource(PROJECT_ID, DATABASE)
        self.assertEqual((found["application"], found["group"], found["config"]["match"]), (APP_ID, "databases", "carts"))
        found = await self.client.resource(PROJECT_ID, GET_ITEMS)
        self.assertEqual((found["application"], found["group"]), (None, "functions"))
        self.assertIsNone(await self.client.resource(PROJECT_ID, "QmNothing"))

    async def test_http(self):
        """
        Functions by method (the config's, upper-cased) and equal path;
        websites by their paths, the longest one the request is under, C{/}
        the weakest; host case and port do not matter.
        """
        cases = [
            ("api.example.com", "/items", "GET", GET_ITEMS),
            ("API.Example.com:443", "/items", "get", GET_ITEMS),
            ("api.example.com", "/items", "POST", POST_ITEMS),
            ("api.example.com", "/docs", "GET", SITE),
            ("api.example.com", "/docs/a/b", "HEAD", SITE),
            ("api.example.com", "/anything", "GET", SITE),
            ("api.example.com", "/items", "PUT", None),
            ("api.example.com", "/items/x", "POST", None),
            ("other.example.com", "/items", "GET", None),
        ]
        for host, path, method, expected in cases:
            found = await self.client.http(host, path, method)
            self.assertEqual(found and found["id"], expected, (host, path, method))
        found = await self.client.http("api.example.com", "/items", "GET")
        self.assertEqual((found["kind"], found["project"], found["commit"]), ("function", PROJECT_ID, "c1"))

    def test_scores(self):
        site = {"paths": ["/", "/docs", "/docs/api"]}
        self.assertEqual(websiteScore(site, "/docs", "GET"), 256)
        self.assertEqual(websiteScore(site, "/docs/api/x", ""), len("/docs/api") + 1)
        self.assertEqual(websiteScore(site, "/docsx", "GET"), 1)
        self.assertEqual(websiteScore(site, "/docs", "POST"), 0)
        self.assertEqual(functionScore({"method": "get", "paths": ["/a"]}, "/a", "GET"), 256)
        self.assertEqual(functionScore({"method": "GET", "paths": ["/a"]}, "/a/", "GET"), 0)
        self.assertEqual(hostKey("[::1]:80"), ["::1"])
        self.assertEqual(hostKey("A.b.C."), ["c", "b", "a"])

    async def test_newCommitServed(self):
        """
        Publishing another commit moves the pointer: lookups answer from it
        at once (the cached pointer was dropped by the push's message).
        """
        self.assertEqual((await self.client.http("api.example.com", "/items", "GET"))["commit"], "c1")
        await self.client.publish(self.compiled, "c2")
        self.assertEqual((await self.client.http("api.example.com", "/items", "GET"))["commit"], "c2")


class CacheTests(ClientTestCase):
    async def test_cached(self):
        """
        A second lookup is answered from the cache; the pubsub message of a
        push drops what it covers, and only that.
        """
        await self.client.http("api.example.com", "/items", "GET")
        sent = self.calls.fetches
        await self.client.http("api.example.com", "/items", "GET")
        self.assertEqual(self.calls.fetches, sent)
        await self.pubsub.publish(f"/tns/updates/projects/{PROJECT_ID}/branches/main", b"")
        await self.client.http("api.example.com", "/items", "GET")
        self.assertEqual(self.calls.fetches, sent + 1)

    async def test_replicaChanged(self):
        """
        A tns node announcing that its replica changed drops every answer
        (one read before it merged a push would be stale), and an answer
        on its way then is not kept.
        """
        await self.client.fetch(["a", "b"])
        await self.client.fetch(["c", "d"])
        await self.pubsub.publish("/tns/updates", b"")
        await self.client.fetch(["a", "b"])
        await self.client.fetch(["c", "d"])
        self.assertEqual(self.calls.fetches, 4)

    async def test_answerFollowsItsParts(self):
        """
        A cached lookup answer is dropped when any answer it was made of is
        (here: the function's config changed under the same commit).
        """
        self.assertEqual((await self.client.http("api.example.com", "/items", "GET"))["id"], GET_ITEMS)
        await self.client.push(["branches", "main", "commit", "c1", "projects", PROJECT_ID, "functions", GET_ITEMS,
                                "paths"], ["/other"])
        self.assertEqual((await self.client.http("api.example.com", "/items", "GET"))["id"], SITE)
        self.assertEqual((await self.client.http("api.example.com", "/other", "GET"))["id"], GET_ITEMS)

    async def test_answerExpiresWithItsParts(self):
        """
        A cached lookup answer lives no longer than the oldest fetch it was
        made of.
        """
        await self.client.fetch(["projects", PROJECT_ID, "branches", "main", "current"])
        self.clock.advance(100)
        await self.client.http("api.example.com", "/items", "GET")
        sent = self.calls.fetches
        self.clock.advance(TNSClient.cacheTTL - 100 - 0.5)
        await self.client.http("api.example.com", "/items", "GET")
        self.assertEqual(self.calls.fetches, sent)
        self.clock.advance(0.5)
        await self.client.http("api.example.com", "/items", "GET")
        self.assertEqual(self.calls.fetches, sent + 1)

    async def test_longTopic(self):
        """
        A path whose updates topic pubsub refuses (over 1,024 characters) is
        fetched every time, never cached.
        """
        path = ["s" * 256] * 5
        await self.calls.call("push", {"path": path, "data": 1})
        self.assertEqual(await self.client.fetch(path), 1)
        self.assertEqual(await self.client.fetch(path), 1)
        self.assertEqual(self.calls.fetches, 2)

    async def test_badPath(self):
        """
        A path that is not a list of text segments is refused as such
        (never a TypeError from the cache).
        """
        for path in ([["a"]], "a/b", ["a", ""]):
            with self.assertRaises(PathError):
                await self.client.fetch(path)

    async def test_expires(self):
        """
        A cached answer is kept cacheTTL seconds, not one more.
        """
        await self.client.fetch(["a", "b"])
        self.clock.advance(TNSClient.cacheTTL - 0.5)
        await self.client.fetch(["a", "b"])
        self.assertEqual(self.calls.fetches, 1)
        self.clock.advance(0.5)
        await self.client.fetch(["a", "b"])
        self.assertEqual(self.calls.fetches, 2)

    async def test_pushDropsOthersCache(self):
        """
        A push by anyone (here: straight to the service) drops the answer a
        client cached for that key.
        """
        self.assertIsNone(await self.client.fetch(["x", "y", "z"]))
        await self.calls.call("push", {"path": ["x", "y", "z"], "data": 1})
        self.assertEqual(await self.client.fetch(["x", "y", "z"]), 1)

    async def test_racingPush(self):
        """
        An answer that was on its way when a push was announced is not
        kept.
        """
        inner = self.calls.call

        async def slow(name, body=None, *, peers=None):
            answer = await inner(name, body, peers=peers)
            if name == "fetch":
                await self.pubsub.publish("/tns/updates/r/s", b"")
            return answer

        self.calls.call = slow
        await self.client.fetch(["r", "s", "t"])
        await self.client.fetch(["r", "s", "t"])
        self.assertEqual(self.calls.fetches, 2)

    async def test_topicLimit(self):
        """
        Past maxTopics topics, answers are not cached (and no topic more is
        listened to).
        """
        await self.client.fetch(["n0", "a", "b"])
        self.client.maxTopics = len(self.client._topics) + 1
        sent = self.calls.fetches
        await self.client.fetch(["n1", "a", "b"])
        await self.client.fetch(["n2", "a", "b"])
        await self.client.fetch(["n2", "a", "b"])
        self.assertNotIn("/tns/updates/n2/a", self.pubsub.subscriptions)
        await self.client.fetch(["n1", "a", "b"])
        self.assertEqual(self.calls.fetches, sent + 3)
