"""
seer's commands on C{/seer/v1}, as Taubyte's spec sheet has them:

    heartbeat {usage, hostname, id, client, signature} -> {"Updated Usage": id}
    heartbeat {action: list}                           -> {ids}
    heartbeat {action: listService, name}              -> {ids}
    heartbeat {action: info, id}                       -> {usage}
    announce  {services: [{Type, Meta}], id, client, signature} -> {Registered: [Type]}
    geo       {action: set, location: {1: lat, 2: long}}         -> {}
    geo       {action: query, from: {1, 2}, distance: metres}    -> {peers: {pid: {1: ns, 4: {1, 2}}}}
    geo       {action: query-all}                                -> the same, every located node

The signature is the node's key over the text C{id + client}; the key is
the one inlined in the peer ID C{id}.  Only a member of this node's cloud
is heard, and only about itself (C{id} is the caller); C{geo set} places
the caller.
"""

import math

from tau.identity import InvalidKey, PeerID

NAMES = ("heartbeat", "announce", "geo")
#: the earth's mean radius (metres), for distances on it
EARTH_RADIUS = 6_371_000

#: the most services one announce lists, and the longest text in it
MAX_SERVICES = 32
MAX_TEXT = 256
#: the largest usage a heartbeat carries (bytes)
MAX_USAGE = 16 << 10


class Invalid(ValueError):
    """
    A body that is wrong in itself, or not signed by its node.
    """


def _text(body, key, limit=MAX_TEXT):
    value = body.get(key)
    if not isinstance(value, str) or len(value) > limit:
        raise Invalid(f"{key}: a text of at most {limit} characters")
    return value


def signatureOf(key, peer, client):
    """
    What a node signs: C{key} (a L{tau.identity.PrivateKey}) over
    C{peer + client}.
    """
    return key.sign((str(peer) + client).encode("utf-8"))


def checkSigned(body, caller):
    """
    The peer ID C{body} speaks for, once its signature checks out and it
    is the caller's.

    @raise Invalid: otherwise, saying why.
    """
    peer, client = _text(body, "id"), _text(body, "client")
    signature = body.get("signature")
    if not isinstance(signature, bytes):
        raise Invalid("signature: bytes")
    if peer != str(caller):
        raise Invalid("id: a node speaks for itself only")
    try:
        key = PeerID.fromString(peer).extractPublicKey()
    except InvalidKey as e:
        raise Invalid(f"id: {e}") from None
    if key is None or not key.verify(signature, (peer + client).encode("utf-8")):
        raise Invalid("signature: not the node's signature of id and client")
    return peer


class Commands:
    """
    @param registry: L{tau.services.seer.registry.Registry}.
    @param isMember: C{async isMember(peer) -> bool}.
    """

    def __init__(self, registry, isMember):
        self.registry = registry
        self.isMember = isMember
        self.handlers = {"heartbeat": self.heartbeat, "announce": self.announce, "geo": self.geo}

    def define(self, router):
        for name, handler in self.handlers.items():
            router.define(name, handler)

    async def _member(self, peer):
        if not await self.isMember(peer):
            raise Invalid("only the nodes of this cloud are heard")

    async def heartbeat(self, peer, body):
        if not isinstance(body, dict):
            raise Invalid("a map body")
        action = body.get("action")
        if action == "list":
            return {"ids": [n.peer for n in self.registry.nodes()]}
        if action == "listService":
            return {"ids": [n.peer for n in self.registry.nodes(_text(body, "name"))]}
        if action == "info":
            node = self.registry.node(_text(body, "id"))
            if node is None:
                raise Invalid("id: no such live node")
            return {"usage": node.usage}
        if action is not None:
            raise Invalid(f"action: unknown {action!r}")
        await self._member(peer)
        node = checkSigned(body, peer)
        usage = body.get("usage")
        if not isinstance(usage, bytes) or len(usage) > MAX_USAGE:
            raise Invalid(f"usage: at most {MAX_USAGE} bytes")
        self.registry.heartbeat(node, _text(body, "hostname"), usage)
        return {"Updated Usage": node}

    async def announce(self, peer, body):
        if not isinstance(body, dict):
            raise Invalid("a map body")
        await self._member(peer)
        node = checkSigned(body, peer)
        services = body.get("services")
        if not isinstance(services, list) or len(services) > MAX_SERVICES:
            raise Invalid(f"services: a list of at most {MAX_SERVICES}")
        found = {}
        for one in services:
            if not isinstance(one, dict):
                raise Invalid("services: each a map {Type, Meta}")
            meta = one.get("Meta") or {}
            if not isinstance(meta, dict) or len(meta) > MAX_SERVICES or not all(
                    isinstance(k, str) and isinstance(v, str) and len(k) <= MAX_TEXT and len(v) <= MAX_TEXT
                    for k, v in meta.items()):
                raise Invalid("services: Meta maps text to text")
            found[_text(one, "Type")] = meta
        self.registry.announce(node, found)
        return {"Registered": list(found)}

    async def geo(self, peer, body):
        if not isinstance(body, dict):
            raise Invalid("a map body")
        action = body.get("action")
        if action == "set":
            await self._member(peer)
            lat, long = _location(body.get("location"), "location")
            self.registry.locate(str(peer), lat, long)
            return {}
        if action == "query-all":
            return {"peers": _located(self.registry.nodes())}
        if action == "query":
            lat, long = _location(body.get("from"), "from")
            distance = body.get("distance")
            if isinstance(distance, bool) or not isinstance(distance, (int, float)) or not distance >= 0:
                raise Invalid("distance: a number of metres, 0 or more")
            near = [n for n in self.registry.nodes()
                    if n.location is not None and metres((lat, long), n.location[:2]) <= distance]
            return {"peers": _located(near)}
        raise Invalid(f"action: unknown {action!r}")


def _location(value, key):
    """
    C{(lat, long)} of a C{{1: lat, 2: long}} map, in degrees.
    """
    if not isinstance(value, dict):
        raise Invalid(f"{key}: a map {{1: latitude, 2: longitude}}")
    lat, long = value.get(1), value.get(2)
    for v in (lat, long):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise Invalid(f"{key}: a map {{1: latitude, 2: longitude}} of numbers")
    if not (-90 <= lat <= 90 and -180 <= long <= 180):
        raise Invalid(f"{key}: latitude within -90..90, longitude within -180..180")
    return float(lat), float(long)


def _located(nodes):
    return {n.peer: {1: n.location[2], 4: {1: n.location[0], 2: n.location[1]}} for n in nodes if n.location is not None}


def metres(a, b):
    """
    The great-circle distance between C{(lat, long)} points C{a} and C{b}
    (haversine).
    """
    lat1, long1, lat2, long2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((long2 - long1) / 2) ** 2
    return 2 * EARTH_RADIUS * math.asin(min(1.0, math.sqrt(h)))
