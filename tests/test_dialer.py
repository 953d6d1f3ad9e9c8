"""
The dial race of tau.dialer on a Clock: ranking, staggering, the relay
delay, the parallel bound, the winner and the cancelled losers, the
deadline.
"""

from hypothesis import given, strategies as st
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tau.dialer import LOOPBACK, PRIVATE, PUBLIC, RELAYED, DialRace, addrRank, rankAddrs
from tau.host import DialError

CIRCUIT = "/ip4/1.2.3.4/tcp/4001/p2p/12D3KooWRelay/p2p-circuit"


class RankTests(SynchronousTestCase):
    def test_ranks(self):
        self.assertEqual(addrRank("/ip4/127.0.0.1/tcp/1"), LOOPBACK)
        self.assertEqual(addrRank("/ip6/::1/tcp/1"), LOOPBACK)
        self.assertEqual(addrRank("/ip4/192.168.1.2/tcp/1"), PRIVATE)
        self.assertEqual(addrRank("/ip4/10.1.2.3/tcp/1"), PRIVATE)
        self.assertEqual(addrRank("/ip4/100.64.0.1/tcp/1"), PRIVATE)  # CGNAT
        self.assertEqual(addrRank("/ip6/fe80::1/tcp/1"), PRIVATE)
        self.assertEqual(addrRank("/ip6/fd00::1/tcp/1"), PRIVATE)
        self.assertEqual(addrRank("/ip4/1.2.3.4/tcp/1"), PUBLIC)
        self.assertEqual(addrRank("/ip6/2001:4860::1/tcp/1"), PUBLIC)
        self.assertEqual(addrRank("/dns4/example.com/tcp/1"), PUBLIC)
        self.assertEqual(addrRank(CIRCUIT), RELAYED)
        self.assertEqual(addrRank("/p2p/12D3KooWRelay/p2p-circuit"), RELAYED)

    def test_order(self):
        addrs = [CIRCUIT, "/ip4/1.2.3.4/tcp/1", "/ip4/10.0.0.1/tcp/1", "/ip4/127.0.0.1/tcp/1", "/ip4/1.2.3.5/tcp/1", "/ip4/10.0.0.1/tcp/1"]
        self.assertEqual(
            rankAddrs(addrs),
            ["/ip4/127.0.0.1/tcp/1", "/ip4/10.0.0.1/tcp/1", "/ip4/1.2.3.4/tcp/1", "/ip4/1.2.3.5/tcp/1", CIRCUIT],
        )

    @given(st.lists(st.sampled_from([CIRCUIT, "/ip4/1.2.3.4/tcp/1", "/ip4/10.0.0.1/tcp/2", "/ip4/127.0.0.1/tcp/3", "/p2p/X/p2p-circuit", "/dns/a/tcp/1"])))
    def test_relayedLastNothingLost(self, addrs):
        ranked = rankAddrs(addrs)
        self.assertEqual(set(ranked), set(addrs))
        self.assertEqual(len(ranked), len(set(addrs)))
        ranks = [addrRank(a) for a in ranked]
        self.assertEqual(ranks, sorted(ranks))


class Attempts:
    """
    A fake C{dialOne}: every attempt is a Deferred the test fires, and
    cancelling one is recorded.
    """

    def __init__(self, clock):
        self.clock = clock
        self.started = {}
        self.cancelled = []

    def __call__(self, addr):
        d = Deferred(lambda d: self.cancelled.append(addr))
        self.started[addr] = (self.clock.seconds(), d)
        return d

    def times(self):
        return {addr: t for addr, (t, _) in self.started.items()}

    def succeed(self, addr, conn=None):
        self.started[addr][1].callback(conn or f"conn via {addr}")

    def fail(self, addr):
        self.started[addr][1].errback(DialError(f"{addr}: refused"))


def race(addrs, **kwargs):
    clock = Clock()
    attempts = Attempts(clock)
    r = DialRace(clock, attempts, rankAddrs(addrs), **kwargs)
    results = []
    d = r.run()
    d.addBoth(results.append)
    return clock, attempts, r, results


PRIVATE_HOLE = "/ip4/192.168.1.5/tcp/4001"
PUBLIC_A = "/ip4/1.2.3.4/tcp/4001"
PUBLIC_B = "/ip4/5.6.7.8/tcp/4001"


