"""
Tests for L{tau.resources}: receive budgets, inbound stream counts and
giving freed memory back.
"""

import gc

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tau.resources import FreedMemory, InboundStreams, PeerBudgets, ReceiveBudget


class Holder:
    """
    A holder that lets go of everything when reset, as a yamux stream does:
    from the budget it charges (C{home}), which may be the child of the
    budget that resets it.
    """

    def __init__(self, name, home=None):
        self.name = name
        self.home = home
        self.reset = None

    def overBudget(self, budget):
        self.reset = budget
        (self.home or budget).drop(self)

    def __repr__(self):
        return f"<Holder {self.name}>"


class ReceiveBudgetTests(SynchronousTestCase):
    def test_exactlyTheLimit(self):
        """
        Holders may hold exactly the limit between them.
        """
        budget = ReceiveBudget(100)
        a, b = Holder("a"), Holder("b")
        self.assertTrue(budget.charge(a, 60))
        self.assertTrue(budget.charge(b, 40))
        self.assertEqual((budget.used, budget.held(a), budget.held(b)), (100, 60, 40))
        self.assertEqual((a.reset, b.reset), (None, None))

    def test_onePastResetsTheLargest(self):
        """
        One byte past the limit resets the holder holding the most (not the
        one that charged), and the charge stands.
        """
        budget = ReceiveBudget(100)
        a, b = Holder("a"), Holder("b")
        budget.charge(a, 60)
        budget.charge(b, 40)
        self.assertTrue(budget.charge(b, 1))
        self.assertIs(a.reset, budget)
        self.assertIsNone(b.reset)
        self.assertEqual((budget.used, budget.held(a), budget.held(b)), (41, 0, 41))

    def test_chargingHolderLargest(self):
        """
        When the holder that charges holds the most, it is the one reset,
        and the charge says so.
        """
        budget = ReceiveBudget(100)
        a, b = Holder("a"), Holder("b")
        budget.charge(b, 10)
        self.assertFalse(budget.charge(a, 91))
        self.assertIs(a.reset, budget)
        self.assertEqual((budget.used, b.reset), (10, None))

    def test_releaseAndDrop(self):
        budget = ReceiveBudget(100)
        a = Holder("a")
        budget.charge(a, 50)
        budget.release(a, 20)
        self.assertEqual((budget.used, budget.held(a)), (30, 30))
        budget.release(a, 1000)  # at most what it holds
        self.assertEqual((budget.used, budget.held(a)), (0, 0))
        budget.charge(a, 10)
        budget.drop(a)
        budget.release(a, 5)  # nothing left: ignored
        self.assertEqual(budget.used, 0)

    def test_peak(self):
        budget = ReceiveBudget(100)
        a = Holder("a")
        budget.charge(a, 70)
        budget.release(a, 70)
        budget.charge(a, 20)
        self.assertEqual((budget.used, budget.peak), (20, 70))

    def test_parentCountsEveryChild(self):
        """
        A peer's budget counts the bytes of all its connections; past its
        limit the largest holder of any connection is reset, though each
        connection is within its own.
        """
        peer = ReceiveBudget(100, name="peer")
        one, two = ReceiveBudget(80, peer), ReceiveBudget(80, peer)
        a, b = Holder("a", one), Holder("b", two)
        one.charge(a, 60)
        self.assertTrue(two.charge(b, 40))
        self.assertEqual(peer.used, 100)
        self.assertTrue(two.charge(b, 1))
        self.assertIs(a.reset, peer)
        self.assertEqual((one.used, two.used, peer.used), (0, 41, 41))

    def test_holderThatDoesNotLetGo(self):
        """
        A holder whose C{overBudget} keeps its bytes is a bug, reported
        rather than looped on.
        """

        class Stubborn(Holder):
            def overBudget(self, budget):
                pass

        budget = ReceiveBudget(10)
        self.assertRaises(RuntimeError, budget.charge, Stubborn("s"), 11)

    def test_positiveLimit(self):
        self.assertRaises(ValueError, ReceiveBudget, 0)


