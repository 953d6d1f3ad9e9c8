"""
L{PatrickClient}: what monkeys, the control API and dream use to reach
patrick over the network (C{/patrick/v1}, command C{patrick}); they never
import its server code.
"""

from tau.services.discovery import ServiceClient
from tau.services.patrick import PROTOCOL
from tau.services.patrick.job import Job


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
