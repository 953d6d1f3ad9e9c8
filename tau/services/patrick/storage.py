"""
Every read and write patrick makes to the replicated key/value store, in
one place: the database C{patrick}, keyed as Taubyte keys it (values
CBOR):

    /jobs/<jid>               Job (open: queued, or waiting for its retry; locked: assigned)
    /archive/jobs/<jid>       Job (ended: success, failed or cancelled)
    /assigned/<jid>           {1: monkey peer id, 2: last refresh (unix s), 3: assigned at (tau)}
    /by/project/<P>/<jid>     empty
    /project/<jid>            P (tau: which project a job is of, for the HTTP API's checks)
"""

import cbor2

from tau.services.patrick.job import Job

DATABASE = "patrick"
MAX_ID = 128


class Storage:
    """
    @param kvdb: L{tau.interfaces.IKVDB}.
    @param replicas: nodes that must hold a write before it is done.
    """

    def __init__(self, kvdb, replicas=1, timeout=30.0):
        self.kvdb = kvdb
        self.database = DATABASE
        self.replicas = replicas
        self.timeout = timeout

    async def open(self):
        await self.kvdb.whenReady()
        replica = await self.kvdb.serviceDatabase("patrick", DATABASE)
        self.database = replica.name
        return replica

    async def _get(self, key):
        raw = await self.kvdb.get(self.database, key.encode("utf-8"))
        return None if raw is None else cbor2.loads(raw)

    async def _write(self, entries):
        await self.kvdb.write(self.database, [(k.encode("utf-8"), None if v is None else cbor2.dumps(v))
                                              for k, v in entries], self.replicas, self.timeout)

    # jobs

    async def job(self, jid):
        """
        C{(job, archived)}: the job C{jid} (its archive first, as Taubyte
        reads it), or C{(None, False)}.
        """
        for key, archived in (("/archive/jobs/", True), ("/jobs/", False)):
            value = await self._get(key + jid)
            if value is not None:
                return Job.fromCBOR(value), archived
        return None, False

    async def openJob(self, jid):
        value = await self._get("/jobs/" + jid)
        return None if value is None else Job.fromCBOR(value)

    async def archived(self, jid):
        return await self.kvdb.get(self.database, ("/archive/jobs/" + jid).encode()) is not None

    async def create(self, job, project):
        entries = [("/jobs/" + job.id, job.toCBOR()), ("/project/" + job.id, project)]
        if project:
            entries.append((f"/by/project/{project}/{job.id}", b""))
        await self._write(entries)

    async def update(self, job):
        """
        Store C{job}, still open.
        """
        await self._write([("/jobs/" + job.id, job.toCBOR())])

    async def requeue(self, job):
        """
        Store C{job}, open and unassigned.
        """
        await self._write([("/jobs/" + job.id, job.toCBOR()), ("/assigned/" + job.id, None)])

    async def archive(self, job):
        """
        Move C{job}, ended, to the archive (and drop its assignment), in
        one write.
        """
        await self._write([("/archive/jobs/" + job.id, job.toCBOR()), ("/jobs/" + job.id, None),
                           ("/assigned/" + job.id, None)])

    async def reopen(self, job):
        """
        Move C{job} from the archive back to the open jobs.
        """
        await self._write([("/jobs/" + job.id, job.toCBOR()), ("/archive/jobs/" + job.id, None),
                           ("/assigned/" + job.id, None)])

    async def dropOpen(self, jid):
        """
        Forget the open copy of an archived job (a redelivered webhook that
        raced its archiving).
        """
        await self._write([("/jobs/" + jid, None), ("/assigned/" + jid, None)])

    async def projectOf(self, jid):
        value = await self._get("/project/" + jid)
        return value if isinstance(value, str) else ""

    async def _jobs(self, prefix, limit):
        rows = await self.kvdb.list(self.database, prefix.encode(), limit, values=True)
        jobs = []
        for key, raw in rows:
            try:
                jobs.append(Job.fromCBOR(cbor2.loads(raw)))
            except (ValueError, cbor2.CBORDecodeError):
                continue
        return jobs

    async def openJobs(self, limit):
        return await self._jobs("/jobs/", limit)

    async def archivedJobs(self, limit):
        return await self._jobs("/archive/jobs/", limit)

    async def jobsOf(self, project, limit):
        prefix = f"/by/project/{project}/"
        keys = await self.kvdb.list(self.database, prefix.encode(), limit)
        return [k.decode()[len(prefix):] for k in keys]

    # assignments

    async def assignment(self, jid):
        """
        C{(peer id text, refreshed, assigned at)}, or None.
        """
        value = await self._get("/assigned/" + jid)
        if not isinstance(value, dict) or not isinstance(value.get(1), str):
            return None
        refreshed = value.get(2) if isinstance(value.get(2), (int, float)) else 0
        since = value.get(3) if isinstance(value.get(3), (int, float)) else refreshed
        return value[1], refreshed, since

    async def assignJob(self, job, peer, now):
        """
        Store C{job} (locked) and its assignment to C{peer}, in one write.
        """
        await self._write([("/jobs/" + job.id, job.toCBOR()),
                           ("/assigned/" + job.id, {1: str(peer), 2: int(now), 3: int(now)})])

    async def assign(self, jid, peer, now, since=None):
        await self._write([("/assigned/" + jid, {1: str(peer), 2: int(now), 3: int(now if since is None else since)})])

    async def assignments(self, limit):
        rows = await self.kvdb.list(self.database, b"/assigned/", limit)
        return [k.decode()[len("/assigned/"):] for k in rows]