class PeerBudgetsTests(SynchronousTestCase):
    def test_sharedWhileUsed(self):
        """
        Connections of one peer share its budget; once none refers to it,
        it is forgotten (by reference counting alone).
        """
        budgets = PeerBudgets(100, 150, Clock())
        first = budgets("peer")
        self.assertIs(budgets("peer"), first)
        self.assertIsNot(budgets("other"), first)
        self.assertEqual((first.limit, first.parent), (100, budgets.total))
        self.assertEqual(budgets.total.limit, 150)
        gc.disable()
        self.addCleanup(gc.enable)
        first.charge(Holder("a"), 10)
        del first
        self.assertEqual(budgets("peer").used, 0)

    def test_totalOverPeers(self):
        """
        Peers each within their budget are held to the total between them:
        one byte past it resets the largest holder of any peer.
        """
        budgets = PeerBudgets(100, 150, Clock())
        one, two = ReceiveBudget(100, budgets("one")), ReceiveBudget(100, budgets("two"))
        a, b = Holder("a", one), Holder("b", two)
        one.charge(a, 80)
        two.charge(b, 70)
        self.assertEqual(budgets.total.used, 150)
        self.assertTrue(two.charge(b, 1))
        self.assertIs(a.reset, budgets.total)
        self.assertEqual((budgets.total.used, budgets("one").used), (71, 0))

    def test_trimAfterABigConnection(self):
        """
        A closed connection whose budget held L{PeerBudgets.trimAfter}
        bytes at once has the freed memory given back; a smaller one not.
        """
        clock = FakeReactor()
        budgets = PeerBudgets(100 << 20, 200 << 20, clock)
        budgets.freed.trim = clock.trims.append
        small, big = ReceiveBudget(64 << 20), ReceiveBudget(64 << 20)
        small.charge(Holder("s"), budgets.trimAfter - 1)
        big.charge(Holder("b"), budgets.trimAfter)
        budgets.closed(small)
        clock.advance(0)
        self.assertEqual(clock.trims, [])
        budgets.closed(big)
        clock.advance(0)
        self.assertEqual(clock.trims, [0])


class FakeReactor(Clock):
    """
    A clock that runs C{callInThread} calls at once.
    """

    def __init__(self):
        super().__init__()
        self.trims = []

    def callInThread(self, f, *args):
        f(*args)


class FreedMemoryTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = FakeReactor()
        self.freed = FreedMemory(self.reactor, trim=self.reactor.trims.append)

    def test_oncePerInterval(self):
        """
        Requests within L{FreedMemory.interval} of a trim make one more
        trim, at the end of the interval.
        """
        self.freed.request()
        self.reactor.advance(0)
        self.assertEqual(self.reactor.trims, [0])
        self.freed.request()
        self.freed.request()
        self.reactor.advance(self.freed.interval - 0.01)
        self.assertEqual(len(self.reactor.trims), 1)
        self.reactor.advance(0.01)
        self.assertEqual(len(self.reactor.trims), 2)

    def test_stopCancels(self):
        self.freed.request()
        self.freed.stop()
        self.reactor.advance(10)
        self.assertEqual(self.reactor.trims, [])

    def test_noTrim(self):
        """
        Without malloc_trim (not glibc) nothing is scheduled.
        """
        freed = FreedMemory(self.reactor, trim=None)
        freed.request()
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class InboundStreamsTests(SynchronousTestCase):
    def test_limitPerPeerAndProtocol(self):
        """
        Exactly C{limit} streams of a protocol from a peer are admitted; the
        next is refused; other peers and protocols count apart; a closed
        stream makes room.
        """
        inbound = InboundStreams()
        closed = [Deferred() for _ in range(3)]
        self.assertTrue(inbound.admit("p", "/kad", 2, closed[0]))
        self.assertTrue(inbound.admit("p", "/kad", 2, closed[1]))
        self.assertFalse(inbound.admit("p", "/kad", 2, Deferred()))
        self.assertTrue(inbound.admit("q", "/kad", 2, closed[2]))
        self.assertTrue(inbound.admit("p", "/bitswap", 2, Deferred()))
        self.assertEqual(inbound.count("p", "/kad"), 2)
        closed[0].callback(None)
        self.assertEqual(inbound.count("p", "/kad"), 1)
        self.assertTrue(inbound.admit("p", "/kad", 2, Deferred()))
        closed[2].callback(None)
        self.assertEqual(inbound._open.get(("q", "/kad")), None)
