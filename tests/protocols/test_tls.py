"""
Tests for L{tau.protocols.tls}: libp2p TLS certificates and the TLS layer.
"""

import os
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from tau.identity import PeerID, PrivateKey
from tau.protocols import tls
from tau.protocols.tls import TLSHandshakeFailed, TLSHandshakeTimeout, TLSSecurity
from tau.protocols.tlscert import (
    EXTENSION_OID,
    SIGNATURE_PREFIX,
    TLSVerifyError,
    decodeSignedKey,
    encodeSignedKey,
    makeCertificate,
    verifyCertificate,
)

# libp2p/specs tls/tls.md, "Test vectors".  Valid 1975-01-01 .. 4096-01-01.
VECTOR_ED25519 = bytes.fromhex(
    "308201ae30820156a0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c"
    "69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f343039363031"
    "30313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059"
    "301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7"
    "a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea3"
    "7c307a3078060a2b0601040183a25a0101046a3068042408011220a77f1d92fedb59dddaea5a1c4abd1ac2fbde"
    "7d7b879ed364501809923d7c11b90440d90d2769db992d5e6195dbb08e706b6651e024fda6cfb8846694a43551"
    "9941cac215a8207792e42849cccc6cd8136c6e4bde92a58c5e08cfd4206eb5fe0bf909300a06082a8648ce3d04"
    "03020346003043021f50f6b6c52711a881778718238f650c9fb48943ae6ee6d28427dc6071ae55e702203625f1"
    "16a7a454db9c56986c82a25682f7248ea1cb764d322ea983ed36a31b77"
)
PEER_ED25519 = "12D3KooWM6CgA9iBFZmcYAHA6A2qvbAxqfkmrYiRQuz3XEsk4Ksv"

VECTOR_ECDSA = bytes.fromhex(
    "308201f63082019da0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c"
    "69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f343039363031"
    "30313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059"
    "301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7"
    "a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea3"
    "81c23081bf3081bc060a2b0601040183a25a01010481ad3081aa045f0803125b3059301306072a8648ce3d0201"
    "06082a8648ce3d03010703420004bf30511f909414ebdd3242178fd290f093a551cf75c973155de0bb5a96fedf"
    "6cb5d52da7563e794b512f66e60c7f55ba8a3acf3dd72a801980d205e8a1ad29f2044730450220064ea8124774"
    "caf8f50e57f436aa62350ce652418c019df5d98a3ac666c9386a022100aa59d704a931b5f72fb9222cb6cc51f9"
    "54d04a4e2e5450f8805fe8918f71eaae300a06082a8648ce3d04030203470030440220799395b0b6c1e940a7e4"
    "484705f610ab51ed376f19ff9d7c16757cfbf61b8d4302206205c03fbb0f95205c779be86581d3e31c01871ad5"
    "d1f3435bcf375cb0e5088a"
)
PEER_ECDSA = "QmfXbAwNjJLXfesgztEHe8HwgVDCMMpZ9Eax1HYq6hn9uE"

VECTOR_SECP256K1 = bytes.fromhex(
    "308201ba3082015fa0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c"
    "69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f343039363031"
    "30313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059"
    "301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7"
    "a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea3"
    "8184308181307f060a2b0601040183a25a01010471306f0425080212210206dc6968726765b820f050263ecec"
    "f7f71e4955892776c0970542efd689d2382044630440220145e15a991961f0d08cd15425bb95ec93f6ffa03c5a"
    "385eedc34ecf464c7a8ab022026b3109b8a3f40ef833169777eb2aa337cfb6282f188de0666d1bcec2a4690dd3"
    "00a06082a8648ce3d0403020349003046022100e1a217eeef9ec9204b3f774a08b70849646b6a1e6b8b27f93dc"
    "00ed58545d9fe022100b00dafa549d0f03547878338c7b15e7502888f6d45db387e5ae6b5d46899cef0"
)
PEER_SECP256K1 = "16Uiu2HAkutTMoTzDw1tCvSRtu6YoixJwS46S1ZFxW8hSx9fWHiPs"

