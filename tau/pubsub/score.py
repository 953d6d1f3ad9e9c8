"""
Gossipsub v1.1 peer scoring (libp2p/specs pubsub/gossipsub/gossipsub-v1.1.md,
"Peer Scoring"), the basic parts:

    score = min(topicCap, sum_t w_t (w1 P1 + w2 P2 + w4 P4)) + w5 P5 + w6 P6 + w7 P7

  - P1 time in mesh (quanta, capped), P2 first message deliveries (decaying
    counter, capped), P4 invalid messages (decaying counter, squared);
  - P5 the application's own score, P6 IP colocation (surplus of peers
    sharing an IP over a threshold, squared; loopback whitelisted), P7
    behaviour penalty (broken promises, GRAFT during backoff, floods;
    surplus squared).

P3/P3b (mesh delivery deficit) are not computed.  Counters decay every
C{decayInterval} seconds; a peer that disconnects keeps a negative score for
C{retainScore} seconds, so reconnecting does not wash it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field


@dataclass
class TopicScoreParams:
    topicWeight: float = 1.0
    timeInMeshWeight: float = 0.01
    timeInMeshQuantum: float = 1.0
    timeInMeshCap: float = 300.0
    firstMessageDeliveriesWeight: float = 0.5
    firstMessageDeliveriesDecay: float = 0.9
    firstMessageDeliveriesCap: float = 20.0
    invalidMessageDeliveriesWeight: float = -10.0
    invalidMessageDeliveriesDecay: float = 0.9


def _loopback(ip):
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


@dataclass
class ScoreParams:
    """
    @ivar topics: per-topic parameters; topics not listed use
        C{defaultTopic} (None: they do not count).
    @ivar appSpecificScore: C{peer -> float}, or None.
    @ivar ipColocationWhitelist: C{ip -> bool}: addresses never counted.
    """

    topics: dict = field(default_factory=dict)
    defaultTopic: TopicScoreParams | None = field(default_factory=TopicScoreParams)
    topicScoreCap: float = 20.0
    appSpecificScore: object = None
    appSpecificWeight: float = 1.0
    ipColocationFactorWeight: float = -5.0
    ipColocationFactorThreshold: int = 10
    ipColocationWhitelist: object = _loopback
    behaviourPenaltyWeight: float = -10.0
    behaviourPenaltyThreshold: float = 0.0
    behaviourPenaltyDecay: float = 0.9
    decayInterval: float = 1.0
    decayToZero: float = 0.01
    retainScore: float = 60.0

    def topic(self, topic):
        return self.topics.get(topic, self.defaultTopic)


@dataclass
class Thresholds:
    """
    The spec's thresholds; js-libp2p's defaults but a lower opportunistic
    graft threshold (our P1/P2 weights are smaller).
    """

    gossip: float = -10.0
    publish: float = -50.0
    graylist: float = -80.0
    acceptPX: float = 10.0
    opportunisticGraft: float = 5.0

    def check(self):
        if not (self.gossip <= 0 and self.publish <= self.gossip and self.graylist < self.publish):
            raise ValueError("thresholds must satisfy graylist < publish <= gossip <= 0")
        if self.acceptPX < 0 or self.opportunisticGraft < 0:
            raise ValueError("acceptPX and opportunisticGraft thresholds must not be negative")


class _TopicStats:
    __slots__ = ("inMesh", "graftTime", "firstDeliveries", "invalidDeliveries")

    def __init__(self):
        self.inMesh = False
        self.graftTime = 0.0
        self.firstDeliveries = 0.0
        self.invalidDeliveries = 0.0


class _PeerStats:
    __slots__ = ("connected", "expire", "topics", "ips", "behaviourPenalty")

    def __init__(self):
        self.connected = True
        self.expire = 0.0
        self.topics = {}
        self.ips = ()
        self.behaviourPenalty = 0.0


class PeerScore:
    """
    The scores of the peers of one router.

    @param maxTopics: most topics tracked per peer (the rest do not score).
    """

    def __init__(self, params, clock, maxTopics=1024):
        self.params = params
        self.clock = clock
        self.maxTopics = maxTopics
        self._peers = {}
        self._ipPeers = {}

    # membership

    def addPeer(self, peer, ips=()):
        stats = self._peers.get(peer)
        if stats is None:
            stats = self._peers[peer] = _PeerStats()
        stats.connected = True
        self._setIPs(peer, stats, tuple(ips))

    def removePeer(self, peer):
        stats = self._peers.get(peer)
        if stats is None:
            return
        self._setIPs(peer, stats, ())
        if self.score(peer) > 0:
            del self._peers[peer]
            return
        stats.connected = False
        stats.expire = self.clock.seconds() + self.params.retainScore
        for t in stats.topics.values():
            t.inMesh = False
            t.firstDeliveries = 0.0

    def _setIPs(self, peer, stats, ips):
        for ip in stats.ips:
            peers = self._ipPeers.get(ip)
            if peers is not None:
                peers.discard(peer)
                if not peers:
                    del self._ipPeers[ip]
        stats.ips = ips
        for ip in ips:
            self._ipPeers.setdefault(ip, set()).add(peer)

    def _topic(self, peer, topic):
        stats = self._peers.get(peer)
        if stats is None or self.params.topic(topic) is None:
            return None
        t = stats.topics.get(topic)
        if t is None:
            if len(stats.topics) >= self.maxTopics:
                return None
            t = stats.topics[topic] = _TopicStats()
        return t

    # events

    def graft(self, peer, topic):
        t = self._topic(peer, topic)
        if t is not None:
            t.inMesh = True
            t.graftTime = self.clock.seconds()

    def prune(self, peer, topic):
        t = self._topic(peer, topic)
        if t is not None:
            t.inMesh = False

    def firstDelivery(self, peer, topic):
        params = self.params.topic(topic)
        t = self._topic(peer, topic)
        if t is not None:
            t.firstDeliveries = min(t.firstDeliveries + 1, params.firstMessageDeliveriesCap)

    def invalidDelivery(self, peer, topic):
        t = self._topic(peer, topic)
        if t is not None:
            t.invalidDeliveries += 1
        elif peer in self._peers:
            # an unscored topic: still a misbehaviour
            self.penalise(peer)

    def penalise(self, peer, count=1):
        stats = self._peers.get(peer)
        if stats is not None:
            stats.behaviourPenalty += count

    # the score

    def score(self, peer):
        stats = self._peers.get(peer)
        if stats is None:
            return 0.0
        p = self.params
        now = self.clock.seconds()
        topicScore = 0.0
        for topic, t in stats.topics.items():
            tp = p.topic(topic)
            if tp is None:
                continue
            s = 0.0
            if t.inMesh:
                quanta = min((now - t.graftTime) / tp.timeInMeshQuantum, tp.timeInMeshCap)
                s += tp.timeInMeshWeight * max(quanta, 0.0)
            s += tp.firstMessageDeliveriesWeight * t.firstDeliveries
            s += tp.invalidMessageDeliveriesWeight * t.invalidDeliveries**2
            topicScore += tp.topicWeight * s
        if p.topicScoreCap > 0:
            topicScore = min(topicScore, p.topicScoreCap)
        score = topicScore
        if p.appSpecificScore is not None:
            score += p.appSpecificWeight * p.appSpecificScore(peer)
        for ip in stats.ips:
            if p.ipColocationWhitelist is not None and p.ipColocationWhitelist(ip):
                continue
            surplus = len(self._ipPeers.get(ip, ())) - p.ipColocationFactorThreshold
            if surplus > 0:
                score += p.ipColocationFactorWeight * surplus**2
        excess = stats.behaviourPenalty - p.behaviourPenaltyThreshold
        if excess > 0:
            score += p.behaviourPenaltyWeight * excess**2
        return score

    def refresh(self):
        """
        Decay the counters and forget disconnected peers whose time is up;
        called every C{decayInterval} seconds.
        """
        p = self.params
        now = self.clock.seconds()
        for peer in list(self._peers):
            stats = self._peers[peer]
            if not stats.connected and stats.expire <= now:
                del self._peers[peer]
                continue
            for topic, t in stats.topics.items():
                tp = p.topic(topic)
                if tp is None:
                    continue
                t.firstDeliveries = _decay(t.firstDeliveries * tp.firstMessageDeliveriesDecay, p.decayToZero)
                t.invalidDeliveries = _decay(t.invalidDeliveries * tp.invalidMessageDeliveriesDecay, p.decayToZero)
            stats.behaviourPenalty = _decay(stats.behaviourPenalty * p.behaviourPenaltyDecay, p.decayToZero)

    def __contains__(self, peer):
        return peer in self._peers


def _decay(value, toZero):
    return 0.0 if value < toZero else value
