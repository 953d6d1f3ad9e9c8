"""
PubSubService between real tau hosts on loopback.
"""

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tau.identity import PrivateKey
from tau.pb import rpc_pb2
from tau.protocols import varint
from tau.pubsub import FLOODSUB, MESHSUB_11, GossipParams, PubSubService, SubscriptionCancelled, ValidationError
from tau.pubsub.message import MAX_RPC, RPC, encodeRPC, signMessage
from tests.hosts import addressOf, startHost

T = "tau-test"


async def until(condition, timeout=10.0, what="condition"):
    """
    Poll C{condition} every 20 ms (the network is real) until it holds.
    """
    deadline = reactor.seconds() + timeout
    while not condition():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.02)


class ServiceTests(TestCase):
    timeout = 60

    async def node(self, **options):
        host = await startHost(self)
        options.setdefault("params", GossipParams(heartbeatInterval=0.2))
        service = PubSubService(host, reactor, **options)
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        return host, service

    async def connected(self, a, b):
        """
        a dials b; returns once each knows the other as a pubsub peer.
        """
        (hostA, psA), (hostB, psB) = a, b
        await hostA.connect(addressOf(hostB))
        await until(lambda: hostB.peerID in psA.router.peers and hostA.peerID in psB.router.peers, what="pubsub peers")

    async def test_publishSubscribe(self):
        a, b = await self.node(), await self.node()
        await self.connected(a, b)
        sub = b[1].subscribe(T)
        await until(lambda: b[0].peerID in a[1].topicPeers(T), what="subscription seen")
        sent = await a[1].publish(T, b"hello")
        got = await sub.next()
        self.assertEqual((got.topic, got.data, got.source, got.seqno), (T, b"hello", a[0].peerID, sent.seqno))
        self.assertEqual(got.receivedFrom, a[0].peerID)
        self.assertEqual(got.msgID, sent.msgID)
        # seqnos increase
        second = await a[1].publish(T, b"again")
        self.assertGreater(second.seqno, sent.seqno)
        self.assertEqual((await sub.next()).data, b"again")

    async def test_lineForwards(self):
        a, b, c = await self.node(), await self.node(), await self.node()
        await self.connected(a, b)
        await self.connected(b, c)
        subs = [n[1].subscribe(T) for n in (a, b, c)]
        await until(lambda: c[0].peerID in b[1].router.mesh.get(T, ()) and a[0].peerID in b[1].router.mesh.get(T, ()), what="mesh")
        await a[1].publish(T, b"from a")
        self.assertEqual((await subs[2].next()).data, b"from a")
        self.assertEqual((await subs[1].next()).data, b"from a")
        self.assertEqual((await subs[0].next()).data, b"from a", "our own messages come to us too")
        await c[1].publish(T, b"from c")
        got = await subs[0].next()
        self.assertEqual((got.data, got.source, got.receivedFrom), (b"from c", c[0].peerID, b[0].peerID))

    async def test_cancelLeaves(self):
        a, b = await self.node(), await self.node()
        await self.connected(a, b)
        first = b[1].subscribe(T)
        second = b[1].subscribe(T)
        await until(lambda: b[0].peerID in a[1].topicPeers(T))
        first.cancel()
        self.assertEqual(b[1].topics(), [T], "one local subscription is left")
        with self.assertRaises(SubscriptionCancelled):
            await first.next()
        second.cancel()
        self.assertEqual(b[1].topics(), [])
        await until(lambda: b[0].peerID not in a[1].topicPeers(T), what="unsubscription seen")

    async def test_asyncIteration(self):
        a, b = await self.node(), await self.node()
        await self.connected(a, b)
        sub = b[1].subscribe(T)
        await until(lambda: b[0].peerID in a[1].topicPeers(T))
        for i in range(3):
            await a[1].publish(T, b"%d" % i)
        got = []
        async for message in sub:
            got.append(message.data)
            if len(got) == 3:
                sub.cancel()
        self.assertEqual(got, [b"0", b"1", b"2"])

    async def test_slowSubscriberDropsOldest(self):
        a, b = await self.node(), await self.node(subscriptionQueue=5)
        await self.connected(a, b)
        sub = b[1].subscribe(T)
        await until(lambda: b[0].peerID in a[1].topicPeers(T))
        for i in range(8):
            await a[1].publish(T, b"%d" % i)
        await until(lambda: sub.dropped == 3, what="drops")
        self.assertEqual([(await sub.next()).data for _ in range(5)], [b"3", b"4", b"5", b"6", b"7"])

    async def test_validators(self):
        a, b = await self.node(), await self.node()
        await self.connected(a, b)
        sub = b[1].subscribe(T)
        await until(lambda: b[0].peerID in a[1].topicPeers(T))

        async def onlyEven(message):
            return int(message.data) % 2 == 0

        b[1].addValidator(T, onlyEven)
        for i in range(4):
            await a[1].publish(T, b"%d" % i)
        self.assertEqual([(await sub.next()).data for _ in range(2)], [b"0", b"2"])
        await until(lambda: b[1].router.stats["rejected"] == 2)
        a[1].addValidator(T, lambda m: False)
        with self.assertRaises(ValidationError):
            await a[1].publish(T, b"4")
        a[1].removeValidator(T)
        b[1].removeValidator(T)
        await a[1].publish(T, b"5")
        self.assertEqual((await sub.next()).data, b"5")

    async def test_publishLimits(self):
        a = await self.node()
        with self.assertRaises(ValueError):
            await a[1].publish(T, b"x" * (MAX_RPC + 1))
        with self.assertRaises(ValueError):
            await a[1].publish("", b"x")
        self.assertRaises(ValueError, a[1].subscribe, "x" * 2000)

    async def test_floodsubOnlyPeer(self):
        a, b = await self.node(), await self.node(protocols=[FLOODSUB])
        await self.connected(a, b)
        self.assertEqual(a[1].router.peers[b[0].peerID].protocol, FLOODSUB)
        subA, subB = a[1].subscribe(T), b[1].subscribe(T)
        await until(lambda: b[0].peerID in a[1].topicPeers(T) and a[0].peerID in b[1].topicPeers(T))
        await a[1].publish(T, b"to flood")
        self.assertEqual((await subB.next()).data, b"to flood")
        self.assertEqual((await subA.next()).data, b"to flood")
        await b[1].publish(T, b"from flood")
        self.assertEqual((await subA.next()).data, b"from flood")

    async def test_reconnectResendsSubscriptions(self):
        a, b = await self.node(), await self.node()
        await self.connected(a, b)
        b[1].subscribe(T)
        await until(lambda: b[0].peerID in a[1].topicPeers(T))
        for conn in a[0].connections(b[0].peerID):
            await conn.close()
        await until(lambda: b[0].peerID not in a[1].router.peers, what="peer gone")
        await self.connected(a, b)
        await until(lambda: b[0].peerID in a[1].topicPeers(T), what="subscriptions again")


