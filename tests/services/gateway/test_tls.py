"""
HTTPS through the gateway with curl: certificates by SNI from auth (a
fake fetch with auth's interface, and one real auth service), wildcards,
a default certificate, unknown names closed.
"""

import hashlib

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tau.protocols.identify import whenIdentified
from tau.services.auth.client import AuthClient
from tau.services.commands import RemoteError
from tests.hosts import addressOf, startHost
from tests.services.auth.helpers import Cloud
from tests.services.auth.test_certificates import selfSigned
from tests.services.gateway.helpers import TestSubstrate, WebsiteMetrics, cloud, curl, digest, pattern

HTTPS = {"https": "tcp:0:interface=127.0.0.1"}


class FakeAuth:
    """
    auth's C{acme get}/C{get-static} as L{AuthClient.certificate} calls
    them: C{stored} maps C{(fqdn, static)} to PEM.
    """

    def __init__(self, stored=None):
        self.stored = dict(stored or {})
        self.asked = []

    async def certificate(self, fqdn, static=False):
        self.asked.append((fqdn, static))
        if (fqdn, static) not in self.stored:
            raise RemoteError('router: executing command "acme" failed: certificate not found')
        return self.stored[(fqdn, static)]


class HTTPSTests(TestCase):
    timeout = 60

    async def start(self, auth, **config):
        self.substrate = TestSubstrate(WebsiteMetrics(1.0))
        self.service, host, _ = await cloud(self, self.substrate, fetch=auth.certificate, **HTTPS, **config)
        self.port = self.service.ports()["https"].getHost().port
        return host

    def trust(self, certPEM):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(certPEM)
        return path

    def get(self, name, trust, path="/"):
        return curl("--resolve", f"{name}:{self.port}:127.0.0.1", "--cacert", trust,
                    f"https://{name}:{self.port}{path}")

    async def failing(self, name, trust):
        out, err, code = await getProcessOutputAndValue(
            "curl", ["-s", "-S", "--max-time", "20", "--resolve", f"{name}:{self.port}:127.0.0.1", "--cacert", trust,
                     f"https://{name}:{self.port}/"], reactor=reactor)
        self.assertNotEqual(code, 0)
        return err

    async def test_bySNI(self):
        certPEM, pem = selfSigned("app.example.com")
        auth = FakeAuth({("app.example.com", False): pem})
        await self.start(auth)
        status, headers, body = await self.get("app.example.com", self.trust(certPEM), "/p")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"hello\n")
        self.assertEqual(headers["x-substrate-peer"], str(self.substrate.host.peerID))
        self.assertEqual(self.substrate.asked[0][1]["host"], "app.example.com")
        # static first, then the ACME one; cached for the next connection
        self.assertEqual(auth.asked, [("app.example.com", True), ("app.example.com", False)])
        await self.get("app.example.com", self.trust(certPEM))
        self.assertEqual(len(auth.asked), 2)

    async def test_bodiesBothWays(self):
        certPEM, pem = selfSigned("app.example.com")
        auth = FakeAuth({("app.example.com", False): pem})
        self.substrate = TestSubstrate(WebsiteMetrics(1.0), digest)
        self.service, _, _ = await cloud(self, self.substrate, fetch=auth.certificate, **HTTPS)
        self.port = self.service.ports()["https"].getHost().port
        upload = self.mktemp()
        with open(upload, "wb") as f:
            f.write(pattern(3 << 20))
        out = self.mktemp()
        status, headers, _ = await curl("--resolve", f"app.example.com:{self.port}:127.0.0.1", "--cacert",
                                        self.trust(certPEM), "-H", f"X-Size: {5 << 20}", "--data-binary",
                                        "@" + upload, "-o", out, f"https://app.example.com:{self.port}/")
        self.assertEqual(status, 200)
        self.assertEqual(headers["x-sha256"], hashlib.sha256(pattern(3 << 20)).hexdigest())
        with open(out, "rb") as f:
            self.assertEqual(f.read(), pattern(1 << 20) * 5)

    async def test_wildcard(self):
        certPEM, pem = selfSigned("*.example.com")
        auth = FakeAuth({("*.example.com", True): pem})
        await self.start(auth)
        status, _, _ = await self.get("shop.example.com", self.trust(certPEM))
        self.assertEqual(status, 200)

    async def test_unknownNameClosed(self):
        """
        No certificate for the name: the connection is closed, auth is not
        asked again within certificate-miss-ttl, and others are served.
        """
        certPEM, pem = selfSigned("app.example.com")
        auth = FakeAuth({("app.example.com", False): pem})
        await self.start(auth)
        trust = self.trust(certPEM)
        await self.failing("nope.example.com", trust)
        asked = len(auth.asked)
        self.assertEqual(asked, 4)  # the name, then its wildcard, static and not
        await self.failing("nope.example.com", trust)
        self.assertEqual(len(auth.asked), asked)
        status, _, _ = await self.get("app.example.com", trust)
        self.assertEqual(status, 200)

    async def test_defaultCertificate(self):
        certPEM, pem = selfSigned("fallback.example.net")
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(pem)
        await self.start(FakeAuth(), **{"tls-certificate": path})
        status, _, _ = await self.get("fallback.example.net", self.trust(certPEM))
        self.assertEqual(status, 200)

    async def test_plainHTTPOnTheTLSPort(self):
        certPEM, pem = selfSigned("app.example.com")
        await self.start(FakeAuth({("app.example.com", False): pem}))
        out, err, code = await getProcessOutputAndValue(
            "curl", ["-s", "-S", "--max-time", "20", f"http://127.0.0.1:{self.port}/"], reactor=reactor)
        self.assertNotEqual(code, 0)
        status, _, _ = await self.get("app.example.com", self.trust(certPEM))
        self.assertEqual(status, 200)


