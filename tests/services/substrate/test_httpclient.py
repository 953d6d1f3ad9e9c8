"""
Outbound HTTP for functions (L{tau.services.substrate.wasm.httpclient}):
a WAT guest against a real C{twisted.web} server on 127.0.0.1, which the
policy must allow; loopback, private and link-local addresses refused
without a connection attempt, names checked by the address they resolve
to, redirects checked, and the bounds on bodies, clients and time.
"""

import ipaddress

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import IHostnameResolver
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase
from twisted.web.iweb import IPolicyForHTTPS
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer

from tau.services.substrate.wasm import Limits
from tau.services.substrate.wasm.egress import CheckedEndpoint, HttpClientPolicy, HttpFetcher, Refused
from tests.services.auth.test_certificates import selfSigned
from tests.services.substrate.nodefixtures import HELPERS, PRELUDE, SDK, NodeTestCase

GUEST = f"""
(module
{PRELUDE}
 (import "{SDK}" "newHttpClient" (func $newClient (param i32) (result i32)))
 (import "{SDK}" "newHttpRequest" (func $newRequest (param i32 i32) (result i32)))
 (import "{SDK}" "setHttpRequestURL" (func $setURL (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "setHttpRequestMethod" (func $setMethod (param i32 i32 i32) (result i32)))
 (import "{SDK}" "getHttpRequestMethod" (func $getMethod (param i32 i32 i32) (result i32)))
 (import "{SDK}" "setHttpRequestBody" (func $setBody (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "addHttpRequestHeader" (func $addHeader (param i32 i32 i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "doHttpRequest" (func $do (param i32 i32) (result i32)))
 (import "{SDK}" "getHttpResponseHeaderSize" (func $headerSize (param i32 i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "getHttpResponseHeader" (func $header (param i32 i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "readHttpResponseBody" (func $readBody (param i32 i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "closeHttpResponseBody" (func $closeBody (param i32 i32) (result i32)))
{HELPERS}
 (data (i32.const 16) "url")
 (data (i32.const 32) "X-Test")
 (data (i32.const 40) "a\\00b\\00")
 (data (i32.const 48) "X-Reply")

 (func $c (result i32) (i32.load (i32.const 8)))
 (func $r (result i32) (i32.load (i32.const 44)))

 ;; METHOD query url (with the request body): the errnos, the X-Reply
 ;; header's values, the last read's errno and the response body
 (func $fetch (param $ev i32) (param $method i32) (param $withBody i32) (local $e i32) (local $total i32)
   (if (call $err (local.get $ev) (call $newClient (i32.const 8))) (then (return)))
   (if (call $err (local.get $ev) (call $newRequest (call $c) (i32.const 44))) (then (return)))
   (drop (call $err (local.get $ev)
     (call $setURL (call $c) (call $r) (i32.const 256) (call $q (local.get $ev) (i32.const 16) (i32.const 3) (i32.const 256)))))
   (drop (call $err (local.get $ev) (call $setMethod (call $c) (call $r) (local.get $method))))
   (if (local.get $withBody) (then
     (call $body (local.get $ev))
     (drop (call $err (local.get $ev) (call $setBody (call $c) (call $r) (i32.const 4096) (global.get $bodyLen))))))
   (drop (call $err (local.get $ev) (call $addHeader (call $c) (call $r) (i32.const 32) (i32.const 6) (i32.const 40) (i32.const 4))))
   (if (call $err (local.get $ev) (call $do (call $c) (call $r))) (then (return)))
   (drop (call $err (local.get $ev) (call $headerSize (call $c) (call $r) (i32.const 48) (i32.const 7) (i32.const 4))))
   (drop (call $err (local.get $ev) (call $header (call $c) (call $r) (i32.const 48) (i32.const 7) (i32.const 32768))))
   (call $emit (local.get $ev) (i32.const 32768) (i32.load (i32.const 4)))
   (block $done (loop $more
     (local.set $e (call $readBody (call $c) (call $r) (i32.add (i32.const 16384) (local.get $total)) (i32.const 5) (i32.const 52)))
     (local.set $total (i32.add (local.get $total) (i32.load (i32.const 52))))
     (br_if $done (local.get $e))
     (br $more)))
   (drop (call $err (local.get $ev) (local.get $e)))
   (drop (call $err (local.get $ev) (call $closeBody (call $c) (call $r))))
   (call $emit (local.get $ev) (i32.const 16384) (local.get $total)))
 (func (export "get") (param $ev i32) (call $fetch (local.get $ev) (i32.const 1) (i32.const 0)))
 (func (export "post") (param $ev i32) (call $fetch (local.get $ev) (i32.const 2) (i32.const 1)))

 ;; nine clients: their errnos
 (func (export "clients") (param $ev i32) (local $i i32)
   (loop $more
     (drop (call $err (local.get $ev) (call $newClient (i32.const 8))))
     (local.set $i (i32.add (local.get $i) (i32.const 1)))
     (br_if $more (i32.lt_u (local.get $i) (i32.const 9)))))

 ;; unknown ids, a method number out of range, the default method
 (func (export "ids") (param $ev i32)
   (drop (call $err (local.get $ev) (call $do (i32.const 77) (i32.const 0))))
   (drop (call $err (local.get $ev) (call $newClient (i32.const 8))))
   (drop (call $err (local.get $ev) (call $readBody (call $c) (i32.const 5) (i32.const 0) (i32.const 1) (i32.const 52))))
   (drop (call $err (local.get $ev) (call $newRequest (call $c) (i32.const 44))))
   (drop (call $err (local.get $ev) (call $readBody (call $c) (call $r) (i32.const 0) (i32.const 1) (i32.const 52))))
   (drop (call $err (local.get $ev) (call $setMethod (call $c) (call $r) (i32.const 99))))
   (drop (call $err (local.get $ev) (call $getMethod (call $c) (call $r) (i32.const 52))))
   (call $emit (local.get $ev) (i32.const 52) (i32.const 1))
   (drop (call $err (local.get $ev) (call $setBody (call $c) (call $r) (i32.const 0) (i32.const 0xFFFFFFF0)))))
)
"""

