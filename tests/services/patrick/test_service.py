"""
The patrick service on a L{MemoryReactorClock}: it binds its HTTP
listener, serves its command, times leases out on its own every
C{check-interval} seconds, and stops its loops when stopped; its factory
gets only what it declares.
"""

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from tau.fakes import FakeContent, FakeHost, FakeKVDB, FakePubSub
from tau.interfaces import IContent, IHost, IKVDB, IMembers, IPubSub, IRouting, ITNSClient
from tau.services import factoryFor
from tau.services.patrick import PROTOCOL
from tau.services.patrick.config import PatrickConfig
from tau.services.patrick.job import JobStatus
from tau.services.patrick.service import PatrickService, makePatrick
from tests.services.patrick.helpers import PROJECT, FakeAuth, newJob


class ServiceTests(TestCase):
    async def setUp(self):
        self.reactor = MemoryReactorClock()
        self.host = FakeHost(self.reactor)
        self.pubsub = FakePubSub(source=self.host.peerID)
        self.content = FakeContent()
        config = PatrickConfig(lease=30.0, checkInterval=5.0)
        self.service = makePatrick(self.host, FakeKVDB(), self.pubsub, self.reactor, config, lambda peer: True,
                                   auth=FakeAuth(), content=self.content)
        self.service.startService()
        await self.service.whenReady()

    async def test_leasesTimeOutOnTheirOwn(self):
        self.assertIn(PROTOCOL, self.host.handlers)
        self.assertEqual(len(self.reactor.tcpServers), 1)
        self.assertEqual(self.pubsub.published[0][0], "/patrick/v1/members")
        job, _ = await self.service.jobs.submit(newJob(), PROJECT)
        calls = self.service.local()
        # alone, it settles after 5 heartbeats
        self.assertEqual(await calls.call("patrick", {"action": "dequeue"}), {"available": False})
        self.reactor.advance(5)
        answer = await calls.call("patrick", {"action": "dequeue"})
        self.assertEqual(answer["job"][1], job.id)
        for _ in range(7):
            self.reactor.advance(5)
        info = await self.service.jobs.info(job.id)
        self.assertEqual((info.status, info.attempt), (JobStatus.OPEN, 1))
        # patrick's own log of the timeout is in the store
        [cid] = info.logs.values()
        text = b"".join([c async for c in await self.content.cat(cid)])
        self.assertIn(b"timed out: no word from", text)
        await self.service.stopService()
        self.assertNotIn(PROTOCOL, self.host.handlers)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_factory(self):
        factory = factoryFor("patrick")
        self.assertEqual(set(factory.needs), {IHost, IKVDB, IPubSub, IRouting, IMembers, IContent, ITNSClient})
        verifyObject(IHost, self.host)
        self.addCleanup(self.service.stopService)
        self.assertIsInstance(self.service, PatrickService)