# The ECDSA vector with a signature made by another key.
VECTOR_INVALID = bytes.fromhex(
    "308201f73082019da0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c"
    "69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f343039363031"
    "30313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059"
    "301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7"
    "a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea3"
    "81c23081bf3081bc060a2b0601040183a25a01010481ad3081aa045f0803125b3059301306072a8648ce3d0201"
    "06082a8648ce3d03010703420004bf30511f909414ebdd3242178fd290f093a551cf75c973155de0bb5a96fedf"
    "6cb5d52da7563e794b512f66e60c7f55ba8a3acf3dd72a801980d205e8a1ad29f204473045022100bb6e03577b"
    "7cc7a3cd1558df0da2b117dfdcc0399bc2504ebe7de6f65cade72802206de96e2a5be9b6202adba24ee0362e49"
    "0641ac45c240db71fe955f2c5cf8df6e300a06082a8648ce3d0403020348003045022100e847f267f43717358f"
    "850355bdcabbefb2cfbf8a3c043b203a14788a092fe8db022027c1d04a2d41fd6b57a7e8b3989e470325de4406"
    "e52e084e34a3fd56eef0d0df"
)

NOW = 1_750_000_000.0


def der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def buildCertificate(
    hostKey,
    now,
    *,
    critical=False,
    withExtension=True,
    extraExtensions=(),
    signedSPKIKey=None,
    lifetime=timedelta(days=365 * 100),
):
    """
    A certificate made the way another implementation might make it: js marks
    the libp2p extension critical; the knobs also make broken ones.
    """
    certKey = ec.generate_private_key(ec.SECP256R1())
    spkiOf = (signedSPKIKey or certKey).public_key()
    spki = spkiOf.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "1")])
    start = datetime.fromtimestamp(now, timezone.utc) - timedelta(hours=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(certKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + lifetime)
    )
    if withExtension:
        value = encodeSignedKey(
            hostKey.publicKey().toProtobuf(), hostKey.sign(SIGNATURE_PREFIX + spki)
        )
        builder = builder.add_extension(
            x509.UnrecognizedExtension(EXTENSION_OID, value), critical=critical
        )
    for extension, isCritical in extraExtensions:
        builder = builder.add_extension(extension, critical=isCritical)
    return certKey, builder.sign(certKey, hashes.SHA256())


class VectorTests(SynchronousTestCase):
    """
    The certificates published with the spec.
    """

    def test_ed25519(self):
        self.assertEqual(verifyCertificate(VECTOR_ED25519, NOW), PeerID.fromString(PEER_ED25519))

    def test_ecdsa(self):
        self.assertEqual(verifyCertificate(VECTOR_ECDSA, NOW), PeerID.fromString(PEER_ECDSA))

    def test_secp256k1(self):
        self.assertEqual(
            verifyCertificate(VECTOR_SECP256K1, NOW), PeerID.fromString(PEER_SECP256K1)
        )

    def test_invalid(self):
        e = self.assertRaises(TLSVerifyError, verifyCertificate, VECTOR_INVALID, NOW)
        self.assertIn("signature", str(e))

    def test_notYetValid(self):
        before = datetime(1974, 12, 31, tzinfo=timezone.utc).timestamp()
        e = self.assertRaises(TLSVerifyError, verifyCertificate, VECTOR_ED25519, before)
        self.assertIn("not valid before", str(e))

    def test_expired(self):
        after = datetime(4096, 1, 2, tzinfo=timezone.utc).timestamp()
        e = self.assertRaises(TLSVerifyError, verifyCertificate, VECTOR_ED25519, after)
        self.assertIn("expired", str(e))


