"""
The iterative Kademlia lookup shared by FIND_NODE, GET_PROVIDERS and GET_VALUE.

The algorithm is go-libp2p-kad-dht's C{runLookupWithFollowup}:

  1. Seed the candidate set with the closest peers of the routing table.
  2. Keep up to C{alpha} requests in flight, always to the closest candidate
     not asked yet; merge each answer's closer peers into the candidates.
  3. When the C{beta} closest candidates that did not fail have all answered,
     the lookup proper is over; the follow-up asks every candidate among the
     C{k} closest not asked yet (all at once), merging answers likewise, until
     the C{k} closest candidates that did not fail have all answered.
  4. Also stop when nothing is left to ask (starvation), when the caller's
     C{stop()} says so (enough providers, a value quorum), or at the overall
     query timeout (the result is then what was found so far).

Each request has its own timeout; a failed or timed out peer is reported to
C{onFailure} (the routing table evicts it after repeated failures) and a peer
that answers to C{onSuccess}.  Cancelling the Deferred of L{Lookup.run}
cancels every request in flight.

Answers are bounded: at most C{maxPeersPerAnswer} entries of one answer are
looked at; the asker itself, repeats and undecodable IDs are dropped by the
caller's C{query} (see L{tau.kad.messages.parsePeers}) and again here.

Rounds are counted as hops: a seed is at hop 1, a peer first heard from a
peer at hop h is at hop h + 1; the rounds of a lookup are the largest hop of
any peer that was asked.
"""

import bisect
from dataclasses import dataclass, field
from inspect import iscoroutine

from twisted.internet.defer import Deferred, TimeoutError, fail, succeed
from twisted.logger import Logger

from tau.kad.keys import kadID, peerKadID
from tau.kad.messages import PeerInfo

__all__ = ["Lookup", "LookupResult", "HEARD", "WAITING", "QUERIED", "UNREACHABLE"]

log = Logger()

HEARD, WAITING, QUERIED, UNREACHABLE = "heard", "waiting", "queried", "unreachable"


@dataclass
class LookupResult:
    """
    @ivar peers: the C{k} closest peers that answered, closest first
        (L{PeerInfo}s with the addresses we learnt).
    @ivar reason: why the lookup ended: C{"completed"}, C{"starvation"}
        (no peer answered), C{"stopped"} or C{"timeout"}.
    @ivar rounds: hops (see the module docstring).
    @ivar rpcs: requests sent.
    @ivar failures: requests that failed or timed out.
    @ivar heard: distinct peers learnt.
    @ivar ignored: peer entries dropped from answers (junk, self, repeats,
        over the per-answer limit).
    """

    peers: list = field(default_factory=list)
    reason: str = "completed"
    rounds: int = 0
    rpcs: int = 0
    failures: int = 0
    heard: int = 0
    ignored: int = 0


class _Candidate:
    __slots__ = ("info", "state", "hop", "distance")

    def __init__(self, info, hop, distance):
        self.info = info
        self.state = HEARD
        self.hop = hop
        self.distance = distance


def _asDeferred(f, arg):
    try:
        result = f(arg)
    except Exception:
        return fail()
    if isinstance(result, Deferred):
        return result
    if iscoroutine(result):
        return Deferred.fromCoroutine(result)
    return succeed(result)


