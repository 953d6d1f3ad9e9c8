"""
A result that many callers may wait for, before or after it is known.
"""

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure


class OneShot:
    """
    Fires once, with a value or a L{Failure}; L{whenFired} hands every
    caller its own Deferred, so no caller's callbacks change another's result.
    """

    def __init__(self):
        self._result = None
        self._fired = False
        self._waiting = []

    @property
    def fired(self):
        return self._fired

    def fire(self, result):
        if self._fired:
            return
        self._fired = True
        self._result = result
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            self._deliver(d)

    def whenFired(self):
        if not self._fired:
            d = Deferred()
            self._waiting.append(d)
            return d
        if isinstance(self._result, Failure):
            return fail(self._result)
        return succeed(self._result)

    def _deliver(self, d):
        if isinstance(self._result, Failure):
            d.errback(self._result)
        else:
            d.callback(self._result)
