"""
libp2p TLS 1.3 (C{/tls/1.0.0}, libp2p/specs tls/tls.md).

Each side presents a fresh self-signed certificate whose key has nothing to
do with the host key; the host key rides in the certificate's libp2p
extension (OID 1.3.6.1.4.1.53594.1.1) together with the host key's signature
of C{"libp2p-tls-handshake:" || SubjectPublicKeyInfo}.  There is no CA: OpenSSL
is told to accept whatever chain it gets, and after the handshake the chain is
checked the libp2p way (L{verifyCertificate}).

TLS starts in the middle of an existing byte stream (after multistream-select
on TCP, inside a pnet channel, on a relayed yamux stream), so the layer is a
L{twisted.protocols.tls.TLSMemoryBIOProtocol} that is handed the lower
transport by L{TLSSecurity.secure} rather than a listening TLS port.

Wiring a layer (see L{TLSSecurity.secure})::

    layer, whenSecure = security.secure(lowerTransport, isClient=True,
                                        protocol=upper, initialBytes=rest)
    # from now on the lower protocol forwards everything to layer:
    #     dataReceived(data)   -> layer.dataReceived(data)
    #     connectionLost(why)  -> layer.connectionLost(why)
    peer = await whenSecure   # the verified remote PeerID

C{upper} gets C{makeConnection(layer)} once the peer is verified; it writes
plaintext to C{layer} and may register a producer on it.
"""

import secrets
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier
from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IHandshakeListener,
    ILoggingContext,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy

from tau.identity import InvalidKey, PublicKey

log = Logger()

PROTOCOL_ID = "/tls/1.0.0"
ALPN_LIBP2P = b"libp2p"
EXTENSION_OID = ObjectIdentifier("1.3.6.1.4.1.53594.1.1")
SIGNATURE_PREFIX = b"libp2p-tls-handshake:"

# Validity of our certificates, as go-libp2p and js-libp2p make them.
CERT_NOT_BEFORE_SLACK = 3600.0
CERT_LIFETIME = 100 * 365 * 24 * 3600.0

# How long a handshake may take before the connection is dropped.
HANDSHAKE_TIMEOUT = 10.0

# The libp2p extension carries a protobuf key (RSA-8192 SPKI ~1.1 KB) and a
# signature; anything much bigger is not a libp2p certificate.
MAX_EXTENSION_BYTES = 8192

# Signature hashes too short to trust (the spec forbids MD5 and SHA-1).
_SHORT_HASHES = (hashes.MD5, hashes.SHA1, hashes.SHA224)


class TLSError(Exception):
    """
    The TLS handshake did not produce a secure channel.
    """


class TLSVerifyError(TLSError):
    """
    The remote certificate is not an acceptable libp2p certificate, or names
    another peer than the expected one.
    """


class TLSHandshakeTimeout(TLSError):
    """
    The remote side did not complete the handshake in time.
    """


class TLSHandshakeFailed(TLSError):
    """
    The TLS handshake failed or the connection was lost during it.
    """


# --- a strict, bounded DER reader/writer for the two structures we need ---


def _derLength(n):
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _derTLV(tag, body):
    return bytes([tag]) + _derLength(len(body)) + body


