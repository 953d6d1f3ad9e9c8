"""
TLS certificates served by SNI name: real handshakes on loopback against
a Twisted TLS listener using auth's context factory.
"""

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ClientEndpoint, SSL4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.trial.unittest import TestCase

from tau.services.auth.certificates import Certificates, contextFromPEM
from tests.services.auth.test_service import ServiceTestCase


def selfSigned(name):
    """
    C{(certificate PEM, certificate and key PEM)} for C{name}.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    certPEM = cert.public_bytes(serialization.Encoding.PEM)
    keyPEM = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return certPEM, certPEM + keyPEM


class Hello(Protocol):
    def connectionMade(self):
        self.transport.write(b"hello")


class Reader(Protocol):
    def __init__(self):
        self.done = Deferred()

    def dataReceived(self, data):
        if not self.done.called:
            self.done.callback(x509.load_der_x509_certificate(self.transport.getPeerCertificate().to_cryptography()
                                                              .public_bytes(serialization.Encoding.DER)))
            self.transport.loseConnection()

    def connectionLost(self, reason):
        if not self.done.called:
            self.done.errback(reason)


async def listen(case, certificates):
    endpoint = SSL4ServerEndpoint(reactor, 0, certificates.serverContextFactory(), interface="127.0.0.1")
    port = await endpoint.listen(Factory.forProtocol(Hello))
    case.addCleanup(port.stopListening)
    return port.getHost().port


async def handshake(port, name, trust):
    """
    The certificate the server showed for SNI C{name}.
    """
    options = optionsForClientTLS(name, trustRoot=Certificate.loadPEM(trust))
    reader = Reader()
    await SSL4ClientEndpoint(reactor, "127.0.0.1", port, options).connect(Factory.forProtocol(lambda: reader))
    certificate = await reader.done
    return certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


class CertificatesTests(TestCase):
    async def test_servedBySNI(self):
        shopCert, shop = selfSigned("shop.example.com")
        wildCert, wild = selfSigned("*.example.com")
        stored = [(("shop.example.com", False), shop), (("*.example.com", True), wild)]

        async def load():
            return stored

        certificates = Certificates(load, reactor)
        await certificates.reload()
        port = await listen(self, certificates)
        self.assertEqual(await handshake(port, "shop.example.com", shopCert), "shop.example.com")
        self.assertEqual(await handshake(port, "other.example.com", wildCert), "*.example.com")
        # a name nobody has a certificate for: no handshake
        with self.assertRaises(Exception):
            await handshake(port, "nope.test", shopCert)

    def test_badPEM(self):
        _, shop = selfSigned("shop.example.com")
        _, other = selfSigned("other.example.com")
        with self.assertRaisesRegex(ValueError, "not a PEM certificate and key"):
            contextFromPEM(b"junk")
        with self.assertRaisesRegex(ValueError, "the private key does not match the certificate"):
            contextFromPEM(shop.split(b"-----BEGIN PRIVATE KEY-----")[0] + b"-----BEGIN PRIVATE KEY-----" +
                           other.split(b"-----BEGIN PRIVATE KEY-----")[1])


class ServiceCertificatesTests(ServiceTestCase):
    async def test_storedOverP2PServedAtOnce(self):
        certPEM, pem = selfSigned("shop.example.com")
        await self.command(self.service, "acme", {"action": "set", "fqdn": "shop.example.com", "certificate": pem})
        port = await listen(self, self.cloud.service.certificates)
        self.assertEqual(await handshake(port, "shop.example.com", certPEM), "shop.example.com")

    async def test_replicatedServedAfterReload(self):
        # a certificate another node stored arrives through the store
        certPEM, pem = selfSigned("far.example.com")
        auth = self.cloud.service.auth
        await auth.storage.putRaw("/acme/far.example.com", auth.secrets.seal(pem, b"/acme/far.example.com"))
        self.assertIsNone(self.cloud.service.certificates.contextFor("far.example.com"))
        await self.cloud.service.certificates.reload()
        port = await listen(self, self.cloud.service.certificates)
        self.assertEqual(await handshake(port, "far.example.com", certPEM), "far.example.com")
