"""
The gateway between real hosts on loopback, driven by curl: test
substrates answer C{proxy-http} and serve the tunnel.
"""

import hashlib

from twisted.trial.unittest import TestCase

from tests.services.gateway.helpers import FunctionMetrics, TestSubstrate, WebsiteMetrics, cloud, curl, digest, pattern

MiB = 1 << 20


class ProxyTests(TestCase):
    timeout = 60

    async def test_served(self):
        """
        A request reaches the substrate that offered, with its host and
        path; the answer names it in X-Substrate-Peer.
        """
        s = TestSubstrate(WebsiteMetrics(1.0))
        service, host, url = await cloud(self, s)
        status, headers, body = await curl("-H", "Host: app.example.com:8080", url + "/a/b?c=1")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"hello\n")
        self.assertEqual(headers["x-substrate-peer"], str(s.host.peerID))
        self.assertEqual(headers["x-path"], "/a/b?c=1")
        self.assertEqual(s.asked, [("proxy-http", {"host": "app.example.com", "path": "/a/b", "method": "GET"})])

    async def test_notServedAnywhere(self):
        a, b = TestSubstrate("not-served"), TestSubstrate("not-served")
        service, host, url = await cloud(self, a, b)
        status, headers, body = await curl("-H", "Host: nope.example.com", url + "/x")
        self.assertEqual(status, 404)
        self.assertNotIn("x-substrate-peer", headers)
        self.assertEqual(len(a.asked) + len(b.asked), 2)

    async def test_noSubstrate(self):
        service, host, url = await cloud(self)
        status, _, body = await curl("-H", "Host: a.example.com", url + "/")
        self.assertEqual(status, 502)

    async def test_allReset(self):
        a, b = TestSubstrate("reset"), TestSubstrate("reset")
        service, host, url = await cloud(self, a, b)
        status, _, _ = await curl("-H", "Host: a.example.com", url + "/")
        self.assertEqual(status, 502)

    async def test_timeout(self):
        """
        Substrates silent past substrate-timeout: 504, and the gateway
        serves the next request.
        """
        silent = TestSubstrate("silent")
        service, host, url = await cloud(self, silent, **{"substrate-timeout": 0.3})
        status, _, body = await curl("-H", "Host: a.example.com", url + "/")
        self.assertEqual(status, 504)
        self.assertEqual(body, b"gateway timeout\n")
        silent.answer = WebsiteMetrics(0.0)
        status, _, body = await curl("-H", "Host: a.example.com", url + "/")
        self.assertEqual(status, 200)

    async def test_failoverBeforeTheAnswer(self):
        """
        The best substrate resets the stream once the tunnel request came:
        the next one serves.
        """
        bad = TestSubstrate("reset-tunnel")  # offers cached 1.0: ranked first
        good = TestSubstrate(FunctionMetrics(0.0, coldStart=5))
        service, host, url = await cloud(self, bad, good)
        status, headers, body = await curl("-H", "Host: a.example.com", url + "/")
        self.assertEqual(status, 200)
        self.assertEqual(headers["x-substrate-peer"], str(good.host.peerID))
        self.assertEqual(len(bad.asked), 1)
        self.assertEqual(bad.resetTunnels, 1)

    async def test_noFailoverOnceTheBodyIsGone(self):
        """
        Past replay-bytes of the body sent to a substrate that then fails,
        the request is not sent again: 502.
        """
        bad = TestSubstrate("reset-tunnel")
        good = TestSubstrate(FunctionMetrics(0.0), digest)
        service, host, url = await cloud(self, bad, good, **{"replay-bytes": 10})
        status, headers, body = await curl("-H", "Host: a.example.com", "--data-binary", "x" * 1000, url + "/")
        self.assertEqual(bad.resetTunnels, 1)
        self.assertEqual(status, 502)
        self.assertEqual(good.served, 0)
        self.assertNotIn("x-substrate-peer", headers)

    async def test_failoverWithASmallBody(self):
        bad = TestSubstrate("reset-tunnel")
        good = TestSubstrate(FunctionMetrics(0.0), digest)
        service, host, url = await cloud(self, bad, good)
        data = b"x" * 1000
        status, headers, body = await curl("-H", "Host: a.example.com", "--data-binary", "x" * 1000, url + "/")
        self.assertEqual(bad.resetTunnels, 1)
        self.assertEqual(status, 200)
        self.assertEqual(headers["x-sha256"], hashlib.sha256(data).hexdigest())
        self.assertEqual(headers["x-substrate-peer"], str(good.host.peerID))

    async def test_bodiesBothWays(self):
        """
        4 MiB up and 6 MiB down through the gateway, intact.
        """
        s = TestSubstrate(FunctionMetrics(1.0), digest)
        service, host, url = await cloud(self, s)
        path = self.mktemp()
        upload = hashlib.sha256(b"seed").digest() * (4 * MiB // 32)
        with open(path, "wb") as f:
            f.write(upload)
        out = self.mktemp()
        status, headers, _ = await curl("-H", "Host: a.example.com", "-H", f"X-Size: {6 * MiB}",
                                        "--data-binary", "@" + path, "-o", out, url + "/up")
        self.assertEqual(status, 200)
        self.assertEqual(headers["x-received"], str(len(upload)))
        self.assertEqual(headers["x-sha256"], hashlib.sha256(upload).hexdigest())
        with open(out, "rb") as f:
            got = f.read()
        self.assertEqual(len(got), 6 * MiB)
        self.assertEqual(got, pattern(1 << 20) * 6)

    async def test_head(self):
        s = TestSubstrate(WebsiteMetrics(1.0))
        service, host, url = await cloud(self, s)
        status, headers, body = await curl("-I", "-H", "Host: a.example.com", url + "/")
        self.assertEqual(status, 200)
        self.assertNotIn(b"hello", body)  # (curl -I shows the head again)
        self.assertEqual(s.asked[0][1]["method"], "HEAD")

    async def test_noHost(self):
        s = TestSubstrate(WebsiteMetrics(1.0))
        service, host, url = await cloud(self, s)
        status, _, body = await curl("-H", "Host:", "--http1.0", url + "/")
        self.assertEqual(status, 400)
        self.assertEqual(s.asked, [])
