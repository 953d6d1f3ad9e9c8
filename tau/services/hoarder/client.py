"""
L{HoarderClient}: what monkeys, the control API and tests use to reach
hoarder; they never import its server code.

    client = HoarderClient(host, routing)
    await client.stash(cid)          # {"cid": cid, "peers": [the holders' ids]}
"""

from tau.services.discovery import ServiceClient
from tau.services.framework import ServiceError
from tau.services.hoarder import PROTOCOL
from tau.services.hoarder.placement import STASH_REPLICAS

#: seconds a call may take: a stash fetches the artefact and fans it out
TIMEOUT = 180.0


class HoarderClient:
    """
    @param host: the local host (streams, peerstore).
    @param routing: has C{findProviders}, or None (known peers only).
    @param client: what calls hoarder (a L{ServiceClient} by default).
    """

    def __init__(self, host, routing, *, client=None):
        self.client = client or ServiceClient(host, routing, PROTOCOL, timeout=TIMEOUT)

    async def _action(self, action, peers=None, **body):
        body["action"] = action
        if peers is None:
            return await self.client.call("hoarder", body) or {}
        return await self.client.call("hoarder", body, peers=peers) or {}

    async def stash(self, cid: str, target: int = STASH_REPLICAS, *, owner="", peers=None) -> dict:
        """
        Have C{cid} (pinned here, or anywhere the hoarders can fetch it
        from) kept on C{target} hoarders.

        @return: C{{"cid": cid, "peers": [the holders' ids, text]}}.
        @raise tau.services.commands.RemoteError: the hoarder refused it
            (could not fetch it, a caller outside the cloud...).
        @raise ServiceError: no hoarder answered.
        """
        answer = await self._action("stash", peers, cid=cid, target=target, owner=owner, fanout=True)
        holders = answer.get("peers")
        if not isinstance(holders, list) or not all(isinstance(p, str) for p in holders):
            raise ServiceError(f"{PROTOCOL} stash: an answer without peers ({answer!r:.200})")
        return {"cid": cid, "peers": holders}

    async def stashStatus(self, cids, *, peers=None):
        """
        C{{"claims": {cid: live claims}, "target": the stash target}}.
        """
        return await self._action("stashStatus", peers, cids=list(cids))

    async def rare(self, *, peers=None):
        """
        The stashed CIDs a hoarder holds under their target.
        """
        return (await self._action("rare", peers)).get("rare") or []

    async def list(self, *, peers=None):
        """
        The stashed CIDs a hoarder holds.
        """
        return (await self._action("list", peers)).get("ids") or []

    async def replicas(self, project, application, match, *, peers=None):
        """
        The live holders of a database or storage instance.
        """
        return (await self._action("replicas", peers, project=project, application=application or "",
                                   match=match)).get("peers") or []

    async def status(self, project, application, match, *, peers=None):
        """
        C{{"claims": [peer], "peers": [live peer], "loaded": bool}} of an
        instance, as one hoarder sees it.
        """
        return await self._action("status", peers, project=project, application=application or "", match=match)

    async def metas(self, hashes, *, peers=None):
        return (await self._action("metas", peers, hashes=list(hashes))).get("metas") or {}
