"""
tau and js-libp2p (@libp2p/gossipsub from npm) in one pubsub network.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tau.identity import PeerID
from tau.pubsub import FLOODSUB, MESHSUB_11, GossipParams, PubSubService
from tests.hosts import startHost
from tests.interop.jspeer import startJsPeer

T = "tau-interop"


async def until(condition, timeout=20.0, what="condition"):
    deadline = reactor.seconds() + timeout
    while not await condition():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.05)


def isMessage(data, topic=T):
    return lambda e: e.get("event") == "pubsub:message" and e["topic"] == topic and e["data"] == data.hex()


class TauJsPubSubTests(TestCase):
    timeout = 120

    async def js(self):
        js = await startJsPeer(reactor, pubsub=True)
        self.addCleanup(lambda: Deferred.fromCoroutine(js.stop()))
        return js

    async def tau(self, **options):
        host = await startHost(self)
        options.setdefault("params", GossipParams(heartbeatInterval=0.5))
        ps = PubSubService(host, reactor, **options)
        ps.startService()
        self.addCleanup(lambda: ps.stopService() if ps.running else None)
        return host, ps

    async def subscribed(self, js, topic, peers):
        async def check():
            got = await js.command("pubsubPeers", topic=topic)
            return set(map(str, peers)) <= set(got["subscribers"])

        await until(check, what=f"js sees {peers} in {topic}")

    async def tauSees(self, ps, peer, topic=T):
        async def check():
            return PeerID.fromString(peer) in ps.topicPeers(topic)

        await until(check, what="tau sees the js subscription")

    async def test_bothWays(self):
        js = await self.js()
        host, ps = await self.tau()
        await host.connect(js.addrs[0])
        sub = ps.subscribe(T)
        await js.command("subscribe", topic=T)
        await self.tauSees(ps, js.peerId)
        await self.subscribed(js, T, [host.peerID])
        # js -> tau
        await js.command("publish", topic=T, data=b"from js".hex())
        got = await sub.next()
        self.assertEqual((got.data, got.source, got.receivedFrom), (b"from js", PeerID.fromString(js.peerId), PeerID.fromString(js.peerId)))
        # tau -> js: js verified our signature, or it would not deliver it
        sent = await ps.publish(T, b"from tau")
        event = await js.waitEvent(isMessage(b"from tau"), timeout=20)
        self.assertEqual(event["from"], str(host.peerID))
        self.assertEqual(event["seqno"], sent.seqno.hex())
        # the mesh formed both ways (GRAFTs understood)
        async def meshed():
            got = await js.command("pubsubPeers", topic=T)
            return str(host.peerID) in got["mesh"] and PeerID.fromString(js.peerId) in ps.router.mesh.get(T, ())

        await until(meshed, what="mesh between tau and js")

    async def test_jsForwardsBetweenTauNodes(self):
        """
        tau - js - tau: the two tau nodes only reach each other through js.
        """
        js = await self.js()
        (a, psA), (b, psB) = await self.tau(), await self.tau()
        await a.connect(js.addrs[0])
        await b.connect(js.addrs[0])
        subB = psB.subscribe(T)
        subA = psA.subscribe(T)
        await js.command("subscribe", topic=T)
        await self.subscribed(js, T, [a.peerID, b.peerID])
        await self.tauSees(psA, js.peerId)
        await self.tauSees(psB, js.peerId)

        # js forwards through its mesh: wait for both tau nodes to be in it
        async def meshed():
            got = await js.command("pubsubPeers", topic=T)
            return {str(a.peerID), str(b.peerID)} <= set(got["mesh"])

        await until(meshed, what="js mesh")
        await psA.publish(T, b"a to b")
        got = await subB.next()
        self.assertEqual((got.data, got.source, got.receivedFrom), (b"a to b", a.peerID, PeerID.fromString(js.peerId)))
        await psB.publish(T, b"b to a")
        self.assertEqual((await subA.next()).data, b"a to b")  # our own, delivered locally
        got = await subA.next()
        self.assertEqual((got.data, got.source), (b"b to a", b.peerID))

    async def test_tauForwardsBetweenJsNodes(self):
        """
        js - tau - js: tau forwards (mesh) and js accepts what it forwards.
        """
        js1, js2 = await self.js(), await self.js()
        host, ps = await self.tau()
        await host.connect(js1.addrs[0])
        await host.connect(js2.addrs[0])
        ps.subscribe(T)
        for js in (js1, js2):
            await js.command("subscribe", topic=T)
            await self.subscribed(js, T, [host.peerID])
            await self.tauSees(ps, js.peerId)

        async def meshed():
            return {PeerID.fromString(js1.peerId), PeerID.fromString(js2.peerId)} <= ps.router.mesh.get(T, set())

        await until(meshed, what="tau mesh")
        await js1.command("publish", topic=T, data=b"js1 to js2".hex())
        event = await js2.waitEvent(isMessage(b"js1 to js2"), timeout=20)
        self.assertEqual(event["from"], js1.peerId)
        await js2.command("publish", topic=T, data=b"js2 to js1".hex())
        event = await js1.waitEvent(isMessage(b"js2 to js1"), timeout=20)
        self.assertEqual(event["from"], js2.peerId)

    async def test_floodsubWithJs(self):
        """
        A floodsub-only tau node: js falls back to /floodsub/1.0.0.
        """
        js = await self.js()
        host, ps = await self.tau(protocols=[FLOODSUB])
        await host.connect(js.addrs[0])
        sub = ps.subscribe(T)
        await js.command("subscribe", topic=T)
        await self.tauSees(ps, js.peerId)
        await self.subscribed(js, T, [host.peerID])
        self.assertEqual(ps.router.peers[PeerID.fromString(js.peerId)].protocol, FLOODSUB)
        await js.command("publish", topic=T, data=b"flood from js".hex())
        self.assertEqual((await sub.next()).data, b"flood from js")
        await ps.publish(T, b"flood from tau")
        await js.waitEvent(isMessage(b"flood from tau"), timeout=20)

    async def test_meshsub11Negotiated(self):
        js = await self.js()
        host, ps = await self.tau()
        await host.connect(js.addrs[0])

        async def known():
            return PeerID.fromString(js.peerId) in ps.router.peers

        await until(known, what="js as a pubsub peer")
        self.assertEqual(ps.router.peers[PeerID.fromString(js.peerId)].protocol, MESHSUB_11)
