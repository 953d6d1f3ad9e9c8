"""
The life of a job on one patrick node: created once (a redelivery returns
the job it made), handed out once, its lease refreshed by its monkey,
done, failed and retried once, timed out when its monkey goes silent,
cancelled, retried by hand; only the monkey it is assigned to reports it.
"""

from twisted.trial.unittest import TestCase

from tau.services.commands import RemoteError
from tau.services.patrick.job import JobStatus
from tests.services.patrick.helpers import PROJECT, Cloud, newJob, run


class LifecycleTests(TestCase):
    async def setUp(self):
        self.cloud = await Cloud(self, lease=30.0, jobTimeout=600.0).start(1)
        self.node = self.cloud.nodes[0]
        self.jobs = self.node.jobs
        self.monkey, self.client = self.cloud.monkey()
        self.other, self.otherClient = self.cloud.monkey()

    def fails(self, coroutine, exception=RemoteError):
        return self.assertFailure(run(coroutine), exception)

    async def submit(self, n=0):
        job, created = await self.jobs.submit(newJob(n), PROJECT)
        self.assertTrue(created)
        return job

    async def state(self, jid):
        job, archived = await self.node.storage.job(jid)
        return job.status, job.attempt, archived

    async def test_dedup(self):
        """
        A job of an id already known, open or archived, is not made again.
        """
        job = await self.submit()
        again, created = await self.jobs.submit(newJob(0, timestamp=1), PROJECT)
        self.assertFalse(created)
        self.assertEqual(again.timestamp, job.timestamp)
        taken = await self.client.dequeue()
        await self.client.done(job.id, {"log": "bafylog"}, {"res": "bafyasset"})
        self.assertEqual(await self.state(job.id), (JobStatus.SUCCESS, 1, True))
        # redelivered after it ended: the archived job, not a new run
        again, created = await self.jobs.submit(newJob(0), PROJECT)
        self.assertFalse(created)
        self.assertEqual(again.status, JobStatus.SUCCESS)
        self.assertIsNone(await self.client.dequeue())
        self.assertEqual(taken.id, job.id)

    async def test_handedOutOnce(self):
        first = await self.submit(1)
        second = await self.submit(2)
        self.assertEqual((await self.client.dequeue()).id, first.id)
        self.assertEqual((await self.otherClient.dequeue()).id, second.id)
        self.assertIsNone(await self.client.dequeue())
        self.assertIsNone(await self.otherClient.dequeue())

    async def test_doneFromAnotherRefused(self):
        job = await self.submit()
        await self.client.dequeue()
        before = self.cloud.kvdb.snapshot()
        for report in (self.otherClient.done(job.id, {}, {}), self.otherClient.failed(job.id, {}),
                       self.otherClient.timeout(job.id)):
            e = await self.fails(report, RemoteError)
            self.assertIn(f"job {job.id} is not assigned to {self.other.peerID}", str(e))
        self.assertEqual(self.cloud.kvdb.snapshot(), before)
        self.assertFalse(await self.otherClient.isAssigned(job.id))
        self.assertTrue(await self.client.isAssigned(job.id))

    async def test_retryOnceThenFailed(self):
        job = await self.submit()
        self.assertEqual((await self.client.dequeue()).id, job.id)
        await self.client.failed(job.id, {"2026-12-07T10:00:00Z": "bafylog1"})
        # attempt 1 failed: open again, with its logs, queued for another monkey
        self.assertEqual(await self.state(job.id), (JobStatus.OPEN, 1, False))
        self.assertFalse(await self.client.isAssigned(job.id))
        again = await self.otherClient.dequeue()
        self.assertEqual((again.id, again.attempt, again.logs), (job.id, 1, {"2026-12-07T10:00:00Z": "bafylog1"}))
        await self.otherClient.failed(job.id, {job.id: "bafylog2"})
        ended = await self.jobs.info(job.id)
        self.assertEqual((ended.status, ended.attempt), (JobStatus.FAILED, 2))
        self.assertEqual(ended.logs, {"2026-12-07T10:00:00Z": "bafylog1", job.id: "bafylog2"})
        self.assertTrue((await self.node.storage.job(job.id))[1])
        self.assertIsNone(await self.client.dequeue())

    async def test_leaseRefreshedThenExpired(self):
        job = await self.submit()
        await self.client.dequeue()
        # refreshed every 10 s, the job stays assigned for longer than a lease
        for _ in range(6):
            self.cloud.clock.advance(10)
            self.assertTrue(await self.client.isAssigned(job.id))
            self.assertEqual(await self.jobs.check(), 0)
        # silent for more than a lease: timed out, queued again, with patrick's log
        self.cloud.clock.advance(31)
        self.assertEqual(await self.jobs.check(), 1)
        self.assertEqual(await self.state(job.id), (JobStatus.OPEN, 1, False))
        self.assertFalse(await self.client.isAssigned(job.id))
        self.assertIn("timed out: no word from", self.node.notes[0])
        self.assertEqual((await self.jobs.info(job.id)).logs, {"patrick-1": "bafynote1"})
        # the late monkey's report is refused; the second run times out: failed
        await self.fails(self.client.done(job.id, {}, {}), RemoteError)
        self.assertEqual((await self.otherClient.dequeue()).id, job.id)
        self.cloud.clock.advance(31)
        await self.jobs.check()
        self.assertEqual(await self.state(job.id), (JobStatus.FAILED, 2, True))
        self.assertEqual(sorted((await self.jobs.info(job.id)).logs), ["patrick-1", "patrick-2"])

    async def test_jobTimeout(self):
        """
        A job refreshed forever is still timed out after job-timeout.
        """
        job = await self.submit()
        await self.client.dequeue()
        for _ in range(61):
            self.cloud.clock.advance(10)
            await self.client.isAssigned(job.id)
            await self.jobs.check()
        self.assertEqual(await self.state(job.id), (JobStatus.OPEN, 1, False))
        self.assertIn("assigned to", self.node.notes[0])

    async def test_monkeyTimeout(self):
        job = await self.submit()
        await self.client.dequeue()
        await self.client.timeout(job.id)
        self.assertEqual(await self.state(job.id), (JobStatus.OPEN, 1, False))
        self.assertIn("gave up", self.node.notes[0])

    async def test_cancelThenRetry(self):
        job = await self.submit()
        await self.client.dequeue()
        self.assertEqual(await self.client.cancel(job.id), job.id)
        self.assertEqual(await self.state(job.id), (JobStatus.CANCELLED, 0, True))
        # the monkey learns it at its next lease refresh
        self.assertFalse(await self.client.isAssigned(job.id))
        e = await self.fails(self.client.cancel(job.id), RemoteError)
        self.assertIn("is not open", str(e))
        self.assertEqual(await self.client.retry(job.id), job.id)
        self.assertEqual(await self.state(job.id), (JobStatus.OPEN, 0, False))
        self.assertEqual((await self.otherClient.dequeue()).id, job.id)
        e = await self.fails(self.client.retry(job.id), RemoteError)
        self.assertIn("has not ended", str(e))

    async def test_listAndInfo(self):
        a = await self.submit(1)
        b = await self.submit(2)
        await self.client.dequeue()
        await self.client.done(a.id, {}, {})
        self.assertEqual(await self.client.list(), [b.id, a.id])
        self.assertEqual(await self.client.list(PROJECT), sorted([a.id, b.id]))
        self.assertEqual([(j.id, j.status) for j in await self.client.jobs()],
                         [(b.id, JobStatus.OPEN), (a.id, JobStatus.SUCCESS)])
        self.assertEqual([j.id for j in await self.client.jobs(limit=1)], [b.id])
        self.assertEqual((await self.client.info(a.id)).status, JobStatus.SUCCESS)
        self.assertTrue(await self.client.hasJob(a.id))
        self.assertFalse(await self.client.hasJob("nope"))
        e = await self.fails(self.client.info("nope"), RemoteError)
        self.assertIn("job nope not found", str(e))

    async def test_strangersRefused(self):
        await self.submit()
        _host, stranger = self.cloud.monkey(stranger=True)
        e = await self.fails(stranger.dequeue(), RemoteError)
        self.assertEqual(str(e), "patrick serves the nodes of its cloud only")

    async def test_badBodies(self):
        job = await self.submit()
        await self.client.dequeue()
        for body, why in (({"action": 3}, "action: expected text"),
                          ({"action": "fly"}, "Patrick action `fly` not recognized"),
                          ({"action": "done", "jid": "a/b"}, "jid: expected an id"),
                          ({"action": "done", "jid": "x" * 129}, "jid: expected an id"),
                          ({"action": "done", "jid": job.id, "cid": {"a": 1}}, "cid: expected a map"),
                          ({"action": "jobs", "limit": 0}, "limit: expected a whole number from 1 to 1000"),
                          ({"action": "jobs", "limit": 1001}, "limit: expected a whole number from 1 to 1000"),
                          ({"action": "list", "project": "a/b"}, "project: expected an id"),
                          ({"action": "done", "jid": job.id, "cid": {str(i): "c" for i in range(257)}},
                           "cid: expected a map of at most 256")):
            e = await self.fails(self.client.client.call("patrick", body), RemoteError)
            self.assertIn(why, str(e))
        # exactly the limits: taken
        await self.client.done(job.id, {str(i): "c" * 256 for i in range(256)}, {})

    async def test_lockedWhileAssigned(self):
        """
        A job handed out shows locked (running) until it ends or times out.
        """
        job = await self.submit()
        taken = await self.client.dequeue()
        self.assertEqual(taken.status, JobStatus.LOCKED)
        self.assertEqual(await self.state(job.id), (JobStatus.LOCKED, 0, False))
        await self.client.timeout(job.id)
        self.assertEqual(await self.state(job.id), (JobStatus.OPEN, 1, False))
        await self.client.dequeue()
        # its assignment lost (an older write won in the kvdb): queued again at the next check
        await self.node.storage._write([("/assigned/" + job.id, None)])
        self.assertEqual(await self.jobs.check(), 0)
        self.assertEqual(await self.state(job.id), (JobStatus.OPEN, 1, False))
        self.assertEqual((await self.otherClient.dequeue()).id, job.id)

    async def test_failureWithoutLogs(self):
        """
        A failure reported without logs gets patrick's: every ended job has
        logs.
        """
        job = await self.submit()
        for _ in range(2):
            await self.client.dequeue()
            await self.client.failed(job.id, {})
        ended = await self.jobs.info(job.id)
        self.assertEqual((ended.status, sorted(ended.logs)), (JobStatus.FAILED, ["patrick-1", "patrick-2"]))
        self.assertIn("reported a failure without logs", self.node.notes[1])

    async def test_redeliveryRacingTheArchive(self):
        """
        A redelivery stored on a node that had not seen the job archived
        leaves an open copy of an ended job: it is dropped, never run.
        """
        job = await self.submit()
        await self.client.dequeue()
        await self.client.done(job.id, {}, {})
        stale = newJob(0)
        await self.node.storage.update(stale)
        self.assertIsNone(await self.client.dequeue())
        self.assertIsNone(await self.node.storage.openJob(job.id))
        await self.node.storage.update(stale)
        await self.jobs.check()
        self.assertIsNone(await self.node.storage.openJob(job.id))
        self.assertEqual([(j.id, j.status) for j in await self.jobs.all()], [(job.id, JobStatus.SUCCESS)])