def _readTLV(data, offset):
    """
    Read one DER element at C{offset}.

    @return: C{(tag, bodyStart, end)}
    @raise ValueError: on truncated or malformed input.
    """
    if offset + 2 > len(data):
        raise ValueError("truncated DER element")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte DER tags are not expected here")
    first = data[offset + 1]
    pos = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise ValueError("unsupported DER length encoding")
        if pos + count > len(data):
            raise ValueError("truncated DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        if length < 0x80 or data[pos] == 0:
            raise ValueError("non-minimal DER length")
        pos += count
    end = pos + length
    if end > len(data):
        raise ValueError("DER element longer than its container")
    return tag, pos, end


def _children(data, start, end):
    out = []
    while start < end:
        tag, bodyStart, elementEnd = _readTLV(data, start)
        out.append((tag, start, bodyStart, elementEnd))
        start = elementEnd
    return out


def encodeSignedKey(publicKey, signature):
    """
    DER of C{SignedKey ::= SEQUENCE { publicKey OCTET STRING, signature OCTET STRING }}.
    """
    return _derTLV(0x30, _derTLV(0x04, publicKey) + _derTLV(0x04, signature))


def decodeSignedKey(data):
    """
    Parse the libp2p extension value.

    @return: C{(publicKeyProtobuf, signature)}
    @raise ValueError: unless C{data} is exactly one such SEQUENCE.
    """
    data = bytes(data)
    tag, start, end = _readTLV(data, 0)
    if tag != 0x30 or end != len(data):
        raise ValueError("SignedKey is not a single DER SEQUENCE")
    fields = _children(data, start, end)
    if len(fields) != 2 or any(f[0] != 0x04 for f in fields):
        raise ValueError("SignedKey must hold exactly two OCTET STRINGs")
    return tuple(data[f[2] : f[3]] for f in fields)


def _rawSubjectPublicKeyInfo(cert):
    """
    The certificate's SubjectPublicKeyInfo exactly as encoded in it (the
    signature covers these bytes, not a re-encoding).
    """
    tbs = cert.tbs_certificate_bytes
    tag, start, end = _readTLV(tbs, 0)
    if tag != 0x30:
        raise ValueError("TBSCertificate is not a SEQUENCE")
    fields = _children(tbs, start, end)
    # version [0] EXPLICIT is optional; then serial, signature, issuer,
    # validity, subject, subjectPublicKeyInfo.
    index = 6 if fields and fields[0][0] == 0xA0 else 5
    if len(fields) <= index or fields[index][0] != 0x30:
        raise ValueError("TBSCertificate has no SubjectPublicKeyInfo")
    return tbs[fields[index][1] : fields[index][3]]


# --- certificates ---


def _utc(seconds):
    return datetime.fromtimestamp(seconds, timezone.utc)


def makeCertificate(hostKey, now):
    """
    Make the certificate this host presents in a libp2p TLS handshake.

    @param hostKey: the host's L{tau.identity.PrivateKey}.
    @param now: the current time in POSIX seconds (C{clock.seconds()}).
    @return: C{(certPrivateKey, certificate)}: a fresh ECDSA P-256 key (a
        L{cryptography} key object) and the self-signed
        L{cryptography.x509.Certificate} carrying the libp2p extension, non
        critical, as its only extension.
    """
    certKey = ec.generate_private_key(ec.SECP256R1())
    spki = certKey.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signedKey = encodeSignedKey(
        hostKey.publicKey().toProtobuf(), hostKey.sign(SIGNATURE_PREFIX + spki)
    )
    name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, str(secrets.randbits(64)))])
    notBefore = _utc(now - CERT_NOT_BEFORE_SLACK)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(certKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(notBefore)
        .not_valid_after(notBefore + timedelta(seconds=CERT_LIFETIME))
        .add_extension(x509.UnrecognizedExtension(EXTENSION_OID, signedKey), critical=False)
        .sign(certKey, hashes.SHA256())
    )
    return certKey, cert


