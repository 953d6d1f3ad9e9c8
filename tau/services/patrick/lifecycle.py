"""
L{Jobs}: what one patrick node decides about the jobs it owns.

Taubyte's patrick queues jobs in a raft queue, but every patrick node pops
it when a monkey polls them all, and a lock is never refreshed, so a job
can be handed out twice.  tau keeps jobs in the replicated kvdb only
(L{tau.services.patrick.storage}) and gives each job one decider: its
owner (L{tau.services.patrick.members}).  Every change of a job after its
creation is made by its owner, one at a time (a lock): handing it out,
refreshing and checking its assignment, done, failed, timed out,
cancelled, retried.  Other nodes forward those calls to it
(L{tau.services.patrick.commands}).

Lifecycle (C{MAX_ATTEMPTS} = 2: one automatic retry):

    created      open (status 0) in /jobs/, queued: not assigned
    dequeue      the oldest queued job the node owns is assigned to the caller: /assigned/<jid>,
                 status 1 (locked: Taubyte keeps that state in the monkey only; tau shows it,
                 so listings tell queued jobs from running ones)
    isAssigned   the assigned monkey's call refreshes its lease (a tau addition)
    done         status 2, logs and assets kept, attempt+1, archived
    failed       attempt+1, logs kept; attempt < 2: open again and queued (the retry);
                 else status -1, archived
    timeout      (the monkey's call, or its lease expired: no refresh for `lease`
                 seconds, or assigned for `job-timeout` seconds) as failed, with
                 patrick's own log saying why
    cancel       status 3, archived; the monkey's next isAssigned answers false
    retry        an ended job: status 0, attempt 0, open and queued again

A job ends failed within C{lease} + C{check-interval} seconds of the
monkey that ran it going silent, with a log; a reported failure is
archived at once.
"""

from twisted.internet.defer import DeferredLock
from twisted.logger import Logger

from tau.services.patrick.job import MAX_ATTEMPTS, JobStatus

log = Logger()


class JobError(Exception):
    """
    A call about a job that cannot be made; the message says why.
    """


class NotAssigned(JobError):
    """
    C{done}, C{failed} or C{timeout} from a peer the job is not assigned to.
    """


