"""
The test helpers that drive real clients (L{tests.browser}: headless
Chromium; L{tests.netclients}: dig and curl) against plain Twisted servers
on loopback: a page is rendered (its scripts ran, its own requests were
answered), a name is mapped to a loopback port, dig reads a static zone.
"""

from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.names import authority, dns, server
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.browser import BrowserError, hostRules, renderedDOM
from tests.netclients import curl, digAddresses, digStatus, parseResponse

PAGE = b"""<!doctype html>
<html><head><title>t</title></head>
<body>
<p id="static">as served</p>
<p id="script">not yet</p>
<p id="later">not yet</p>
<p id="fetched">not yet</p>
<script>
document.getElementById("script").textContent = "written by " + "the script";
setTimeout(function () { document.getElementById("later").textContent = "after a timer"; }, 300);
fetch("/data").then(function (r) { return r.text(); }).then(function (t) {
  document.getElementById("fetched").textContent = "fetched: " + t;
});
</script>
</body></html>
"""


class Page(Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        self.hosts = []

    def render_GET(self, request):
        self.hosts.append(request.getHeader(b"host").decode())
        if request.path == b"/data":
            request.setHeader(b"content-type", b"text/plain")
            return b"from the server"
        if request.path == b"/":
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            return PAGE
        request.setResponseCode(404)
        return b"no such page"


async def listen(site, description="tcp:0:interface=127.0.0.1"):
    port = await serverFromString(reactor, description).listen(site)
    return port


class HostRulesTests(SynchronousTestCase):
    def test_rules(self):
        """
        Each name maps to its loopback port; every other name is not found.
        """
        self.assertEqual(hostRules({"b.test": 2, "a.test": 1, "c.test": ("127.0.0.3", 3)}),
                         "MAP a.test 127.0.0.1:1, MAP b.test 127.0.0.1:2, MAP c.test 127.0.0.3:3, "
                         "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")


class ParseTests(SynchronousTestCase):
    def test_informational(self):
        """
        An informational answer before the real one is skipped; a body that
        looks like a status line is kept.
        """
        out = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nX-A: 1\r\n\r\nHTTP/1.1 body"
        self.assertEqual(parseResponse(out), (201, {"x-a": "1"}, b"HTTP/1.1 body"))


class ChromiumTests(TestCase):
    timeout = 120

    async def setUp(self):
        self.page = Page()
        self.port = await listen(Site(self.page))
        self.addCleanup(self.port.stopListening)

    async def test_rendered(self):
        """
        The DOM Chromium ends with holds what the page's script wrote, what
        a timer wrote and what a request the script made brought back; the
        page's name reached the loopback port, sent as C{Host}.
        """
        dom = await renderedDOM(reactor, "http://site.example.test/",
                                hosts={"site.example.test": self.port.getHost().port}, workdir=self.mktemp())
        self.assertIn('<p id="static">as served</p>', dom)
        self.assertIn('<p id="script">written by the script</p>', dom)
        self.assertIn('<p id="later">after a timer</p>', dom)
        self.assertIn('<p id="fetched">fetched: from the server</p>', dom)
        self.assertIn("site.example.test", self.page.hosts)
        self.assertEqual(set(self.page.hosts) - {"site.example.test"}, set())

    async def test_unmappedName(self):
        """
        A name not mapped does not resolve: the page is not served (nothing
        reaches the server, the DOM is not the page's).
        """
        try:
            dom = await renderedDOM(reactor, "http://elsewhere.example.test/", hosts={"site.example.test": 1},
                                    workdir=self.mktemp(), timeout=30)
        except BrowserError:
            dom = ""
        self.assertNotIn("written by the script", dom)
        self.assertEqual(self.page.hosts, [])


class CurlTests(TestCase):
    timeout = 60

    async def test_via(self):
        """
        curl reaches the name's loopback port; C{Host} is the bare name.
        """
        page = Page()
        port = await listen(Site(page))
        self.addCleanup(port.stopListening)
        via = {"app.example.test": port.getHost().port}
        status, headers, body = await curl(reactor, "http://app.example.test/data", via=via)
        self.assertEqual((status, headers["content-type"], body), (200, "text/plain", b"from the server"))
        status, _, body = await curl(reactor, "http://app.example.test/nothing", via=via)
        self.assertEqual((status, body), (404, b"no such page"))
        self.assertEqual(page.hosts, ["app.example.test", "app.example.test"])

    async def test_viaAnotherLoopbackAddress(self):
        """
        A name can go to another loopback address (a node announced there).
        """
        page = Page()
        port = await listen(Site(page), "tcp:0:interface=127.0.0.5")
        self.addCleanup(port.stopListening)
        status, _, body = await curl(reactor, "http://app.example.test/data",
                                     via={"app.example.test": ("127.0.0.5", port.getHost().port)})
        self.assertEqual((status, body), (200, b"from the server"))


class DigTests(TestCase):
    timeout = 60

    async def test_staticZone(self):
        """
        dig reads a static zone of a bare twisted.names server over UDP and
        TCP: the records, NXDOMAIN inside it.
        """
        class StaticZone(authority.FileAuthority):
            def loadFile(self, filename):
                pass

        zone = StaticZone(None)
        zone.soa = (b"example.test", dns.Record_SOA(mname=b"ns.example.test", serial=1, ttl=60))
        zone.records = {
            b"example.test": [zone.soa[1]],
            b"www.example.test": [dns.Record_A("127.0.0.9", ttl=60), dns.Record_A("127.0.0.8", ttl=60)],
        }
        factory = server.DNSServerFactory(authorities=[zone])
        udp = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
        self.addCleanup(udp.stopListening)
        tcp = await listen(factory)
        self.addCleanup(tcp.stopListening)
        self.assertEqual(await digAddresses(reactor, udp.getHost().port, "www.example.test"), ["127.0.0.8", "127.0.0.9"])
        self.assertEqual(await digAddresses(reactor, tcp.getHost().port, "www.example.test", tcp=True),
                         ["127.0.0.8", "127.0.0.9"])
        self.assertEqual(await digStatus(reactor, udp.getHost().port, "nothing.example.test"), "NXDOMAIN")