def _checkSelfSignature(cert):
    try:
        hashAlgorithm = cert.signature_hash_algorithm
        publicKey = cert.public_key()
    except (UnsupportedAlgorithm, ValueError) as e:
        raise TLSVerifyError(f"certificate uses an unsupported key or signature: {e}") from None
    if isinstance(hashAlgorithm, _SHORT_HASHES):
        raise TLSVerifyError(f"certificate is signed with a weak hash ({hashAlgorithm.name})")
    signature, tbs = cert.signature, cert.tbs_certificate_bytes
    try:
        if isinstance(publicKey, ec.EllipticCurvePublicKey):
            publicKey.verify(signature, tbs, ec.ECDSA(hashAlgorithm))
        elif isinstance(publicKey, rsa.RSAPublicKey):
            publicKey.verify(signature, tbs, cert.signature_algorithm_parameters, hashAlgorithm)
        elif isinstance(publicKey, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            publicKey.verify(signature, tbs)
        else:
            raise TLSVerifyError(f"certificate key type {type(publicKey).__name__} is not supported")
    except (InvalidSignature, TypeError, ValueError):
        raise TLSVerifyError("certificate self-signature is invalid") from None


def verifyCertificate(certDER, now):
    """
    Check a peer's certificate the way libp2p TLS requires and return the peer
    ID it proves.

    Checks: it parses; C{now} is inside its validity; its self-signature is
    valid (no hash shorter than 256 bits); no critical extension we do not
    understand; the libp2p extension is present (critical or not); its host
    key parses and has signed the certificate's SubjectPublicKeyInfo.

    @param certDER: the certificate, DER-encoded.
    @param now: the current time in POSIX seconds.
    @rtype: L{tau.identity.PeerID}
    @raise TLSVerifyError: with a message saying which check failed.
    """
    try:
        cert = x509.load_der_x509_certificate(bytes(certDER))
    except ValueError as e:
        raise TLSVerifyError(f"certificate does not parse: {e}") from None
    notBefore = cert.not_valid_before_utc.timestamp()
    notAfter = cert.not_valid_after_utc.timestamp()
    if now < notBefore:
        raise TLSVerifyError(f"certificate is not valid before {cert.not_valid_before_utc.isoformat()}")
    if now > notAfter:
        raise TLSVerifyError(f"certificate expired at {cert.not_valid_after_utc.isoformat()}")
    _checkSelfSignature(cert)

    try:
        extensions = list(cert.extensions)
    except (ValueError, x509.DuplicateExtension) as e:
        raise TLSVerifyError(f"certificate extensions do not parse: {e}") from None
    signedKey = None
    for extension in extensions:
        if extension.oid == EXTENSION_OID:
            signedKey = extension.value.value
        elif extension.critical and isinstance(extension.value, x509.UnrecognizedExtension):
            # Critical extensions cryptography parses (basicConstraints,
            # keyUsage, ...) are understood; unknown ones abort.
            raise TLSVerifyError(f"certificate has an unknown critical extension {extension.oid.dotted_string}")
    if signedKey is None:
        raise TLSVerifyError("certificate has no libp2p public key extension")
    if len(signedKey) > MAX_EXTENSION_BYTES:
        raise TLSVerifyError(f"libp2p extension too long ({len(signedKey)} bytes)")
    try:
        keyBytes, signature = decodeSignedKey(signedKey)
    except ValueError as e:
        raise TLSVerifyError(f"libp2p extension is malformed: {e}") from None
    try:
        hostKey = PublicKey.fromProtobuf(keyBytes)
    except InvalidKey as e:
        raise TLSVerifyError(f"libp2p extension holds a bad host key: {e}") from None
    try:
        spki = _rawSubjectPublicKeyInfo(cert)
    except ValueError as e:
        raise TLSVerifyError(f"certificate structure: {e}") from None
    if not hostKey.verify(signature, SIGNATURE_PREFIX + spki):
        raise TLSVerifyError("libp2p extension signature does not match the certificate key")
    return hostKey.peerID()


# --- the OpenSSL context ---


def _acceptChain(connection, x509Cert, errnum, depth, ok):
    # No CA: OpenSSL reports 18 (self-signed leaf) and, for js certificates,
    # 34 (unhandled critical extension, the libp2p one).  Everything libp2p
    # requires (one certificate, validity, self-signature, extension) is
    # checked after the handshake, before any application byte is delivered.
    return True


class _NoCommonALPN(SSL.Error):
    """
    The client offered no ALPN protocol we speak.  An L{SSL.Error}, so that
    pyOpenSSL's re-raise lands in TLSMemoryBIOProtocol's handshake error path.
    """


def _selectALPN(connection, offered):
    # A server facing js (["/yamux/1.0.0", "libp2p"]) picks "libp2p": the
    # muxer is then negotiated with multistream-select.  The spec says to
    # abort when nothing matches; returning NO_OVERLAPPING_PROTOCOLS would
    # only skip ALPN, raising sends a fatal alert.
    if ALPN_LIBP2P in offered:
        return ALPN_LIBP2P
    # OpenSSL's error-queue shape: [(library, function, reason)].
    raise _NoCommonALPN([("libp2p", "alpn", f"client offered no libp2p protocol: {offered!r}")])


def makeContext(certKey, cert, isClient):
    """
    A pyOpenSSL context for libp2p TLS: TLS 1.3 only, our certificate, peer
    certificate required (servers fail a client that sends none), no session
    tickets or cache, ALPN C{"libp2p"}.  Clients set no SNI.
    """
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_3_VERSION)
    context.use_certificate(cert)
    context.use_privatekey(certKey)
    context.check_privatekey()
    context.set_options(SSL.OP_NO_TICKET)
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _acceptChain)
    if isClient:
        context.set_alpn_protos([ALPN_LIBP2P])
    else:
        context.set_alpn_select_callback(_selectALPN)
    return context


