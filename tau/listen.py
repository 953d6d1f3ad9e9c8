"""
A listening service built from an endpoint string, that says when and where
it is bound, and fails loudly when it cannot bind.
"""

from twisted.application.service import Service
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python.failure import Failure

from tau.oneshot import OneShot


class ListenError(Exception):
    """
    A listener could not bind its endpoint.
    """

    def __init__(self, name, description, reason):
        super().__init__(name, description, reason)
        self.name = name
        self.description = description
        self.reason = reason

    def __str__(self):
        return f"cannot listen for {self.name} on {self.description!r}: {self.reason}"


class Listener(Service):
    """
    Listen on C{description} (a Twisted endpoint string) with C{factory} while
    running.  Unlike L{StreamServerEndpointService}, a failed bind is not only
    logged: L{whenListening} fails with L{ListenError}.
    """

    log = Logger()

    def __init__(self, name, description, factory, reactor):
        self.setName(name)
        self.description = description
        self.factory = factory
        self._reactor = reactor
        self._port = None
        self._listening = OneShot()
        self._pending = None

    def startService(self):
        super().startService()
        if self._listening.fired:
            self._listening = OneShot()
        try:
            endpoint = serverFromString(self._reactor, self.description)
        except (ValueError, TypeError, KeyError) as e:
            self._failed(Failure(ValueError(f"bad endpoint: {e}")))
            return
        self._pending = endpoint.listen(self.factory)
        self._pending.addCallbacks(self._bound, self._failed)

    def _bound(self, port):
        self._pending = None
        self._port = port
        self._listening.fire(port)

    def _failed(self, failure):
        self._pending = None
        reason = failure.getErrorMessage() or failure.type.__name__
        self._listening.fire(Failure(ListenError(self.name, self.description, reason)))

    def whenListening(self):
        """
        @return: a Deferred firing with the L{IListeningPort}, or failing
            with L{ListenError}.
        """
        return self._listening.whenFired()

    @property
    def port(self):
        """
        The bound L{IListeningPort}, or None.
        """
        return self._port

    def stopService(self):
        super().stopService()
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        port, self._port = self._port, None
        if port is not None:
            return port.stopListening()
        return None
