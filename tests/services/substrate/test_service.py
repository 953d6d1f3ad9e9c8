"""
The substrate service (L{tau.services.substrate.service}) on a real host:
C{proxy-http} answers (metrics, L{NOT_SERVED}), then the tunnelled request
on the same stream; and its own HTTP listener on loopback.  tns runs on a
fake kvdb, the builds are in a L{FakeContent}.
"""

import treq
from twisted.internet import reactor
from twisted.internet.defer import succeed
from twisted.web.client import HTTPConnectionPool
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from tau.cids import cidText
from tau.fakes import FakeContent
from tau.project.indexes import assetKey
from tau.services.substrate import NOT_SERVED
from tau.services.substrate.config import SubstrateConfig
from tau.services.substrate.metrics import FunctionMetrics, WebsiteMetrics, decodeAnswer
from tau.services.substrate.service import SubstrateService
from tau.services.tns.client import TNSClient
from tests.hosts import addressOf, startHost
from tests.project.helpers import PROJECT_ID
from tests.services.substrate.helpers import (
    DOCS, HOST, MISSING, ZIPPED, guestModule, proxyHTTP, publishShop, tunnelled, zipped)
from tests.services.tns.helpers import calls, makeCommands

MAX_BODY = 3000


@implementer(IBodyProducer)
class Chunked:
    """
    A request body of unknown length (sent chunked).
    """

    length = UNKNOWN_LENGTH

    def __init__(self, parts):
        self.parts = parts

    def startProducing(self, consumer):
        for part in self.parts:
            consumer.write(part)
        return succeed(None)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


class SubstrateTestCase(TestCase):
    timeout = 60

    async def setUp(self):
        # pushes announced on the fake pubsub: the client caches and drops
        self.commands, _, pubsub = makeCommands()
        self.tns = TNSClient(None, pubsub, None, reactor, calls=calls(self.commands))
        self.addCleanup(self.tns.close)
        self.content = FakeContent()
        self.cacheFolder = FilePath(self.mktemp())
        self.server = await startHost(self)
        self.client = await startHost(self)
        await self.client.connect(addressOf(self.server))
        self.service = await self.startSubstrate(self.content)
        self.builds = await publishShop(self.mktemp(), self.tns, self.content)
        self.pool = HTTPConnectionPool(reactor)
        self.addCleanup(self.pool.closeCachedConnections)

    async def startSubstrate(self, content):
        config = SubstrateConfig(httpListen="tcp:0:interface=127.0.0.1", maxRequestBody=MAX_BODY)
        service = SubstrateService(self.server, content, self.tns, reactor, config, self.cacheFolder.path)
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        await service.whenReady()
        return service

    async def viaTunnel(self, path, method="GET", body=b"", headers=None):
        """
        C{proxy-http}, then the request through the tunnel: C{(metrics,
        (status, headers, body))}.
        """
        answer, stream = await proxyHTTP(self.client, self.server.peerID, HOST, path, method)
        metrics = decodeAnswer(answer)
        return metrics, await tunnelled(stream, HOST, path, method, headers, body)

    def url(self, path):
        return f"http://127.0.0.1:{self.service.httpPort()}{path}"

    async def direct(self, path, method="GET", body=None, host=HOST, headers=None):
        """
        The request straight to the substrate's HTTP listener: C{(status,
        headers, body)}.
        """
        response = await treq.request(method, self.url(path), data=body, headers={"Host": host, **(headers or {})},
                                      reactor=reactor, pool=self.pool)
        return response.code, response.headers, await treq.content(response)


