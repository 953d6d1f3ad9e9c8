"""
The hoarders' registry: the kvdb database C{hoarder} (written by the
cloud's hoarder nodes), CBOR values with Taubyte's field names::

    /hoarder/meta/<hash>                 {Kind, ConfigId, ProjectId, ApplicationId, Match, Branch}
    /hoarder/claims/<hash>/<peer>        {Since}
    /hoarder/stash/meta/<cid>            {Target, OwnerHash}
    /hoarder/stash/claims/<cid>/<peer>   {Since}

A claim says a node holds an item; claims of dead nodes are never
deleted, only filtered by liveness.  A value that does not decode is
skipped (the registry is written by other nodes).
"""

import cbor2

from tau.services.hoarder import REGISTRY

META = "/hoarder/meta/"
CLAIMS = "/hoarder/claims/"
STASH_META = "/hoarder/stash/meta/"
STASH_CLAIMS = "/hoarder/stash/claims/"
#: kinds of instance (Taubyte's numbers)
DATABASE, STORAGE = 0, 1
#: the longest item (hash or CID) and peer id text
MAX_ITEM = 128


class BadItem(ValueError):
    """
    A hash, CID or peer id that cannot be part of a registry key.
    """


def _item(text, what="item"):
    if not isinstance(text, str) or not 0 < len(text) <= MAX_ITEM or "/" in text or not text.isprintable():
        raise BadItem(f"{what}: expected text of 1 to {MAX_ITEM} printable characters without /")
    return text


def _key(*parts):
    return "".join(parts).encode("utf-8")


def _decode(value):
    try:
        decoded = cbor2.loads(value)
    except Exception:
        return None
    return decoded if isinstance(decoded, dict) else None


def _since(value):
    decoded = _decode(value)
    since = decoded.get("Since") if decoded else None
    return since if type(since) is int else 0


class Registry:
    """
    @param kvdb: L{tau.interfaces.IKVDB}.
    @param maxKeys: the most keys one listing reads.
    """

    def __init__(self, kvdb, maxKeys=100_000):
        self.kvdb = kvdb
        self.maxKeys = maxKeys
        self.db = None

    async def open(self):
        await self.kvdb.whenReady()
        self.db = (await self.kvdb.serviceDatabase("hoarder", REGISTRY)).name
        return self

    async def _claims(self, prefix, item):
        prefix = _key(prefix, _item(item), "/")
        out = {}
        for key, value in await self.kvdb.list(self.db, prefix, limit=self.maxKeys, values=True):
            out[key[len(prefix):].decode("utf-8", "replace")] = _since(value)
        return out

    async def _items(self, prefix):
        """
        The distinct items with a key under C{prefix} (C{<item>/...}).
        """
        prefix = prefix.encode("utf-8")
        seen = []
        for key in await self.kvdb.list(self.db, prefix, limit=self.maxKeys):
            item = key[len(prefix):].split(b"/", 1)[0].decode("utf-8", "replace")
            if not seen or seen[-1] != item:
                seen.append(item)
        return seen

    # instances

    async def putMeta(self, hash, meta):
        await self.kvdb.put(self.db, _key(META, _item(hash, "hash")), cbor2.dumps(meta))

    async def meta(self, hash):
        value = await self.kvdb.get(self.db, _key(META, _item(hash, "hash")))
        return _decode(value) if value is not None else None

    async def claim(self, hash, peer, since):
        await self.kvdb.put(self.db, _key(CLAIMS, _item(hash, "hash"), "/", _item(peer, "peer")),
                            cbor2.dumps({"Since": since}))

    async def release(self, hash, peer):
        await self.kvdb.delete(self.db, _key(CLAIMS, _item(hash, "hash"), "/", _item(peer, "peer")))

    async def claims(self, hash):
        """
        C{{peer: since}} of the claims on instance C{hash}.
        """
        return await self._claims(CLAIMS, hash)

    async def instances(self):
        """
        The hashes with a claim.
        """
        return await self._items(CLAIMS)

    # stash

    async def putStashMeta(self, cid, target, owner):
        await self.kvdb.put(self.db, _key(STASH_META, _item(cid, "cid")),
                            cbor2.dumps({"Target": target, "OwnerHash": owner}))

    async def stashMeta(self, cid):
        value = await self.kvdb.get(self.db, _key(STASH_META, _item(cid, "cid")))
        return _decode(value) if value is not None else None

    async def stashClaim(self, cid, peer, since):
        await self.kvdb.put(self.db, _key(STASH_CLAIMS, _item(cid, "cid"), "/", _item(peer, "peer")),
                            cbor2.dumps({"Since": since}))

    async def stashClaims(self, cid):
        """
        C{{peer: since}} of the claims on stashed C{cid}.
        """
        return await self._claims(STASH_CLAIMS, cid)

    async def stashed(self):
        """
        The CIDs with a stash claim.
        """
        return await self._items(STASH_CLAIMS)

    async def stashedBy(self, peer):
        """
        The CIDs C{peer} claims.
        """
        suffix = ("/" + _item(peer, "peer")).encode("utf-8")
        prefix = STASH_CLAIMS.encode("utf-8")
        keys = await self.kvdb.list(self.db, prefix, limit=self.maxKeys)
        return [k[len(prefix):-len(suffix)].decode("utf-8", "replace") for k in keys if k.endswith(suffix)]
