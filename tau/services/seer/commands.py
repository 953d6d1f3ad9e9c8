"""
seer's commands on C{/seer/v1}, as Taubyte's spec sheet has them:

    heartbeat {usage, hostname, id, client, signature} -> {"Updated Usage": id}
    heartbeat {action: list}                           -> {ids}
    heartbeat {action: listService, name}              -> {ids}
    heartbeat {action: info, id}                       -> {usage: JSON of Taubyte's UsageReturn}
    announce  {services: [{Type, Meta}], id, client, signature} -> {Registered: [Type]}
    geo       {action: set, location: {1: lat, 2: long}}         -> {}
    geo       {action: query, from: {1, 2}, distance: metres}    -> {peers: {pid: {1: unix s, 4: {1, 2}}}}
    geo       {action: query-all}                                -> the same, every located node

The signature is the node's key over the text C{id + client}; the key is
the one inlined in the peer ID C{id}.  Only a member of this node's cloud
is heard, and only about itself (C{id} is the caller); C{geo set} places
the caller.

What seer accepts it tells the other seers through C{tell} (the gossip on
C{/seer/oracle/v1}, L{tau.services.seer.oracle}), as Taubyte's seer does.
"""

import math

from tau.identity import InvalidKey, PeerID
from tau.services.seer.usage import InvalidUsage, parseUsage, usageReturn

NAMES = ("heartbeat", "announce", "geo")
#: the earth's mean radius (metres), for distances on it
EARTH_RADIUS = 6_371_000

#: the most services one announce lists, and the longest text in it
MAX_SERVICES = 32
MAX_TEXT = 256
#: the largest usage a heartbeat carries (bytes)
MAX_USAGE = 16 << 10
#: the most characters of Meta (keys and values) one announce carries
MAX_META = 32 << 10


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
    @param tell: C{tell(peer, hostname=, services=, usage=, location=)}:
        what seer accepted about node C{peer}, for the other seers; or
        None.
    """

    def __init__(self, registry, isMember, tell=None):
        self.registry = registry
        self.isMember = isMember
        self.tell = tell or (lambda peer, **news: None)
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
            return {"ids": [n.peer for n in self.registry.nodes() if n.usage is not None]}
        if action == "listService":
            name = _text(body, "name")
            if not name:
                raise Invalid("name: cannot be empty")
            return {"ids": [n.peer for n in self.registry.nodes(name)]}
        if action == "info":
            return {"usage": self.info(_text(body, "id"))}
        if action is not None:
            raise Invalid(f"action: unknown {action!r}")
        await self._member(peer)
        node = checkSigned(body, peer)
        data = body.get("usage")
        if not isinstance(data, bytes) or len(data) > MAX_USAGE:
            raise Invalid(f"usage: at most {MAX_USAGE} bytes")
        try:
            usage = parseUsage(data)
        except InvalidUsage as e:
            raise Invalid(str(e)) from None
        hostname = _text(body, "hostname")
        self.registry.heartbeat(node, hostname, usage)
        self.tell(node, hostname=hostname, usage=usage)
        return {"Updated Usage": node}

    def info(self, peer):
        """
        The JSON of Taubyte's C{UsageReturn} for node C{peer}.
        """
        node = self.registry.node(peer)
        if node is None or node.usage is None:
            raise Invalid("id: no heartbeat from that node")
        address = str(node.addresses[0]) if node.addresses else ""
        return usageReturn(node.peer, node.hostname, list(node.services), int(node.heard * 1e9), address,
                           node.usage)

    async def announce(self, peer, body):
        if not isinstance(body, dict):
            raise Invalid("a map body")
        await self._member(peer)
        node = checkSigned(body, peer)
        found = parseServices(body.get("services"))
        self.registry.announce(node, found)
        self.tell(node, services=found)
        return {"Registered": list(found)}

    async def geo(self, peer, body):
        if not isinstance(body, dict):
            raise Invalid("a map body")
        action = body.get("action")
        if action == "set":
            await self._member(peer)
            lat, long = location(body.get("location"), "location")
            self.registry.locate(str(peer), lat, long)
            self.tell(str(peer), location=self.registry.node(str(peer)).location)
            return {}
        if action == "query-all":
            return {"peers": _located(self.registry.nodes())}
        if action == "query":
            lat, long = location(body.get("from"), "from")
            distance = body.get("distance")
            if isinstance(distance, bool) or not isinstance(distance, (int, float)) or not distance >= 0:
                raise Invalid("distance: a number of metres, 0 or more")
            near = [n for n in self.registry.nodes()
                    if n.location is not None and metres((lat, long), n.location[:2]) <= distance]
            return {"peers": _located(near)}
        raise Invalid(f"action: unknown {action!r}")


def parseServices(services):
    """
    C{{Type: Meta}} of an announce's C{services} (C{[{Type, Meta}]}).

    @raise Invalid: past the limits, or not that shape.
    """
    if not isinstance(services, list) or len(services) > MAX_SERVICES:
        raise Invalid(f"services: a list of at most {MAX_SERVICES}")
    found = {}
    total = 0
    for one in services:
        if not isinstance(one, dict):
            raise Invalid("services: each a map {Type, Meta}")
        meta = one.get("Meta") or {}
        if not isinstance(meta, dict) or len(meta) > MAX_SERVICES or not all(
                isinstance(k, str) and isinstance(v, str) and len(k) <= MAX_TEXT and len(v) <= MAX_TEXT
                for k, v in meta.items()):
            raise Invalid("services: Meta maps text to text")
        total += sum(len(k) + len(v) for k, v in meta.items())
        if total > MAX_META:
            raise Invalid(f"services: at most {MAX_META} characters of Meta in all")
        found[_text(one, "Type")] = dict(meta)
    return found


def location(value, key):
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
