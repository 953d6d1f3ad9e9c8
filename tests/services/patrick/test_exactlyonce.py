"""
Exactly one monkey takes each job, whichever patrick node it asks and
however many ask at once: each job has one owner among the live patrick
nodes, only it hands the job out, and calls about a job that reach
another node are forwarded to it.  A node that starts decides nothing
until it has heard the others; when a node dies its jobs move to the
others, assignments and all.
"""

from twisted.internet.defer import gatherResults
from twisted.trial.unittest import TestCase

from tau.services.patrick.job import JobStatus
from tau.services.patrick.members import DEAD_AFTER, ownerOf
from tests.services.patrick.helpers import PROJECT, Cloud, newJob, run


class ExactlyOnceTests(TestCase):
    async def setUp(self):
        # each node sees the other's writes half a second late, as kvdb replicates
        self.cloud = await Cloud(self, lag=0.5).start(2)
        self.a, self.b = self.cloud.nodes

    async def submitAll(self, count, node=None, replicate=True):
        """
        C{count} jobs made on node a; with C{replicate}, seen by every
        node once this returns.
        """
        jobs = []
        for n in range(count):
            job, _ = await (node or self.a).jobs.submit(newJob(n), PROJECT)
            jobs.append(job)
        if replicate:
            self.cloud.clock.advance(1)
        return jobs

    def test_theyHearEachOther(self):
        peers = sorted([self.a.host.peerID, self.b.host.peerID], key=str)
        self.assertEqual(sorted(self.a.members.live(), key=str), peers)
        self.assertEqual(sorted(self.b.members.live(), key=str), peers)
        self.assertTrue(self.a.members.settled)

    async def test_concurrentDequeuers(self):
        jobs = await self.submitAll(20, replicate=False)
        owners = {ownerOf(j.id, [self.a.host.peerID, self.b.host.peerID]) for j in jobs}
        self.assertEqual(len(owners), 2, "the jobs are spread over both nodes")
        monkeys = [self.cloud.monkey(node=i % 2) for i in range(6)]
        taken = []
        for _round in range(30):
            answers = await gatherResults([run(client.dequeue()) for _host, client in monkeys])
            taken += [(job.id, host.peerID) for job, (host, _c) in zip(answers, monkeys) if job is not None]
            self.cloud.clock.advance(0.1)
        ids = [jid for jid, _ in taken]
        self.assertEqual(sorted(ids), sorted(j.id for j in jobs))
        self.assertEqual(len(ids), len(set(ids)), "a job handed out twice")
        # each monkey reports through the node it asks: forwarded to the owner
        for jid, peer in taken:
            host, client = next(m for m in monkeys if m[0].peerID == peer)
            self.assertTrue(await client.isAssigned(jid))
            await client.done(jid, {jid: "bafylog"}, {})
        self.cloud.clock.advance(1)
        for node in self.cloud.nodes:
            listed = await node.jobs.all()
            self.assertEqual({j.status for j in listed}, {JobStatus.SUCCESS})
            self.assertEqual(len(listed), 20)

    async def test_forwardedToTheOwner(self):
        [job] = await self.submitAll(1)
        owner = self.a if ownerOf(job.id, [self.a.host.peerID, self.b.host.peerID]) == self.a.host.peerID else self.b
        other = self.b if owner is self.a else self.a
        # the other node hands it not out
        _h, viaOther = self.cloud.monkey(node=self.cloud.nodes.index(other))
        self.assertIsNone(await viaOther.dequeue())
        host, viaOwner = self.cloud.monkey(node=self.cloud.nodes.index(owner))
        self.assertEqual((await viaOwner.dequeue()).id, job.id)
        # the same monkey's calls through the other node are the monkey's
        from tests.services.patrick.helpers import Direct
        from tau.services.patrick.client import PatrickClient

        through = PatrickClient(None, None, client=Direct(host, other.host.peerID))
        self.assertTrue(await through.isAssigned(job.id))
        self.assertFalse(await viaOther.isAssigned(job.id))
        await through.done(job.id, {}, {})
        self.cloud.clock.advance(1)
        self.assertEqual((await other.jobs.info(job.id)).status, JobStatus.SUCCESS)

    async def test_forgedForRefused(self):
        """
        Only a patrick node may forward a call for another peer.
        """
        [job] = await self.submitAll(1)
        host, client = self.cloud.monkey()
        owner = ownerOf(job.id, [self.a.host.peerID, self.b.host.peerID])
        from tests.services.patrick.helpers import Direct
        from tau.services.commands import RemoteError

        direct = Direct(host, owner)
        e = await self.assertFailure(run(direct.call("patrick", {"action": "done", "jid": job.id, "for": "someone"})),
                                     RemoteError)
        self.assertEqual(str(e), "only a patrick node forwards a call")

    async def test_newNodeWaits(self):
        """
        A node that starts hands nothing out before it heard the others,
        then takes the jobs it owns.
        """
        # 30 jobs: the new node owns none of them once in 200,000 runs
        jobs = await self.submitAll(30)
        await self.cloud.start(1, settle=False)
        c = self.cloud.nodes[2]
        self.assertFalse(c.members.settled)
        _h, client = self.cloud.monkey(node=2)
        self.assertIsNone(await client.dequeue())
        self.cloud.settle()
        peers = [n.host.peerID for n in self.cloud.nodes]
        mine = sorted((j for j in jobs if ownerOf(j.id, peers) == c.host.peerID), key=lambda j: j.timestamp)
        self.assertTrue(mine)
        self.assertEqual((await client.dequeue()).id, mine[0].id)

    async def test_deadNodeJobsMove(self):
        """
        When a node dies, the other owns its jobs: the queued ones are
        handed out, the assigned ones keep their monkey (its lease), or
        time out.
        """
        jobs = await self.submitAll(10)
        host, viaA = self.cloud.monkey(node=0)
        taken = await viaA.dequeue()
        owned = [j for j in jobs if ownerOf(j.id, [self.a.host.peerID, self.b.host.peerID]) == self.a.host.peerID]
        self.assertEqual(taken.id, min(owned, key=lambda j: j.timestamp).id)
        self.a.stop()
        self.cloud.clock.advance(self.cloud.config.heartbeat * (DEAD_AFTER + 1))
        self.assertEqual(self.b.members.live(), [self.b.host.peerID])
        from tests.services.patrick.helpers import Direct
        from tau.services.patrick.client import PatrickClient

        viaB = PatrickClient(None, None, client=Direct(host, self.b.host.peerID))
        self.assertTrue(await viaB.isAssigned(taken.id))
        handed = []
        while (job := await viaB.dequeue()) is not None:
            handed.append(job.id)
        self.assertEqual(sorted(handed), sorted(j.id for j in jobs if j.id != taken.id))
        await viaB.done(taken.id, {}, {})


