"""
Who the hoarders are: every member publishes a heartbeat on
L{tau.services.hoarder.MEMBERS_TOPIC} every second, CBOR with Taubyte's
field names::

    {"PeerID": text, "Incarnation": start time in ns, "Seq": count,
     "Zone": text, "Capacity": free bytes}

and a member unheard of for five seconds is dead.  A heartbeat is taken
only from a node of this cloud (C{IMembers.isMember(peer, "hoarder")})
whose signed pubsub source is the C{PeerID} it names, within
L{MAX_HEARTBEAT} bytes; at most C{maxMembers} members are tracked.
"""

from dataclasses import dataclass

import cbor2
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from tau.services.hoarder import MEMBERS_TOPIC

#: the largest heartbeat, its zone's length, and the largest counter
MAX_HEARTBEAT = 512
MAX_ZONE = 64
MAX_INT = (1 << 64) - 1
FIELDS = ("PeerID", "Incarnation", "Seq", "Zone", "Capacity")
#: the longest peer id text
MAX_PEER = 128

log = Logger()


class InvalidHeartbeat(ValueError):
    """
    A heartbeat that is not one.
    """


@dataclass(frozen=True)
class Heartbeat:
    peer: str
    incarnation: int
    seq: int
    zone: str = ""
    capacity: int = 0

    def encode(self):
        return cbor2.dumps({"PeerID": self.peer, "Incarnation": self.incarnation, "Seq": self.seq,
                            "Zone": self.zone, "Capacity": self.capacity})


def _count(value, name):
    if type(value) is not int or not 0 <= value <= MAX_INT:
        raise InvalidHeartbeat(f"{name}: expected a whole number from 0 to 2**64-1, found {value!r:.40}")
    return value


def decodeHeartbeat(data):
    """
    The L{Heartbeat} in C{data} (bytes).

    @raise InvalidHeartbeat: naming what is wrong.
    """
    if len(data) > MAX_HEARTBEAT:
        raise InvalidHeartbeat(f"a heartbeat of {len(data)} bytes (limit {MAX_HEARTBEAT})")
    try:
        value = cbor2.loads(data)
    except Exception as e:
        raise InvalidHeartbeat(f"not CBOR: {e}") from None
    if not isinstance(value, dict):
        raise InvalidHeartbeat("expected a map")
    peer = value.get("PeerID")
    if not isinstance(peer, str) or not 0 < len(peer) <= MAX_PEER:
        raise InvalidHeartbeat(f"PeerID: expected text of 1 to {MAX_PEER} characters")
    zone = value.get("Zone", "")
    if zone is None:
        zone = ""
    if not isinstance(zone, str) or len(zone) > MAX_ZONE:
        raise InvalidHeartbeat(f"Zone: expected text of at most {MAX_ZONE} characters")
    return Heartbeat(peer, _count(value.get("Incarnation"), "Incarnation"), _count(value.get("Seq"), "Seq"),
                     zone, _count(value.get("Capacity", 0), "Capacity"))


