"""
L{PatrickClient}: what monkeys, the control API and dream use to reach
patrick over the network (C{/patrick/v1}, command C{patrick}); they never
import its server code.
"""

from zope.interface import implementer

from tau.interfaces import IPatrickClient
from tau.services.discovery import ServiceClient
from tau.services.patrick import PROTOCOL
from tau.services.patrick.job import Job, JobStatus

__all__ = ["Job", "JobStatus", "PatrickClient", "clientFor"]


@implementer(IPatrickClient)
class PatrickClient:
    """
    @param host: the local host.
    @param routing: DHT routing (C{findProviders}), or None.
    @param client: what calls patrick (a L{ServiceClient} by default).
    """

    def __init__(self, host, routing, *, client=None):
        self.client = client or ServiceClient(host, routing, PROTOCOL)

    async def _call(self, action, peers=None, **body):
        body["action"] = action
        return await self.client.call("patrick", body, peers=peers)

    async def list(self, project=None):
        """
        The ids of the jobs patrick knows (open and archived); of one
        project's only with C{project} (tau).
        """
        body = {} if project is None else {"project": project}
        return list((await self._call("list", **body)).get("Ids") or [])

    async def jobs(self, project=None, limit=None):
        """
        The L{Job}s patrick knows, open ones first (tau), of C{project}
        only when given; at most C{limit} (patrick's most, 1000, when
        None).
        """
        body = {} if project is None else {"project": project}
        if limit is not None:
            body["limit"] = limit
        return [Job.fromCBOR(j) for j in (await self._call("jobs", **body)).get("jobs") or []]

    async def info(self, jid):
        """
        The L{Job} C{jid}.
        """
        return Job.fromCBOR((await self._call("info", jid=jid))["job"])

    async def dequeue(self, peers=None):
        """
        Take the next queued job: a L{Job} now assigned to the caller, or
        None when none is queued.
        """
        answer = await self._call("dequeue", peers=peers)
        if not answer or not answer.get("available"):
            return None
        return Job.fromCBOR(answer["job"])

    async def isAssigned(self, jid):
        """
        Whether C{jid} is still assigned to the caller (a monkey checks
        before it reports, and drops a stale run).
        """
        return bool((await self._call("isAssigned", jid=jid)).get("assigned"))

    async def done(self, jid, logs, assets):
        """
        Report C{jid} built: C{logs} (name -> CID), C{assets} (resource id
        -> CID).
        """
        await self._call("done", jid=jid, cid=dict(logs), assetCid=dict(assets))

    async def failed(self, jid, logs, assets=None):
        """
        Report C{jid} failed, with its logs.
        """
        await self._call("failed", jid=jid, cid=dict(logs), assetCid=dict(assets or {}))

    async def timeout(self, jid):
        """
        Report C{jid} stuck (the monkey gave up on it).
        """
        await self._call("timeout", jid=jid)

    async def cancel(self, jid):
        """
        Cancel C{jid}; the id it answers.
        """
        return (await self._call("cancel", jid=jid)).get("cancelled")

    async def retry(self, jid):
        """
        Queue the ended job C{jid} again (tau; Taubyte's is HTTP only).
        """
        return (await self._call("retry", jid=jid)).get("retry")

    async def hasJob(self, jid):
        return bool((await self._call("hasJob", jid=jid)).get("has"))


class _LocalAndRemote:
    """
    Calls by turns to this node's own patrick (C{local}, a
    L{tau.services.framework.LocalCalls}) and to the others (C{remote}, a
    L{ServiceClient}): each job has one owner among the patrick nodes, so
    a monkey on a patrick node asks them all, itself included.
    """

    def __init__(self, local, remote):
        self.local = local
        self.remote = remote
        self._turn = 0

    async def peers(self):
        return [*(await self.local.peers()), *(await self.remote.peers())]

    async def call(self, name, body=None, *, peers=None):
        if peers is not None:
            return await self.remote.call(name, body, peers=peers)
        others = await self.remote.peers()
        turn, self._turn = self._turn, self._turn + 1
        if not others or turn % (len(others) + 1) == 0:
            return await self.local.call(name, body)
        return await self.remote.call(name, body)


def clientFor(host, routing, service=None):
    """
    A node's patrick client: on its own L{tau.services.patrick.service.PatrickService}
    (C{service}) and the other patrick nodes by turns when it runs one,
    else on the patrick nodes found in the network.
    """
    remote = ServiceClient(host, routing, PROTOCOL)
    if service is None:
        return PatrickClient(host, routing, client=remote)
    return PatrickClient(host, routing, client=_LocalAndRemote(service.local(), remote))