class RaceTests(SynchronousTestCase):
    def test_blackHoleDoesNotHoldTheNextAddress(self):
        """
        A private address that never answers delays the public one by the
        stagger only; when that one connects the black hole is cancelled.
        """
        clock, attempts, r, results = race([PUBLIC_A, PRIVATE_HOLE])
        self.assertEqual(list(attempts.started), [PRIVATE_HOLE])
        clock.advance(0.03)
        self.assertEqual(list(attempts.started), [PRIVATE_HOLE, PUBLIC_A])
        clock.advance(0.05)
        attempts.succeed(PUBLIC_A)
        self.assertEqual(results, [f"conn via {PUBLIC_A}"])
        self.assertLess(clock.seconds(), 1)
        self.assertEqual(attempts.cancelled, [PRIVATE_HOLE])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_publicStagger(self):
        clock, attempts, r, results = race([PUBLIC_A, PUBLIC_B])
        clock.advance(0.2)
        self.assertEqual(list(attempts.started), [PUBLIC_A])
        clock.advance(0.05)
        self.assertEqual(attempts.times(), {PUBLIC_A: 0, PUBLIC_B: 0.25})

    def test_failureStartsTheNextAtOnce(self):
        clock, attempts, r, results = race([PUBLIC_A, PUBLIC_B])
        clock.advance(0.1)
        attempts.fail(PUBLIC_A)
        self.assertEqual(attempts.times(), {PUBLIC_A: 0, PUBLIC_B: 0.1})
        attempts.fail(PUBLIC_B)
        self.assertEqual(results, [None])
        self.assertEqual(r.errors, [f"{PUBLIC_A}: refused", f"{PUBLIC_B}: refused"])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_relayWaitsForDirect(self):
        """
        The relayed address starts 500 ms after the last direct one while
        that one is still trying; the relayed connection then wins and the
        direct attempt is cancelled.
        """
        clock, attempts, r, results = race([CIRCUIT, PUBLIC_A])
        clock.advance(0.25)
        clock.advance(0.2)
        self.assertEqual(list(attempts.started), [PUBLIC_A])
        clock.advance(0.05)
        self.assertEqual(attempts.times(), {PUBLIC_A: 0, CIRCUIT: 0.5})
        attempts.succeed(CIRCUIT)
        self.assertEqual(results, [f"conn via {CIRCUIT}"])
        self.assertEqual(attempts.cancelled, [PUBLIC_A])

    def test_relayAtOnceWhenDirectFailed(self):
        clock, attempts, r, results = race([CIRCUIT, PUBLIC_A])
        clock.advance(0.1)
        attempts.fail(PUBLIC_A)
        self.assertEqual(attempts.times(), {PUBLIC_A: 0, CIRCUIT: 0.1})

    def test_directWinsOverRelay(self):
        clock, attempts, r, results = race([CIRCUIT, PUBLIC_A])
        clock.advance(0.6)
        attempts.succeed(PUBLIC_A)
        self.assertEqual(results, [f"conn via {PUBLIC_A}"])
        self.assertEqual(attempts.cancelled, [CIRCUIT])

    def test_parallelBoundKeepsASlotForRelays(self):
        """
        With ten silent private addresses, at most C{maxParallel} attempts
        run, and one slot stays free for the relayed address.
        """
        holes = [f"/ip4/10.0.0.{i}/tcp/4001" for i in range(10)]
        clock, attempts, r, results = race(holes + [CIRCUIT], maxParallel=4)
        for _ in range(100):
            clock.advance(0.01)
            self.assertLessEqual(len(r.inFlight), 4)
        self.assertEqual(list(attempts.started), holes[:3] + [CIRCUIT])
        # 500 ms after the last direct attempt started
        self.assertAlmostEqual(attempts.times()[CIRCUIT], 0.06 + 0.5)
        attempts.fail(holes[0])
        self.assertEqual(list(attempts.started), holes[:3] + [CIRCUIT, holes[3]])
        self.assertEqual(len(r.inFlight), 4)

    def test_deadline(self):
        clock, attempts, r, results = race([PUBLIC_A, PUBLIC_B], deadline=5)
        clock.advance(4.9)
        self.assertEqual(results, [])
        clock.advance(0.1)
        self.assertEqual(results, [None])
        self.assertEqual(sorted(attempts.cancelled), sorted([PUBLIC_A, PUBLIC_B]))
        self.assertIn("gave up after 5", r.errors[-1])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_cancelCancelsAll(self):
        clock, attempts, r, results = race([PUBLIC_A, PUBLIC_B, CIRCUIT])
        clock.advance(0.3)
        r._result.cancel()
        self.assertEqual(len(results), 1)
        self.assertIsInstance(results[0].value, CancelledError)
        self.assertEqual(sorted(attempts.cancelled), sorted([PUBLIC_A, PUBLIC_B]))
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(10)
        self.assertEqual(list(attempts.started), [PUBLIC_A, PUBLIC_B])

    def test_synchronousFailures(self):
        """
        Attempts that fail at once (unsupported addresses) run through
        without waiting.
        """
        clock = Clock()
        seen = []

        def dialOne(addr):
            seen.append(addr)
            raise DialError(f"{addr}: unsupported")

        results = []
        r = DialRace(clock, dialOne, [PUBLIC_A, PUBLIC_B, CIRCUIT])
        r.run().addBoth(results.append)
        self.assertEqual(seen, [PUBLIC_A, PUBLIC_B, CIRCUIT])
        self.assertEqual(results, [None])
        self.assertEqual(len(r.errors), 3)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_unexpectedErrorIsLoggedAndTheNextTried(self):
        clock = Clock()
        calls = []

        def dialOne(addr):
            calls.append(addr)
            if addr == PUBLIC_A:
                raise RuntimeError("bug")
            return f"conn via {addr}"

        results = []
        DialRace(clock, dialOne, [PUBLIC_A, PUBLIC_B]).run().addBoth(results.append)
        self.assertEqual(results, [f"conn via {PUBLIC_B}"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
