"""
The control messages of gossipsub v1.1 (IHAVE, IWANT, GRAFT, PRUNE with
peer exchange and backoff), as L{tau.pubsub.router.GossipRouter} answers
them and sends them: a part of the router, kept in its own module.
"""

from __future__ import annotations

from twisted.logger import Logger

from tau.pubsub.message import MESHSUB_11, RPC, Prune
from tau.ratelog import PeerLog

peerLog = PeerLog(Logger())


class ControlMessages:
    """
    The router's handling of control messages (a mixin of
    L{tau.pubsub.router.GossipRouter}, whose state it uses).
    """

    def _control(self, state, rpc):
        peer = state.peerID
        reply = RPC()
        reply.iwant = self._ihave(peer, rpc.ihave)
        reply.messages = self._iwant(peer, rpc.iwant)
        reply.prune = self._grafts(state, rpc.graft)
        self._prunes(peer, rpc.prune)
        if not reply.empty():
            self._send(peer, reply)

    def _ihave(self, peer, ihaves):
        if not ihaves or self.score.score(peer) < self.thresholds.gossip:
            return []
        count = self._peerhave[peer] = self._peerhave.get(peer, 0) + 1
        if count > self.params.maxIHaveMessages:
            peerLog.debug(self.clock, "too many IHAVEs", "pubsub: {peer} sent {count} IHAVEs in one heartbeat, ignoring", peer=str(peer), count=count)
            return []
        asked = self._iasked.get(peer, 0)
        if asked >= self.params.maxIHaveLength:
            return []
        room = self.params.maxIHaveLength - asked
        wanted = []
        seenHere = set()
        # at most room ids are asked for, and at most maxIHaveLength looked
        # at: a frame can carry far more, each costing a look-up in two
        # id forms
        budget = self.params.maxIHaveLength
        for topic, ids in ihaves:
            if topic not in self.joined:
                continue
            for msgID in ids:
                if len(wanted) >= room or budget <= 0:
                    break
                if msgID in seenHere:
                    continue
                budget -= 1
                seenHere.add(msgID)
                if not self._known(msgID):
                    wanted.append(msgID)
        if not wanted:
            return []
        self.rng.shuffle(wanted)
        self._iasked[peer] = asked + len(wanted)
        promised = self.rng.choice(wanted)
        self._promises.setdefault(promised, {})[peer] = self.clock.seconds() + self.params.iwantFollowupTime
        return wanted

    def _iwant(self, peer, ids):
        if not ids or self.score.score(peer) < self.thresholds.gossip:
            return []
        out = []
        budget = self.params.maxIWantReplyBytes
        for msgID in ids:
            message = self.mcache.get(msgID)
            if message is None:
                continue
            if len(message.data) > budget:
                break
            message = self.mcache.getForPeer(msgID, peer, self.params.gossipRetransmission)
            if message is not None:
                budget -= len(message.data)
                out.append(message)
        return out

    def _grafts(self, state, topics):
        peer = state.peerID
        prunes = []
        now = self.clock.seconds()
        for topic in topics:
            mesh = self.mesh.get(topic)
            if mesh is None:
                continue  # a topic we are not in: ignored (v1.1)
            if peer in mesh:
                continue
            expiry = self.backoff.get(topic, {}).get(peer)
            if expiry is not None and expiry > now:
                peerLog.debug(self.clock, "graft in backoff", "pubsub: {peer} grafted {topic} during its backoff", peer=str(peer), topic=topic)
                self.score.penalise(peer)
                if now < expiry + self.params.graftFloodThreshold - self.params.pruneBackoff:
                    self.score.penalise(peer)
                self._addBackoff(peer, topic, self.params.pruneBackoff)
                prunes.append(self._pruneEntry(peer, topic, self.params.pruneBackoff, px=False))
                continue
            if self.score.score(peer) < 0:
                self._addBackoff(peer, topic, self.params.pruneBackoff)
                prunes.append(self._pruneEntry(peer, topic, self.params.pruneBackoff, px=False))
                continue
            if len(mesh) >= self.params.Dhi and not state.outbound:
                self._addBackoff(peer, topic, self.params.pruneBackoff)
                prunes.append(self._pruneEntry(peer, topic, self.params.pruneBackoff, px=True))
                continue
            mesh.add(peer)
            self.score.graft(peer, topic)
        return prunes

    def _prunes(self, peer, prunes):
        for prune in prunes:
            mesh = self.mesh.get(prune.topic)
            if mesh is None:
                # a topic we are not in (as go-libp2p-pubsub does): no
                # backoff kept for topics a peer makes up
                continue
            if peer in mesh:
                mesh.discard(peer)
                self.score.prune(peer, prune.topic)
            backoff = self.params.pruneBackoff if prune.backoff is None else min(prune.backoff, 24 * 3600)
            self._addBackoff(peer, prune.topic, backoff)
            if prune.peers and self._connect is not None and self.score.score(peer) >= self.thresholds.acceptPX:
                offered = [(p, r) for p, r in prune.peers if p != self.localPeer and p not in self.peers]
                self.rng.shuffle(offered)
                if offered:
                    self._connect(offered[: self.params.maxPXConnect])

    # mesh changes, queued for the end of the heartbeat

    def _queued(self, peer):
        rpc = self._pending.get(peer)
        if rpc is None:
            rpc = self._pending[peer] = RPC()
        return rpc

    def _graft(self, peer, topic):
        self.mesh.setdefault(topic, set()).add(peer)
        self.score.graft(peer, topic)
        self._queued(peer).graft.append(topic)

    def _prune(self, peer, topic, backoff, px=True):
        mesh = self.mesh.get(topic)
        if mesh is not None:
            mesh.discard(peer)
        self.score.prune(peer, topic)
        self._addBackoff(peer, topic, backoff)
        self._queued(peer).prune.append(self._pruneEntry(peer, topic, backoff, px))

    def _pruneEntry(self, peer, topic, backoff, px):
        state = self.peers.get(peer)
        if state is None or state.protocol != MESHSUB_11:
            return Prune(topic)
        peers = []
        if px and self.params.doPX:
            candidates = [
                p for p in self.topics.get(topic, ()) if p != peer and self.peers[p].gossip and self.score.score(p) >= 0
            ]
            self.rng.shuffle(candidates)
            peers = [(p, None) for p in candidates[: self.params.prunePeers]]
        return Prune(topic, peers, int(backoff))

    def _flush(self):
        pending, self._pending = self._pending, {}
        for peer, rpc in pending.items():
            if peer in self.peers and not rpc.empty():
                self._send(peer, rpc)

    # the heartbeat
