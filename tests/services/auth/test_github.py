"""
The GitHub provider (treq) against a local fake of GitHub's REST API.
"""

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from tau.services.auth.providers import GitHubProvider, ProviderError, Unauthorized
from tests.services.auth.fakegithub import READ, WRITE, startFakeGitHub


class GitHubProviderTests(TestCase):
    async def setUp(self):
        self.fake, base = await startFakeGitHub(self)
        self.fake.addUser("tokA", "alice")
        self.fake.addRepo(101, "alice/config", {"alice": WRITE})
        self.fake.addRepo(102, "alice/code", {"alice": WRITE})
        self.fake.addRepo(103, "team/readonly", {"alice": READ})
        self.fake.addRepo(201, "bob/private", {"bob": WRITE})
        self.github = GitHubProvider(base + "/", reactor, timeout=5)
        self.alice = await self.github.identify("tokA")

    def test_identify(self):
        self.assertEqual((self.alice.provider, self.alice.name, self.alice.token), ("github", "alice", "tokA"))
        self.assertEqual(self.fake.requests[0], ("GET", "/user", "token tokA"))

    async def test_unknownToken(self):
        with self.assertRaisesRegex(Unauthorized, "GitHub refused the token"):
            await self.github.identify("nope")

    async def test_repository(self):
        self.assertEqual(await self.github.repository(self.alice, "101"),
                         {"id": "101", "fullname": "alice/config", "ssh": "git@github.com:alice/config.git"})
        # read access is not enough, another user's repository is not there
        self.assertIsNone(await self.github.repository(self.alice, "103"))
        self.assertIsNone(await self.github.repository(self.alice, "201"))
        self.assertIsNone(await self.github.repository(self.alice, "../user"))

    async def test_repositoriesAcrossPages(self):
        # three repositories alice may read, two she may write to, pages of 2
        self.github.page = 2
        found = await self.github.repositories(self.alice)
        self.assertEqual([r["id"] for r in found], ["101", "102"])
        pages = [uri for method, uri, _ in self.fake.requests if uri.startswith("/user/repos")]
        self.assertEqual(pages, ["/user/repos?per_page=2&page=1", "/user/repos?per_page=2&page=2"])

    async def test_hookAndDeployKey(self):
        repo = await self.github.repository(self.alice, "101")
        hookID = await self.github.addHook(self.alice, repo, "https://patrick.tau.x/github/h1", "s3cret")
        self.assertEqual(hookID, 9001)
        self.assertEqual(self.fake.hooks, [("alice/config", {
            "name": "web", "active": True, "events": ["push"],
            "config": {"url": "https://patrick.tau.x/github/h1", "content_type": "json", "secret": "s3cret",
                       "insecure_ssl": "0"}})])
        self.assertEqual(await self.github.addDeployKey(self.alice, repo, "tau deploy key", "ecdsa-sha2-nistp256 AAAA"),
                         7001)
        self.assertEqual(self.fake.keys, [("alice/config", {"title": "tau deploy key", "key": "ecdsa-sha2-nistp256 AAAA",
                                                            "read_only": True})])
        await self.github.removeHook(self.alice, repo, hookID)
        await self.github.removeDeployKey(self.alice, repo, 7001)
        self.assertEqual(self.fake.removed, [("alice/config", "hooks", 9001), ("alice/config", "keys", 7001)])

    async def test_rateLimited(self):
        # not the caller's fault: not an unknown token
        self.fake.limited = True
        with self.assertRaisesRegex(ProviderError, r"GitHub answered 403 to GET /user \(rate limited or forbidden\)"):
            await self.github.identify("tokA")

    async def test_refusedHook(self):
        with self.assertRaisesRegex(ProviderError, "GitHub refused the webhook of bob/private"):
            await self.github.addHook(self.alice, {"id": "201", "fullname": "bob/private"}, "https://x/", "s")

    async def test_silentServer(self):
        class Silent(Protocol):
            pass

        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Factory.forProtocol(Silent))
        self.addCleanup(port.stopListening)
        github = GitHubProvider(f"http://127.0.0.1:{port.getHost().port}", reactor, timeout=0.3)
        with self.assertRaisesRegex(ProviderError, "GitHub did not answer GET /user in 0.3 seconds"):
            await github.identify("tokA")
