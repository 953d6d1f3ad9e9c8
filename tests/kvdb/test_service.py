"""
KVDBService's push protocol on fake streams and a Clock.
"""

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tau.identity import PrivateKey
from tau.kvdb import codec
from tau.kvdb.service import MAX_SERVING, KVDBService


class FakeStream:
    def __init__(self, data, peer):
        self.data = data
        self.remotePeer = peer
        self.written = []
        self.closed = False
        self.wasReset = False

    async def readLP(self, limit):
        return self.data

    def writeLP(self, data):
        self.written.append(data)

    def closeWrite(self):
        self.closed = True

    def reset(self):
        self.wasReset = True


class StuckReplica:
    def __init__(self):
        self.merges = []

    def retryMissing(self, cids):
        pass

    def merge(self, heads, snapshot=None, source=None, blocks=None):
        d = Deferred()
        self.merges.append(d)
        return d


class PushTests(SynchronousTestCase):
    def test_busyWhenEveryPushSlotIsTaken(self):
        """
        Past MAX_SERVING pushes being merged, a push is answered "busy" at
        once instead of queueing (with its stream) behind the others.
        """
        clock = Clock()
        key = PrivateKey.generate()
        service = KVDBService(None, None, None, None, key, self.mktemp(), clock)
        replica = service.replicas["db"] = StuckReplica()
        head = codec.cidOf(b"head")
        streams = [FakeStream(codec.encodePush("db", [head]), PrivateKey.generate().peerID()) for _ in range(MAX_SERVING + 3)]
        serving = [Deferred.fromCoroutine(service._servePush(s)) for s in streams]
        self.assertEqual(len(replica.merges), MAX_SERVING)
        for stream in streams[:MAX_SERVING]:
            self.assertEqual(stream.written, [])
        for stream in streams[MAX_SERVING:]:
            self.assertEqual([codec.decodePushed(w) for w in stream.written], [(False, "busy")])
            self.assertTrue(stream.closed)
        # the pushes being served end with the merge timeout
        clock.advance(service.fetchTimeout * 2 + 1)
        for stream in streams[:MAX_SERVING]:
            ok, why = codec.decodePushed(stream.written[0])
            self.assertFalse(ok)
        for d in serving:
            self.successResultOf(d)

    def test_badPushResetsStream(self):
        clock = Clock()
        service = KVDBService(None, None, None, None, PrivateKey.generate(), self.mktemp(), clock)
        stream = FakeStream(b"\xa0garbage", PrivateKey.generate().peerID())
        self.successResultOf(Deferred.fromCoroutine(service._servePush(stream)))
        self.assertTrue(stream.wasReset)
        self.assertEqual(stream.written, [])
