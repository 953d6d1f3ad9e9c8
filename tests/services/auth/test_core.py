"""
auth's records and rules on a fake store: what a caller gets, what is
kept, what is sealed.
"""

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from tau.services.auth.core import EVERYTHING, NOBODY, Invalid, NotFound
from tau.services.auth.providers import IGitProvider, LocalProvider, Unauthorized
from tau.services.auth.secrets import SealError
from tests.services.auth.helpers import WEBHOOK, FakeProvider, makeCore


class CoreTests(TestCase):
    async def setUp(self):
        self.auth, self.kvdb, self.github, self.local = await makeCore()
        self.alice = await self.auth.scopeOf("github tokA")
        self.bob = await self.auth.scopeOf("oauth tokB")

    def test_fakesAreProviders(self):
        verifyObject(IGitProvider, FakeProvider())
        verifyObject(IGitProvider, LocalProvider(None))

    async def test_createGetList(self):
        created = await self.auth.createProject(self.alice, "shop", "101", 102)
        self.assertTrue(created["id"].startswith("Qm"))
        self.assertEqual(created["name"], "shop")
        project = await self.auth.getProject(self.alice, created["id"])
        self.assertEqual(project, {"id": created["id"], "name": "shop", "provider": "github", "code": "102",
                                   "config": "101"})
        self.assertEqual(await self.auth.listProjects(self.alice), [created["id"]])
        self.assertEqual(await self.auth.listProjects(self.bob), [])
        self.assertEqual(await self.auth.listProjects(EVERYTHING), [created["id"]])
        self.assertEqual(await self.auth.listProjects(NOBODY), [])

    async def test_createRegistersHooksAndKeys(self):
        created = await self.auth.createProject(self.alice, "shop", "101", "102")
        self.assertEqual(sorted(r for r, _url, _s in self.github.hooks), ["101", "102"])
        self.assertEqual(sorted(r for r, _k in self.github.keys), ["101", "102"])
        repo = await self.auth.getRepository(EVERYTHING, "github", 101)
        self.assertEqual((repo["id"], repo["provider"], repo["project"]), (101, "github", created["id"]))
        load_pem_private_key(repo["key"].encode(), None)
        self.assertIn("-----BEGIN EC PRIVATE KEY-----", repo["key"])
        # the public key given to GitHub is the deploy key's
        public = dict(self.github.keys)["101"]
        self.assertTrue(public.startswith("ecdsa-sha2-nistp256 "))
        hooks = await self.auth.listHooks(EVERYTHING)
        self.assertEqual(len(hooks), 2)
        hook = await self.auth.getHook(EVERYTHING, hooks[0])
        sent = {url: secret for _r, url, secret in self.github.hooks}
        self.assertEqual(sent[WEBHOOK + hook["id"]], hook["secret"])
        self.assertIn(hook["repository"], (101, 102))
        self.assertGreater(hook["github_id"], 500)

    async def test_secretsSealedAtRest(self):
        await self.auth.createProject(self.alice, "shop", "101", "102")
        await self.auth.setCertificate(EVERYTHING, "shop.example.com", b"-----BEGIN PRIVATE KEY-----secretkey")
        stored = b"".join(v for db in self.kvdb.stored.values() for v in db.values())
        for _r, _url, secret in self.github.hooks:
            self.assertNotIn(secret.encode(), stored)
        self.assertNotIn(b"tokA", stored)
        self.assertNotIn(b"PRIVATE KEY", stored)
        self.assertNotIn(b"secretkey", stored)

    async def test_sealedValueBoundToItsRecord(self):
        # a hook's sealed secret copied into another hook does not open
        await self.auth.createProject(self.alice, "shop", "101", "102")
        first, second = await self.auth.listHooks(EVERYTHING)
        a = await self.auth.storage.get("/hooks/" + first)
        b = await self.auth.storage.get("/hooks/" + second)
        b["secret"] = a["secret"]
        await self.auth.storage.put("/hooks/" + second, b)
        with self.assertRaises(SealError):
            await self.auth.getHook(EVERYTHING, second)

    async def test_otherTenantIsMissing(self):
        created = await self.auth.createProject(self.alice, "shop", "101", "102")
        for scope in (self.bob, NOBODY):
            with self.assertRaisesRegex(NotFound, "^project not found$"):
                await self.auth.getProject(scope, created["id"])
            with self.assertRaisesRegex(NotFound, "^repository not found$"):
                await self.auth.getRepository(scope, "github", 101)
        # bob cannot build a project on alice's repositories
        with self.assertRaisesRegex(NotFound, "^repository not found$"):
            await self.auth.createProject(self.bob, "steal", "101", "102")

    async def test_importTakenIdRefused(self):
        created = await self.auth.createProject(self.alice, "shop", "101", "102")
        before = self.kvdb.snapshot()
        with self.assertRaisesRegex(Invalid, "is taken"):
            await self.auth.createProject(self.bob, "shop", "201", "202", projectID=created["id"])
        self.assertEqual(self.kvdb.snapshot(), before)
        # its owner may import it again (relink)
        again = await self.auth.createProject(self.alice, "shop", "101", "102", projectID=created["id"])
        self.assertEqual(again["id"], created["id"])

    async def test_unregisterRemovesHook(self):
        await self.auth.registerRepository(self.alice, "github", "101")
        self.assertEqual(await self.auth.listRepositories(self.alice), ["101"])
        self.assertEqual(await self.auth.unregisterRepository(self.alice, "github", "101"), {"status": "success"})
        self.assertEqual(self.github.removed, [("101", 501), ("101", 701)])
        self.assertEqual(await self.auth.listRepositories(EVERYTHING), [])
        self.assertEqual(await self.auth.listHooks(EVERYTHING), [])

    async def test_unregisterByServiceUsesStoredToken(self):
        await self.auth.registerRepository(self.alice, "github", "101")
        await self.auth.unregisterRepository(EVERYTHING, "github", "101")
        self.assertEqual(self.github.removed, [("101", 501), ("101", 701)])

    async def test_deleteProjectUnlinksRepositories(self):
        created = await self.auth.createProject(self.alice, "shop", "101", "102")
        await self.auth.deleteProject(self.alice, created["id"])
        self.assertEqual((await self.auth.getRepository(EVERYTHING, "github", 101))["project"], "")
        self.assertEqual(await self.auth.listProjects(EVERYTHING), [])

    async def test_domain(self):
        created = await self.auth.createProject(self.alice, "shop", "101", "102")
        answer = await self.auth.registerDomain(self.alice, "Shop.Example.com", created["id"])
        self.assertEqual(answer["type"], "txt")
        self.assertEqual(answer["entry"], created["id"][:8] + ".shop.example.com")
        self.assertTrue(self.auth.secrets.checkDomainToken("shop.example.com", created["id"], answer["token"]))
        self.assertFalse(self.auth.secrets.checkDomainToken("other.example.com", created["id"], answer["token"]))
        with self.assertRaisesRegex(NotFound, "^project not found$"):
            await self.auth.registerDomain(self.bob, "shop.example.com", created["id"])
        with self.assertRaisesRegex(Invalid, "not a domain name"):
            await self.auth.registerDomain(self.alice, "shop..example.com", created["id"])

    async def test_acme(self):
        await self.auth.setCertificate(EVERYTHING, "a.example.com", b"PEM")
        self.assertEqual(await self.auth.getCertificate(EVERYTHING, "a.example.com"), b"PEM")
        with self.assertRaisesRegex(NotFound, "^certificate not found$"):
            await self.auth.getCertificate(EVERYTHING, "a.example.com", static=True)
        with self.assertRaisesRegex(NotFound, "^certificate not found$"):
            await self.auth.getCertificate(self.alice, "a.example.com")
        await self.auth.setCache(EVERYTHING, "acme_account+key", b"\x00data")
        self.assertEqual(await self.auth.getCache(EVERYTHING, "acme_account+key"), b"\x00data")
        await self.auth.deleteCache(EVERYTHING, "acme_account+key")
        with self.assertRaisesRegex(NotFound, "^cache entry not found$"):
            await self.auth.getCache(EVERYTHING, "acme_account+key")

    async def test_localTokens(self):
        token = await self.local.issue("ci", ["git-1", "git-2"])
        scope = await self.auth.scopeOf("tau " + token)
        created = await self.auth.createProject(scope, "hosted", "git-1", "git-2")
        self.assertEqual((await self.auth.getProject(scope, created["id"]))["provider"], "local")
        with self.assertRaisesRegex(NotFound, "^project not found$"):
            await self.auth.getProject(self.alice, created["id"])
        # stored hashed
        stored = b"".join(k + v for db in self.kvdb.stored.values() for k, v in db.items())
        self.assertNotIn(token.encode(), stored)
        with self.assertRaises(Unauthorized):
            await self.auth.scopeOf("tau " + token + "x")

    async def test_badCredentials(self):
        for credential in ("", "github", "github tokZ", "basic tokA", "github a b", "github " + "x" * 2000):
            with self.assertRaises(Unauthorized, msg=credential):
                await self.auth.scopeOf(credential)
