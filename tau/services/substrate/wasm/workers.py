"""
L{Workers}: the threads that run a runtime's compiling, instantiating and
calls, with as little as can be between the reactor and a call: a queue
(C{queue.SimpleQueue}) and one C{callFromThread} per answer.  Twisted's
C{ThreadPool} costs about as much again per call (its team and worker
objects, a context per work item), which matters for a call that takes
~50 microseconds.
"""

import queue
import threading

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

_STOP = object()


class Workers:
    """
    At most C{count} threads (named C{name}-N), started as work comes (one
    more whenever all the started ones are busy) and kept until L{stop}.
    Used on the reactor thread only.
    """

    def __init__(self, reactor, count, name="wasm"):
        self._reactor = reactor
        self._count = count
        self._name = name
        self._queue = queue.SimpleQueue()
        self._threads = []
        self._idle = 0
        self._busy = 0
        self._stopped = False

    def submit(self, fn, *args):
        """
        Run C{fn(*args)} in a worker thread; a Deferred of what it returned
        (or raised).
        """
        if self._stopped:
            raise RuntimeError("the workers are stopped")
        d = Deferred()
        self._busy += 1
        if self._busy > len(self._threads) and len(self._threads) < self._count:
            thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()
        self._queue.put((fn, args, d))
        return d

    def _done(self, d, ok, result):
        self._busy -= 1
        if ok:
            d.callback(result)
        else:
            d.errback(result)

    def _work(self):
        callFromThread = self._reactor.callFromThread
        get = self._queue.get
        while True:
            item = get()
            if item is _STOP:
                return
            fn, args, d = item
            result = None
            try:
                result = fn(*args)
            except BaseException:
                callFromThread(self._done, d, False, Failure())
            else:
                callFromThread(self._done, d, True, result)
            del item, fn, args, d, result

    def close(self):
        """
        Take no more work; every thread ends once the work already submitted
        is done (L{join} waits for that).
        """
        self._stopped = True
        for _ in self._threads:
            self._queue.put(_STOP)

    def join(self):
        """
        In a thread that may block (not the reactor's): wait for every
        thread to end, after L{close}.
        """
        for thread in self._threads:
            thread.join()
