"""
L{tau.streams.StreamProtocol}: coroutine reads with flow control.
"""

from twisted.internet.defer import Deferred
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