class Jobs:
    """
    @param storage: L{tau.services.patrick.storage.Storage}.
    @param members: L{tau.services.patrick.members.Members}.
    @param clock: IReactorTime.
    @param config: L{tau.services.patrick.config.PatrickConfig}.
    @param note: C{async note(text) -> CID text or None}: store a log
        patrick writes itself (why a job timed out), or None.
    """

    def __init__(self, storage, members, clock, config, note=None):
        self.storage = storage
        self.members = members
        self.clock = clock
        self.config = config
        self.note = note
        self.lock = DeferredLock()

    def now(self):
        return int(self.clock.seconds())

    # creation (any node)

    async def submit(self, job, project):
        """
        Store a new job, unless a job of that id is known (open or
        archived: a redelivered webhook does not run a push again).

        @return: C{(job, created)}: the stored job.
        """
        existing, _archived = await self.storage.job(job.id)
        if existing is not None:
            return existing, False
        await self.storage.create(job, project)
        log.info("patrick: job {jid} created for {repo}@{ref} ({after}) of project {project}", jid=job.id,
                 repo=job.meta.repository.id, ref=job.meta.ref, after=job.meta.after, project=project)
        return job, True

    # the owner's decisions

    def _owned(self, jid):
        if not self.members.settled:
            raise JobError("patrick is starting: try again in a few seconds")
        if not self.members.owns(jid):
            raise JobError(f"job {jid} is decided by another patrick node")

    async def _open(self, jid):
        job = await self.storage.openJob(jid)
        if job is None:
            raise JobError(f"job {jid} is not open")
        return job

    async def _live(self, jid):
        """
        The live assignment of C{jid}: C{(peer, refreshed, since)} or None.
        """
        found = await self.storage.assignment(jid)
        if found is None:
            return None
        _peer, refreshed, since = found
        now = self.clock.seconds()
        if now - refreshed > self.config.lease or now - since > self.config.jobTimeout:
            return None
        return found

    async def dequeue(self, caller):
        """
        Assign the oldest queued job this node owns to C{caller}: the job,
        or None.
        """
        if not self.members.settled:
            return None
        async with self.lock:
            jobs = sorted(await self.storage.openJobs(self.config.maxJobs), key=lambda j: (j.timestamp, j.id))
            assigned = set(await self.storage.assignments(self.config.maxJobs))
            for job in jobs:
                if job.id in assigned or job.status != JobStatus.OPEN or not self.members.owns(job.id):
                    continue
                if await self.storage.archived(job.id):
                    await self.storage.dropOpen(job.id)
                    continue
                job.status = JobStatus.LOCKED
                await self.storage.assignJob(job, caller, self.clock.seconds())
                log.info("patrick: job {jid} assigned to {peer} (attempt {attempt})", jid=job.id, peer=caller,
                         attempt=job.attempt + 1)
                return job
        return None

    async def isAssigned(self, caller, jid):
        """
        Whether C{jid} is assigned to C{caller}; if so its lease is
        refreshed.
        """
        self._owned(jid)
        async with self.lock:
            found = await self._live(jid)
            if found is None or found[0] != str(caller) or await self.storage.openJob(jid) is None:
                return False
            await self.storage.assign(jid, caller, self.clock.seconds(), since=found[2])
            return True

    async def _assignedTo(self, caller, jid):
        found = await self.storage.assignment(jid)
        if found is None or found[0] != str(caller):
            raise NotAssigned(f"job {jid} is not assigned to {caller}")
        return await self._open(jid)

    async def done(self, caller, jid, logs, assets):
        self._owned(jid)
        async with self.lock:
            job = await self._assignedTo(caller, jid)
            job.status = JobStatus.SUCCESS
            job.logs.update(logs)
            job.assetCid = dict(assets)
            job.attempt += 1
            await self.storage.archive(job)
            log.info("patrick: job {jid} done by {peer}", jid=jid, peer=caller)
            return job

    async def failed(self, caller, jid, logs, assets=None):
        self._owned(jid)
        async with self.lock:
            job = await self._assignedTo(caller, jid)
            job.logs.update(logs)
            job.assetCid.update(assets or {})
            if not logs:
                await self._addNote(job, f"job {jid} attempt {job.attempt + 1}: the monkey {caller} reported "
                                         "a failure without logs")
            return await self._failedAttempt(job, f"reported failed by {caller}")

    async def timeout(self, caller, jid):
        self._owned(jid)
        async with self.lock:
            job = await self._assignedTo(caller, jid)
            await self._addNote(job, f"job {jid} attempt {job.attempt + 1}: the monkey {caller} gave up (timeout)")
            return await self._failedAttempt(job, f"timed out by {caller}")

    async def _failedAttempt(self, job, why):
        job.attempt += 1
        if job.attempt >= MAX_ATTEMPTS:
            job.status = JobStatus.FAILED
            await self.storage.archive(job)
            log.warn("patrick: job {jid} failed ({why}), attempt {attempt}: archived as failed", jid=job.id, why=why,
                     attempt=job.attempt)
        else:
            job.status = JobStatus.OPEN
            await self.storage.requeue(job)
            log.warn("patrick: job {jid} failed ({why}), attempt {attempt}: queued again", jid=job.id, why=why,
                     attempt=job.attempt)
        return job

    async def _addNote(self, job, text):
        if self.note is None:
            return
        try:
            cid = await self.note(text + "\n")
        except Exception as e:
            log.warn("patrick: the log of job {jid} was not stored: {why}", jid=job.id, why=str(e))
            return
        if cid is not None:
            job.logs[f"patrick-{job.attempt + 1}"] = cid

    async def cancel(self, jid):
        self._owned(jid)
        async with self.lock:
            job = await self._open(jid)
            job.status = JobStatus.CANCELLED
            await self.storage.archive(job)
            log.info("patrick: job {jid} cancelled", jid=jid)
            return job

    async def retry(self, jid):
        self._owned(jid)
        async with self.lock:
            job, archived = await self.storage.job(jid)
            if job is None:
                raise JobError(f"job {jid} not found")
            if not archived:
                raise JobError(f"job {jid} has not ended (status {job.status.name.lower()})")
            job.status = JobStatus.OPEN
            job.attempt = 0
            job.timestamp = self.now()
            await self.storage.reopen(job)
            log.info("patrick: job {jid} queued again (retry)", jid=jid)
            return job

    async def check(self):
        """
        Time out the jobs this node owns whose lease expired; forget the
        open copy of archived jobs.  The number of jobs timed out.
        """
        if not self.members.settled:
            return 0
        expired = 0
        async with self.lock:
            assigned = set(await self.storage.assignments(self.config.maxJobs))
            for job in await self.storage.openJobs(self.config.maxJobs):
                if not self.members.owns(job.id):
                    continue
                if await self.storage.archived(job.id):
                    await self.storage.dropOpen(job.id)
                    continue
                if job.id not in assigned:
                    if job.status == JobStatus.LOCKED:
                        # its assignment is gone (an older write won): queued again
                        job.status = JobStatus.OPEN
                        await self.storage.requeue(job)
                    continue
                found = await self.storage.assignment(job.id)
                if found is None or await self._live(job.id) is not None:
                    continue
                peer, refreshed, since = found
                now = self.clock.seconds()
                if now - since > self.config.jobTimeout:
                    why = f"assigned to {peer} for over {self.config.jobTimeout:g} s"
                else:
                    why = f"no word from {peer} for {now - refreshed:.0f} s (lease {self.config.lease:g} s)"
                await self._addNote(job, f"job {job.id} attempt {job.attempt + 1} timed out: {why}")
                await self._failedAttempt(job, "timed out: " + why)
                expired += 1
        return expired

    # reads (any node)

    async def all(self):
        """
        Every job, open ones first then archived ones, each list in the
        order of their creation (at most C{max-jobs} of each).
        """
        archived = await self.storage.archivedJobs(self.config.maxJobs)
        ended = {j.id for j in archived}
        opened = [j for j in await self.storage.openJobs(self.config.maxJobs) if j.id not in ended]
        order = lambda j: (j.timestamp, j.id)  # noqa: E731
        return sorted(opened, key=order) + sorted(archived, key=order)

    async def info(self, jid):
        job, _archived = await self.storage.job(jid)
        if job is None:
            raise JobError(f"job {jid} not found")
        return job