@implementer(IOpenSSLClientConnectionCreator, IOpenSSLServerConnectionCreator)
class _ConnectionCreator:
    def __init__(self, context):
        self._context = context

    def clientConnectionForTLS(self, tlsProtocol):
        return SSL.Connection(self._context, None)

    serverConnectionForTLS = clientConnectionForTLS


# --- the layer ---


#: Plaintext writes are gathered until the end of the reactor turn, or
#: until this many bytes wait, and encrypted together (small writes, such
#: as yamux window updates, would each cost a record and a lower write).
GATHER_BYTES = 64 * 1024
#: Records held for one lower write are written once they pass this size.
HOLD_BYTES = 256 * 1024
#: Ciphertext is read out of OpenSSL in pieces of this size (under glibc's
#: mmap threshold, so the buffers are recycled rather than faulted in).
RECORDS_READ = 64 * 1024


class _Lower:
    """
    The lower transport as a L{TLSLayer} sees it.

    OpenSSL makes records of at most 16 KiB and the layer writes each one
    down as it is made.  While the layer encrypts one plaintext write, or
    handles one read of ciphertext, this holds those writes and passes them
    on together: a write of 256 KiB costs the transport below one write, not
    sixteen (over a relayed connection, a few yamux frames instead of
    sixteen).  Past L{HOLD_BYTES} what is held is written at once, so a
    burst still meets the transport's push-back; and it is written before
    the transport is closed or aborted, as it would have been without
    holding.  Everything else is the transport's own.
    """

    def __init__(self, transport):
        self.transport = transport
        self.held = None
        self.heldBytes = 0
        directlyProvides(self, providedBy(transport))

    def hold(self):
        """
        Start holding writes; False if already holding (a nested call).
        """
        if self.held is not None:
            return False
        self.held = []
        return True

    def release(self):
        """
        Write what was held, in one write, and stop holding.
        """
        self._writeHeld()
        self.held = None

    def write(self, data):
        held = self.held
        if held is None:
            self.transport.write(data)
            return
        held.append(data)
        self.heldBytes += len(data)
        if self.heldBytes >= HOLD_BYTES:
            # Past this, let the transport see it (and push back).
            self._writeHeld()

    def writeSequence(self, iovec):
        self.write(b"".join(iovec))

    def _writeHeld(self):
        held = self.held
        if held:
            self.held = []
            self.heldBytes = 0
            if len(held) == 1:
                self.transport.write(held[0])
            else:
                # TCP keeps the list as it is until it sends: no copy here
                self.transport.writeSequence(held)

    def loseConnection(self):
        self._writeHeld()
        self.transport.loseConnection()

    def abortConnection(self):
        self._writeHeld()
        self.transport.abortConnection()

    def __getattr__(self, name):
        return getattr(self.transport, name)


@implementer(ILoggingContext)
class _Upper:
    """
    The upper protocol as a L{TLSLayer} sees it once the peer is verified:
    the plaintext of the records decrypted from one read of ciphertext is
    passed on in one C{dataReceived} (OpenSSL hands it over one record at
    a time), so the layers above work on 64 KiB rather than 16 KiB.
    """

    def __init__(self, layer, protocol):
        self.layer = layer
        self.protocol = protocol

    def makeConnection(self, transport):
        self.protocol.makeConnection(transport)

    def dataReceived(self, data):
        batch = self.layer._batch
        if batch is not None:
            batch.append(data)
        else:
            self.protocol.dataReceived(data)

    def connectionLost(self, reason):
        self.layer._deliverBatch()
        self.protocol.connectionLost(reason)

    def logPrefix(self):
        if ILoggingContext.providedBy(self.protocol):
            return self.protocol.logPrefix()
        return self.protocol.__class__.__name__


