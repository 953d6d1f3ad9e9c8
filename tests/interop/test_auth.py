"""
A js-libp2p peer (tests/interop/js/taubyte.mjs, framing written from the
spec sheet) sends auth's C{projects} command on C{/auth/v1} to a tau auth
service and gets the spec sheet's answers.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tau.services.auth import PROTOCOL
from tests.hosts import addressOf, startHost
from tests.interop.jspeer import startJsPeer
from tests.services.auth.helpers import Cloud, request


class JsAuthTests(TestCase):
    timeout = 120

    async def setUp(self):
        self.tau = await startHost(self)
        self.js = await startJsPeer(reactor)
        self.addCleanup(lambda: Deferred.fromCoroutine(self.js.stop()))
        self.trusted = set()
        self.cloud = await Cloud().start(self, self.tau, trusted=lambda peer: str(peer) in self.trusted)
        await self.js.command("dial", addr=addressOf(self.tau))
        status, answer = await request("POST", f"{self.cloud.url}/project/new/shop", "github tokA",
                                       {"config": {"id": 101}, "code": {"id": 102}})
        self.assertEqual(status, 200, answer)
        self.project = answer["project"]["id"]

    def send(self, body):
        return self.js.command("command", peer=str(self.tau.peerID), protocol=PROTOCOL, command="projects", body=body)

    async def test_projectsAsTheSpecSheetSays(self):
        self.trusted.add(self.js.peerId)
        self.assertEqual((await self.send({"action": "list"}))["answer"], {"ids": [self.project]})
        self.assertEqual((await self.send({"action": "get", "id": self.project}))["answer"],
                         {"id": self.project, "name": "shop", "provider": "github", "code": "102", "config": "101"})
        self.assertEqual((await self.send({"action": "get", "id": "QmNothing"}))["error"],
                         'router: executing command "projects" failed: project not found')

    async def test_untrustedPeerWithAndWithoutToken(self):
        self.assertEqual((await self.send({"action": "list"}))["answer"], {"ids": []})
        self.assertEqual((await self.send({"action": "list", "token": "github tokA"}))["answer"], {"ids": [self.project]})
        self.assertEqual((await self.send({"action": "get", "id": self.project, "token": "github tokB"}))["error"],
                         'router: executing command "projects" failed: project not found')