class CertificateTests(SynchronousTestCase):
    """
    L{makeCertificate} and L{verifyCertificate} on certificates made here.
    """

    def setUp(self):
        self.hostKey = PrivateKey.generate()

    def test_roundTrip(self):
        certKey, cert = makeCertificate(self.hostKey, NOW)
        self.assertEqual(verifyCertificate(der(cert), NOW), self.hostKey.peerID())

    def test_layout(self):
        """
        One extension, the libp2p one, non-critical (js reads extensions[0];
        webpki refuses unknown critical ones); a P-256 key unrelated to the
        host key; valid from an hour ago for 100 years.
        """
        certKey, cert = makeCertificate(self.hostKey, NOW)
        extensions = list(cert.extensions)
        self.assertEqual([e.oid for e in extensions], [EXTENSION_OID])
        self.assertFalse(extensions[0].critical)
        self.assertIsInstance(cert.public_key(), ec.EllipticCurvePublicKey)
        self.assertIsInstance(cert.public_key().curve, ec.SECP256R1)
        self.assertEqual(cert.public_key().public_numbers(), certKey.public_key().public_numbers())
        self.assertEqual(cert.not_valid_before_utc.timestamp(), NOW - 3600)
        self.assertEqual(
            cert.not_valid_after_utc.timestamp(), NOW - 3600 + 100 * 365 * 24 * 3600
        )
        self.assertEqual(cert.issuer, cert.subject)
        keyBytes, signature = decodeSignedKey(extensions[0].value.value)
        self.assertEqual(keyBytes, self.hostKey.publicKey().toProtobuf())

    def test_freshKeys(self):
        """
        Each certificate has its own key.
        """
        a = makeCertificate(self.hostKey, NOW)[1].public_key().public_numbers()
        b = makeCertificate(self.hostKey, NOW)[1].public_key().public_numbers()
        self.assertNotEqual(a, b)

    def test_validityWindow(self):
        certKey, cert = makeCertificate(self.hostKey, NOW)
        self.assertRaises(TLSVerifyError, verifyCertificate, der(cert), NOW - 3601)
        verifyCertificate(der(cert), NOW - 3599)

    def test_criticalExtensionAccepted(self):
        """
        js-libp2p marks the extension critical.
        """
        certKey, cert = buildCertificate(self.hostKey, NOW, critical=True)
        self.assertEqual(verifyCertificate(der(cert), NOW), self.hostKey.peerID())

    def test_missingExtension(self):
        certKey, cert = buildCertificate(self.hostKey, NOW, withExtension=False)
        e = self.assertRaises(TLSVerifyError, verifyCertificate, der(cert), NOW)
        self.assertIn("no libp2p public key extension", str(e))

    def test_unknownCriticalExtension(self):
        other = x509.UnrecognizedExtension(ObjectIdentifier("1.2.3.4.5"), b"\x05\x00")
        certKey, cert = buildCertificate(self.hostKey, NOW, extraExtensions=[(other, True)])
        e = self.assertRaises(TLSVerifyError, verifyCertificate, der(cert), NOW)
        self.assertIn("unknown critical extension 1.2.3.4.5", str(e))

    def test_unknownNonCriticalExtensionIgnored(self):
        other = x509.UnrecognizedExtension(ObjectIdentifier("1.2.3.4.5"), b"\x05\x00")
        certKey, cert = buildCertificate(self.hostKey, NOW, extraExtensions=[(other, False)])
        self.assertEqual(verifyCertificate(der(cert), NOW), self.hostKey.peerID())

    def test_knownCriticalExtensionAccepted(self):
        constraints = x509.BasicConstraints(ca=False, path_length=None)
        certKey, cert = buildCertificate(
            self.hostKey, NOW, extraExtensions=[(constraints, True)]
        )
        self.assertEqual(verifyCertificate(der(cert), NOW), self.hostKey.peerID())

    def test_signatureOverAnotherKey(self):
        """
        The host key must have signed this certificate's key, not another.
        """
        certKey, cert = buildCertificate(
            self.hostKey, NOW, signedSPKIKey=ec.generate_private_key(ec.SECP256R1())
        )
        e = self.assertRaises(TLSVerifyError, verifyCertificate, der(cert), NOW)
        self.assertIn("signature does not match", str(e))

    def test_badSelfSignature(self):
        certKey, cert = makeCertificate(self.hostKey, NOW)
        otherKey = ec.generate_private_key(ec.SECP256R1())
        # Same TBS, signed by another key.
        forged = (
            x509.CertificateBuilder()
            .subject_name(cert.subject)
            .issuer_name(cert.issuer)
            .public_key(cert.public_key())
            .serial_number(cert.serial_number)
            .not_valid_before(cert.not_valid_before_utc)
            .not_valid_after(cert.not_valid_after_utc)
            .add_extension(list(cert.extensions)[0].value, critical=False)
            .sign(otherKey, hashes.SHA256())
        )
        e = self.assertRaises(TLSVerifyError, verifyCertificate, der(forged), NOW)
        self.assertIn("self-signature", str(e))

    def test_garbage(self):
        e = self.assertRaises(TLSVerifyError, verifyCertificate, b"\x30\x03abc", NOW)
        self.assertIn("does not parse", str(e))

    def test_signedKeyCodec(self):
        value = encodeSignedKey(b"k" * 200, b"s" * 3)
        self.assertEqual(decodeSignedKey(value), (b"k" * 200, b"s" * 3))
        self.assertRaises(ValueError, decodeSignedKey, value + b"\x00")
        self.assertRaises(ValueError, decodeSignedKey, value[:-1])
        self.assertRaises(ValueError, decodeSignedKey, b"\x30\x02\x04\x00")
        self.assertRaises(ValueError, decodeSignedKey, b"\x30\x04\x02\x00\x04\x00")


