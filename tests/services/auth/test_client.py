"""
L{AuthClient} against a running auth service, and the service's life:
announced in the DHT, a failed bind reported, stopped cleanly.
"""

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tau.fakes import FakeKVDB, FakeRouting
from tau.listen import ListenError
from tau.services.auth import PROTOCOL
from tau.services.auth.client import AuthClient
from tau.services.auth.config import AuthConfig
from tau.services.auth.service import makeAuth
from tau.services.commands import RemoteError
from tau.services.discovery import serviceKey
from tests.hosts import startHost
from tests.services.auth.helpers import request
from tests.services.auth.test_service import ServiceTestCase


class AuthClientTests(ServiceTestCase):
    async def client(self, host, **kwargs):
        for _ in range(100):
            if host.peerstore.supports(self.server.peerID, PROTOCOL):
                break
            await deferLater(reactor, 0.02, lambda: None)
        return AuthClient(host, None, **kwargs)

    async def test_servicesUseIt(self):
        pid = await self.newProject()
        auth = await self.client(self.service)
        self.assertEqual(await auth.projects(), [pid])
        self.assertEqual((await auth.project(pid))["name"], "shop")
        repo = await auth.repository(101)
        self.assertEqual(repo["project"], pid)
        [hookID] = [h for h in await auth.hooks() if (await auth.hook(h))["repository"] == 101]
        self.assertEqual((await auth.hook(hookID))["id"], hookID)
        await auth.setCertificate("a.example.com", b"pem")
        self.assertEqual(await auth.certificate("a.example.com"), b"pem")
        await auth.cacheSet("k", b"v")
        self.assertEqual(await auth.cacheGet("k"), b"v")
        await auth.cacheDelete("k")
        with self.assertRaises(RemoteError):
            await auth.cacheGet("k")

    async def test_withAToken(self):
        auth = await self.client(self.stranger, token="github tokB")
        created = await auth.createProject("bobs", "201", "202")
        self.assertEqual(await auth.projects(), [created["id"]])
        answer = await auth.registerDomain("bob.example.com", created["id"])
        self.assertTrue(answer["entry"].endswith(".bob.example.com"))
        # seer, trusted or not, checks a TXT record's text
        anyone = await self.client(self.service)
        self.assertTrue(await anyone.verifyDomain("bob.example.com", created["id"], answer["token"]))
        token = answer["token"]
        wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
        self.assertFalse(await anyone.verifyDomain("bob.example.com", created["id"], wrong))
        self.assertFalse(await anyone.verifyDomain("alice.example.com", created["id"], answer["token"]))
        self.assertEqual(await auth.repositories(), ["201", "202"])
        await auth.unregisterRepository(201)
        self.assertEqual(await auth.repositories(), ["202"])
        self.assertTrue((await auth.registerRepository(201)).startswith("ecdsa-sha2-nistp256 "))

    async def test_stop(self):
        self.assertIn(PROTOCOL, self.server.protocols())
        await self.cloud.service.stopService()
        self.assertNotIn(PROTOCOL, self.server.protocols())
        with self.assertRaises(Exception):
            await request("GET", self.cloud.url + "/me", "github tokA")


class LifecycleTests(TestCase):
    async def test_announcedAndBindFailure(self):
        host = await startHost(self)
        taken = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Factory.forProtocol(Protocol))
        self.addCleanup(taken.stopListening)
        where = f"tcp:{taken.getHost().port}:interface=127.0.0.1"
        routing = FakeRouting()
        service = makeAuth(host, FakeKVDB(), reactor, AuthConfig.check("t", {"http-listen": where}), self.mktemp(),
                           lambda peer: False, networkFQDN="example.com", routing=routing)
        service.startService()
        self.addCleanup(service.stopService)
        e = await self.assertFailure(service.whenReady(), ListenError)
        self.assertIn(where, str(e))
        self.assertEqual(routing.provided, [serviceKey(PROTOCOL)])

    def test_webhookURL(self):
        config = AuthConfig.check("t", {"webhook-url": "https://hooks.example.org/github/"})
        service = makeAuth(None, FakeKVDB(), reactor, config, self.mktemp(), None, networkFQDN="example.com")
        self.assertEqual(service.webhookURL, "https://hooks.example.org/github/")
        service = makeAuth(None, FakeKVDB(), reactor, None, self.mktemp(), None, networkFQDN="cloud.example.com")
        self.assertEqual(service.webhookURL, "https://patrick.tau.cloud.example.com/github/")
