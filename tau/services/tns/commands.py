"""
tns's commands on C{/tns/v1}, as Taubyte's spec sheet has them:

    push    {path, data}         -> {pushed: true}
    fetch   {path}               -> {object}   null if absent, the value of one leaf, else a map
    lookup  {prefix, regex}      -> {keys}     "/a/b" key names under a prefix, or matching a regex
    list    {depth}              -> {keys}     [[segment]]: every distinct key prefix of up to depth segments
    stats   {action: "db"}       -> {stats}    CBOR {1: [head CID bytes], 2: max height, 3: queued jobs}

Every body may carry C{token} (see L{tau.services.tns.tenancy}).  A push
is checked whole before anything is stored: a push that is refused stores
nothing.  Once stored, the push is announced on its C{/tns/updates/...}
topic (L{tau.services.tns.paths.updatesTopic}), so cached answers are
dropped wherever they are kept.

A regex lookup matches C{/tns/v1/<prefix joined by />} anywhere in a key,
with Python's C{re} instead of go's RE2: what could backtrack for long
(back-references, lookarounds, a repeat inside a repeat, more than
L{MAX_REPEATS} repeats) is refused, and the keys are matched in a thread.
"""

import cbor2
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from tau.saferegex import UnsafeRegex, compileSafe
from tau.services.tns.paths import KEY_PREFIX, assemble, checkPath, leaves, updatesTopic
from tau.services.tns.tenancy import HIDDEN

#: the longest regex a lookup may give, and the repeats it may hold
MAX_PATTERN = 512
MAX_REPEATS = 8

NAMES = ("push", "fetch", "lookup", "list", "stats")

log = Logger()


class Invalid(ValueError):
    """
    A body that is wrong in itself.
    """


def _checkRegex(pattern):
    try:
        return compileSafe(pattern, MAX_PATTERN, MAX_REPEATS)
    except UnsafeRegex as e:
        raise Invalid(f"prefix: {e}") from None


def _matching(regex, keys):
    return [k for k in keys if regex.search(k)]


class Commands:
    """
    @param storage: L{tau.services.tns.storage.Storage}.
    @param tenancy: L{tau.services.tns.tenancy.Tenancy}.
    @param publish: C{async publish(topic, data)} (pubsub), or None.
    @param reactor: IReactorThreads (regex lookups run in its pool).
    @param maxKeys: the most keys one push writes or one answer reads.
    """

    def __init__(self, storage, tenancy, publish, reactor, maxKeys):
        self.storage = storage
        self.tenancy = tenancy
        self.publish = publish
        self.reactor = reactor
        self.maxKeys = maxKeys
        #: C{{name: async handler(peer, body)}}
        self.handlers = {name: self._handler(getattr(self, "_" + name)) for name in NAMES}

    def define(self, router):
        for name, handler in self.handlers.items():
            router.define(name, handler)

    def _handler(self, method):
        async def handle(peer, body):
            return await method(await self.tenancy.reachOf(peer, body), body)

        return handle

    async def _visible(self, reach, path):
        """
        C{[(path, value)]} at and under C{path} that C{reach} sees.
        """
        out = []
        for p, value in await self.storage.under(path, self.maxKeys):
            seen = reach.sees(p, value)
            if seen is not HIDDEN:
                out.append((p, seen))
        return out

    async def _keys(self, reach, path):
        if reach.everything:
            return await self.storage.paths(path, self.maxKeys)
        return [p for p, _ in await self._visible(reach, path)]

    # push

    async def _push(self, reach, body):
        if "path" not in body:
            raise Invalid("path: expected a list of text segments")
        path = checkPath(body["path"])
        entries = leaves(path, body.get("data"))
        if len(entries) > self.maxKeys:
            raise Invalid(f"data: {len(entries)} keys, limit {self.maxKeys}")
        admitted = []
        for p, value in entries:
            needsExisting = value is None or (not reach.everything and reach.needsExisting(p, value))
            existing = await self.storage.get(p) if needsExisting else None
            if value is None and existing is not None:
                continue
            stored = reach.admit(p, value, existing)
            if stored is not HIDDEN:
                admitted.append((p, stored))
        await self.storage.write(admitted)
        if self.publish is not None:
            topics = sorted(({updatesTopic(p) for p, _ in admitted} | {updatesTopic(path)}) - {None})
            Deferred.fromCoroutine(self._announce(topics))
        return {"pushed": True}

    async def _announce(self, topics):
        """
        Announce a stored push on the topics of its keys (after it is
        answered: its caller does not wait for them).
        """
        for topic in topics:
            try:
                await self.publish(topic, b"")
            except Exception as e:
                log.info("tns: announcing {topic} failed: {why}", topic=topic, why=str(e))

    # reads

    async def _fetch(self, reach, body):
        path = checkPath(body.get("path"))
        entries = [(p[len(path):], v) for p, v in await self._visible(reach, path)]
        return {"object": assemble(entries)}

    async def _lookup(self, reach, body):
        prefix = body.get("prefix")
        regex = body.get("regex", False)
        if not isinstance(regex, bool):
            raise Invalid("regex: expected a boolean")
        if not isinstance(prefix, list) or not all(isinstance(s, str) for s in prefix):
            raise Invalid("prefix: expected a list of text")
        if not regex:
            keys = await self._keys(reach, checkPath(prefix))
            return {"keys": ["/" + "/".join(p) for p in keys]}
        compiled = _checkRegex("/".join([KEY_PREFIX, *prefix]))
        keys = [KEY_PREFIX + "/" + "/".join(p) for p in await self._keys(reach, [])]
        found = await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), _matching, compiled, keys)
        return {"keys": [k[len(KEY_PREFIX):] for k in found]}

    async def _list(self, reach, body):
        depth = body.get("depth")
        if isinstance(depth, bool) or not isinstance(depth, int):
            raise Invalid("depth: expected an integer")
        seen = set()
        for p in await self._keys(reach, []):
            for i in range(1, min(depth, len(p)) + 1):
                seen.add(tuple(p[:i]))
        return {"keys": [list(k) for k in sorted(seen)]}

    async def _stats(self, reach, body):
        action = body.get("action")
        if action != "db":
            raise Invalid(f"stats action `{action}` not recognized")
        heads = await self.storage.heads()
        # 3: queued jobs; tau's replica merges as announcements come, it
        # keeps no job queue
        stats = {1: [bytes(cid) for cid in heads], 2: max(heads.values(), default=0), 3: 0}
        return {"stats": cbor2.dumps(stats)}

