"""
The base of every service: L{StartedService}, a service that starts with
a coroutine and tells when it is up (L{StartedService.whenReady}).
"""

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from tau.oneshot import OneShot


class StartedService(Service):
    """
    C{startService} runs C{async _start()} (which binds, opens, installs;
    it answers the service) and L{whenReady} fires with what it answered,
    or with its failure.  A start after a stop waits anew.
    """

    _ready = None

    def _shot(self):
        if self._ready is None:
            self._ready = OneShot()
        return self._ready

    def startService(self):
        super().startService()
        if self._shot().fired:
            self._ready = OneShot()
        ready = self._ready
        Deferred.fromCoroutine(self._start()).addCallbacks(ready.fire, lambda f: ready.fire(f))

    async def _start(self):
        return self

    def whenReady(self):
        """
        Fires with this service when it serves, or fails (e.g. with
        L{tau.listen.ListenError}).
        """
        return self._shot().whenFired()
