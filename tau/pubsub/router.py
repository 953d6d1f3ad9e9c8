"""
The gossipsub v1.1 router, sans-IO (libp2p/specs pubsub/gossipsub/
gossipsub-v1.0.md and gossipsub-v1.1.md), with floodsub peers served as
floodsub (pubsub/README.md).

L{GossipRouter} keeps the peers, their subscriptions, the mesh and fanout of
every topic, the caches and the scores, and is driven from outside: the
service hands it decoded RPCs (L{GossipRouter.handleRPC}), peers coming and
going, our own subscriptions and messages, and calls
L{GossipRouter.heartbeat} every second; the router answers through the
callables it was given (C{send(peer, rpc)}, C{deliver(message)}, ...).
Time comes from C{clock.seconds()}, randomness from C{rng}: tests drive it
with a L{twisted.internet.task.Clock} and a seeded C{random.Random}.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger

from tau.pubsub.caches import MessageCache, SeenCache
from tau.pubsub.control import ControlMessages
from tau.pubsub.mesh import MeshMaintenance
from tau.pubsub.message import (
    GOSSIP_PROTOCOLS,
    MAX_MESSAGE_DATA,
    RPC,
    InvalidMessage,
    goMsgID,
    idForms,
    jsMsgID,
    parseMessage,
    verifyMessage,
)
from tau.pubsub.score import PeerScore, ScoreParams, Thresholds
from tau.ratelog import PeerLog

log = Logger()
peerLog = PeerLog(log)


class ValidationError(Exception):
    """
    A message we publish was refused by a validator (or is invalid).
    """


@dataclass
class GossipParams:
    """
    The spec's parameters, go's and js's defaults, and tau's limits.
    """

    D: int = 6
    Dlo: int = 4
    Dhi: int = 12
    Dlazy: int = 6
    Dscore: int = 4
    Dout: int = 2
    heartbeatInterval: float = 1.0
    heartbeatInitialDelay: float = 0.1
    fanoutTTL: float = 60.0
    historyLength: int = 5
    historyGossip: int = 3
    seenTTL: float = 120.0
    gossipFactor: float = 0.25
    pruneBackoff: float = 60.0
    unsubscribeBackoff: float = 10.0
    prunePeers: int = 16
    doPX: bool = True
    opportunisticGraftTicks: int = 60
    opportunisticGraftPeers: int = 2
    graftFloodThreshold: float = 10.0
    maxIHaveLength: int = 5000
    maxIHaveMessages: int = 10
    iwantFollowupTime: float = 3.0
    gossipRetransmission: int = 3
    floodPublish: bool = True
    #: largest payload accepted or published
    maxMessageData: int = MAX_MESSAGE_DATA
    #: messages per second a peer may send us, and the burst allowed
    messageRate: float = 500.0
    messageBurst: float = 2000.0
    #: topics remembered per peer
    maxTopicsPerPeer: int = 1024
    #: most PX peers dialled per PRUNE
    maxPXConnect: int = 16
    #: most payload bytes sent in answer to one IWANT (the rest of the ids
    #: are not answered, as if unknown)
    maxIWantReplyBytes: int = 4 << 20

    def check(self):
        if not (0 < self.Dlo <= self.D <= self.Dhi):
            raise ValueError("need 0 < Dlo <= D <= Dhi")
        if not (0 <= self.Dscore <= self.D and 0 <= self.Dout < self.Dlo and self.Dout <= self.D // 2):
            raise ValueError("need Dscore <= D, Dout < Dlo and Dout <= D/2")
        if self.historyGossip > self.historyLength:
            raise ValueError("historyGossip cannot exceed historyLength")


class _Peer:
    __slots__ = ("peerID", "protocol", "outbound", "topics", "tokens", "lastRefill")

    def __init__(self, peerID, protocol, outbound, burst, now):
        self.peerID = peerID
        self.protocol = protocol
        self.outbound = outbound
        self.topics = set()
        self.tokens = burst
        self.lastRefill = now

    @property
    def gossip(self):
        return self.protocol in GOSSIP_PROTOCOLS


class GossipRouter(ControlMessages, MeshMaintenance):
    """
    @param localPeer: our L{PeerID}.
    @param send: C{send(peer, rpc)}: queue an L{RPC} to a peer.
    @param deliver: C{deliver(message)}: a valid message for a topic we
        joined.
    @param validate: C{validate(message)} -> True (accept), False (reject:
        the sender is penalised), None (ignore), or a Deferred of those.
    @param connect: C{connect([(PeerID, signedRecord or None)])}: peers
        offered by a PRUNE's peer exchange.
    @param msgID: C{msgID(message) -> bytes}.
    """

    def __init__(
        self,
        localPeer,
        clock,
        send,
        deliver,
        *,
        validate=None,
        connect=None,
        params=None,
        scoreParams=None,
        thresholds=None,
        msgID=goMsgID,
        rng=None,
    ):
        self.localPeer = localPeer
        self.clock = clock
        self._send = send
        self._deliver = deliver
        self._validate = validate
        self._connect = connect
        self.params = params or GossipParams()
        self.params.check()
        self.thresholds = thresholds or Thresholds()
        self.thresholds.check()
        self.msgID = msgID
        self.rng = rng or random.Random()
        self.score = PeerScore(scoreParams or ScoreParams(), clock, maxTopics=self.params.maxTopicsPerPeer)
        self.seen = SeenCache(clock, ttl=self.params.seenTTL)
        self.mcache = MessageCache(self.params.historyLength, self.params.historyGossip)
        self.peers = {}
        self.topics = {}
        self.joined = set()
        self.mesh = {}
        self.fanout = {}
        self.lastPub = {}
        self.backoff = {}
        self._validating = set()
        self._promises = {}
        self._peerhave = {}
        self._iasked = {}
        self._pending = {}
        self._ticks = 0
        self._lastDecay = None
        self.stats = {
            "received": 0,
            "duplicates": 0,
            "invalid": 0,
            "rejected": 0,
            "ignored": 0,
            "delivered": 0,
            "throttled": 0,
            "graylisted": 0,
            "brokenPromises": 0,
        }

    # peers

    def addPeer(self, peer, protocol, outbound=False, ips=()):
        """
        A peer we have an outbound stream to, speaking C{protocol}; our
        subscriptions are sent to it.
        """
        if peer in self.peers:
            self.peers[peer].protocol = protocol
            return
        self.peers[peer] = _Peer(peer, protocol, outbound, self.params.messageBurst, self.clock.seconds())
        self.score.addPeer(peer, ips)
        hello = self.helloRPC()
        if not hello.empty():
            self._send(peer, hello)

    def helloRPC(self):
        """
        Our whole subscription list, the first RPC on every new stream.
        """
        return RPC(subscriptions=[(True, t) for t in sorted(self.joined)])

    def removePeer(self, peer):
        state = self.peers.pop(peer, None)
        if state is None:
            return
        for topic in state.topics:
            self._topicPeerGone(peer, topic)
        for peers in self.fanout.values():
            peers.discard(peer)
        self._pending.pop(peer, None)
        self._peerhave.pop(peer, None)
        self._iasked.pop(peer, None)
        self.score.removePeer(peer)

    def _topicPeerGone(self, peer, topic):
        peers = self.topics.get(topic)
        if peers is not None:
            peers.discard(peer)
            if not peers:
                del self.topics[topic]
        mesh = self.mesh.get(topic)
        if mesh is not None and peer in mesh:
            mesh.discard(peer)
            self.score.prune(peer, topic)
        fanout = self.fanout.get(topic)
        if fanout is not None:
            fanout.discard(peer)

    def topicPeers(self, topic):
        """
        The peers we know are subscribed to C{topic}.
        """
        return list(self.topics.get(topic, ()))

    # our subscriptions

    def join(self, topic):
        """
        Subscribe to C{topic}: announce it and build its mesh from the
        fanout and the other peers of the topic.
        """
        if topic in self.joined:
            return
        self.joined.add(topic)
        for peer in list(self.peers):
            self._send(peer, RPC(subscriptions=[(True, topic)]))
        mesh = set()
        for peer in self.fanout.pop(topic, ()):
            if self._graftable(peer, topic) and len(mesh) < self.params.D:
                mesh.add(peer)
        self.lastPub.pop(topic, None)
        if len(mesh) < self.params.D:
            candidates = [p for p in self.topics.get(topic, ()) if p not in mesh and self._graftable(p, topic)]
            self.rng.shuffle(candidates)
            mesh.update(candidates[: self.params.D - len(mesh)])
        self.mesh[topic] = set()
        for peer in mesh:
            self._graft(peer, topic)
        self._flush()

    def leave(self, topic):
        if topic not in self.joined:
            return
        self.joined.discard(topic)
        for peer in list(self.peers):
            self._send(peer, RPC(subscriptions=[(False, topic)]))
        for peer in list(self.mesh.pop(topic, ())):
            self.score.prune(peer, topic)
            self._prune(peer, topic, self.params.unsubscribeBackoff, px=False)
        self._flush()

    def _graftable(self, peer, topic):
        state = self.peers.get(peer)
        if state is None or not state.gossip or topic not in state.topics:
            return False
        if self._backedOff(peer, topic, slack=self.params.heartbeatInterval):
            return False
        return self.score.score(peer) >= 0

    def _backedOff(self, peer, topic, slack=0.0):
        """
        Whether C{peer}'s backoff for C{topic} runs.  We graft only once
        it ran out plus C{slack} (the spec: the peer that set it clears it
        at its next heartbeat; a GRAFT before that is penalised).
        """
        expiry = self.backoff.get(topic, {}).get(peer)
        return expiry is not None and expiry + slack > self.clock.seconds()

    def _addBackoff(self, peer, topic, seconds):
        table = self.backoff.setdefault(topic, {})
        expiry = self.clock.seconds() + seconds
        if table.get(peer, 0) < expiry:
            table[peer] = expiry

    # publishing

    def publish(self, message):
        """
        Publish our own signed L{Message}: validate it, deliver it locally,
        send it on.

        @return: a Deferred firing with C{message}, or failing with
            L{ValidationError}.
        """
        if len(message.data) > self.params.maxMessageData:
            return fail(ValidationError(f"message of {len(message.data)} bytes (at most {self.params.maxMessageData})"))
        self.seen.add(message.msgID)
        d = self._runValidation(message)

        def validated(verdict):
            if verdict is not True:
                raise ValidationError(f"message for {message.topic!r} refused by its validator")
            self._accept(message, local=True)
            return message

        return d.addCallback(validated)

    def _runValidation(self, message):
        if self._validate is None:
            return succeed(True)
        try:
            result = self._validate(message)
        except Exception as e:
            log.failure("pubsub validator for {topic} raised", topic=message.topic)
            return succeed(False) if not isinstance(e, ValidationError) else fail(e)
        if isinstance(result, Deferred):
            return result
        return succeed(result)

    def _accept(self, message, local=False):
        self.mcache.put(message)
        if message.topic in self.joined:
            self.stats["delivered"] += 1
            self._deliver(message)
        self._forward(message, local)

    def _forward(self, message, local):
        topic = message.topic
        exclude = {message.receivedFrom, message.source}
        targets = set()
        subscribers = self.topics.get(topic, ())
        for peer in subscribers:
            state = self.peers.get(peer)
            if state is not None and not state.gossip:
                targets.add(peer)
        if local and self.params.floodPublish:
            for peer in subscribers:
                if self.score.score(peer) >= self.thresholds.publish:
                    targets.add(peer)
        elif topic in self.mesh:
            targets.update(self.mesh[topic])
        elif local:
            fanout = self.fanout.get(topic)
            if not fanout:
                candidates = [
                    p
                    for p in subscribers
                    if self.peers[p].gossip and self.score.score(p) >= self.thresholds.publish
                ]
                self.rng.shuffle(candidates)
                fanout = self.fanout[topic] = set(candidates[: self.params.D])
            targets.update(fanout)
        if local and topic not in self.mesh:
            self.lastPub[topic] = self.clock.seconds()
        for peer in targets - exclude:
            self._send(peer, RPC(messages=[message]))

    # receiving

    def handleRPC(self, peer, rpc):
        """
        An RPC from C{peer} (an L{RPC} from L{tau.pubsub.message.decodeRPC}).
        """
        state = self.peers.get(peer)
        if state is None:
            return
        if self._graylisted(peer):
            return
        for subscribe, topic in rpc.subscriptions:
            self._subscription(state, subscribe, topic)
        if rpc.messages:
            self._messages(state, rpc.messages)
        if state.gossip and rpc.hasControl():
            self._control(state, rpc)

    def _subscription(self, state, subscribe, topic):
        peer = state.peerID
        if subscribe:
            if topic in state.topics:
                return
            if len(state.topics) >= self.params.maxTopicsPerPeer:
                peerLog.debug(self.clock, "too many topics", "pubsub: {peer} is in too many topics, ignoring {topic}", peer=str(peer), topic=topic)
                return
            state.topics.add(topic)
            self.topics.setdefault(topic, set()).add(peer)
        elif topic in state.topics:
            state.topics.discard(topic)
            self._topicPeerGone(peer, topic)

    def _refill(self, state):
        now = self.clock.seconds()
        elapsed = max(now - state.lastRefill, 0.0)
        state.lastRefill = now
        state.tokens = min(self.params.messageBurst, state.tokens + elapsed * self.params.messageRate)

    def _messages(self, state, wires):
        peer = state.peerID
        self._refill(state)
        throttled = False
        for wire in wires:
            if state.tokens < 1:
                throttled = True
                self.stats["throttled"] += 1
                continue
            state.tokens -= 1
            self.stats["received"] += 1
            try:
                message = parseMessage(wire, peer, self.params.maxMessageData, self.msgID)
            except InvalidMessage as e:
                self.stats["invalid"] += 1
                peerLog.debug(self.clock, "undecodable message", "pubsub: invalid message from {peer}: {why}", peer=str(peer), why=str(e))
                self.score.invalidDelivery(peer, wire.topic if isinstance(wire.topic, str) else "")
                if self._graylisted(peer):
                    break
                continue
            msgID = message.msgID
            if msgID in self.seen or msgID in self._validating:
                self.stats["duplicates"] += 1
                self._kept(message)
                continue
            if message.topic not in self.joined:
                # a topic we are not in (go-libp2p-pubsub ignores these
                # too): not worth a signature check
                self.stats["ignored"] += 1
                continue
            try:
                verifyMessage(message)
            except InvalidMessage as e:
                self.stats["invalid"] += 1
                peerLog.info(self.clock, "invalid message", "pubsub: rejected a message from {peer}: {why}", peer=str(peer), why=str(e))
                self.score.invalidDelivery(peer, message.topic)
                if self._graylisted(peer):
                    # the rest of its RPC is not worth checking either
                    break
                continue
            self._kept(message)
            self.seen.add(msgID)
            self._validating.add(msgID)
            d = self._runValidation(message)
            d.addBoth(self._validated, message)
        if throttled:
            peerLog.info(self.clock, "too fast", "pubsub: {peer} sends messages too fast; dropped some", peer=str(peer))
            self.score.penalise(peer)

    def _graylisted(self, peer):
        if self.score.score(peer) < self.thresholds.graylist:
            self.stats["graylisted"] += 1
            return True
        return False

    def _kept(self, message):
        """
        A message arrived: the IWANT promises for it are kept, under either
        id form (a js peer announces js ids).
        """
        if self._promises:
            for msgID in {message.msgID, goMsgID(message), jsMsgID(message)}:
                self._promises.pop(msgID, None)

    def _known(self, msgID):
        return any(form in self.seen or form in self._validating for form in idForms(msgID))

    def _validated(self, verdict, message):
        self._validating.discard(message.msgID)
        peer = message.receivedFrom
        if not isinstance(verdict, bool) and verdict is not None:
            log.info("pubsub: validating a message for {topic} failed: {why}", topic=message.topic, why=getattr(verdict, "getErrorMessage", lambda: verdict)())
            verdict = False
        if verdict is True:
            if peer in self.peers:
                self.score.firstDelivery(peer, message.topic)
            self._accept(message)
        elif verdict is None:
            self.stats["ignored"] += 1
        else:
            self.stats["rejected"] += 1
            if peer in self.peers:
                self.score.invalidDelivery(peer, message.topic)
        return None

    # control