OK = b"\0"


def e(*codes):
    return bytes(codes)


class Echo(Resource):
    """
    C{/echo}: "hello METHOD BODY" and X-Reply, the X-Test values joined;
    C{/big?n=N}: N bytes; C{/chunks?n=N}: N chunks of 5 bytes (no
    length); C{/redirect}: to the cloud metadata address;
    C{/hang}: no answer.
    """

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.seen = []
        self.hanging = []

    def render(self, request):
        self.seen.append((request.method, request.path))
        if request.path == b"/big":
            return b"x" * int(request.args[b"n"][0])
        if request.path == b"/chunks":
            for _ in range(int(request.args[b"n"][0])):
                request.write(b"y" * 5)
            request.finish()
            return NOT_DONE_YET
        if request.path == b"/redirect":
            request.redirect(b"http://169.254.169.254/latest/meta-data/")
            return b""
        if request.path == b"/hang":
            self.hanging.append(request.notifyFinish())
            return NOT_DONE_YET
        request.setHeader(b"X-Reply", b",".join(request.requestHeaders.getRawHeaders(b"x-test", [])))
        return b"hello " + request.method + b" " + request.content.read()


@implementer(IHostnameResolver)
class FakeResolver:
    def __init__(self, answers):
        self.answers = answers
        self.asked = []

    def resolveHostName(self, receiver, hostName, portNumber=0, addressTypes=None, transportSemantics="TCP"):
        self.asked.append(hostName)
        receiver.resolutionBegan(None)
        for address in self.answers.get(hostName, ()):
            receiver.addressResolved(IPv4Address("TCP", address, portNumber))
        receiver.resolutionComplete()