# --- two endpoints ---


class Upper(Protocol):
    """
    The protocol above TLS: records what happens to it.
    """

    def __init__(self, greeting=b""):
        self.greeting = greeting
        self.received = []
        self.made = False
        self.lost = None
        self.peerAtConnect = None

    def connectionMade(self):
        self.made = True
        self.peerAtConnect = self.transport.remotePeer
        if self.greeting:
            self.transport.write(self.greeting)

    def dataReceived(self, data):
        self.received.append(data)

    def connectionLost(self, reason):
        self.lost = reason

    def data(self):
        return b"".join(self.received)


class Lower(Protocol):
    """
    Stands for multistream-select: optionally exchanges a plaintext line,
    then starts TLS and forwards everything to the layer.
    """

    def __init__(self, security, isClient, upper, *, expectedPeer=None, preamble=False):
        self.security = security
        self.isClient = isClient
        self.upper = upper
        self.expectedPeer = expectedPeer
        self.preamble = preamble
        self.layer = None
        self.whenSecure = Deferred()
        self.lostReason = None
        self._buffer = b""

    def connectionMade(self):
        if self.preamble and self.isClient:
            # Like an mss dialer: the proposal and the ClientHello go out
            # together, so the listener reads TLS bytes with its line.
            self.transport.write(b"/tls/1.0.0\n")
        if not (self.preamble and not self.isClient):
            self._start(b"")

    def _start(self, initialBytes):
        self.layer, whenSecure = self.security.secure(
            self.transport,
            isClient=self.isClient,
            protocol=self.upper,
            expectedPeer=self.expectedPeer,
            initialBytes=initialBytes,
        )
        whenSecure.chainDeferred(self.whenSecure)

    def dataReceived(self, data):
        if self.layer is None:
            self._buffer += data
            line, newline, rest = self._buffer.partition(b"\n")
            if newline:
                assert line == b"/tls/1.0.0", line
                self._start(rest)
            return
        self.layer.dataReceived(data)

    def connectionLost(self, reason):
        self.lostReason = reason
        if self.layer is not None:
            self.layer.connectionLost(reason)


class Result:
    def __init__(self, d):
        self.value = None
        self.failure = None
        d.addCallbacks(self._ok, self._fail)

    def _ok(self, value):
        self.value = value

    def _fail(self, failure):
        self.failure = failure


