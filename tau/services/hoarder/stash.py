"""
Stashed artefacts (build zips, logs): a monkey that has an artefact pinned
asks one hoarder to stash its CID; the hoarder fetches the DAG by CID
(bitswap, through L{tau.interfaces.IContent}), pins and provides it,
writes the stash meta and its claim, and pushes it to C{target - 1} other
live members, best placed first (they fetch it from whoever has it, and
do not fan out again).

When a member dies, the live holder of each artefact that is placed best
among its live holders pushes it again until it is back at its target
(L{Stasher.repair}).
"""

from twisted.logger import Logger

from tau.cids import InvalidCID, cidText, parseCID
from tau.services.hoarder.placement import STASH_REPLICAS, ranked, stashTarget
from tau.services.hoarder.registry import MAX_ITEM
from tau.streams import withTimeout

log = Logger()


class BadStash(ValueError):
    """
    A stash request that is wrong in itself.
    """


class StashFailed(Exception):
    """
    The artefact could not be fetched.
    """


def canonicalCID(value):
    """
    The canonical text of CID C{value} (text).

    @raise BadStash: when it is not one.
    """
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ITEM:
        raise BadStash(f"cid: expected a CID as text of at most {MAX_ITEM} characters")
    try:
        return cidText(parseCID(value))
    except (InvalidCID, ValueError) as e:
        raise BadStash(f"cid: {e}") from None


def checkTarget(value):
    if value is None:
        return STASH_REPLICAS
    if type(value) is not int or not 1 <= value <= 16:
        raise BadStash("target: expected a whole number from 1 to 16")
    return value


class Stasher:
    """
    @param me: this node's id text.
    @param content: L{tau.interfaces.IContent}.
    @param registry: L{tau.services.hoarder.registry.Registry}.
    @param membership: has C{live()}, C{isLive(peer)}.
    @param push: C{async push(peer, cid, target, owner)}: ask member
        C{peer} to stash C{cid} without fanning out.
    @param clock: IReactorTime.
    @param fetchTimeout: seconds a fetch may take.
    """

    def __init__(self, me, content, registry, membership, push, clock, fetchTimeout=60.0):
        self.me = me
        self.content = content
        self.registry = registry
        self.membership = membership
        self.push = push
        self.clock = clock
        self.fetchTimeout = fetchTimeout
        #: how many pushes to other members succeeded
        self.pushes = 0

    def _nanos(self):
        return int(self.clock.seconds() * 1e9)

    async def receive(self, cid, target=STASH_REPLICAS, owner="", fanout=True):
        """
        Fetch, pin and claim C{cid}, then (with C{fanout}) push it to the
        other members it needs.

        @return: the ids of the live members that hold it now: this one,
            those that held it already (with C{fanout}), those it was
            pushed to.
        """
        cid = canonicalCID(cid)
        target = checkTarget(target)
        try:
            await withTimeout(self.clock, self.fetchTimeout, self.content.pin(cid))
        except Exception as e:
            raise StashFailed(f"fetching {cid} failed: {e.__class__.__name__}: {e}") from None
        provided = self.content.provide(cid)
        if provided is not None and hasattr(provided, "addErrback"):
            provided.addErrback(lambda f: log.debug("hoarder: providing {cid} failed: {why}", cid=cid,
                                                    why=f.getErrorMessage()))
        if await self.registry.stashMeta(cid) is None:
            await self.registry.putStashMeta(cid, target, owner or "")
        await self.registry.stashClaim(cid, self.me, self._nanos())
        holders = [self.me]
        if fanout:
            holders += [p for p in await self.liveHolders(cid) if p != self.me]
            holders += await self._fanout(cid, target, owner or "", holders)
        return holders

    async def liveHolders(self, cid):
        claims = await self.registry.stashClaims(cid)
        return [p for p in claims if self.membership.isLive(p)]

    async def _fanout(self, cid, target, owner, holders):
        live = self.membership.live()
        need = stashTarget(len(live), target) - len(holders)
        pushed = []
        for peer in ranked(cid, live):
            if need <= 0:
                break
            if peer in holders:
                continue
            try:
                await self.push(peer, cid, target, owner)
            except Exception as e:
                log.info("hoarder: pushing {cid} to {peer} failed: {why}", cid=cid, peer=peer, why=str(e))
                continue
            self.pushes += 1
            pushed.append(peer)
            need -= 1
        return pushed

    async def repair(self, maxItems=None):
        """
        Push each artefact this node holds that is under its target, where
        this node is the best placed of its live holders.

        @return: the number of artefacts pushed again.
        """
        repaired = 0
        for cid in (await self.registry.stashedBy(self.me))[:maxItems]:
            holders = await self.liveHolders(cid)
            if self.me not in holders:
                continue
            meta = await self.registry.stashMeta(cid) or {}
            target = meta.get("Target")
            target = target if type(target) is int and 1 <= target <= 16 else STASH_REPLICAS
            owner = meta.get("OwnerHash") if isinstance(meta.get("OwnerHash"), str) else ""
            if len(holders) >= stashTarget(len(self.membership.live()), target):
                continue
            if ranked(cid, holders)[0] != self.me:
                continue
            if await self._fanout(cid, target, owner, holders):
                repaired += 1
        return repaired

    async def rare(self):
        """
        The CIDs this node holds with fewer claims than their target.
        """
        out = []
        fleet = len(self.membership.live())
        for cid in await self.registry.stashedBy(self.me):
            if len(await self.liveHolders(cid)) < stashTarget(fleet):
                out.append(cid)
        return out
