"""
hoarder's commands on C{/hoarder/v1}, as Taubyte's spec sheet has them,
command C{hoarder} with a body C{{action, ...}}:

    rare                                   -> {rare}     stashed CIDs held here under their target
    list                                   -> {ids}      stashed CIDs held here
    replicas  {project, application, match} -> {peers}    live holders of the instance
    status    (same body)                  -> {claims, peers, loaded}
    load      (same body)                  -> {loaded}   claim and open it here (cloud members only)
    unload    (same body)                  -> {loaded}   release the claim here (cloud members only)
    metas     {hashes}                     -> {metas: {hash: {kind, configId, project, application, match, branch}}}
    stashStatus {cids}                     -> {claims: {cid: live claims}, target}
    stash     {cid, target, owner, fanout} -> {cid, peers}  (tau's: fetch the CID, pin, claim, fan out;
                                                          cloud members only)

and Taubyte's raw stash upgrade (L{tau.services.hoarder.rawstash}) as
command C{stash}.
"""

from tau.services.hoarder.instances import Instance, instanceHash
from tau.services.hoarder.placement import stashTarget
from tau.services.hoarder.registry import BadItem
from tau.services.hoarder.stash import BadStash, canonicalCID, checkTarget

ACTIONS = ("rare", "list", "replicas", "status", "load", "unload", "metas", "stashStatus", "stash")
#: the longest project, application or match text
MAX_NAME = 256


class Invalid(ValueError):
    """
    A body that is wrong in itself, or a caller not allowed.
    """


def _text(body, key, required=True):
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or len(value) > MAX_NAME:
        raise Invalid(f"{key}: expected text of at most {MAX_NAME} characters")
    return value


def _texts(body, key, limit):
    value = body.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid(f"{key}: expected a list of text")
    if len(value) > limit:
        raise Invalid(f"{key}: {len(value)} given, limit {limit}")
    return value


class Commands:
    """
    @param me: this node's id text.
    @param registry: L{tau.services.hoarder.registry.Registry}.
    @param membership: L{tau.services.hoarder.membership.Membership}.
    @param stasher: L{tau.services.hoarder.stash.Stasher}.
    @param reconciler: L{tau.services.hoarder.instances.Reconciler}.
    @param trusted: C{async trusted(peer) -> bool}: a node of this cloud.
    @param maxCids: the most CIDs or hashes one request names.
    """

    def __init__(self, me, registry, membership, stasher, reconciler, trusted, maxCids=1000):
        self.me = me
        self.registry = registry
        self.membership = membership
        self.stasher = stasher
        self.reconciler = reconciler
        self.trusted = trusted
        self.maxCids = maxCids
        self.handlers = {"hoarder": self.hoarder}

    def define(self, router):
        for name, handler in self.handlers.items():
            router.define(name, handler)

    async def hoarder(self, peer, body):
        action = body.get("action")
        if action not in ACTIONS:
            raise Invalid(f"action {str(action)[:64]} unknown")
        try:
            return await getattr(self, "_" + action)(peer, body)
        except (BadItem, BadStash) as e:
            raise Invalid(str(e)) from None

    async def _checkTrusted(self, peer):
        if not await self.trusted(peer):
            raise Invalid(f"{peer} is not a node of this cloud")

    def _live(self, claims):
        return sorted(p for p in claims if self.membership.isLive(p))

    # stash

    async def _rare(self, peer, body):
        return {"rare": await self.stasher.rare()}

    async def _list(self, peer, body):
        return {"ids": await self.registry.stashedBy(self.me)}

    async def _stashStatus(self, peer, body):
        out = {}
        for cid in _texts(body, "cids", self.maxCids):
            try:
                claims = await self.registry.stashClaims(canonicalCID(cid))
            except (BadStash, BadItem):
                claims = {}
            out[cid] = len(self._live(claims))
        return {"claims": out, "target": stashTarget(len(self.membership.live()))}

    async def _stash(self, peer, body):
        await self._checkTrusted(peer)
        cid = canonicalCID(body.get("cid"))
        target = checkTarget(body.get("target"))
        owner = _text(body, "owner", required=False)
        fanout = body.get("fanout", True)
        if not isinstance(fanout, bool):
            raise Invalid("fanout: expected a boolean")
        holders = await self.stasher.receive(cid, target, owner, fanout)
        return {"cid": cid, "peers": holders}

    # instances

    def _hashOf(self, body):
        return instanceHash(_text(body, "project"), _text(body, "application", required=False),
                            _text(body, "match"))

    async def _replicas(self, peer, body):
        return {"peers": self._live(await self.registry.claims(self._hashOf(body)))}

    async def _status(self, peer, body):
        hash = self._hashOf(body)
        claims = await self.registry.claims(hash)
        return {"claims": sorted(claims), "peers": self._live(claims), "loaded": hash in self.reconciler.loaded}

    async def _load(self, peer, body):
        await self._checkTrusted(peer)
        hash = self._hashOf(body)
        meta = await self.registry.meta(hash)
        instance = _instanceOf(meta)
        if instance is None:
            raise Invalid(f"no instance {hash} is known")
        await self.reconciler.load(instance)
        return {"loaded": True}

    async def _unload(self, peer, body):
        await self._checkTrusted(peer)
        await self.reconciler.unload(self._hashOf(body))
        return {"loaded": False}

    async def _metas(self, peer, body):
        out = {}
        for hash in _texts(body, "hashes", self.maxCids):
            try:
                meta = await self.registry.meta(hash)
            except BadItem:
                continue
            instance = _instanceOf(meta)
            if instance is not None:
                out[hash] = {"kind": instance.kind, "configId": instance.configId, "project": instance.project,
                             "application": instance.application, "match": instance.match,
                             "branch": instance.branch}
        return {"metas": out}


def _instanceOf(meta):
    """
    The L{Instance} a registry meta describes, or None.
    """
    if not isinstance(meta, dict):
        return None
    kind = meta.get("Kind")
    fields = [meta.get(k) for k in ("ProjectId", "ApplicationId", "ConfigId", "Match", "Branch")]
    if kind not in (0, 1) or not all(isinstance(f, str) and len(f) <= MAX_NAME for f in fields):
        return None
    try:
        instance = Instance(kind, *fields)
        instance.kvdbName
    except ValueError:
        return None
    return instance