class TLSLayer(TLSMemoryBIOProtocol):
    """
    The TLS layer of one connection: the protocol of the lower transport and,
    once the peer is verified, the transport of the upper protocol.

    Writes are gathered (L{GATHER_BYTES}, or the end of the reactor turn)
    and encrypted together; the records made from one write, or while one
    read is handled, go down in one lower write (L{_Lower}); the plaintext
    of one read comes up in one call (L{_Upper}).

    @ivar remotePeer: the verified remote L{tau.identity.PeerID}, L{None}
        until the handshake has been verified.
    """

    remotePeer = None

    def __init__(self, factory, wrappedProtocol, clock):
        TLSMemoryBIOProtocol.__init__(self, factory, wrappedProtocol)
        self._clock = clock
        self._lower = None
        self._gathered = []
        self._gatheredBytes = 0
        self._flushCall = None
        self._batch = None
        self._plainWrites = False

    def attach(self, protocol):
        """
        Make C{protocol} the upper protocol (the peer is verified) and
        connect it.
        """
        self.wrappedProtocol = _Upper(self, protocol)
        protocol.makeConnection(self)

    # the lower side

    def makeConnection(self, transport):
        lower = self._lower = _Lower(transport)
        lower.hold()
        try:
            TLSMemoryBIOProtocol.makeConnection(self, lower)
        finally:
            lower.release()

    def dataReceived(self, data):
        lower = self._lower
        holding = lower.hold()
        outer = self._batch is None
        if outer:
            self._batch = []
        try:
            TLSMemoryBIOProtocol.dataReceived(self, data)
            if outer:
                self._deliverBatch()
        finally:
            if outer:
                self._batch = None
            if holding:
                lower.release()

    def _deliverBatch(self):
        batch = self._batch
        if batch:
            self._batch = []
            protocol = self.wrappedProtocol
            if protocol is not None:
                protocol.protocol.dataReceived(batch[0] if len(batch) == 1 else b"".join(batch))

    # the upper side

    def write(self, data):
        if not data:
            return
        if type(data) is not bytes:
            data = bytes(data)
        if not self._gathered and len(data) >= GATHER_BYTES:
            self._encrypt(data)
            return
        self._gathered.append(data)
        self._gatheredBytes += len(data)
        if self._gatheredBytes >= GATHER_BYTES:
            self._flushGathered()
        elif self._flushCall is None:
            self._flushCall = self._clock.callLater(0, self._flushGathered)

    def writeSequence(self, iovec):
        self.write(b"".join(iovec))

    def _flushGathered(self):
        if self._flushCall is not None:
            if self._flushCall.active():
                self._flushCall.cancel()
            self._flushCall = None
        gathered = self._gathered
        if gathered:
            self._gathered = []
            self._gatheredBytes = 0
            self._encrypt(gathered[0] if len(gathered) == 1 else b"".join(gathered))

    def _encrypt(self, data):
        connection = self.getHandle()
        if connection is None:
            return  # the connection is gone
        lower = self._lower
        holding = lower.hold()
        try:
            if self._plainWrites or self.disconnecting:
                TLSMemoryBIOProtocol.write(self, data)
                return
            # Twisted's write makes one record at a time and reads each
            # one back out of OpenSSL; this lets OpenSSL make them all and
            # reads them out in large pieces.  Anything unusual goes the
            # Twisted way from here on.
            view = memoryview(data)
            sent = 0
            try:
                while sent < len(data):
                    sent += connection.send(view[sent:])
            except SSL.Error:
                self._plainWrites = True
            self._readRecords(connection)
            if sent < len(data):
                TLSMemoryBIOProtocol.write(self, data[sent:])
        finally:
            if holding:
                lower.release()

    def _readRecords(self, connection):
        lower = self._lower
        while True:
            try:
                lower.write(connection.bio_read(RECORDS_READ))
            except SSL.WantReadError:
                return

    def loseConnection(self):
        self._flushGathered()
        TLSMemoryBIOProtocol.loseConnection(self)

    def abortConnection(self):
        self._dropGathered()
        TLSMemoryBIOProtocol.abortConnection(self)

    def connectionLost(self, reason):
        self._dropGathered()
        TLSMemoryBIOProtocol.connectionLost(self, reason)

    def _dropGathered(self):
        if self._flushCall is not None:
            if self._flushCall.active():
                self._flushCall.cancel()
            self._flushCall = None
        self._gathered = []
        self._gatheredBytes = 0


