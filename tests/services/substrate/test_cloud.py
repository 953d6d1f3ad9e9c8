"""
substrate in a cloud on loopback (a tns node and a substrate node, real
hosts, DHT, bitswap, gossipsub and kvdb): a project and its builds
published on the tns node are served by the substrate node, which reads
tns over the network and fetches the builds over bitswap; its pubsub and
p2p functions run for the other node's messages and commands.
"""

from twisted.trial.unittest import TestCase
from wasmtime import wat2wasm

from tau.cids import cidText
from tau.project import compileProject
from tau.project.indexes import assetKey
from tau.services.discovery import serviceKey
from tau.services.framework import call
from tau.services.substrate import PROTOCOL
from tau.services.substrate.triggers import P2P_PROTOCOL, decodeEnvelope, encodeEnvelope, topicOf
from tau.services.substrate.metrics import FunctionMetrics, WebsiteMetrics, decodeAnswer
from tests.cloud import Cloud, until
from tests.project.helpers import PROJECT_ID
from tests.services.substrate.helpers import HOST, proxyHTTP, publishShop, tunnelled
from tests.services.substrate.test_triggered import GUEST, ON_ORDER, ON_REPLY, PING, project


class CloudTests(TestCase):
    timeout = 120

    async def test_servedAcrossTheCloud(self):
        cloud = await Cloud(self).start(["tns", "substrate"])
        tnsNode, substrateNode = cloud.nodes
        await publishShop(self.mktemp(), tnsNode.tnsClient, tnsNode.content)

        async def announced():
            found = await tnsNode.dht.findProviders(serviceKey(PROTOCOL), 4)
            return substrateNode.host.peerID in [peer for peer, _ in found]

        await until(announced, "the substrate announced in the DHT")

        async def ask(path, method="GET", body=b""):
            answer, stream = await proxyHTTP(tnsNode.host, substrateNode.host.peerID, HOST, path, method)
            return decodeAnswer(answer), await tunnelled(stream, HOST, path, method, body=body)

        metrics, (status, headers, body) = await ask("/hello")
        self.assertIsInstance(metrics, FunctionMetrics)
        self.assertEqual((status, headers["X-Fn"], body), (200, ["hello"], b"hello from wasm"))
        _, (status, _, body) = await ask("/zipped")
        self.assertEqual((status, body), (200, b"hello from wasm"))
        _, (status, _, body) = await ask("/echo", "POST", b"ping" * 1000)
        self.assertEqual((status, body), (201, b"ping" * 1000))
        metrics, (status, _, body) = await ask("/docs/guide/")
        self.assertEqual((metrics, status, body), (WebsiteMetrics(cached=0.0), 200, b"<p>guide</p>"))
        # the folder's root block is held now
        metrics, _ = await ask("/docs/")
        self.assertEqual(metrics, WebsiteMetrics(cached=1.0))


class TriggersTests(TestCase):
    timeout = 120

    async def test_pubsubAndP2PAcrossTheCloud(self):
        """
        On a cloud's real gossipsub, a message the tns node publishes on a
        project's channel runs the substrate node's pubsub function, whose
        own message (on another channel) reaches the tns node; a p2p
        command from the tns node runs a p2p function.
        """
        cloud = await Cloud(self).start(["tns", "substrate"])
        tnsNode, substrateNode = cloud.nodes
        await tnsNode.tnsClient.publish(compileProject(project(self.mktemp())), "c1")
        cid = cidText((await tnsNode.content.add(wat2wasm(GUEST))).cid)
        for resource in (ON_ORDER, ON_REPLY, PING):
            await tnsNode.tnsClient.push(assetKey(PROJECT_ID, resource, "main"), cid)
        substrate = substrateNode.shapeServices["substrate"]
        await substrate.whenSubscribed()
        orders, replies = topicOf(PROJECT_ID, None, "orders"), topicOf(PROJECT_ID, None, "replies")

        async def subscribed():
            return sorted(await substrate.pubsubTriggers.subscribeProject(PROJECT_ID)) == sorted([orders, replies])

        await until(subscribed, "the project's pubsub functions subscribed")
        heard = tnsNode.pubsub.subscribe(replies)
        self.addCleanup(heard.cancel)

        async def meshed():
            return (substrateNode.host.peerID in tnsNode.pubsub.topicPeers(orders)
                    and tnsNode.host.peerID in substrateNode.pubsub.topicPeers(replies))

        await until(meshed, "both nodes know the other's topics")
        await tnsNode.pubsub.publish(orders, encodeEnvelope(1, "QmElsewhere", b"order-9"))
        self.assertEqual(decodeEnvelope((await heard.next()).data), (ON_ORDER, b"order-9"))
        matcher = {"Project": PROJECT_ID, "Application": "", "Protocol": "/shop/v1", "Command": "ping"}
        answer = await call(tnsNode.host, substrateNode.host.peerID, P2P_PROTOCOL, "ping",
                            {"matcher": matcher, "data": b"hi"})
        self.assertEqual(answer, {"data": b"echo:hi"})
