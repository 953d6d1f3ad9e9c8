"""
A js-libp2p peer (tests/interop/js/taubyte.mjs, framing written from the
spec sheet) sends tns's commands on C{/tns/v1} to a tau tns service and
gets the spec sheet's answers: C{ping}, C{fetch} (the spec sheet's bytes
too), and a published project read back; a peer that is not a service of
the cloud reads nothing.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tau.fakes import FakeKVDB, FakePubSub
from tau.project import compileProject
from tau.services.tns import PROTOCOL
from tau.services.tns.client import TNSClient
from tau.services.tns.config import TNSConfig
from tau.services.tns.service import TNSService
from tests.hosts import addressOf, startHost
from tests.interop.jspeer import startJsPeer
from tests.project.helpers import PROJECT_ID
from tests.services.tns.helpers import GET_ITEMS, shopProject

FETCH_AB = "01ec010000150000000000000000" "a2106566657463681840a164706174688261616162"


class JsTNSTests(TestCase):
    timeout = 120

    async def setUp(self):
        self.tau = await startHost(self)
        self.js = await startJsPeer(reactor)
        self.addCleanup(lambda: Deferred.fromCoroutine(self.js.stop()))
        self.trusted = set()
        self.service = TNSService(self.tau, FakeKVDB(), FakePubSub(), reactor, TNSConfig(),
                                  lambda peer: str(peer) in self.trusted)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        await self.service.whenReady()
        client = TNSClient(None, None, None, reactor, calls=self.service.local())
        await client.publish(compileProject(shopProject(self.mktemp())), "c1")
        await client.push(["a", "b"], "leaf")
        await self.js.command("dial", addr=addressOf(self.tau))

    def send(self, command, body=None, **kwargs):
        return self.js.command("command", peer=str(self.tau.peerID), protocol=PROTOCOL, command=command, body=body,
                               **kwargs)

    async def test_asTheSpecSheetSays(self):
        self.trusted.add(self.js.peerId)
        self.assertEqual(set((await self.send("ping", {}))["answer"]), {"time"})
        self.assertEqual((await self.send("fetch", rawHex=FETCH_AB))["answer"], {"object": "leaf"})
        current = ["projects", PROJECT_ID, "branches", "main", "current"]
        self.assertEqual((await self.send("fetch", {"path": current}))["answer"], {"object": "c1"})
        links = (await self.send("fetch", {"path": ["http", "functions", "com", "example", "api", "links"]}))["answer"]
        self.assertIn(f"branches/main/projects/{PROJECT_ID}/functions/{GET_ITEMS}", links["object"])
        self.assertEqual((await self.send("lookup", {"prefix": current, "regex": False}))["answer"],
                         {"keys": ["/" + "/".join(current) + "/current"]})
        self.assertEqual((await self.send("push", {"path": ["a", "c"], "data": {"x": 1}}))["answer"], {"pushed": True})
        self.assertEqual((await self.send("fetch", {"path": ["a"]}))["answer"], {"object": {"b": "leaf", "c": {"x": 1}}})
        self.assertEqual((await self.send("fetch", {"path": ["nothing"]}))["answer"], {"object": None})
        self.assertEqual((await self.send("nope", {}))["error"], 'router: command "nope" not registered')

    async def test_strangerReadsNothing(self):
        self.assertEqual((await self.send("fetch", rawHex=FETCH_AB))["answer"], {"object": None})
        self.assertEqual((await self.send("push", {"path": ["a", "c"], "data": 1}))["error"],
                         'router: executing command "push" failed: /a/c: not in a project you may write')
