"""
The seers' gossip on C{/seer/oracle/v1}, as Taubyte's seer has it: what
one seer accepts from a node (a heartbeat's usage, an announce's services,
a place) it publishes there, and every other seer stores it as if the node
had told it, so a node heard by one seer is answered by all.

A message is Taubyte's C{nodeData}, CBOR:

    {1: node id, 2: hostname,
     8: [{"Type": text, "Meta": {text: text}}],          (announce; left out otherwise)
     9: usage map (L{tau.services.seer.usage}),          (heartbeat; left out otherwise)
     10: {1: Unix seconds, 4: {1: lat, 2: long}}}        (geo set; left out otherwise)

Taubyte's seer trusts any message on the topic.  Here a message counts
only when pubsub's signature (checked by pubsub) is a seer's of this cloud
(C{isMember(source, "seer")}), it is at most L{MAX_GOSSIP} bytes and every
part passes the checks the commands apply; anything else is rejected by
the topic's validator, so it is neither stored nor forwarded.  The node's
own signature is checked by the seer that heard it (the message does not
carry it, as Taubyte's does not).
"""

from dataclasses import dataclass

import cbor2
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from tau.identity import InvalidKey, PeerID
from tau.services.commands import CommandError, decodeCBOR
from tau.services.seer.commands import MAX_TEXT, Invalid, location, parseServices
from tau.services.seer.usage import CUSTOM, InvalidUsage, checkUsage

TOPIC = "/seer/oracle/v1"
#: the largest message (bytes): an announce at its limits and a usage fit
MAX_GOSSIP = 128 << 10

log = Logger()


@dataclass(frozen=True)
class NodeData:
    """
    One decoded message: the node, and what is new of it (None: not said).
    """

    peer: str
    hostname: str = ""
    services: dict = None
    usage: dict = None
    #: (lat, long, Unix seconds)
    location: tuple = None


def encodeNodeData(peer, hostname="", services=None, usage=None, location=None):
    """
    The message bytes telling that node C{peer} announced C{services}
    (name -> meta), sent C{usage} (parsed) or is at C{location} (lat,
    long, Unix seconds).
    """
    data = {1: peer, 2: hostname}
    if services is not None:
        data[8] = [{"Type": name, "Meta": meta} for name, meta in services.items()]
    if usage is not None:
        data[9] = {k: v for k, v in usage.items() if k != CUSTOM or v}
    if location is not None:
        lat, long, when = location
        data[10] = {1: when, 4: {1: lat, 2: long}}
    return cbor2.dumps(data)


def decodeNodeData(data):
    """
    The L{NodeData} of message bytes.

    @raise Invalid: saying why they are not a valid message.
    """
    if len(data) > MAX_GOSSIP:
        raise Invalid(f"a message of {len(data)} bytes (at most {MAX_GOSSIP})")
    try:
        value = decodeCBOR(data)
    except CommandError as e:
        raise Invalid(str(e)) from None
    if not isinstance(value, dict):
        raise Invalid("not a map")
    peer = value.get(1)
    if not isinstance(peer, str) or len(peer) > MAX_TEXT:
        raise Invalid("1: the node's id")
    try:
        peer = str(PeerID.fromString(peer))
    except (InvalidKey, ValueError) as e:
        raise Invalid(f"1: {e}") from None
    hostname = value.get(2) or ""
    if not isinstance(hostname, str) or len(hostname) > MAX_TEXT:
        raise Invalid(f"2: a hostname of at most {MAX_TEXT} characters")
    services = value.get(8)
    if services is not None:
        services = parseServices(services)
    usage = value.get(9)
    if usage is not None:
        try:
            usage = checkUsage(usage)
        except InvalidUsage as e:
            raise Invalid(str(e)) from None
    place = value.get(10)
    if place is not None:
        if not isinstance(place, dict):
            raise Invalid("10: {1: time, 4: location}")
        when = place.get(1)
        if isinstance(when, bool) or not isinstance(when, int) or not 0 <= when < 1 << 63:
            raise Invalid("10: a time in Unix seconds")
        place = (*location(place.get(4), "10"), when)
    return NodeData(peer, hostname, services, usage, place)


class Oracle:
    """
    This seer's part of the gossip.

    @param pubsub: L{tau.interfaces.IPubSub}.
    @param registry: L{tau.services.seer.registry.Registry}: what others
        tell is stored there.
    @param isMember: C{async isMember(peer, service) -> bool}.
    @param me: this node's L{PeerID}: its own messages are not stored twice.
    """

    def __init__(self, pubsub, registry, isMember, me):
        self.pubsub = pubsub
        self.registry = registry
        self.isMember = isMember
        self.me = me
        self._subscription = None
        self._reading = None
        #: messages the validator rejected so far
        self.rejected = 0

    def start(self):
        self.pubsub.addValidator(TOPIC, self.validate)
        self._subscription = self.pubsub.subscribe(TOPIC)
        self._reading = Deferred.fromCoroutine(self._read(self._subscription))
        self._reading.addErrback(lambda f: log.failure("seer: reading {topic} failed", f, topic=TOPIC))

    def stop(self):
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None
            self.pubsub.removeValidator(TOPIC)

    def tell(self, peer, **news):
        """
        Publish what this seer accepted about node C{peer} (L{encodeNodeData}'s
        keywords); a failure is logged.
        """
        if self._subscription is None:
            return
        d = Deferred.fromCoroutine(self.pubsub.publish(TOPIC, encodeNodeData(peer, **news)))
        d.addErrback(lambda f: log.info("seer: gossiping about {peer} failed: {why}", peer=peer,
                                        why=f.getErrorMessage()))

    async def validate(self, message):
        """
        The topic's validator: True for a valid message from a seer of
        this cloud, False otherwise.
        """
        try:
            decodeNodeData(message.data)
        except Invalid as e:
            why = str(e)
        else:
            if message.source is not None and await self.isMember(message.source, "seer"):
                return True
            why = "not from a seer of this cloud"
        self.rejected += 1
        log.info("seer: rejected a {topic} message from {source}: {why}", topic=TOPIC, source=str(message.source),
                 why=why)
        return False

    async def _read(self, subscription):
        async for message in subscription:
            if message.source == self.me:
                continue
            try:
                self.store(decodeNodeData(message.data))
            except (Invalid, OverflowError) as e:
                log.info("seer: not storing a {topic} message: {why}", topic=TOPIC, why=str(e))

    def store(self, news):
        """
        Store what a L{NodeData} tells.
        """
        if news.services is not None:
            self.registry.announce(news.peer, news.services)
        if news.usage is not None:
            known = self.registry.node(news.peer)
            hostname = news.hostname or (known.hostname if known is not None else "")
            self.registry.heartbeat(news.peer, hostname, news.usage)
        if news.location is not None:
            lat, long, when = news.location
            self.registry.locate(news.peer, lat, long, when)