def _address(layer):
    try:
        return layer.getPeer()
    except Exception:
        return None


@implementer(IHandshakeListener)
class _HandshakeGate(Protocol):
    """
    The TLS layer's wrapped protocol until the peer is verified: it checks the
    certificate once OpenSSL finishes, then swaps in the upper protocol so
    plaintext flows from the layer to it with no extra hop.
    """

    def __init__(self, *, upper, expectedPeer, clock, isClient, whenSecure):
        self._upper = upper
        self._expectedPeer = expectedPeer
        self._clock = clock
        self._isClient = isClient
        self._whenSecure = whenSecure
        self._timer = None

    def startTimer(self, timeout):
        self._timer = self._clock.callLater(timeout, self._timedOut)

    def _stopTimer(self):
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _fail(self, error):
        self._stopTimer()
        if not self._whenSecure.called:
            self._whenSecure.errback(Failure(error))

    def _timedOut(self):
        self._timer = None
        log.info("TLS handshake timed out with {address}", address=_address(self.transport))
        self._fail(TLSHandshakeTimeout("TLS handshake did not complete in time"))
        self.transport.abortConnection()

    def _verifyPeer(self):
        connection = self.transport.getHandle()
        chain = connection.get_peer_cert_chain() or []
        # On the client side OpenSSL's chain includes the server's leaf; on
        # the server side it holds only what the client sent beyond it.
        count = len(chain) if self._isClient else len(chain) + 1
        if count != 1:
            raise TLSVerifyError(f"peer sent {count} certificates, libp2p allows exactly one")
        leaf = connection.get_peer_certificate(as_cryptography=True)
        if leaf is None:
            raise TLSVerifyError("peer sent no certificate")
        peer = verifyCertificate(leaf.public_bytes(serialization.Encoding.DER), self._clock.seconds())
        if self._expectedPeer is not None and peer != self._expectedPeer:
            raise TLSVerifyError(f"peer is {peer}, expected {self._expectedPeer}")
        return peer

    def handshakeCompleted(self):
        layer = self.transport
        if self._whenSecure.called:
            # Timed out or cancelled while OpenSSL was finishing.
            return
        try:
            peer = self._verifyPeer()
        except TLSVerifyError as e:
            log.info("TLS peer {address} rejected: {reason}", address=_address(layer), reason=str(e))
            self._fail(e)
            layer.failVerification(Failure(e))
            return
        self._stopTimer()
        layer.remotePeer = peer
        layer.attach(self._upper)
        self._whenSecure.callback(peer)

    def dataReceived(self, data):
        # Never reached: the layer delivers plaintext only after the
        # handshake, when the upper protocol has replaced us.
        pass

    def connectionLost(self, reason):
        if not self._whenSecure.called:
            error = reason.value
            if not isinstance(error, TLSError):
                error = TLSHandshakeFailed(f"connection lost during the TLS handshake: {error}")
            self._fail(error)
        self._stopTimer()


