"""
Cloud members: a peer is trusted only with an admission of our cloud for
its own PeerId.
"""

from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from tau.cloud import makeAdmission
from tau.identity import PrivateKey
from tau.interfaces import IMembers
from tau.members import REFUSAL_TTL, CloudMembers
from tests.hosts import addressOf, startHost

CLOUD = PrivateKey.generate()
OTHER = PrivateKey.generate()


class MembersTests(TestCase):
    async def node(self, cloudKey=CLOUD, services=("tns",), admitted=True, admission=None):
        host = await startHost(self)
        if admission is None and admitted:
            admission = makeAdmission(cloudKey, host.peerID, services)
        members = CloudMembers(host, reactor, cloud=CLOUD.peerID(), admission=admission)
        members.startService()
        self.addCleanup(members.stopService)
        return host, members

    async def test_members(self):
        a, members = await self.node()
        self.assertTrue(verifyObject(IMembers, members))
        b, _ = await self.node(services=("auth", "tns"))
        foreign, _ = await self.node(cloudKey=OTHER)
        stranger, _ = await self.node(admitted=False)
        for peer in (b, foreign, stranger):
            await a.connect(addressOf(peer))
        self.assertTrue(await members.isMember(a.peerID))
        self.assertTrue(await members.isMember(b.peerID))
        self.assertTrue(await members.isMember(b.peerID, "auth"))
        self.assertFalse(await members.isMember(b.peerID, "seer"))
        self.assertFalse(await members.isMember(foreign.peerID))
        self.assertFalse(await members.isMember(stranger.peerID))

    async def test_stolenAdmission(self):
        a, members = await self.node()
        b, bMembers = await self.node()
        # the thief shows b's admission: it names b, not the thief
        thief, _ = await self.node(admission=bMembers.admission)
        await a.connect(addressOf(thief))
        self.assertFalse(await members.isMember(thief.peerID))

    async def test_verdictsRemembered(self):
        a, members = await self.node()
        b, _ = await self.node()
        stranger, _ = await self.node(admitted=False)
        for peer in (b, stranger):
            await a.connect(addressOf(peer))
        asked = []
        ask = members._ask

        async def counting(peer):
            asked.append(peer)
            return await ask(peer)

        members._ask = counting
        for _ in range(3):
            self.assertTrue(await members.isMember(b.peerID))
            self.assertFalse(await members.isMember(stranger.peerID))
        self.assertEqual(asked, [b.peerID, stranger.peerID])
        # a refusal is asked again once its time is up
        members._known[stranger.peerID] = reactor.seconds() - 1
        self.assertFalse(await members.isMember(stranger.peerID))
        self.assertEqual(asked[-1], stranger.peerID)
        self.assertEqual(len(asked), 3)

    async def test_refusalRememberedForItsTime(self):
        a, members = await self.node()
        stranger, _ = await self.node(admitted=False)
        await a.connect(addressOf(stranger))
        before = reactor.seconds()
        self.assertFalse(await members.isMember(stranger.peerID))
        until = members._known[stranger.peerID]
        self.assertTrue(before + REFUSAL_TTL <= until <= reactor.seconds() + REFUSAL_TTL)

    async def test_noCloudTrustsOnlyItself(self):
        host = await startHost(self)
        other = await startHost(self)
        members = CloudMembers(host, reactor)
        self.assertTrue(await members.isMember(host.peerID))
        self.assertFalse(await members.isMember(other.peerID))
