"""
L{tau.streams.StreamProtocol}: coroutine reads with flow control.
"""

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tau.streams import StreamProtocol


class _HoldingTransport:
    """
    A transport like a yamux stream: while paused it holds what arrives,
    and C{resumeProducing} delivers all of it at once, synchronously.
    """

    def __init__(self):
        self.protocol = None
        self.paused = False
        self.held = []
        self.pauses = 0

    def pauseProducing(self):
        self.paused = True
        self.pauses += 1

    def resumeProducing(self):
        self.paused = False
        while self.held and not self.paused:
            self.protocol.dataReceived(self.held.pop(0))

    def arrive(self, data):
        if self.paused:
            self.held.append(data)
        else:
            self.protocol.dataReceived(data)


class FlowControlTests(SynchronousTestCase):
    def setUp(self):
        self.transport = _HoldingTransport()
        self.stream = StreamProtocol()
        self.stream.highWater = 10
        self.transport.protocol = self.stream
        self.stream.makeConnection(self.transport)

    def read(self, n):
        d = Deferred.fromCoroutine(self.stream.readExactly(n))
        got = []
        d.addCallback(got.append)
        return got

    def test_resumeDeliveringAtOnceWakesTheReader(self):
        """
        A read that resumes a paused transport is woken by data the
        transport delivers inside C{resumeProducing}, even when that data
        pauses the stream again (helia sends 4 MiB bitswap messages this
        way; the reader used to hang for good).
        """
        self.transport.arrive(b"a" * 12)  # over highWater: paused
        self.assertTrue(self.transport.paused)
        self.transport.arrive(b"b" * 12)  # held by the transport
        self.transport.arrive(b"c" * 16)
        got = self.read(40)
        self.assertEqual(got, [b"a" * 12 + b"b" * 12 + b"c" * 16])

    def test_pausesPastHighWater(self):
        """
        Unread data past the high-water mark pauses the transport; a read
        that needs more resumes it.
        """
        self.transport.arrive(b"x" * 11)
        self.assertTrue(self.transport.paused)
        got = self.read(11)
        self.assertEqual(got, [b"x" * 11])
        got = self.read(1)
        self.assertFalse(self.transport.paused)
        self.transport.arrive(b"y")
        self.assertEqual(got, [b"y"])

    def test_longReadBuffersWithoutPausing(self):
        """
        A read of more than highWater bytes lets them all in before it
        pauses the transport, and is woken once they are there, not on
        every chunk (bitswap messages are up to 4 MiB, highWater 1 MiB).
        """
        got = self.read(40)
        wakes = []
        realWake = self.stream._wake
        self.patch(self.stream, "_wake", lambda: (wakes.append(len(self.stream._buffer)), realWake()))
        for _ in range(4):
            self.transport.arrive(b"z" * 8)
        self.assertFalse(self.transport.paused)
        self.assertEqual(got, [])
        self.transport.arrive(b"z" * 8)
        self.assertEqual(got, [b"z" * 40])
        self.assertEqual(wakes, [40])
        self.transport.arrive(b"w" * 11)  # nobody reading: past highWater pauses
        self.assertTrue(self.transport.paused)

    def test_readExactlyCopiesOut(self):
        """
        What readExactly returns is bytes that later data does not change.
        """
        got = self.read(3)
        self.transport.arrive(b"abcdef")
        self.assertEqual(got, [b"abc"])
        self.assertIsInstance(got[0], bytes)
        got2 = self.read(3)
        self.assertEqual(got2, [b"def"])
        self.assertEqual(got, [b"abc"])


class _BudgetTransport(_HoldingTransport):
    """
    A holding transport with a receive budget of C{room} bytes (as a yamux
    stream has), and sends that wait for the peer's window until
    C{drain()}.
    """

    def __init__(self, room):
        super().__init__()
        self.room = room
        self.reserved = 0
        self.aborted = False
        self._drained = []

    def reserve(self, n):
        if self.reserved + n > self.room:
            self.aborted = True
            return False
        self.reserved += n
        return True

    def release(self, n):
        self.reserved -= n

    def whenDrained(self):
        d = Deferred()
        self._drained.append(d)
        return d

    def drain(self):
        waiting, self._drained = self._drained, []
        for d in waiting:
            d.callback(None)


class BudgetTests(SynchronousTestCase):
    def setUp(self):
        self.transport = _BudgetTransport(room=100)
        self.stream = StreamProtocol()
        self.transport.protocol = self.stream
        self.stream.makeConnection(self.transport)

    def test_bufferedBytesReserved(self):
        """
        What the stream buffers is reserved on the transport, up to the
        budget; reading releases it.
        """
        d = Deferred.fromCoroutine(self.stream.readLP(1000))
        self.transport.arrive(bytes([99]) + b"x" * 50)
        self.assertEqual(self.transport.reserved, 50)  # the length is read
        self.transport.arrive(b"x" * 49)
        self.assertEqual(self.successResultOf(d), b"x" * 99)
        self.assertEqual(self.transport.reserved, 0)

    def test_refusedBytesNotBuffered(self):
        """
        The stream buffers exactly its budget; bytes past it are refused
        (the transport resets the stream) and not kept.
        """
        self.transport.arrive(b"x" * 100)
        self.transport.arrive(b"y")
        self.assertTrue(self.transport.aborted)
        self.assertEqual(len(self.stream._buffer), 100)

    def test_resetDropsTheBuffer(self):
        """
        A stream that is reset lets go of what it buffered; one closed
        cleanly keeps it for its reader.
        """
        self.transport.arrive(b"x" * 10)
        self.stream.connectionLost(Failure(ConnectionAborted()))
        self.assertEqual(len(self.stream._buffer), 0)
        clean = StreamProtocol()
        clean.makeConnection(_BudgetTransport(room=100))
        clean.dataReceived(b"abc")
        clean.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(clean.readToEnd(10))), b"abc")

    def test_drain(self):
        """
        L{StreamProtocol.drain} waits until the transport sent what waited
        for the peer's window; without C{whenDrained}, not at all.
        """
        d = Deferred.fromCoroutine(self.stream.drain())
        self.assertNoResult(d)
        self.transport.drain()
        self.successResultOf(d)
        plain = StreamProtocol()
        plain.makeConnection(_HoldingTransport())
        self.successResultOf(Deferred.fromCoroutine(plain.drain()))