class TLSSecurity:
    """
    libp2p TLS for one host: its certificate and OpenSSL contexts, made once
    and shared by all its connections.

    @param hostKey: the host's L{tau.identity.PrivateKey}.
    @param clock: an L{IReactorTime}; gives the time for certificates and
        their checks, the handshake timeout and write aggregation.
    @param certificate: C{(certPrivateKey, certificate)} to present instead of
        a fresh one from L{makeCertificate}; for tests and interop checks.
    """

    protocolID = PROTOCOL_ID

    def __init__(self, hostKey, clock, *, certificate=None):
        self.hostKey = hostKey
        self.clock = clock
        self._certificate = certificate
        self._creators = {}
        self._factories = {}

    def certificate(self):
        """
        The C{(certPrivateKey, certificate)} this host presents.
        """
        if self._certificate is None:
            self._certificate = makeCertificate(self.hostKey, self.clock.seconds())
        return self._certificate

    def _factory(self, isClient):
        factory = self._factories.get(isClient)
        if factory is None:
            certKey, cert = self.certificate()
            creator = _ConnectionCreator(makeContext(certKey, cert, isClient))
            factory = TLSMemoryBIOFactory(creator, isClient, Factory(), clock=self.clock)
            self._factories[isClient] = factory
        return factory

    def secure(
        self,
        transport,
        *,
        isClient,
        protocol,
        expectedPeer=None,
        initialBytes=b"",
        timeout=HANDSHAKE_TIMEOUT,
    ):
        """
        Start libp2p TLS over C{transport}, an established byte stream.

        The caller makes the lower transport's protocol deliver to the
        returned layer: every C{dataReceived(data)} as
        C{layer.dataReceived(data)}, the final C{connectionLost(reason)} as
        C{layer.connectionLost(reason)} (or sets C{transport.protocol = layer}
        where the transport allows it, as TCP does).  Bytes that arrived
        before the layer existed (read past the multistream-select answer)
        are passed as C{initialBytes}.

        The layer writes ciphertext to C{transport}, closes it with
        C{loseConnection} (after a TLS close_notify) or C{abortConnection},
        and registers the upper protocol's producer on it, so C{transport}
        must provide L{ITransport}, C{abortConnection} and
        L{IConsumer}.

        Once OpenSSL completes and the peer's certificate passes
        L{verifyCertificate} (and names C{expectedPeer}, when given), the
        layer calls C{protocol.makeConnection(layer)}: the upper protocol
        writes plaintext to the layer, may register a producer on it and
        gets its C{connectionLost} from it.  Then the Deferred fires, before
        any application byte is delivered.

        On failure the Deferred fails with L{TLSVerifyError},
        L{TLSHandshakeTimeout} (after C{timeout} seconds) or
        L{TLSHandshakeFailed}, the connection is aborted, and C{protocol}
        never hears of it.  Cancelling the Deferred aborts the connection.

        @param isClient: True on the side that sends the ClientHello (the
            dialer, or the security initiator of a relayed connection).
        @param expectedPeer: the L{tau.identity.PeerID} the remote must
            prove; required by the spec on the client side.
        @return: C{(layer, Deferred[PeerID])}
        """
        factory = self._factory(isClient)

        def cancel(d):
            gate._stopTimer()
            layer.abortConnection()

        whenSecure = Deferred(cancel)
        gate = _HandshakeGate(
            upper=protocol,
            expectedPeer=expectedPeer,
            clock=self.clock,
            isClient=isClient,
            whenSecure=whenSecure,
        )
        layer = TLSLayer(factory, gate, self.clock)
        gate.startTimer(timeout)
        layer.makeConnection(transport)
        if initialBytes and not whenSecure.called:
            layer.dataReceived(initialBytes)
        return layer, whenSecure


def secure(
    transport,
    *,
    isClient,
    hostKey,
    clock,
    protocol,
    expectedPeer=None,
    initialBytes=b"",
    timeout=HANDSHAKE_TIMEOUT,
):
    """
    L{TLSSecurity.secure} with a one-off L{TLSSecurity} (a fresh certificate
    and context).  A host that makes many connections keeps one
    L{TLSSecurity} instead.
    """
    return TLSSecurity(hostKey, clock).secure(
        transport,
        isClient=isClient,
        protocol=protocol,
        expectedPeer=expectedPeer,
        initialBytes=initialBytes,
        timeout=timeout,
    )