class HttpClientTests(NodeTestCase):
    guest = GUEST

    def setUp(self):
        super().setUp()
        self.site = Echo()
        d = serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(Site(self.site))

        def listening(port):
            self.port = port.getHost().port
            self.addCleanup(port.stopListening)
        return d.addCallback(listening)

    def allowing(self, *cidrs, **kw):
        return self.makeServices(httpPolicy=HttpClientPolicy(cidrs), **kw)

    def url(self, path, host="127.0.0.1"):
        return f"/?url=http://{host}:{self.port}{path}"

    def go(self, coroutine):
        return Deferred.fromCoroutine(coroutine)

    def test_allowed(self):
        """
        With 127.0.0.0/8 allowed, a function gets the server's answer: the
        request's headers went out, the response's header and body come
        back, the body until C{ErrorEOF} (8).
        """
        async def go():
            body = await self.body("get", self.url("/echo"), services=self.allowing("127.0.0.0/8"))
            self.assertEqual(body, OK * 8 + b"a,b\0" + e(8) + OK + b"hello GET ")
            self.assertEqual(self.site.seen, [(b"GET", b"/echo")])
        return self.go(go())

    def test_post(self):
        """
        A POST sends the body the function set.
        """
        async def go():
            body = await self.body("post", self.url("/echo"), b"payload", services=self.allowing("127.0.0.1/32"))
            self.assertEqual(body, OK * 9 + b"a,b\0" + e(8) + OK + b"hello POST payload")
        return self.go(go())

    def test_loopbackRefused(self):
        """
        By default loopback is refused (C{ErrorHttpRequestFailed}, 13) and
        the server never sees a request.
        """
        async def go():
            self.assertEqual(await self.body("get", self.url("/echo")), OK * 5 + e(13))
            self.assertEqual(self.site.seen, [])
        return self.go(go())

    def test_metadataRefused(self):
        """
        The cloud metadata address is refused at once, also when loopback
        is allowed.
        """
        async def go():
            start = reactor.seconds()
            services = self.allowing("127.0.0.0/8")
            self.assertEqual(await self.body("get", "/?url=http://169.254.169.254/latest/meta-data/", services=services),
                             OK * 5 + e(13))
            self.assertLess(reactor.seconds() - start, 1)
        return self.go(go())

    def test_nameResolvingToLoopback(self):
        """
        A public-looking name that resolves to 127.0.0.1 is refused by
        default; when loopback is allowed, the connection goes to the
        address that was checked.
        """
        async def go():
            resolver = FakeResolver({"public.example": ["127.0.0.1"]})
            services = self.makeServices(resolver=resolver)
            self.assertEqual(await self.body("get", self.url("/echo", "public.example"), services=services), OK * 5 + e(13))
            self.assertEqual(self.site.seen, [])
            self.assertEqual(resolver.asked, ["public.example"])
            services = self.allowing("127.0.0.0/8", resolver=resolver)
            body = await self.body("get", self.url("/echo", "public.example"), services=services)
            self.assertEqual(body[-10:], b"hello GET ")
        return self.go(go())

    def test_redirectChecked(self):
        """
        A redirect to a refused address is refused.
        """
        async def go():
            body = await self.body("get", self.url("/redirect"), services=self.allowing("127.0.0.0/8"))
            self.assertEqual(body, OK * 5 + e(13))
            self.assertEqual(self.site.seen, [(b"GET", b"/redirect")])
        return self.go(go())

    def test_responseLimit(self):
        """
        A response body of exactly C{maxResponseBody} bytes is read; one
        byte more fails the request.
        """
        async def go():
            services = self.allowing("127.0.0.0/8")
            services.httpPolicy.maxResponseBody = 10
            body = await self.body("get", self.url("/big?n=10"), services=services)
            self.assertEqual(body[-10:], b"x" * 10)
            self.assertEqual(await self.body("get", self.url("/big?n=11"), services=services), OK * 5 + e(13))
            # without a length (chunked): the body is counted as it comes
            body = await self.body("get", self.url("/chunks?n=2"), services=services)
            self.assertEqual(body[-10:], b"y" * 10)
            self.assertEqual(await self.body("get", self.url("/chunks?n=3"), services=services), OK * 5 + e(13))
        return self.go(go())

    def test_clients(self):
        """
        An instance holds at most C{maxClients} clients; the next call of
        the (pooled) instance starts without those of the call before.
        """
        async def go():
            self.assertEqual(await self.body("clients"), OK * 8 + e(13))
            self.assertEqual(await self.body("clients"), OK * 8 + e(13))
            self.assertEqual(self.runtime.coldStarts, 1)
        return self.go(go())

    def test_ids(self):
        """
        Unknown ids answer as Taubyte does (client 10, request 3), a
        response read before the request was made 4, a method out of
        range 14; a new request's method is GET (1); a body length over
        the limit is refused (17) before anything is read.
        """
        async def go():
            self.assertEqual(await self.body("ids"), e(10, 0, 3, 0, 4, 14, 0, 1, 17))
        return self.go(go())

    def test_serverHangs(self):
        """
        A server that never answers does not hold the call past its
        timeout, and the connection to it is closed.
        """
        async def go():
            start = reactor.seconds()
            status, _, body = await self.call("get", self.url("/hang"), services=self.allowing("127.0.0.0/8"),
                                              limits=Limits(timeout=0.5))
            self.assertIn((status, body), [(200, OK * 5 + e(13)), (504, b"")])
            self.assertLess(reactor.seconds() - start, 1.5)
            [finished] = self.site.hanging
            lost = []
            await finished.addErrback(lost.append)
            self.assertEqual(len(lost), 1)
        return self.go(go())


@implementer(IPolicyForHTTPS)
class TrustOnly:
    """
    Trust one certificate (the test server's), checked against the name.
    """

    def __init__(self, pem):
        self.pem = pem

    def creatorForNetloc(self, hostname, port):
        return optionsForClientTLS(hostname.decode("ascii"), trustRoot=Certificate.loadPEM(self.pem))


