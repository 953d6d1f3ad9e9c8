"""
The router's bounded caches.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tau.identity import PrivateKey
from tau.pubsub.caches import MessageCache, SeenCache
from tau.pubsub.message import signMessage


def messages(count, size=1):
    key = PrivateKey.generate()
    return [signMessage(key, "t", b"x" * size, i.to_bytes(8, "big")) for i in range(count)]


class MessageCacheTests(SynchronousTestCase):
    def test_maxMessages(self):
        """
        Past C{maxMessages} the oldest messages are forgotten: the cache
        never holds more, even within one heartbeat.
        """
        cache = MessageCache(maxMessages=3)
        ms = messages(10)
        for m in ms:
            cache.put(m)
        self.assertEqual(len(cache), 3)
        self.assertEqual([cache.get(m.msgID) for m in ms[-3:]], ms[-3:])
        self.assertIsNone(cache.get(ms[0].msgID))
        self.assertEqual(cache.gossipIDs("t"), [m.msgID for m in ms[-3:]])

    def test_maxBytes(self):
        """
        The payload bytes held are bounded too.
        """
        cache = MessageCache(maxBytes=1000)
        ms = messages(10, size=300)
        for m in ms:
            cache.put(m)
        self.assertEqual(len(cache), 3)
        self.assertEqual(cache.bytes, 900)
        for _ in range(5):
            cache.shift()
        self.assertEqual((len(cache), cache.bytes), (0, 0))

    def test_shiftForgets(self):
        cache = MessageCache(history=2, gossip=1)
        first, second = messages(2)
        cache.put(first)
        cache.shift()
        cache.put(second)
        self.assertEqual(cache.gossipIDs("t"), [second.msgID])
        cache.shift()
        self.assertIsNone(cache.get(first.msgID))
        self.assertIs(cache.get(second.msgID), second)


class SeenCacheTests(SynchronousTestCase):
    def test_ttlAndSize(self):
        clock = Clock()
        seen = SeenCache(clock, ttl=10, maxSize=2)
        self.assertTrue(seen.add(b"a"))
        self.assertFalse(seen.add(b"a"))
        seen.add(b"b")
        seen.add(b"c")
        self.assertNotIn(b"a", seen)
        clock.advance(11)
        self.assertNotIn(b"c", seen)
        self.assertEqual(len(seen), 0)
