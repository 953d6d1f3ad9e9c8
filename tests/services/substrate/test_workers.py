"""
L{tau.services.substrate.wasm.workers.Workers}: the runtime's threads.
"""

import queue
import threading

from twisted.trial.unittest import SynchronousTestCase

from tau.services.substrate.wasm.workers import Workers


class _Reactor:
    """
    C{callFromThread} onto a queue the test drains (as the reactor would).
    """

    def __init__(self):
        self.calls = queue.SimpleQueue()

    def callFromThread(self, f, *args):
        self.calls.put((f, args))

    def runOne(self):
        f, args = self.calls.get(timeout=10)
        f(*args)


class WorkersTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = _Reactor()
        self.workers = Workers(self.reactor, 2, "test")
        self.addCleanup(self.stop)

    def stop(self):
        self.workers.close()
        self.workers.join()

    def test_result(self):
        """
        What the function returns fires the Deferred, on the reactor.
        """
        d = self.workers.submit(lambda a, b: (a + b, threading.current_thread().name), 1, 2)
        self.assertNoResult(d)
        self.reactor.runOne()
        self.assertEqual(self.successResultOf(d), (3, "test-0"))

    def test_error(self):
        """
        What the function raises fails the Deferred.
        """
        d = self.workers.submit(lambda: 1 / 0)
        self.reactor.runOne()
        self.failureResultOf(d, ZeroDivisionError)

    def test_atMostCount(self):
        """
        No more than C{count} threads start, however much work waits; all
        of it runs.
        """
        gate = threading.Event()
        ds = [self.workers.submit(gate.wait, 10) for _ in range(5)]
        self.assertEqual(len(self.workers._threads), 2)
        gate.set()
        for _ in ds:
            self.reactor.runOne()
        self.assertEqual([self.successResultOf(d) for d in ds], [True] * 5)

    def test_reused(self):
        """
        Work submitted one piece after another reuses one thread.
        """
        for i in range(3):
            d = self.workers.submit(lambda: i)
            self.reactor.runOne()
            self.assertEqual(self.successResultOf(d), i)
        self.assertEqual(len(self.workers._threads), 1)

    def test_closed(self):
        """
        After L{Workers.close} the threads end and no work is taken.
        """
        d = self.workers.submit(lambda: 1)
        self.reactor.runOne()
        self.successResultOf(d)
        self.stop()
        self.assertFalse(any(t.is_alive() for t in self.workers._threads))
        self.assertRaises(RuntimeError, self.workers.submit, lambda: 1)