class HttpsTests(NodeTestCase):
    """
    HTTPS to a name: the connection goes to the checked address and the
    server's certificate is checked against the name.
    """

    guest = GUEST

    async def serve(self, name):
        certPEM, both = selfSigned(name)
        endpoint = SSL4ServerEndpoint(reactor, 0, PrivateCertificate.loadPEM(both).options(), interface="127.0.0.1")
        port = await endpoint.listen(Site(Echo()))
        self.addCleanup(port.stopListening)
        return port.getHost().port, certPEM

    def secureServices(self, certPEM):
        return self.makeServices(httpPolicy=HttpClientPolicy(["127.0.0.0/8"]), tlsPolicy=TrustOnly(certPEM),
                                 resolver=FakeResolver({"secure.example": ["127.0.0.1"]}))

    async def test_https(self):
        port, cert = await self.serve("secure.example")
        body = await self.body("get", f"/?url=https://secure.example:{port}/echo", services=self.secureServices(cert))
        self.assertEqual(body, OK * 8 + b"a,b\0" + e(8) + OK + b"hello GET ")

    async def test_wrongName(self):
        """
        A certificate for another name fails the request.
        """
        port, cert = await self.serve("other.example")
        body = await self.body("get", f"/?url=https://secure.example:{port}/echo", services=self.secureServices(cert))
        self.assertEqual(body, OK * 5 + e(13))


class EndpointTests(TestCase):
    """
    L{CheckedEndpoint} on a memory reactor: what is refused makes no
    connection attempt at all.
    """

    def connect(self, host, policy=None, answers=None):
        clock = MemoryReactorClock()
        fetcher = HttpFetcher(clock, policy or HttpClientPolicy(), resolver=FakeResolver(answers or {}))
        d = CheckedEndpoint(fetcher, b"http", host, 80).connect(Factory.forProtocol(Protocol))
        return clock, d

    def test_metadataAddress(self):
        clock, d = self.connect("169.254.169.254")
        failure = self.failureResultOf(d, Refused)
        self.assertEqual(clock.tcpClients, [])
        # what the operator's log reads (the host call logs its repr)
        self.assertIn("169.254.169.254: no address a function may connect to (169.254.169.254)", repr(failure.value))

    def test_nameToPrivate(self):
        clock, d = self.connect("intranet.example", answers={"intranet.example": ["10.1.2.3", "192.168.1.1"]})
        self.failureResultOf(d, Refused)
        self.assertEqual(clock.tcpClients, [])

    def test_publicAddress(self):
        """
        A public address is connected to, the address that was resolved.
        """
        clock, d = self.connect("www.example", answers={"www.example": ["10.0.0.1", "93.184.216.34"]})
        self.assertNoResult(d)
        self.assertEqual([(host, port) for host, port, *_ in clock.tcpClients], [("93.184.216.34", 80)])

    def test_allowedNetwork(self):
        clock, d = self.connect("10.1.2.3", policy=HttpClientPolicy(["10.1.0.0/16"]))
        self.assertEqual([host for host, *_ in clock.tcpClients], ["10.1.2.3"])


class PolicyTests(TestCase):
    def test_defaults(self):
        """
        Only public unicast addresses are permitted by default.
        """
        policy = HttpClientPolicy()
        refused = ["127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.169.254",
                   "0.0.0.0", "224.0.0.1", "239.1.1.1", "255.255.255.255", "192.0.2.1", "::1", "::", "fe80::1",
                   "fc00::1", "fd12::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
                   "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2001:db8::1"]
        for address in refused:
            self.assertFalse(policy.permits(address), address)
        for address in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]:
            self.assertTrue(policy.permits(address), address)

    def test_allow(self):
        """
        An allowed network is permitted, and only it.
        """
        policy = HttpClientPolicy.fromConfig(["10.1.0.0/16", "fd00::/8"])
        self.assertTrue(policy.permits("10.1.255.255"))
        self.assertFalse(policy.permits("10.2.0.0"))
        self.assertTrue(policy.permits(ipaddress.ip_address("fd00::5")))
        self.assertFalse(policy.permits("127.0.0.1"))

    def test_badConfig(self):
        with self.assertRaises(ValueError) as e:
            HttpClientPolicy.fromConfig(["10.1.0.1/16"])
        self.assertIn("substrate.http-client-allow: '10.1.0.1/16' is not a CIDR", str(e.exception))
        with self.assertRaises(ValueError):
            HttpClientPolicy.fromConfig("10.0.0.0/8")
