"""
L{BodyPipe}: a request body as it comes, with back-pressure on the client
and a bounded replay for failover.
"""

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from tau.services.gateway.http import BodyError, BodyPipe


class Producer:
    def __init__(self):
        self.paused = False
        self.calls = []

    def pauseProducing(self):
        self.paused = True
        self.calls.append("pause")

    def resumeProducing(self):
        self.paused = False
        self.calls.append("resume")


def read(pipe, size=65536):
    d = Deferred.fromCoroutine(pipe.read(size))
    results = []
    d.addBoth(results.append)
    return results


class BodyPipeTests(SynchronousTestCase):
    def test_backPressure(self):
        """
        Past highWater buffered bytes the client is paused; once the reader
        took it down to half, resumed.
        """
        producer = Producer()
        pipe = BodyPipe(producer, replay=0, highWater=100)
        pipe.feed(b"a" * 100)
        self.assertEqual(producer.calls, [])
        pipe.feed(b"b")
        self.assertEqual(producer.calls, ["pause"])
        self.assertEqual(read(pipe, 40), [b"a" * 40])
        self.assertEqual(producer.calls, ["pause"])  # 61 left
        self.assertEqual(read(pipe, 11), [b"a" * 11])
        self.assertEqual(producer.calls, ["pause", "resume"])  # 50 left

    def test_readWaitsThenEnds(self):
        pipe = BodyPipe(Producer(), replay=0)
        pending = read(pipe)
        self.assertEqual(pending, [])
        pipe.feed(b"x")
        self.assertEqual(pending, [b"x"])
        pending = read(pipe)
        pipe.end()
        self.assertEqual(pending, [b""])

    def test_abort(self):
        pipe = BodyPipe(Producer(), replay=0)
        pending = read(pipe)
        pipe.abort("gone")
        self.assertIsInstance(pending[0].value, BodyError)

    def test_rewindWithinReplay(self):
        """
        Up to replay bytes read: the body can be read again from its start;
        one byte more: it cannot.
        """
        pipe = BodyPipe(Producer(), replay=10)
        pipe.feed(b"0123456789")
        pipe.feed(b"abc")
        self.assertEqual(read(pipe, 10), [b"0123456789"])
        self.assertTrue(pipe.rewind())
        self.assertEqual(read(pipe, 10), [b"0123456789"])
        self.assertEqual(read(pipe, 10), [b"abc"])
        self.assertFalse(pipe.rewind())
        self.assertEqual(pipe.consumed, 13)

    def test_emptyBodyAlwaysRewinds(self):
        pipe = BodyPipe(Producer(), replay=0)
        pipe.end()
        self.assertEqual(read(pipe), [b""])
        self.assertTrue(pipe.rewind())
        self.assertEqual(read(pipe), [b""])
