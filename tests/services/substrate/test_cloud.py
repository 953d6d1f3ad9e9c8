"""
substrate in a cloud on loopback (a tns node and a substrate node, real
hosts, DHT, bitswap and kvdb): a project and its builds published on the
tns node are served by the substrate node, which reads tns over the
network and fetches the builds over bitswap.
"""

from twisted.trial.unittest import TestCase

from tau.services.discovery import serviceKey
from tau.services.substrate import PROTOCOL
from tau.services.substrate.metrics import FunctionMetrics, WebsiteMetrics, decodeAnswer
from tests.cloud import Cloud, until
from tests.services.substrate.helpers import HOST, proxyHTTP, publishShop, tunnelled


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
