"""
The gossipsub v1.1 heartbeat: mesh maintenance (graft to C{D_lo}, prune
to C{D_hi}, opportunistic grafting, outbound quotas), fanout expiry,
gossip emission, broken IWANT promises and backoff expiry, as
L{tau.pubsub.router.GossipRouter} runs it every second: a part of the
router, kept in its own module.
"""

from __future__ import annotations


class MeshMaintenance:
    """
    The router's heartbeat (a mixin of
    L{tau.pubsub.router.GossipRouter}, whose state it uses).
    """

    def heartbeat(self):
        """
        One heartbeat: mesh maintenance, fanout, gossip, cache shift, score
        decay.
        """
        p = self.params
        now = self.clock.seconds()
        self._ticks += 1
        self._peerhave.clear()
        self._iasked.clear()
        self._brokenPromises(now)
        self._clearBackoff(now)
        if self._lastDecay is None or now - self._lastDecay >= self.score.params.decayInterval:
            self._lastDecay = now
            self.score.refresh()
        score = self.score.score
        for topic, mesh in list(self.mesh.items()):
            for peer in list(mesh):
                if score(peer) < 0:
                    self._prune(peer, topic, p.pruneBackoff, px=False)
            if len(mesh) < p.Dlo:
                self._fill(topic, mesh, p.D - len(mesh))
            if len(mesh) > p.Dhi:
                self._shrink(topic, mesh)
            if len(mesh) >= p.Dlo:
                outbound = sum(1 for peer in mesh if self.peers[peer].outbound)
                if outbound < p.Dout:
                    self._fill(topic, mesh, p.Dout - outbound, outboundOnly=True)
            if self._ticks % p.opportunisticGraftTicks == 0 and len(mesh) > 1:
                scores = sorted(score(peer) for peer in mesh)
                median = scores[len(scores) // 2]
                if median < self.thresholds.opportunisticGraft:
                    self._fill(topic, mesh, p.opportunisticGraftPeers, minScore=median, strict=True)
            self._emitGossip(topic, mesh)
        for topic in list(self.fanout):
            if self.lastPub.get(topic, 0) + p.fanoutTTL < now:
                del self.fanout[topic]
                self.lastPub.pop(topic, None)
                continue
            fanout = self.fanout[topic]
            for peer in list(fanout):
                if peer not in self.topics.get(topic, ()) or score(peer) < self.thresholds.publish:
                    fanout.discard(peer)
            if len(fanout) < p.D:
                candidates = [
                    peer
                    for peer in self.topics.get(topic, ())
                    if peer not in fanout and self.peers[peer].gossip and score(peer) >= self.thresholds.publish
                ]
                self.rng.shuffle(candidates)
                fanout.update(candidates[: p.D - len(fanout)])
            self._emitGossip(topic, fanout)
        self._flush()
        self.mcache.shift()

    def _fill(self, topic, mesh, count, outboundOnly=False, minScore=0.0, strict=False):
        candidates = []
        for peer in self.topics.get(topic, ()):
            if peer in mesh or not self._graftable(peer, topic):
                continue
            if outboundOnly and not self.peers[peer].outbound:
                continue
            s = self.score.score(peer)
            if (s > minScore) if strict else (s >= minScore):
                candidates.append(peer)
        self.rng.shuffle(candidates)
        for peer in candidates[:count]:
            self._graft(peer, topic)

    def _shrink(self, topic, mesh):
        p = self.params
        score = self.score.score
        peers = list(mesh)
        self.rng.shuffle(peers)
        peers.sort(key=score, reverse=True)
        keep = peers[: p.Dscore]
        rest = peers[p.Dscore :]
        self.rng.shuffle(rest)
        keep += rest[: p.D - p.Dscore]
        rest = rest[p.D - p.Dscore :]
        outbound = sum(1 for peer in keep if self.peers[peer].outbound)
        if outbound < p.Dout:
            extra = [peer for peer in rest if self.peers[peer].outbound][: p.Dout - outbound]
            inbound = [peer for peer in keep[p.Dscore :] if not self.peers[peer].outbound]
            for peer in extra:
                if not inbound:
                    break
                keep.remove(inbound.pop())
                keep.append(peer)
        keep = set(keep)
        for peer in peers:
            if peer not in keep:
                self._prune(peer, topic, p.pruneBackoff)

    def _emitGossip(self, topic, exclude):
        ids = self.mcache.gossipIDs(topic)
        if not ids:
            return
        candidates = [
            peer
            for peer in self.topics.get(topic, ())
            if peer not in exclude
            and self.peers[peer].gossip
            and self.score.score(peer) >= self.thresholds.gossip
        ]
        target = max(self.params.Dlazy, int(self.params.gossipFactor * len(candidates)))
        self.rng.shuffle(candidates)
        for peer in candidates[:target]:
            chosen = ids
            if len(chosen) > self.params.maxIHaveLength:
                chosen = list(ids)
                self.rng.shuffle(chosen)
                chosen = chosen[: self.params.maxIHaveLength]
            self._queued(peer).ihave.append((topic, list(chosen)))

    def _brokenPromises(self, now):
        for msgID in list(self._promises):
            peers = self._promises[msgID]
            for peer, expiry in list(peers.items()):
                if expiry <= now:
                    del peers[peer]
                    self.stats["brokenPromises"] += 1
                    self.score.penalise(peer)
            if not peers:
                del self._promises[msgID]

    def _clearBackoff(self, now):
        slack = self.params.heartbeatInterval
        for topic in list(self.backoff):
            table = self.backoff[topic]
            for peer in [peer for peer, expiry in table.items() if expiry + slack < now]:
                del table[peer]
            if not table:
                del self.backoff[topic]
