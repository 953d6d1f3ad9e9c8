"""
The end-to-end project (tests/fixtures/e2e, L{tests.e2e}) works with what
exists before gateway and substrate serve it:

  - published with C{tau project push} and C{tau project asset} (real CLI
    processes) to a tns node, tns routes its host and paths to the
    function and the website, and the builds' CIDs are at their asset keys;
  - its WAT, compiled by the real wat2wasm, runs in the substrate's wasm
    Runtime and answers what the e2e test expects;
  - its website, served by a plain twisted.web with C{/hello} answered by
    that Runtime, renders in headless Chromium: app.js wrote into the DOM
    and called the function.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from twisted.web.static import File

from tau.project.indexes import assetKey
from tau.services.substrate.wasm import HttpRequest, Runtime
from tau.store.unixfs import cidText
from tests import e2e
from tests.browser import renderedDOM
from tests.cloud import Cloud, until
from tests.netclients import curl
from tests.processes import TAU, run


class FunctionTests(TestCase):
    timeout = 60

    async def setUp(self):
        self.wasm = await e2e.compileWat(reactor, self.mktemp())
        self.runtime = Runtime(reactor)
        self.runtime.start()
        self.addCleanup(lambda: Deferred.fromCoroutine(self.runtime.stop()))
        self.cid = await self.runtime.load(self.wasm)

    async def test_hello(self):
        """
        GET /hello answers 200, its two headers and "hello from tau at
        /hello".
        """
        answer = await self.runtime.call(self.cid, e2e.EXPORT, HttpRequest("GET", e2e.FUNCTION_PATH, e2e.DOMAIN))
        self.assertEqual(answer, (200, e2e.FUNCTION_HEADERS, e2e.FUNCTION_BODY))

    async def test_pathAtLimit(self):
        """
        A path of exactly 1024 bytes is written back; one byte more is
        answered as "(long)".
        """
        path = "/" + "a" * 1023
        _, _, body = await self.runtime.call(self.cid, e2e.EXPORT, HttpRequest("GET", path, e2e.DOMAIN))
        self.assertEqual(body, b"hello from tau at " + path.encode())
        _, _, body = await self.runtime.call(self.cid, e2e.EXPORT, HttpRequest("GET", path + "a", e2e.DOMAIN))
        self.assertEqual(body, b"hello from tau at (long)")


class FunctionResource(Resource):
    """
    twisted.web running the function in a Runtime for every request (what
    substrate will do, without tns, the store or the tunnel).
    """

    isLeaf = True

    def __init__(self, runtime, cid):
        super().__init__()
        self.runtime = runtime
        self.cid = cid

    def render_GET(self, request):
        async def answer():
            host = request.getHeader(b"host").decode()
            status, headers, body = await self.runtime.call(
                self.cid, e2e.EXPORT, HttpRequest("GET", request.uri.decode(), host))
            request.setResponseCode(status)
            for name, value in headers:
                request.responseHeaders.addRawHeader(name, value)
            request.write(body)
            request.finish()
        Deferred.fromCoroutine(answer()).addErrback(lambda f: (request.setResponseCode(500), request.finish()))
        return NOT_DONE_YET


class WebsiteTests(TestCase):
    timeout = 120

    async def test_rendersAndCallsTheFunction(self):
        """
        Chromium renders index.html on the project's domain: app.js wrote
        into the DOM and its fetch of /hello got the function's answer;
        curl reads the second page.
        """
        runtime = Runtime(reactor)
        runtime.start()
        self.addCleanup(lambda: Deferred.fromCoroutine(runtime.stop()))
        cid = await runtime.load(await e2e.compileWat(reactor, self.mktemp()))
        root = File(str(e2e.WEBSITE))
        root.putChild(b"hello", FunctionResource(runtime, cid))
        port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        hosts = {e2e.DOMAIN: port.getHost().port}
        dom = await renderedDOM(reactor, f"http://{e2e.DOMAIN}/", hosts=hosts, workdir=self.mktemp())
        self.assertIn('<p id="rendered">rendered by app.js</p>', dom)
        self.assertIn('<p id="function">function said: hello from tau at /hello</p>', dom)
        status, _, body = await curl(reactor, f"http://{e2e.DOMAIN}/about/", via=hosts)
        self.assertEqual(status, 200)
        self.assertIn(b'<h1 id="about">about this site</h1>', body)


class PublishTests(TestCase):
    timeout = 180

    async def test_pushAndAssets(self):
        """
        C{tau project push} and C{tau project asset} (the function's WASM,
        the website's folder) through a node of the cloud: tns routes
        /hello to the function and /, /app.js and /about/ to the website,
        and names the builds' CIDs at their asset keys.
        """
        cloud = await Cloud(self).start(["tns", "auth"])
        node = cloud.nodes[1]   # not the tns node: its pushes go over the network

        async def tau(*args):
            status, out, err = await run(reactor, TAU + ["--root", str(cloud.roots[1]), "--shape",
                                                         cloud.shapeName(1), *args])
            self.assertEqual(status, 0, out + err)
            return out

        wasm = self.mktemp() + ".wasm"
        await e2e.compileWat(reactor, wasm)
        await tau("project", "push", str(e2e.PROJECT_FOLDER), "--commit", "e2e1")
        await tau("project", "asset", e2e.PROJECT_ID, e2e.FUNCTION_ID, wasm)
        await tau("project", "asset", e2e.PROJECT_ID, e2e.WEBSITE_ID, str(e2e.WEBSITE))
        client = cloud.nodes[0].tnsClient

        async def routed():
            found = await client.http(e2e.DOMAIN, e2e.FUNCTION_PATH, "GET")
            return found is not None and found["commit"] == "e2e1"
        await until(routed, "the project in tns", limit=30)
        found = await client.http(e2e.DOMAIN, e2e.FUNCTION_PATH, "GET")
        self.assertEqual((found["kind"], found["id"], found["config"]["call"]), ("function", e2e.FUNCTION_ID, e2e.EXPORT))
        for path in ("/", "/app.js", "/about/"):
            found = await client.http(e2e.DOMAIN, path, "GET")
            self.assertEqual((found["kind"], found["id"]), ("website", e2e.WEBSITE_ID), path)
        wasmCid = cidText((await node.content.add(wasm, pin=False)).cid)

        async def published():
            return await client.fetch(assetKey(e2e.PROJECT_ID, e2e.FUNCTION_ID, "main")) == wasmCid
        await until(published, "the function's asset", limit=30)
        site = await client.fetch(assetKey(e2e.PROJECT_ID, e2e.WEBSITE_ID, "main"))
        listed = await cloud.nodes[0].content.ls(site, timeout=20)
        self.assertEqual(sorted(name for name, _, _ in listed), ["about", "app.js", "index.html"])