class HandshakeTests(SynchronousTestCase):
    """
    Two tau endpoints through L{twisted.test.iosim}.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(NOW)
        self.serverKey = PrivateKey.generate()
        self.clientKey = PrivateKey.generate()

    def connect(
        self,
        *,
        serverExpects=None,
        clientExpects=None,
        serverCert=None,
        clientCert=None,
        preamble=False,
        serverGreeting=b"",
        clientGreeting=b"",
    ):
        self.serverUpper = Upper(serverGreeting)
        self.clientUpper = Upper(clientGreeting)
        server = Lower(
            TLSSecurity(self.serverKey, self.clock, certificate=serverCert),
            False,
            self.serverUpper,
            expectedPeer=serverExpects,
            preamble=preamble,
        )
        client = Lower(
            TLSSecurity(self.clientKey, self.clock, certificate=clientCert),
            True,
            self.clientUpper,
            expectedPeer=clientExpects,
            preamble=preamble,
        )
        self.server, self.client = server, client
        self.serverResult = Result(server.whenSecure)
        self.clientResult = Result(client.whenSecure)
        self.pump = iosim.connect(
            server,
            iosim.FakeTransport(server, True),
            client,
            iosim.FakeTransport(client, False),
            clock=self.clock,
        )
        self.pump.flush()

    def assertSecure(self):
        self.assertIsNone(self.serverResult.failure)
        self.assertIsNone(self.clientResult.failure)
        self.assertEqual(self.clientResult.value, self.serverKey.peerID())
        self.assertEqual(self.serverResult.value, self.clientKey.peerID())
        self.assertTrue(self.serverUpper.made)
        self.assertTrue(self.clientUpper.made)

    def assertRejected(self, result, upper, message):
        self.assertIsNotNone(result.failure)
        result.failure.trap(TLSVerifyError)
        self.assertIn(message, str(result.failure.value))
        self.assertFalse(upper.made)

    def test_handshake(self):
        """
        Both sides learn each other's peer ID, the upper protocols are
        connected with C{remotePeer} set, ALPN says libp2p, and plaintext
        flows both ways.
        """
        self.connect(serverGreeting=b"hello client", clientGreeting=b"hello server")
        self.assertSecure()
        self.assertEqual(self.clientUpper.peerAtConnect, self.serverKey.peerID())
        self.assertEqual(self.serverUpper.peerAtConnect, self.clientKey.peerID())
        self.assertEqual(self.client.layer.negotiatedProtocol, b"libp2p")
        self.assertEqual(self.server.layer.negotiatedProtocol, b"libp2p")
        self.assertEqual(self.serverUpper.data(), b"hello server")
        self.assertEqual(self.clientUpper.data(), b"hello client")

    def test_bulk(self):
        """
        Large writes arrive intact and in order.
        """
        self.connect()
        payload = bytes(range(256)) * 4096 + b"end"
        self.clientUpper.transport.write(payload)
        self.serverUpper.transport.write(payload[::-1])
        self.pump.flush()
        self.assertEqual(self.serverUpper.data(), payload)
        self.assertEqual(self.clientUpper.data(), payload[::-1])

    def countLowerWrites(self, lower):
        writes = []
        write = lower.write

        def counting(data):
            writes.append(len(data))
            write(data)

        lower.write = counting
        return writes

    def test_largeWriteOneLowerWrite(self):
        """
        The records made from one large write go down in one write of the
        lower transport (over a relayed connection: one yamux frame, not
        one per 16 KiB record), and the plaintext of the records read in
        one go comes up in one call.
        """
        self.connect()
        writes = self.countLowerWrites(self.client.transport)
        payload = os.urandom(192 * 1024)
        self.clientUpper.transport.write(payload)
        self.assertEqual(len(writes), 1)
        self.assertGreater(writes[0], len(payload))
        del self.serverUpper.received[:]
        self.pump.flush()
        self.assertEqual(self.serverUpper.received, [payload])

    def test_heldRecordsBounded(self):
        """
        What one write makes goes down in pieces of about
        L{tls.HOLD_BYTES}, so the lower transport can push back.
        """
        self.connect()
        writes = self.countLowerWrites(self.client.transport)
        payload = os.urandom(2 * 1024 * 1024)
        self.clientUpper.transport.write(payload)
        self.assertGreaterEqual(len(writes), 8)
        self.assertLessEqual(max(writes), tls.HOLD_BYTES + tls.RECORDS_READ)
        self.pump.flush()
        self.assertEqual(self.serverUpper.data()[-len(payload):], payload)

    def test_smallWritesGathered(self):
        """
        Small writes wait for the end of the reactor turn and go down as
        one record; order is kept when a large write follows them.
        """
        self.connect()
        writes = self.countLowerWrites(self.client.transport)
        self.clientUpper.transport.write(b"one ")
        self.clientUpper.transport.writeSequence([b"two ", b"three "])
        self.assertEqual(writes, [])
        self.clock.advance(0)
        self.assertEqual(len(writes), 1)
        self.clientUpper.transport.write(b"four ")
        big = b"x" * (100 * 1024)
        self.clientUpper.transport.write(big)
        self.assertEqual(len(writes), 2)
        self.pump.flush()
        self.assertEqual(self.serverUpper.data(), b"one two three four " + big)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_expectedPeer(self):
        self.connect(
            clientExpects=self.serverKey.peerID(), serverExpects=self.clientKey.peerID()
        )
        self.assertSecure()

    def test_clientRejectsWrongPeer(self):
        """
        A client that expects another peer fails and closes the connection.
        """
        other = PrivateKey.generate().peerID()
        self.connect(clientExpects=other)
        self.assertRejected(self.clientResult, self.clientUpper, f"expected {other}")
        self.assertIsNotNone(self.client.lostReason)

    def test_serverRejectsWrongPeer(self):
        other = PrivateKey.generate().peerID()
        self.connect(serverExpects=other, clientGreeting=b"secret")
        self.assertRejected(self.serverResult, self.serverUpper, f"expected {other}")
        # The client finished first (TLS 1.3) but then sees the close.
        self.assertIsNotNone(self.clientUpper.lost)
        self.assertEqual(self.serverUpper.data(), b"")

    def test_serverWithoutExtension(self):
        cert = buildCertificate(self.serverKey, NOW, withExtension=False)
        self.connect(serverCert=cert)
        self.assertRejected(self.clientResult, self.clientUpper, "no libp2p public key extension")

    def test_clientWithoutExtension(self):
        cert = buildCertificate(self.clientKey, NOW, withExtension=False)
        self.connect(clientCert=cert)
        self.assertRejected(self.serverResult, self.serverUpper, "no libp2p public key extension")

    def test_jsCertificates(self):
        """
        Certificates with the extension marked critical, as js-libp2p makes
        them, pass OpenSSL (errnum 34) and our checks, on both sides.
        """
        self.connect(
            serverCert=buildCertificate(self.serverKey, NOW, critical=True),
            clientCert=buildCertificate(self.clientKey, NOW, critical=True),
            clientExpects=self.serverKey.peerID(),
        )
        self.assertSecure()

    def test_expiredCertificate(self):
        cert = buildCertificate(self.serverKey, NOW - 7200, lifetime=timedelta(minutes=30))
        self.connect(serverCert=cert)
        self.assertRejected(self.clientResult, self.clientUpper, "expired")

    def test_chainOfTwoRejected(self):
        """
        A peer sending more than one certificate is refused, on either side.
        """
        extra = makeCertificate(PrivateKey.generate(), NOW)[1]
        makeContext = tls.makeContext

        def withChain(certKey, cert, isClient):
            context = makeContext(certKey, cert, isClient)
            context.add_extra_chain_cert(extra)
            return context

        self.patch(tls, "makeContext", withChain)
        self.connect()
        self.assertRejected(self.clientResult, self.clientUpper, "2 certificates")
        self.assertRejected(self.serverResult, self.serverUpper, "2 certificates")

    def patchClientALPN(self, offered):
        makeContext = tls.makeContext

        def offering(certKey, cert, isClient):
            context = makeContext(certKey, cert, isClient)
            if isClient:
                context.set_alpn_protos(offered)
            return context

        self.patch(tls, "makeContext", offering)

    def test_alpnFromJs(self):
        """
        js offers C{["/yamux/1.0.0", "libp2p"]}; we pick C{"libp2p"}, so the
        muxer is negotiated with multistream-select afterwards.
        """
        self.patchClientALPN([b"/yamux/1.0.0", b"libp2p"])
        self.connect()
        self.assertSecure()
        self.assertEqual(self.server.layer.negotiatedProtocol, b"libp2p")
        self.assertEqual(self.client.layer.negotiatedProtocol, b"libp2p")

    def test_alpnWithoutLibp2p(self):
        """
        A client that does not offer C{"libp2p"} fails the handshake.
        """
        self.patchClientALPN([b"h2"])
        self.connect()
        self.serverResult.failure.trap(TLSHandshakeFailed)
        self.clientResult.failure.trap(TLSHandshakeFailed)
        self.assertFalse(self.serverUpper.made)
        self.assertFalse(self.clientUpper.made)

    def test_initialBytes(self):
        """
        TLS bytes read together with the multistream line are handed over as
        C{initialBytes}.
        """
        self.connect(preamble=True, clientGreeting=b"after mss")
        self.assertSecure()
        self.assertEqual(self.serverUpper.data(), b"after mss")

    def test_timeout(self):
        """
        A peer that never answers the ClientHello is dropped after 10 s.
        """
        silent = Protocol()
        self.clientUpper = Upper()
        client = Lower(TLSSecurity(self.clientKey, self.clock), True, self.clientUpper)
        result = Result(client.whenSecure)
        pump = iosim.connect(
            silent,
            iosim.FakeTransport(silent, True),
            client,
            iosim.FakeTransport(client, False),
            clock=self.clock,
        )
        pump.flush()
        self.clock.advance(9.9)
        pump.flush()
        self.assertIsNone(result.failure)
        self.assertIsNone(client.lostReason)
        self.clock.advance(0.2)
        pump.flush()
        result.failure.trap(TLSHandshakeTimeout)
        self.assertIsNotNone(client.lostReason)
        self.assertFalse(self.clientUpper.made)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_noTimerAfterHandshake(self):
        self.connect()
        self.assertSecure()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_lostDuringHandshake(self):
        """
        A connection that closes mid-handshake fails the Deferred.
        """
        silent = Protocol()
        client = Lower(TLSSecurity(self.clientKey, self.clock), True, Upper())
        result = Result(client.whenSecure)
        serverTransport = iosim.FakeTransport(silent, True)
        pump = iosim.connect(
            silent, serverTransport, client, iosim.FakeTransport(client, False), clock=self.clock
        )
        serverTransport.loseConnection()
        pump.flush()
        result.failure.trap(TLSHandshakeFailed)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel(self):
        """
        Cancelling the Deferred aborts the connection.
        """
        silent = Protocol()
        upper = Upper()
        security = TLSSecurity(self.clientKey, self.clock)
        transport = iosim.FakeTransport(silent, False)
        layer, whenSecure = security.secure(transport, isClient=True, protocol=upper)
        result = Result(whenSecure)
        whenSecure.cancel()
        result.failure.trap(CancelledError)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        layer.connectionLost(Failure(ConnectionDone()))
        self.assertFalse(upper.made)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_producer(self):
        """
        The upper protocol registers a producer on the TLS layer; it reaches
        the lower transport, and pausing there pauses it.
        """
        self.connect()

        @implementer(IPushProducer)
        class Producer:
            paused = 0

            def pauseProducing(self):
                self.paused += 1

            def resumeProducing(self):
                self.paused -= 1

            def stopProducing(self):
                pass

        producer = Producer()
        self.clientUpper.transport.registerProducer(producer, True)
        lower = self.client.transport
        self.assertIsNotNone(lower.producer)
        lower.producer.pauseProducing()
        self.assertEqual(producer.paused, 1)
        lower.producer.resumeProducing()
        self.assertEqual(producer.paused, 0)
        self.clientUpper.transport.unregisterProducer()
        self.assertIsNone(lower.producer)

    def test_closePropagates(self):
        """
        loseConnection on the TLS layer sends close_notify and closes the
        lower transport; the other side's upper protocol sees the loss.
        """
        self.connect()
        self.clientUpper.transport.write(b"last words")
        self.clientUpper.transport.loseConnection()
        self.pump.flush()
        self.assertEqual(self.serverUpper.data(), b"last words")
        self.assertIsNotNone(self.serverUpper.lost)
        self.assertIsNotNone(self.clientUpper.lost)


class Echo(Upper):
    """
    Answers C{ping} with C{pong}.
    """

    def dataReceived(self, data):
        Upper.dataReceived(self, data)
        if self.data() == b"ping":
            self.transport.write(b"pong")


class Notifying(Upper):
    """
    Fires C{whenLost} from C{connectionLost}.
    """

    def __init__(self, greeting=b""):
        Upper.__init__(self, greeting)
        self.whenLost = Deferred()

    def connectionLost(self, reason):
        Upper.connectionLost(self, reason)
        self.whenLost.callback(None)


class LoopbackTests(TestCase):
    """
    A handshake over real TCP on 127.0.0.1.
    """

    def test_tcp(self):
        serverKey, clientKey = PrivateKey.generate(), PrivateKey.generate()
        clientUpper = Notifying(b"ping")
        servers = []

        class Server(Lower):
            def connectionLost(self, reason):
                Lower.connectionLost(self, reason)
                self.whenLost.callback(None)

        def serverProtocol():
            lower = Server(TLSSecurity(serverKey, reactor), False, Echo())
            lower.whenLost = Deferred()
            servers.append(lower)
            return lower

        async def run():
            port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
                Factory.forProtocol(serverProtocol)
            )
            self.addCleanup(port.stopListening)
            client = Lower(
                TLSSecurity(clientKey, reactor), True, clientUpper, expectedPeer=serverKey.peerID()
            )
            await TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
                Factory.forProtocol(lambda: client)
            )
            self.assertEqual(await client.whenSecure, serverKey.peerID())
            self.assertEqual(await servers[0].whenSecure, clientKey.peerID())
            while clientUpper.data() != b"pong":
                received = Deferred()
                clientUpper.dataReceived = lambda data: (
                    clientUpper.received.append(data),
                    received.callback(None),
                )
                await received
            client.layer.loseConnection()
            await clientUpper.whenLost
            await servers[0].whenLost
            self.assertTrue(servers[0].upper.lost.check(ConnectionDone))

        return Deferred.fromCoroutine(run())
