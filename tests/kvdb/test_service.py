"""
KVDBService's push protocol on fake streams and a Clock.
"""

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tau.fakes import FakeHost
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
    authority = None

    def __init__(self):
        self.merges = []

    async def retryMissing(self, cids):
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


class FakeStoreService:
    def __init__(self, blocks):
        self.blocks = blocks

    def whenReady(self):
        from twisted.internet.defer import succeed

        return succeed(self)


def deferLater(seconds):
    from twisted.internet import reactor
    from twisted.internet.task import deferLater as later

    return later(reactor, seconds, lambda: None)


class StopTests(TestCase):
    """
    Stopping the service while merges fetch: cancelled, waited for, no
    error; the next start resumes the walk.
    """

    timeout = 30

    async def startService(self, path, store, fetch):
        from twisted.internet import reactor

        service = KVDBService(FakeHost(reactor), None, FakeStoreService(store), fetch, PrivateKey.generate(), path, reactor)
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        await service.whenReady()
        return service

    async def test_stopCancelsMergesAndRestartResumes(self):
        from twisted.logger import globalLogPublisher

        from tests.kvdb.fakes import PinningStore

        events = []

        def observe(event):
            if event["log_level"].name in ("warn", "error", "critical"):
                events.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        writer = PrivateKey.generate()
        delta = codec.makeDelta(writer, "db", 1, [], [(b"k", b"v")])
        path, store = self.mktemp(), PinningStore()
        asked, cancelled = [], []

        def stuck(c, timeout):
            asked.append(c)
            return Deferred(lambda d: cancelled.append(c))

        service = await self.startService(path, store, stuck)
        replica = await service.open("db")
        merging = Deferred.fromCoroutine(replica.merge([delta.cid], source="peer"))
        while not asked:
            await deferLater(0)
        await service.stopService()
        self.assertEqual(len(cancelled), 1)
        self.assertEqual(await merging, 0)
        # nothing happens later either (a fetch that ends after the stop)
        await deferLater(0.05)
        self.assertEqual(events, [])

        async def works(c, timeout):
            return delta.data

        again = await self.startService(path, store, works)
        replica = again.replicas["db"]
        await replica.idle()
        self.assertEqual(await again.get("db", "k"), b"v")
        self.assertEqual(events, [])

    async def test_writesInFlightEndBeforeStop(self):
        """
        A write asked for before the service stops is committed before
        stopService returns (durable, found after a restart); writes after
        it fail with Stopped.
        """
        from tau.kvdb.replica import Stopped
        from tests.kvdb.fakes import PinningStore

        path, store = self.mktemp(), PinningStore()
        service = await self.startService(path, store, None)
        replica = await service.open("db")
        writing = Deferred.fromCoroutine(service.put("db", "k", b"v"))
        await service.stopService()
        self.assertTrue(writing.called)
        delta, confirmed = await writing
        self.assertEqual(confirmed, 1)
        with self.assertRaises(Stopped):
            await replica.write([(b"k", b"w")])
        again = await self.startService(path, store, None)
        self.assertEqual(await again.get("db", "k"), b"v")
