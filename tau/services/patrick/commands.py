"""
patrick's command on C{/patrick/v1}, as Taubyte's spec sheet has it:
command C{patrick}, body C{{action, jid, cid: {}, assetCid: {}}}.

    list        {project?}        -> {Ids}              (project: tau; its jobs only)
    info        {jid}             -> {job}
    dequeue                       -> {available: false} | {available: true, job}
    isAssigned  {jid}             -> {assigned}         (and the caller's lease is refreshed: tau)
    done        {jid, cid, assetCid} -> null
    failed      {jid, cid, assetCid} -> null
    timeout     {jid}             -> null
    cancel      {jid}             -> {cancelled: jid}
    hasJob      {jid}             -> {has}
    retry       {jid}             -> {retry: jid}       (tau: an ended job runs again)
    jobs        {project?, limit?} -> {jobs: [job], truncated}  (tau: the jobs with their states,
                                  open ones first, at most limit (1 to 1000, default 1000))

Jobs are CBOR maps (L{tau.services.patrick.job.Job.toCBOR}).  Only nodes
of this cloud are served (Taubyte serves anyone).  A call about one job
that reaches a node which does not own the job is forwarded to its owner
with the caller's id in C{for} (a forwarded call is not forwarded again,
and C{for} is honoured only from a live patrick node); C{dequeue} hands
out the jobs the node that answers owns (a monkey's client asks the
patrick nodes by turns).  C{done}, C{failed} and C{timeout} from a peer
the job is not assigned to are refused.
"""

from twisted.internet.defer import maybeDeferred

from tau.services.commands import RemoteError
from tau.services.framework import Refused, ServiceError, call
from tau.services.patrick import PROTOCOL
from tau.services.patrick.storage import MAX_ID

#: the most entries of a done/failed report's cid or assetCid map, and
#: the longest name or CID in them
MAX_ENTRIES = 256
MAX_NAME = 256
#: the most jobs one C{jobs} answer holds
MAX_LISTED = 1000

JOB_ACTIONS = ("isAssigned", "done", "failed", "timeout", "cancel", "retry")


class Invalid(ValueError):
    pass


def checkJID(value):
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID or "/" in value:
        raise Invalid(f"jid: expected an id of 1 to {MAX_ID} characters without '/'")
    return value


def checkProject(value):
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID or "/" in value:
        raise Invalid(f"project: expected an id of 1 to {MAX_ID} characters without '/'")
    return value


def checkCIDs(value, what):
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_ENTRIES or not all(
            isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= MAX_NAME and 0 < len(v) <= MAX_NAME
            for k, v in value.items()):
        raise Invalid(f"{what}: expected a map of at most {MAX_ENTRIES} names to CIDs (text of 1 to {MAX_NAME})")
    return dict(value)


class Commands:
    """
    @param jobs: L{tau.services.patrick.lifecycle.Jobs}.
    @param members: L{tau.services.patrick.members.Members}.
    @param host: to forward calls to a job's owner (C{newStream}, C{clock}).
    @param trusted: C{trusted(peer)} -> bool (or a Deferred or coroutine):
        a node of this cloud.
    """

    def __init__(self, jobs, members, host, trusted):
        self.jobs = jobs
        self.members = members
        self.host = host
        self.trusted = trusted
        self.actions = {
            "list": self._list, "info": self._info, "dequeue": self._dequeue, "hasJob": self._hasJob,
            "jobs": self._jobsList, **{name: getattr(self, "_" + name) for name in JOB_ACTIONS},
        }
        #: C{{"patrick": async handler(peer, body)}}
        self.handlers = {"patrick": self.handle}

    def define(self, router):
        router.define("patrick", self.handle)

    async def handle(self, peer, body):
        body = body or {}
        if peer != self.host.peerID and not await maybeDeferred(self.trusted, peer):
            raise Refused("patrick serves the nodes of its cloud only")
        action = body.get("action")
        if not isinstance(action, str):
            raise Invalid("action: expected text")
        method = self.actions.get(action)
        if method is None:
            raise Invalid(f"Patrick action `{action}` not recognized")
        if action not in JOB_ACTIONS:
            return await method(peer, body)
        jid = checkJID(body.get("jid"))
        caller = peer
        forwarded = "for" in body
        if forwarded:
            if not self.members.isLive(peer) or not isinstance(body["for"], str) or len(body["for"]) > MAX_NAME:
                raise Refused("only a patrick node forwards a call")
            caller = body["for"]
        owner = self.members.owner(jid)
        if owner != self.host.peerID and not forwarded:
            return await self._forward(owner, caller, body)
        return await method(caller, jid, body)

    async def _forward(self, owner, caller, body):
        body = dict(body, **{"for": str(caller)})
        try:
            return await call(self.host, owner, PROTOCOL, "patrick", body)
        except RemoteError as e:
            raise Refused(str(e)) from None
        except ServiceError as e:
            raise Refused(f"the patrick node that owns the job did not answer: {e}") from None

    # reads

    async def _ids(self, project):
        if project is None:
            return [j.id for j in await self.jobs.all()]
        return await self.jobs.storage.jobsOf(project, self.jobs.config.maxJobs)

    async def _list(self, peer, body):
        return {"Ids": await self._ids(checkProject(body.get("project")))}

    async def _jobsList(self, peer, body):
        project = checkProject(body.get("project"))
        limit = body.get("limit", MAX_LISTED)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_LISTED:
            raise Invalid(f"limit: expected a whole number from 1 to {MAX_LISTED}")
        jobs = await self.jobs.all()
        if project is not None:
            wanted = set(await self._ids(project))
            jobs = [j for j in jobs if j.id in wanted]
        return {"jobs": [j.toCBOR() for j in jobs[:limit]], "truncated": len(jobs) > limit}

    async def _info(self, peer, body):
        return {"job": (await self.jobs.info(checkJID(body.get("jid")))).toCBOR()}

    async def _hasJob(self, peer, body):
        job, _archived = await self.jobs.storage.job(checkJID(body.get("jid")))
        return {"has": job is not None}

    async def _dequeue(self, peer, body):
        job = await self.jobs.dequeue(peer)
        if job is None:
            return {"available": False}
        return {"available": True, "job": job.toCBOR()}

    # the owner's

    async def _isAssigned(self, caller, jid, body):
        return {"assigned": await self.jobs.isAssigned(caller, jid)}

    async def _done(self, caller, jid, body):
        await self.jobs.done(caller, jid, checkCIDs(body.get("cid"), "cid"), checkCIDs(body.get("assetCid"), "assetCid"))
        return None

    async def _failed(self, caller, jid, body):
        await self.jobs.failed(caller, jid, checkCIDs(body.get("cid"), "cid"),
                               checkCIDs(body.get("assetCid"), "assetCid"))
        return None

    async def _timeout(self, caller, jid, body):
        await self.jobs.timeout(caller, jid)
        return None

    async def _cancel(self, caller, jid, body):
        await self.jobs.cancel(jid)
        return {"cancelled": jid}

    async def _retry(self, caller, jid, body):
        await self.jobs.retry(jid)
        return {"retry": jid}
