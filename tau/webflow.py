"""
A C{twisted.web} response's back-pressure, for code that writes a body as
it comes (the control API's streams, the HTTP tunnel, websites).
"""

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer


@implementer(IPushProducer)
class WriteGate:
    """
    Register it as the request's streaming producer, write, then C{await
    gate.wait()}: it holds while the HTTP client does not read.
    C{stopped} once the client is gone.
    """

    def __init__(self):
        self._open = None
        self.stopped = False

    def pauseProducing(self):
        if self._open is None:
            self._open = Deferred()

    def resumeProducing(self):
        waiting, self._open = self._open, None
        if waiting is not None:
            waiting.callback(None)

    def stopProducing(self):
        self.stopped = True
        self.resumeProducing()

    async def wait(self):
        if self._open is not None:
            await self._open