class ProxyHTTPTests(SubstrateTestCase):
    async def test_function(self):
        """
        A function: C{proxy-http} answers its metrics (not compiled here
        yet, its memory limit), the tunnel carries the request to it and
        its answer back; asked again, it is compiled here and its cold
        start and run time are measured.
        """
        metrics, (status, headers, body) = await self.viaTunnel("/hello")
        self.assertEqual(metrics, FunctionMetrics(cached=0.0, coldStart=0, memory=1e6, avgRunTime=0))
        self.assertEqual((status, body), (200, b"hello from wasm"))
        self.assertEqual(headers["X-Fn"], ["hello"])
        self.assertEqual(headers["Content-Length"], ["15"])
        # the function named no Content-Type: sniffed as Go's server does
        self.assertEqual(headers["Content-Type"], ["text/plain; charset=utf-8"])
        metrics, (status, _, body) = await self.viaTunnel("/hello")
        self.assertEqual((metrics.cached, status, body), (1.0, 200, b"hello from wasm"))
        self.assertGreater(metrics.coldStart, 0)
        self.assertGreater(metrics.avgRunTime, 0)
        self.assertLessEqual(metrics.avgRunTime, metrics.coldStart)
        # one compilation, one instantiation: the second call was warm
        self.assertEqual((self.service.runtime.cache.compiled, self.service.runtime.coldStarts), (1, 1))

    async def test_requestBody(self):
        """
        A function reads the request body (sent in several tunnel frames);
        exactly the limit is accepted.
        """
        body = bytes(range(256)) * 11 + b"x" * (MAX_BODY - 2816)
        _, (status, _, answer) = await self.viaTunnel("/echo", "POST", body)
        self.assertEqual((status, answer), (201, body))

    async def test_requestBodyOverLimit(self):
        """
        A body one byte over the limit is answered 413 without running the
        function.
        """
        _, (status, _, answer) = await self.viaTunnel("/echo", "POST", b"x" * (MAX_BODY + 1))
        self.assertEqual(status, 413)
        self.assertIn(b"request body too large", answer)
        self.assertEqual(self.service.runtime.coldStarts, 0)

    async def test_notServed(self):
        """
        A host, path or method nothing serves is answered with an error
        beginning with L{NOT_SERVED}, and the stream ends.
        """
        for target, path, method in [(HOST, "/nothing/here", "POST"), ("other.example.com", "/hello", "GET"),
                                     (HOST, "/hello", "DELETE"), ("a..b", "/", "GET")]:
            answer, stream = await proxyHTTP(self.client, self.server.peerID, target, path, method)
            self.assertTrue(answer["error"].startswith(NOT_SERVED), answer)
            self.assertEqual(await stream.readToEnd(100), b"")

    async def test_badCommand(self):
        """
        A C{proxy-http} without text fields is an error, not a crash.
        """
        answer, _ = await proxyHTTP(self.client, self.server.peerID, 42, "/")
        self.assertIn("proxy-http wants text host", answer["error"])

    async def test_website(self):
        """
        A website: its metrics (its folder is held here), its files, a
        folder redirected to its slash, a website on C{/docs} answering
        its own files under that path.
        """
        metrics, (status, headers, body) = await self.viaTunnel("/")
        self.assertEqual(metrics, WebsiteMetrics(cached=1.0))
        self.assertEqual((status, body), (200, b"<h1>shop</h1>"))
        self.assertEqual(headers["Content-Type"], ["text/html; charset=utf-8"])
        _, (status, headers, _) = await self.viaTunnel("/about")
        self.assertEqual((status, headers["Location"]), (301, ["/about/"]))
        _, (status, _, body) = await self.viaTunnel("/docs")
        self.assertEqual((status, body), (200, b"<h1>docs</h1>"))
        _, (status, _, body) = await self.viaTunnel("/docs/guide/")
        self.assertEqual((status, body), (200, b"<p>guide</p>"))
        _, (status, headers, _) = await self.viaTunnel("/docs/guide")
        self.assertEqual((status, headers["Location"]), (301, ["/docs/guide/"]))
        _, (status, _, _) = await self.viaTunnel("/nope.html")
        self.assertEqual(status, 404)

    async def test_websiteNotHeld(self):
        """
        A website whose folder is not held here says so in its metrics; a
        gateway that resets the stream after the answer (it chose another
        substrate) ends the tunnel quietly.
        """
        await self.tns.push(assetKey(PROJECT_ID, DOCS, "main"), "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
        answer, stream = await proxyHTTP(self.client, self.server.peerID, HOST, "/docs")
        stream.reset()
        self.assertEqual(decodeAnswer(answer), WebsiteMetrics(cached=0.0))

    async def test_websiteBuildNotAFolder(self):
        """
        A website whose build is a file is answered 500, saying so.
        """
        cid = (await self.content.add(zipped({"index.html": b"x"}))).cid
        await self.tns.push(assetKey(PROJECT_ID, DOCS, "main"), cidText(cid))
        _, (status, _, body) = await self.viaTunnel("/docs/")
        self.assertEqual(status, 500)
        self.assertIn(b"is not a folder", body)

    async def test_staysWarm(self):
        """
        Calls in a row to one function cost one cold start.
        """
        for _ in range(50):
            status, _, body = await self.direct("/hello")
            self.assertEqual((status, body), (200, b"hello from wasm"))
        self.assertEqual(self.service.runtime.coldStarts, 1)

    async def test_trapAndTimeout(self):
        """
        A function that traps is answered 500, one that loops 504 after its
        timeout; the substrate goes on serving.
        """
        _, (status, _, _) = await self.viaTunnel("/boom")
        self.assertEqual(status, 500)
        start = reactor.seconds()
        _, (status, _, _) = await self.viaTunnel("/spin")
        self.assertEqual(status, 504)
        self.assertGreaterEqual(reactor.seconds() - start, 0.2)
        _, (status, _, body) = await self.viaTunnel("/hello")
        self.assertEqual((status, body), (200, b"hello from wasm"))

    async def test_zippedBuild(self):
        """
        A build zip (Taubyte's C{artifact.zip}) is unwrapped.
        """
        _, (status, _, body) = await self.viaTunnel("/zipped")
        self.assertEqual((status, body), (200, b"hello from wasm"))

    async def test_missingBuild(self):
        """
        A function with no build yet is answered 503, saying so.
        """
        _, (status, _, body) = await self.viaTunnel("/missing")
        self.assertEqual(status, 503)
        self.assertIn(f"function {MISSING} of project {PROJECT_ID} has no build yet".encode(), body)

    async def test_unavailableBuild(self):
        """
        A build whose blocks cannot be had is 503; the next request tries
        again.
        """
        build = zipped({"main.wasm": guestModule(), "unique": b"missing"})
        cid = (await FakeContent().add(build)).cid
        await self.tns.push(assetKey(PROJECT_ID, MISSING, "main"), cidText(cid))
        _, (status, _, body) = await self.viaTunnel("/missing")
        self.assertEqual(status, 503)
        self.assertIn(b"is not available", body)
        await self.content.add(build)
        _, (status, _, body) = await self.viaTunnel("/missing")
        self.assertEqual((status, body), (200, b"hello from wasm"))

    async def test_brokenBuilds(self):
        """
        A build that is no module, a zip without one and a module that does
        not compile are each answered 500, remembered: not fetched again.
        """
        for data, words in [(b"not wasm", b"neither a WebAssembly module nor a zip"),
                            (zipped({"other.wasm": guestModule()}), b"holds none of main.wasm, artifact.wasm"),
                            (b"\0asm\x01\0\0\0garbage", b"does not compile")]:
            cid = (await self.content.add(data)).cid
            await self.tns.push(assetKey(PROJECT_ID, ZIPPED, "main"), cidText(cid))
            _, (status, _, body) = await self.viaTunnel("/zipped")
            self.assertEqual(status, 500)
            self.assertIn(words, body)
            self.content.blocks.data.clear()
            _, (status, _, body) = await self.viaTunnel("/zipped")
            self.assertEqual(status, 500)
            self.assertIn(words, body)

    async def test_compiledModuleSurvivesRestart(self):
        """
        After a restart on the same cache folder, a function's module is
        loaded from the cache: its metrics say it is compiled here, and it
        is served although its build is no longer reachable.
        """
        _, (status, _, _) = await self.viaTunnel("/hello")
        self.assertEqual(status, 200)
        await self.service.stopService()
        self.service = await self.startSubstrate(FakeContent())
        metrics, (status, _, body) = await self.viaTunnel("/hello")
        self.assertEqual((metrics.cached, status, body), (1.0, 200, b"hello from wasm"))
        self.assertEqual((self.service.runtime.cache.compiled, self.service.runtime.cache.loaded), (0, 1))


class DirectHTTPTests(SubstrateTestCase):
    async def test_function(self):
        status, headers, body = await self.direct("/hello")
        self.assertEqual((status, body), (200, b"hello from wasm"))
        self.assertEqual(headers.getRawHeaders("X-Fn"), ["hello"])
        status, _, body = await self.direct("/echo", "POST", b"abc" * 1000)
        self.assertEqual((status, body), (201, b"abc" * 1000))

    async def test_bodyLimit(self):
        """
        Exactly the limit is given to the function; one byte more is 413,
        announced or chunked.
        """
        status, _, body = await self.direct("/echo", "POST", b"y" * MAX_BODY)
        self.assertEqual((status, len(body)), (201, MAX_BODY))
        status, _, body = await self.direct("/echo", "POST", b"y" * (MAX_BODY + 1))
        self.assertEqual(status, 413)
        status, _, body = await self.direct("/echo", "POST", Chunked([b"z" * MAX_BODY, b"z"]))
        self.assertEqual(status, 413)
        status, _, body = await self.direct("/echo", "POST", Chunked([b"z" * (MAX_BODY - 1), b"z"]))
        self.assertEqual((status, len(body)), (201, MAX_BODY))

    async def test_website(self):
        status, headers, body = await self.direct("/docs/guide/")
        self.assertEqual((status, body), (200, b"<p>guide</p>"))
        status, headers, body = await self.direct("/app.js", "HEAD")
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(headers.getRawHeaders("Content-Length"), ["10"])

    async def test_errors(self):
        status, _, body = await self.direct("/hello", host="nobody.example.com")
        self.assertEqual(status, 404)
        self.assertTrue(body.startswith(NOT_SERVED.encode()))
        status, _, _ = await self.direct("/boom")
        self.assertEqual(status, 500)
