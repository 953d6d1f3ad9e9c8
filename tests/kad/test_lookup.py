"""
Tests for L{tau.kad.lookup.Lookup}: termination, concurrency, timeouts,
cancellation and junk in answers, with a fake network on a L{Clock}.
"""

import random

from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tau.kad.keys import kadID, peerKadID
from tau.kad.lookup import Lookup
from tau.kad.messages import PeerInfo
from tests.kad.helpers import peers

KEY = b"the key"


class FakeNetwork:
    """
    Peers that answer after C{latency} seconds with the C{k} peers closest
    to the key among those they know (their 20 nearest neighbours in the
    key space and 20 random ones), or never (silent peers).
    """

    def __init__(self, n, clock, seed=0, latency=1.0, k=20):
        self.clock = clock
        self.latency = latency
        self.k = k
        self.everyone = peers(n, seed=seed)
        rng = random.Random(seed)
        self.silent = set()
        self.knows = {}
        positions = {p: peerKadID(p) for p in self.everyone}
        for p in self.everyone:
            near = sorted(self.everyone, key=lambda q: positions[q] ^ positions[p])[1:21]
            self.knows[p] = set(near) | set(rng.sample(self.everyone, 20)) - {p}
        self.inFlight = 0
        self.maxInFlight = 0
        self.cancelled = 0
        self.asked = []

    def closest(self, key, among, count):
        target = kadID(key)
        return sorted(among, key=lambda q: peerKadID(q) ^ target)[:count]

    def query(self, info):
        self.asked.append(info.peerID)
        self.inFlight += 1
        self.maxInFlight = max(self.maxInFlight, self.inFlight)
        call = None

        def cancel(d):
            self.cancelled += 1
            self.inFlight -= 1
            if call is not None and call.active():
                call.cancel()

        d = Deferred(cancel)
        if info.peerID in self.silent:
            return d

        def answer():
            self.inFlight -= 1
            d.callback([PeerInfo(p) for p in self.closest(KEY, self.knows[info.peerID], self.k)])

        call = self.clock.callLater(self.latency, answer)
        return d


def lookup(clock, net, seeds, selfID=None, **kw):
    if selfID is None:
        selfID = peers(1, seed=12345)[0]
    return Lookup(clock, KEY, [PeerInfo(p) for p in seeds], net.query, selfID, **kw)


def runClock(clock, d, limit=10000):
    results = []
    d.addBoth(results.append)
    for _ in range(limit):
        if results:
            break
        calls = clock.getDelayedCalls()
        if not calls:
            break
        clock.advance(min(c.getTime() for c in calls) - clock.seconds())
    return results


class LookupTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.net = FakeNetwork(300, self.clock)
        self.rng = random.Random(1)

    def test_findsTheClosest(self):
        """
        A lookup ends with the C{k} peers closest to the key, all of which
        answered, with at most C{alpha} requests in flight during the lookup
        proper.
        """
        seeds = self.rng.sample(self.net.everyone, 20)
        lk = lookup(self.clock, self.net, seeds, alpha=3)
        (result,) = runClock(self.clock, lk.run())
        self.assertEqual(result.reason, "completed")
        self.assertEqual([i.peerID for i in result.peers], self.net.closest(KEY, self.net.everyone, 20))
        self.assertEqual(result.failures, 0)
        self.assertEqual(result.rpcs, len(self.net.asked))
        self.assertEqual(len(set(self.net.asked)), len(self.net.asked))
        self.assertGreaterEqual(result.rounds, 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_alphaBound(self):
        seeds = self.rng.sample(self.net.everyone, 20)
        lk = lookup(self.clock, self.net, seeds, alpha=3, beta=20)
        runClock(self.clock, lk.run())
        self.assertEqual(self.net.maxInFlight, 3)

    def test_silentPeersTimeOut(self):
        """
        Peers that never answer time out after C{requestTimeout}; they are
        reported to C{onFailure}, the lookup carries on without them.
        """
        truth = self.net.closest(KEY, self.net.everyone, 40)
        self.net.silent = set(truth[:5])
        failed = []
        answered = []
        seeds = self.rng.sample(self.net.everyone, 20)
        lk = lookup(
            self.clock,
            self.net,
            seeds,
            requestTimeout=5.0,
            onFailure=lambda info, f: failed.append((info.peerID, f.check(TimeoutError))),
            onSuccess=lambda info: answered.append(info.peerID),
        )
        (result,) = runClock(self.clock, lk.run())
        self.assertEqual(result.reason, "completed")
        self.assertEqual([i.peerID for i in result.peers], truth[5:25])
        self.assertEqual(sorted(failed), sorted((p, TimeoutError) for p in truth[:5]))
        self.assertEqual(result.failures, 5)
        self.assertEqual(set(answered) & set(truth[:5]), set())

    def test_queryTimeout(self):
        """
        At the overall query timeout the lookup ends with what it has and
        stops the requests in flight.
        """
        self.net.latency = 4.0
        seeds = self.rng.sample(self.net.everyone, 20)
        lk = lookup(self.clock, self.net, seeds, queryTimeout=6.0)
        (result,) = runClock(self.clock, lk.run())
        self.assertEqual(result.reason, "timeout")
        self.assertEqual(self.clock.seconds(), 6.0)
        self.assertEqual(len(result.peers), 10)
        self.assertEqual(self.net.inFlight, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel(self):
        """
        Cancelling the lookup cancels its requests in flight and every timer.
        """
        seeds = self.rng.sample(self.net.everyone, 20)
        d = lookup(self.clock, self.net, seeds).run()
        self.clock.advance(0.5)
        self.assertEqual(self.net.inFlight, 10)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.net.cancelled, 10)
        self.assertEqual(self.net.inFlight, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop(self):
        seeds = self.rng.sample(self.net.everyone, 20)
        answers = []
        lk = lookup(
            self.clock,
            self.net,
            seeds,
            onSuccess=answers.append,
            stop=lambda: len(answers) >= 2,
        )
        (result,) = runClock(self.clock, lk.run())
        self.assertEqual(result.reason, "stopped")
        self.assertEqual(len(result.peers), 2)
        self.assertEqual(self.net.inFlight, 0)

    def test_starvation(self):
        """
        Without seeds, or when every peer fails, the lookup ends empty.
        """
        (result,) = runClock(self.clock, lookup(self.clock, self.net, []).run())
        self.assertEqual((result.reason, result.peers), ("starvation", []))
        seeds = self.rng.sample(self.net.everyone, 3)
        self.net.silent = set(self.net.everyone)
        (result,) = runClock(self.clock, lookup(self.clock, self.net, seeds).run())
        self.assertEqual((result.reason, result.peers, result.failures), ("starvation", [], 3))

    def test_raisingQuery(self):
        """
        A query that raises counts as a failed peer.
        """
        (a,) = peers(1, seed=3)

        def query(info):
            raise ValueError("boom")

        lk = Lookup(self.clock, KEY, [PeerInfo(a)], query, peers(1, seed=4)[0])
        (result,) = runClock(self.clock, lk.run())
        self.assertEqual((result.reason, result.failures), ("starvation", 1))


class JunkTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.me, self.liar = peers(2, seed=50)
        self.others = peers(200, seed=51)

    def test_selfDuplicatesAndFloods(self):
        """
        An answer listing the asker, repeats and more than
        C{maxPeersPerAnswer} entries is cut down: the asker is never asked,
        nobody is asked twice, and at most C{maxPeersPerAnswer} entries of
        one answer are looked at.
        """
        asked = []

        def query(info):
            asked.append(info.peerID)
            if info.peerID == self.liar:
                junk = [PeerInfo(self.me)] * 50 + [PeerInfo(self.liar)] * 10
                return junk + [PeerInfo(p) for p in self.others] + ["not a peer"]
            return []

        lk = Lookup(self.clock, KEY, [PeerInfo(self.liar)], query, self.me, k=20, maxPeersPerAnswer=40)
        (result,) = runClock(self.clock, lk.run())
        self.assertNotIn(self.me, asked)
        self.assertEqual(len(asked), len(set(asked)))
        # the liar itself, then 10 repeats of it and 30 others accepted; the
        # 50 selfs, 170 other peers and the non-peer ignored
        self.assertEqual(result.heard, 1 + 30)
        self.assertEqual(result.ignored, 50 + 170 + 1)

    def test_synchronousChain(self):
        """
        Answers given synchronously (no Deferred) along a long chain work
        without deep recursion; each hop counts as a round.
        """
        chain = peers(600, seed=52)
        nextOf = dict(zip(chain, chain[1:]))

        def query(info):
            n = nextOf.get(info.peerID)
            return [PeerInfo(n)] if n else []

        lk = Lookup(self.clock, KEY, [PeerInfo(chain[0])], query, self.me, beta=600, k=600)
        d = lk.run()
        result = self.successResultOf(d)
        self.assertEqual(result.rpcs, 600)
        self.assertEqual(result.rounds, 600)

    def test_runOnce(self):
        lk = Lookup(self.clock, KEY, [], lambda i: [], self.me)
        lk.run()
        self.assertRaises(RuntimeError, lk.run)
