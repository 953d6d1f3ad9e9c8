"""
Websites (tau.services.substrate.website): a UnixFS folder served over a
real twisted.web listener on loopback, checked with curl, and through the
tunnel's handler.
"""

import os

from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.server import Site

from tau.cids import cidText
from tau.fakes import FakeContent
from tau.services.substrate.tunnel import serveTunnel
from tau.services.substrate.website import MAX_DEPTH, BadPath, Website, WebsiteResource, contentType, parseRange, segments

from tests.hosts import addressOf, startHost
from tests.services.substrate.test_tunnel_hosts import PROTOCOL, Forwarder

BIG = os.urandom(700_000)  # several chunks: ranges cross them
SITE = [
    ("index.html", b"<h1>home</h1>"),
    ("style.css", b"body{}"),
    ("docs", None),
    ("docs/index.html", b"docs home"),
    ("docs/a b.txt", b"spaced"),
    ("big.bin", BIG),
    ("empty", None),
]


async def curl(url, *args):
    """
    C{(status, headers, body)} of curl's answer: headers a dict of
    lower-case names.
    """
    out, err, code = await getProcessOutputAndValue(
        "curl", ["-s", "-i", "--path-as-is", "--max-time", "30", *args, url], env={}, reactor=reactor)
    if code != 0:
        raise AssertionError(f"curl {url} exited {code}: {err!r}")
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


class PathTests(SynchronousTestCase):
    def test_segments(self):
        self.assertEqual(segments("/a/b%20c/"), (["a", "b c"], True))
        self.assertEqual(segments("/"), ([], True))
        self.assertEqual(segments("//a"), (["a"], False))

    def test_escapesRefused(self):
        for path in ["/..", "/a/../b", "/%2e%2e/x", "/a/%2E", "/a%2fb", "/a%5cb", "/a%00", "/a\\..", "a"]:
            self.assertRaises(BadPath, segments, path)

    def test_depthAtLimit(self):
        self.assertEqual(len(segments("/a" * MAX_DEPTH)[0]), MAX_DEPTH)
        e = self.assertRaises(BadPath, segments, "/a" * (MAX_DEPTH + 1))
        self.assertIn("more than 64 segments", str(e))

    def test_ranges(self):
        self.assertEqual(parseRange("bytes=0-9", 100), (0, 10))
        self.assertEqual(parseRange("bytes=90-", 100), (90, 100))
        self.assertEqual(parseRange("bytes=-10", 100), (90, 100))
        self.assertEqual(parseRange("bytes=-1000", 100), (0, 100))
        self.assertEqual(parseRange("bytes=99-200", 100), (99, 100))
        self.assertEqual(parseRange("bytes=100-", 100), "unsatisfiable")
        self.assertEqual(parseRange("bytes=-0", 100), "unsatisfiable")
        for ignored in ["bytes=0-1,5-6", "items=0-1", "bytes=5-1", "bytes=-", "bytes=a-b"]:
            self.assertIsNone(parseRange(ignored, 100))

    def test_contentTypes(self):
        self.assertEqual(contentType("index.html"), "text/html; charset=utf-8")
        self.assertEqual(contentType("a.js"), "text/javascript; charset=utf-8")
        self.assertEqual(contentType("a.png"), "image/png")
        self.assertEqual(contentType("f.wasm"), "application/wasm")
        self.assertEqual(contentType("a.tar.gz"), "application/octet-stream")
        self.assertEqual(contentType("noext"), "application/octet-stream")


