"""
Tests for L{tau.protocols.lazyselect}: the proposal and the application's
first bytes leave together, the listener's answer is checked before any
byte is handed up, and a refusal fails the application protocol.
"""

from twisted.internet.error import ConnectionDone, ConnectionLost, TimeoutError
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tau.protocols.lazyselect import LazyDialer
from tau.protocols.multistream import PROTOCOL_ID, Listener, MultistreamError, NegotiationFailed, encodeMessage

ECHO = "/tau/echo/1.0.0"
HEADER = encodeMessage(PROTOCOL_ID)


@implementer(IHalfCloseableProtocol)
class Recorder(Protocol):
    """
    Writes C{first} once connected; records what it is given.
    """

    def __init__(self, first=b""):
        self.first = first
        self.received = []
        self.readLost = False
        self.lost = None

    def connectionMade(self):
        if self.first:
            self.transport.write(self.first)

    def dataReceived(self, data):
        self.received.append(data)

    def readConnectionLost(self):
        self.readLost = True

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason):
        self.lost = reason


class AbortableTransport(StringTransport):
    aborted = False

    def abortConnection(self):
        self.aborted = True


def connected(first=b"command", clock=None, timeout=None):
    inner = Recorder(first)
    dialer = LazyDialer(ECHO, inner, clock, timeout)
    transport = AbortableTransport()
    dialer.makeConnection(transport)
    return dialer, inner, transport


class LazyDialerTests(TestCase):
    def test_proposalThenDataInOneGo(self):
        """
        What the protocol writes at once follows the header and the one
        proposal, without waiting for an answer; a listener selects the
        protocol and finds those bytes after it.
        """
        _, _, transport = connected(b"command")
        sent = transport.value()
        self.assertEqual(sent, HEADER + encodeMessage(ECHO) + b"command")
        toSend, selected = Listener([ECHO]).receive(sent)
        self.assertEqual(toSend, HEADER + encodeMessage(ECHO))
        self.assertEqual((selected.protocol, selected.leftover), (ECHO, b"command"))

    def test_answerStrippedByteByByte(self):
        """
        The listener's header and echo never reach the protocol, however
        they are split; what follows them does, and later data too.
        """
        dialer, inner, _ = connected()
        for byte in HEADER + encodeMessage(ECHO) + b"an":
            dialer.dataReceived(bytes([byte]))
        dialer.dataReceived(b"swer")
        self.assertEqual(b"".join(inner.received), b"answer")
        self.assertIsNone(inner.lost)

    def test_answerAndDataInOneChunk(self):
        dialer, inner, _ = connected()
        dialer.dataReceived(HEADER + encodeMessage(ECHO) + b"answer")
        self.assertEqual(inner.received, [b"answer"])

    def test_refusedFailsTheProtocol(self):
        """
        C{na}: the stream is aborted and the protocol's C{connectionLost}
        gets L{NegotiationFailed}; nothing reached it.
        """
        dialer, inner, transport = connected()
        dialer.dataReceived(HEADER + encodeMessage("na") + b"junk")
        self.assertTrue(transport.aborted)
        self.assertEqual(inner.received, [])
        dialer.connectionLost(Failure(ConnectionLost("reset")))
        self.assertTrue(inner.lost.check(NegotiationFailed))

    def test_garbageFailsTheProtocol(self):
        dialer, inner, transport = connected()
        dialer.dataReceived(encodeMessage("/not/multistream"))
        self.assertTrue(transport.aborted)
        dialer.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(inner.lost.check(MultistreamError))
        self.assertEqual(inner.received, [])

    def test_closedBeforeAccepting(self):
        """
        A peer that half-closes before accepting fails the stream; a clean
        end before the answer is not reported as a clean end.
        """
        dialer, inner, transport = connected()
        dialer.dataReceived(HEADER)
        dialer.readConnectionLost()
        self.assertTrue(transport.aborted)
        self.assertFalse(inner.readLost)
        dialer.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(inner.lost.check(ConnectionLost))

        dialer, inner, _ = connected()
        dialer.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(inner.lost.check(ConnectionLost))

    def test_halfCloseAfterAccepting(self):
        dialer, inner, _ = connected()
        dialer.dataReceived(HEADER + encodeMessage(ECHO) + b"bye")
        dialer.readConnectionLost()
        self.assertTrue(inner.readLost)
        dialer.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(inner.lost.check(ConnectionDone))

    def test_timeout(self):
        """
        A listener silent for the timeout fails the stream with
        L{TimeoutError}; one that accepted in time cancels the timer.
        """
        clock = Clock()
        dialer, inner, transport = connected(clock=clock, timeout=5)
        clock.advance(4.9)
        self.assertFalse(transport.aborted)
        clock.advance(0.1)
        self.assertTrue(transport.aborted)
        dialer.connectionLost(Failure(ConnectionLost("reset")))
        self.assertTrue(inner.lost.check(TimeoutError))

        clock = Clock()
        dialer, inner, transport = connected(clock=clock, timeout=5)
        dialer.dataReceived(HEADER + encodeMessage(ECHO))
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(10)
        self.assertFalse(transport.aborted)