class BadPeerTests(TestCase):
    """
    A raw host (no pubsub service) speaking /meshsub/1.1.0 badly.
    """

    timeout = 60

    async def setUpPair(self):
        host = await startHost(self)
        service = PubSubService(host, reactor)
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        evil = await startHost(self)

        async def discard(stream):
            await stream.readToEnd(1 << 30)

        evil.setStreamHandler(MESHSUB_11, discard)
        await evil.connect(addressOf(host))
        stream = await evil.newStream(host.peerID, [MESHSUB_11])
        await until(lambda: evil.peerID in service.router.peers, what="evil peer added")
        return host, service, evil, stream

    async def test_oversizedFrameDropsPeer(self):
        host, service, evil, stream = await self.setUpPair()
        stream.write(varint.encode(MAX_RPC + 1) + b"x" * 100)
        await until(lambda: not host.connections(evil.peerID), what="peer dropped")
        await until(lambda: evil.peerID not in service.router.peers)

    async def test_garbageDropsPeer(self):
        host, service, evil, stream = await self.setUpPair()
        stream.writeLP(b"\xff\xff\xff\xff")
        await until(lambda: not host.connections(evil.peerID), what="peer dropped")

    async def test_badSignatureRejectedPeerKept(self):
        host, service, evil, stream = await self.setUpPair()
        sub = service.subscribe(T)
        m = signMessage(PrivateKey.generate(), T, b"forged", (1).to_bytes(8, "big"))
        pb = rpc_pb2.Message()
        pb.CopyFrom(m.toProtobuf())
        pb.data = b"tampered"
        stream.writeLP(encodeRPC(RPC(subscriptions=[(True, T)], messages=[pb])))
        await until(lambda: service.router.stats["invalid"] == 1)
        self.assertLess(service.router.score.score(evil.peerID), 0)
        self.assertTrue(host.connections(evil.peerID))
        good = signMessage(evil.key, T, b"genuine", (2).to_bytes(8, "big"))
        stream.writeLP(encodeRPC(RPC(messages=[good])))
        self.assertEqual((await sub.next()).data, b"genuine")

    async def test_floodIsThrottled(self):
        host, service, evil, stream = await self.setUpPair()
        service.subscribe(T)
        # a refill too slow to matter, whatever the wall clock does while
        # the frames travel
        service.router.params.messageRate = 1.0
        burst = int(service.router.params.messageBurst)
        wires = [signMessage(evil.key, T, b"%d" % i, i.to_bytes(8, "big")) for i in range(burst + 500)]
        for i in range(0, len(wires), 500):
            stream.writeLP(encodeRPC(RPC(messages=wires[i : i + 500])))
        await until(lambda: service.router.stats["received"] + service.router.stats["throttled"] >= len(wires), timeout=30)
        self.assertGreater(service.router.stats["throttled"], 0)
        self.assertGreater(service.router.score._peers[evil.peerID].behaviourPenalty, 0)


class FramesTests(TestCase):
    def test_largeRPCPackedWithoutOneHugeBuffer(self):
        """
        An RPC over the frame limit (a big IWANT answer) goes out in frames
        of at most MAX_RPC bytes, the messages packed in order, and is never
        encoded whole first.
        """
        from tau.pubsub import service as module
        from tau.pubsub.message import decodeRPC

        encoded = []
        original = module.encodeRPC

        def recording(rpc):
            data = original(rpc)
            encoded.append(len(data))
            return data

        self.patch(module, "encodeRPC", recording)
        key = PrivateKey.generate()
        messages = [signMessage(key, T, bytes([i]) * 200_000, i.to_bytes(8, "big")) for i in range(12)]
        frames = module._frames(RPC(iwant=[b"x"], messages=messages))
        self.assertLessEqual(max(encoded), MAX_RPC)
        self.assertTrue(all(len(f) <= MAX_RPC for f in frames))
        self.assertLess(len(frames), 12, "messages share frames")
        decoded = [decodeRPC(f) for f in frames]
        self.assertEqual(decoded[0].iwant, [b"x"])
        self.assertEqual([bytes(m.data) for rpc in decoded for m in rpc.messages], [m.data for m in messages])
        # small RPCs are one frame
        self.assertEqual(len(module._frames(RPC(messages=messages[:2]))), 1)