class Lookup:
    """
    One iterative lookup.  Use once: L{run} returns a Deferred firing with a
    L{LookupResult}.

    @param query: C{query(peerInfo)} returns (a Deferred or coroutine of) the
        list of L{PeerInfo} the peer says are closer; it raises on failure.
        It records anything else the answer carries (providers, a record)
        itself.
    @param stop: optional C{stop() -> bool}, checked after every answer.
    @param onSuccess: optional C{onSuccess(peerInfo)}, a peer answered.
    @param onFailure: optional C{onFailure(peerInfo, failure)}.
    """

    def __init__(
        self,
        clock,
        key,
        seeds,
        query,
        selfID,
        k=20,
        alpha=10,
        beta=3,
        requestTimeout=10.0,
        queryTimeout=60.0,
        maxPeersPerAnswer=None,
        stop=None,
        onSuccess=None,
        onFailure=None,
    ):
        self.clock = clock
        self.key = key
        self.target = kadID(key)
        self.query = query
        self.selfID = selfID
        self.k = k
        self.alpha = alpha
        self.beta = beta
        self.requestTimeout = requestTimeout
        self.queryTimeout = queryTimeout
        self.maxPeersPerAnswer = 2 * k if maxPeersPerAnswer is None else maxPeersPerAnswer
        self.stop = stop
        self.onSuccess = onSuccess
        self.onFailure = onFailure
        self.result = LookupResult()
        self._candidates = {}
        self._order = []  # sorted [(distance, peerID bytes)], every candidate
        self._inFlight = {}
        self._followup = False
        self._done = False
        self._stepping = False
        self._again = False
        self._deadline = None
        self._deferred = None
        self._seeds = list(seeds)

    # Candidates

    def _hear(self, info, hop):
        peer = info.peerID
        if peer == self.selfID:
            return False
        c = self._candidates.get(peer)
        if c is not None:
            if hop < c.hop and c.state == HEARD:
                c.hop = hop
            if not c.info.addrs and info.addrs:
                c.info = info
            return False
        distance = peerKadID(peer) ^ self.target
        c = self._candidates[peer] = _Candidate(info, hop, distance)
        bisect.insort(self._order, (distance, peer.toBytes(), peer))
        self.result.heard += 1
        return True

    def _closestLive(self, n):
        out = []
        for _, _, peer in self._order:
            c = self._candidates[peer]
            if c.state != UNREACHABLE:
                out.append(c)
                if len(out) >= n:
                    break
        return out

    # Running

    def run(self):
        """
        Start the lookup.

        @return: a Deferred firing with a L{LookupResult}; cancelling it stops
            every request in flight.
        """
        if self._deferred is not None:
            raise RuntimeError("a Lookup runs once")
        self._deferred = Deferred(self._cancel)
        for info in self._seeds:
            self._hear(info, 1)
        self._seeds = None
        if self.queryTimeout is not None:
            self._deadline = self.clock.callLater(self.queryTimeout, self._finish, "timeout")
        self._step()
        return self._deferred

    def _step(self):
        if self._stepping:
            self._again = True
            return
        self._stepping = True
        try:
            while True:
                self._again = False
                self._advance()
                if not self._again or self._done:
                    break
        finally:
            self._stepping = False

    def _advance(self):
        if self._done:
            return
        if self.stop is not None and self.stop():
            self._finish("stopped")
            return
        if not self._followup:
            if all(c.state == QUERIED for c in self._closestLive(self.beta)) and self._order:
                self._followup = True
        if self._followup:
            closest = self._closestLive(self.k)
            if all(c.state == QUERIED for c in closest):
                self._finish("completed" if closest else "starvation")
                return
            toSend = [c for c in closest if c.state == HEARD]
        else:
            room = self.alpha - len(self._inFlight)
            toSend = []
            if room > 0:
                for _, _, peer in self._order:
                    c = self._candidates[peer]
                    if c.state == HEARD:
                        toSend.append(c)
                        if len(toSend) >= room:
                            break
        # Sending may run a synchronous answer, which changes the candidates:
        # choose first, then send.
        for c in toSend:
            if self._done:
                return
            self._send(c)
        if not self._inFlight and not self._done:
            if not any(c.state == HEARD for c in self._candidates.values()):
                self._finish("starvation")

    def _send(self, c):
        c.state = WAITING
        self.result.rpcs += 1
        if c.hop > self.result.rounds:
            self.result.rounds = c.hop
        peer = c.info.peerID
        d = _asDeferred(self.query, c.info)
        if self.requestTimeout is not None and not d.called:
            d.addTimeout(self.requestTimeout, self.clock)
        self._inFlight[peer] = d
        d.addCallbacks(self._answered, self._failed, callbackArgs=(c,), errbackArgs=(c,))

    def _answered(self, peers, c):
        if self._done:
            return
        self._inFlight.pop(c.info.peerID, None)
        c.state = QUERIED
        if self.onSuccess is not None:
            self.onSuccess(c.info)
        accepted = 0
        for info in peers:
            if accepted >= self.maxPeersPerAnswer:
                self.result.ignored += 1
                continue
            if not isinstance(info, PeerInfo) or info.peerID == self.selfID:
                self.result.ignored += 1
                continue
            accepted += 1
            self._hear(info, c.hop + 1)
        self._step()

    def _failed(self, reason, c):
        if self._done:
            return
        self._inFlight.pop(c.info.peerID, None)
        c.state = UNREACHABLE
        self.result.failures += 1
        if not reason.check(TimeoutError):
            log.debug(
                "kad request to {peer} failed: {reason}", peer=c.info.peerID, reason=reason.getErrorMessage()
            )
        if self.onFailure is not None:
            self.onFailure(c.info, reason)
        self._step()

    def _stopRequests(self):
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        inFlight, self._inFlight = self._inFlight, {}
        for d in inFlight.values():
            d.addErrback(lambda _: None)
            d.cancel()

    def _finish(self, reason):
        if self._done:
            return
        self._done = True
        self._stopRequests()
        queried = [self._candidates[p] for _, _, p in self._order if self._candidates[p].state == QUERIED]
        self.result.peers = [c.info for c in queried[: self.k]]
        self.result.reason = reason
        self._deferred.callback(self.result)

    def _cancel(self, d):
        if not self._done:
            self._done = True
            self._stopRequests()
        # Deferred errbacks with CancelledError since we do not fire it.