class RealAuthTests(TestCase):
    timeout = 60

    async def test_certificateStoredInAuth(self):
        """
        A certificate stored in a running auth service over p2p is served
        by the gateway for its name.
        """
        authHost = await startHost(self)
        await Cloud().start(self, authHost, trusted=lambda peer: True)
        certPEM, pem = selfSigned("real.example.com")
        substrate = TestSubstrate(WebsiteMetrics(1.0))
        service, host, _ = await cloud(self, substrate, **HTTPS)
        conn = await host.connect(addressOf(authHost))
        await whenIdentified(host, conn)
        await AuthClient(host, None).setCertificate("real.example.com", pem)
        port = service.ports()["https"].getHost().port
        trust = self.mktemp()
        with open(trust, "wb") as f:
            f.write(certPEM)
        status, _, body = await curl("--resolve", f"real.example.com:{port}:127.0.0.1", "--cacert", trust,
                                     f"https://real.example.com:{port}/")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"hello\n")


class TLSLimitTests(TestCase):
    timeout = 60

    async def test_connectionsPerClientCountedFromTheHello(self):
        certPEM, pem = selfSigned("app.example.com")
        substrate = TestSubstrate(WebsiteMetrics(1.0))
        service, _, _ = await cloud(self, substrate, fetch=FakeAuth({("app.example.com", False): pem}).certificate,
                                    **HTTPS, **{"max-per-client": 1})
        port = service.ports()["https"].getHost().port
        idle = Protocol()
        await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory.forProtocol(lambda: idle))
        self.addCleanup(idle.transport.abortConnection)
        trust = self.mktemp()
        with open(trust, "wb") as f:
            f.write(certPEM)
        out, err, code = await getProcessOutputAndValue(
            "curl", ["-s", "-S", "--max-time", "20", "--resolve", f"app.example.com:{port}:127.0.0.1", "--cacert",
                     trust, f"https://app.example.com:{port}/"], reactor=reactor)
        self.assertNotEqual(code, 0)
        idle.transport.abortConnection()
        # once it is gone, the address may connect again
        for _ in range(50):
            if not service.site._clients:
                break
            await deferLater(reactor, 0.02, lambda: None)
        status, _, _ = await curl("--resolve", f"app.example.com:{port}:127.0.0.1", "--cacert", trust,
                                  f"https://app.example.com:{port}/")
        self.assertEqual(status, 200)