class LocalAndRemoteTests(TestCase):
    async def test_monkeyOnAPatrickNode(self):
        """
        A monkey on a patrick node (L{clientFor} with its service) asks its
        own patrick and the others by turns, so it gets every job.
        """
        from tau.services.framework import LocalCalls
        from tau.services.patrick.client import clientFor

        cloud = await Cloud(self).start(2)
        a, b = cloud.nodes
        await a.host.dial(b.host.peerID)
        jobs = [(await a.jobs.submit(newJob(n), PROJECT))[0] for n in range(24)]
        cloud.clock.advance(1)

        class Service:
            def local(self):
                return LocalCalls(a.commands.handlers, a.host.peerID)

        client = clientFor(a.host, None, Service())
        taken = []
        for _ in range(80):
            job = await client.dequeue()
            if job is not None:
                taken.append(job.id)
        self.assertEqual(sorted(taken), sorted(j.id for j in jobs))
        owners = {ownerOf(jid, [a.host.peerID, b.host.peerID]) for jid in taken}
        self.assertEqual(len(owners), 2)
        # alone (no other patrick known), its own patrick answers
        alone = await Cloud(self).start(1)
        node = alone.nodes[0]

        class Own:
            def local(self):
                return LocalCalls(node.commands.handlers, node.host.peerID)

        self.assertEqual(await clientFor(node.host, None, Own()).list(), [])
