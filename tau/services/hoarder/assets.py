"""
The asset sweep: the build CIDs tns lists under C{assets/} (Taubyte's
C{assets/<mh(project + resource + branch)>}) that fewer than their target
of live members hold are adopted by the best placed live member, which
fetches, claims and fans them out as a stash.
"""

from twisted.logger import Logger

from tau.services.hoarder.placement import STASH_REPLICAS, ranked, stashTarget
from tau.services.hoarder.stash import BadStash, canonicalCID

log = Logger()


async def sweep(tns, membership, stasher, me, maxItems):
    """
    Adopt the assets under their target that this node is placed best
    for; the number adopted.
    """
    adopted = 0
    keys = await tns.lookup(["assets"])
    for key in keys[:maxItems]:
        parts = key.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "assets":
            continue
        value = await tns.fetch(parts)
        try:
            cid = canonicalCID(value)
        except BadStash:
            continue
        live = membership.live()
        holders = await stasher.liveHolders(cid)
        if len(holders) >= stashTarget(len(live)) or me in holders or ranked(cid, live)[0] != me:
            continue
        try:
            await stasher.receive(cid, STASH_REPLICAS, parts[1], fanout=True)
        except Exception as e:
            log.info("hoarder: adopting asset {cid} failed: {why}", cid=cid, why=str(e))
            continue
        adopted += 1
    return adopted
