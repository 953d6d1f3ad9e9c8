"""
seer's commands on C{/seer/v1}, as Taubyte's spec sheet has them:

    heartbeat {usage, hostname, id, client, signature} -> {"Updated Usage": id}
    heartbeat {action: list}                           -> {ids}
    heartbeat {action: listService, name}              -> {ids}
    heartbeat {action: info, id}                       -> {usage}
    announce  {services: [{Type, Meta}], id, client, signature} -> {Registered: [Type]}

The signature is the node's key over the text C{id + client}; the key is
the one inlined in the peer ID C{id}.  Only a member of this node's cloud
is heard, and only about itself (C{id} is the caller).
"""

from tau.identity import InvalidKey, PeerID

NAMES = ("heartbeat", "announce")

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
        self.handlers = {"heartbeat": self.heartbeat, "announce": self.announce}

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