class WebsiteCurlTests(TestCase):
    timeout = 60

    async def serve(self, files=SITE):
        self.content = FakeContent()
        root = await self.content.addFolder(files)
        self.root = root.cid
        port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
            Site(WebsiteResource(Website(self.content, cidText(root.cid)))))
        self.addCleanup(port.stopListening)
        self.base = f"http://127.0.0.1:{port.getHost().port}"

    async def etag(self, path):
        for name, child, size in await self.content.ls(self.root):
            if name == path:
                return f'"{cidText(child)}"'

    async def test_index(self):
        await self.serve()
        status, headers, body = await curl(self.base + "/")
        self.assertEqual((status, body), (200, b"<h1>home</h1>"))
        self.assertEqual(headers["content-type"], "text/html; charset=utf-8")
        self.assertEqual(headers["etag"], await self.etag("index.html"))
        self.assertEqual(headers["content-length"], "13")

    async def test_folderIndexAndRedirect(self):
        await self.serve()
        status, headers, body = await curl(self.base + "/docs?x=1")
        self.assertEqual((status, headers["location"]), (301, "/docs/?x=1"))
        status, headers, body = await curl(self.base + "/docs/")
        self.assertEqual((status, body), (200, b"docs home"))
        status, headers, body = await curl(self.base + "/docs/a%20b.txt")
        self.assertEqual((status, body, headers["content-type"]), (200, b"spaced", "text/plain; charset=utf-8"))

    async def test_conditional(self):
        await self.serve()
        etag = await self.etag("style.css")
        status, headers, body = await curl(self.base + "/style.css", "-H", f"If-None-Match: {etag}")
        self.assertEqual((status, body, headers["etag"]), (304, b"", etag))
        status, headers, body = await curl(self.base + "/style.css", "-H", 'If-None-Match: "other"')
        self.assertEqual((status, body), (200, b"body{}"))

    async def test_ranges(self):
        await self.serve()
        status, headers, body = await curl(self.base + "/big.bin", "-r", "262000-263999")
        self.assertEqual((status, body), (206, BIG[262000:264000]))
        self.assertEqual(headers["content-range"], f"bytes 262000-263999/{len(BIG)}")
        status, headers, body = await curl(self.base + "/big.bin", "-r", "-100")
        self.assertEqual((status, body), (206, BIG[-100:]))
        status, headers, body = await curl(self.base + "/big.bin", "-r", f"{len(BIG)}-")
        self.assertEqual((status, headers["content-range"]), (416, f"bytes */{len(BIG)}"))
        status, headers, body = await curl(self.base + "/big.bin", "-r", "0-9", "-H", 'If-Range: "stale"')
        self.assertEqual((status, body), (200, BIG))

    async def test_head(self):
        await self.serve()
        status, headers, body = await curl(self.base + "/big.bin", "-I")
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(headers["content-length"], str(len(BIG)))

    async def test_notFound(self):
        await self.serve()
        status, headers, body = await curl(self.base + "/nope")
        self.assertEqual((status, body), (404, b"not found\n"))
        status, headers, body = await curl(self.base + "/empty/")
        self.assertEqual(status, 404)
        status, headers, body = await curl(self.base + "/style.css/x")
        self.assertEqual(status, 404)

    async def test_ownNotFoundPage(self):
        await self.serve(SITE + [("404.html", b"<p>lost</p>")])
        status, headers, body = await curl(self.base + "/nope")
        self.assertEqual((status, body, headers["content-type"]), (404, b"<p>lost</p>", "text/html; charset=utf-8"))

    async def test_escapesRefused(self):
        await self.serve()
        for path in ["/../x", "/docs/../index.html", "/%2e%2e/x", "/docs%2f..%2findex.html"]:
            status, headers, body = await curl(self.base + path)
            self.assertEqual(status, 400, path)

    async def test_methods(self):
        await self.serve()
        status, headers, body = await curl(self.base + "/", "-X", "POST")
        self.assertEqual((status, headers["allow"]), (405, "GET, HEAD"))


class WebsiteTunnelTests(TestCase):
    """
    The website behind a gateway: curl -> twisted.web -> tunnel over two
    real hosts -> Website.handle.
    """

    timeout = 60

    async def test_throughTunnel(self):
        content = FakeContent()
        root = await content.addFolder(SITE)
        site = Website(content, root.cid)
        substrate = await startHost(self)
        gateway = await startHost(self)
        substrate.setStreamHandler(PROTOCOL, lambda stream: serveTunnel(stream, site.handle, reactor))
        await gateway.connect(addressOf(substrate))
        port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
            Site(Forwarder(gateway, substrate.peerID)))
        self.addCleanup(port.stopListening)
        base = f"http://127.0.0.1:{port.getHost().port}"
        status, headers, body = await curl(base + "/big.bin", "-r", "100-199")
        self.assertEqual((status, body, headers["content-range"]), (206, BIG[100:200], f"bytes 100-199/{len(BIG)}"))
        status, headers, body = await curl(base + "/big.bin")
        self.assertEqual((status, body), (200, BIG))
        status, headers, body = await curl(base + "/big.bin", "-H", f"If-None-Match: {headers['etag']}")
        self.assertEqual((status, body), (304, b""))
        status, headers, body = await curl(base + "/big.bin", "-I")
        self.assertEqual((status, body, headers["content-length"]), (200, b"", str(len(BIG))))
        status, headers, body = await curl(base + "/%2e%2e/")
        self.assertEqual(status, 400)
