"""
The benches' sending side: one push producer that writes a byte count and
closes, shared by transport.py, transport_baselines.py and relay.py (their
child processes import it as a sibling of the script).
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Protocol


@implementer(IPushProducer, IHalfCloseableProtocol)
class Sender(Protocol):
    """
    Send C{total} bytes as writes of C{block} (the last one cut short) with a
    streaming producer, then close the write side; keep whatever the other
    side answers. C{done} fires with that answer once the connection is lost.
    """

    def __init__(self, total: int, block: bytes) -> None:
        self.left = total
        self.block = block
        self.paused = False
        self.answer = b""
        self.done: Deferred = Deferred()

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        block = self.block
        chunk = len(block)
        write = self.transport.write
        while not self.paused and self.left > 0:
            n = min(chunk, self.left)
            self.left -= n
            write(block if n == chunk else block[:n])
        if self.left == 0 and not self.paused:
            self.left = -1
            self.transport.unregisterProducer()
            self.transport.loseConnection()

    def stopProducing(self) -> None:
        self.left = -1

    def dataReceived(self, data: bytes) -> None:
        self.answer += data

    def readConnectionLost(self) -> None:
        pass

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Any) -> None:
        if not self.done.called:
            self.done.callback(self.answer)