class Membership:
    """
    This node's heartbeat and the live members it hears.

    @param peerID: this node's id (it is always a live member while
        started).
    @param pubsub: L{tau.interfaces.IPubSub}.
    @param clock: IReactorTime.
    @param isMember: C{async isMember(peer, service)} (IMembers).
    @param onChange: C{onChange(joined, left)} (sets of id texts) when the
        live members change.
    @param capacity: C{capacity()}: the free bytes to announce.
    """

    def __init__(self, peerID, pubsub, clock, isMember, *, onChange=None, zone="", capacity=lambda: 0,
                 interval=1.0, deadAfter=5.0, maxMembers=1024):
        self.peerID = peerID
        self.me = str(peerID)
        self.pubsub = pubsub
        self.clock = clock
        self.isMember = isMember
        self.onChange = onChange
        self.zone = zone
        self.capacity = capacity
        self.interval = interval
        self.deadAfter = deadAfter
        self.maxMembers = maxMembers
        #: id text -> [Heartbeat, last heard (clock seconds)]
        self.members = {}
        self._beat = None
        self._sub = None
        self._reading = None
        self._seq = 0
        self.incarnation = 0

    def start(self):
        self.incarnation = int(self.clock.seconds() * 1e9)
        self.pubsub.addValidator(MEMBERS_TOPIC, self._validate)
        self._sub = self.pubsub.subscribe(MEMBERS_TOPIC)
        self._reading = Deferred.fromCoroutine(self._read(self._sub))
        self._reading.addErrback(lambda f: log.failure("hoarder: reading heartbeats failed", f))
        self._beat = LoopingCall(self._tick)
        self._beat.clock = self.clock
        self._beat.start(self.interval, now=True)

    def stop(self):
        if self._beat is not None and self._beat.running:
            self._beat.stop()
        self._beat = None
        if self._sub is not None:
            self._sub.cancel()
            self._sub = None
        self.pubsub.removeValidator(MEMBERS_TOPIC)
        self.members.clear()

    def live(self):
        """
        The ids (text) of the live members, this node's included, sorted.
        """
        now = self.clock.seconds()
        alive = {p for p, (_, heard) in self.members.items() if now - heard < self.deadAfter}
        alive.add(self.me)
        return sorted(alive)

    def isLive(self, peer):
        peer = str(peer)
        if peer == self.me:
            return True
        known = self.members.get(peer)
        return known is not None and self.clock.seconds() - known[1] < self.deadAfter

    # the heartbeat

    def _tick(self):
        self._sweep()
        self._seq += 1
        beat = Heartbeat(self.me, self.incarnation, self._seq, self.zone, max(0, int(self.capacity())))
        d = Deferred.fromCoroutine(self.pubsub.publish(MEMBERS_TOPIC, beat.encode()))
        d.addErrback(lambda f: log.debug("hoarder: a heartbeat was not published: {why}", why=f.getErrorMessage()))

    def _sweep(self):
        now = self.clock.seconds()
        dead = {p for p, (_, heard) in self.members.items() if now - heard >= self.deadAfter}
        for peer in dead:
            del self.members[peer]
            log.info("hoarder: member {peer} is gone", peer=peer)
        if dead:
            self._changed(set(), dead)

    # what others say

    async def _validate(self, message):
        try:
            beat = decodeHeartbeat(message.data)
        except InvalidHeartbeat as e:
            log.debug("hoarder: bad heartbeat from {peer}: {why}", peer=str(message.source), why=str(e))
            return False
        if message.source is None or beat.peer != str(message.source):
            return False
        # a node outside the cloud (or not a hoarder) is no member, yet it
        # broke no rule: ignored, its relays not penalised
        return True if await self.isMember(message.source, "hoarder") else None

    async def _read(self, sub):
        async for message in sub:
            # (messages the validator ignored do not come here)
            try:
                beat = decodeHeartbeat(message.data)
            except InvalidHeartbeat:
                continue
            if message.source is not None and beat.peer == str(message.source):
                self.heard(beat)

    def heard(self, beat):
        """
        Take C{beat}, a valid heartbeat of its member.
        """
        if beat.peer == self.me:
            return
        now = self.clock.seconds()
        known = self.members.get(beat.peer)
        if known is None:
            if len(self.members) >= self.maxMembers:
                log.debug("hoarder: {limit} members tracked, ignoring {peer}", limit=self.maxMembers, peer=beat.peer)
                return
            self.members[beat.peer] = [beat, now]
            log.info("hoarder: member {peer} joined", peer=beat.peer)
            self._changed({beat.peer}, set())
            return
        old = known[0]
        if (beat.incarnation, beat.seq) <= (old.incarnation, old.seq):
            return
        known[0], known[1] = beat, now

    def _changed(self, joined, left):
        if self.onChange is not None:
            self.onChange(joined, left)
