"""
The certificates of libp2p TLS (libp2p/specs tls/tls.md): a fresh
self-signed certificate per connection that carries the host key and its
signature in the libp2p extension (OID 1.3.6.1.4.1.53594.1.1), made by
L{makeCertificate} and checked the libp2p way by L{verifyCertificate}.
"""

import secrets
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier

from tau.identity import InvalidKey, PublicKey

EXTENSION_OID = ObjectIdentifier("1.3.6.1.4.1.53594.1.1")
SIGNATURE_PREFIX = b"libp2p-tls-handshake:"

# Validity of our certificates, as go-libp2p and js-libp2p make them.
CERT_NOT_BEFORE_SLACK = 3600.0
CERT_LIFETIME = 100 * 365 * 24 * 3600.0

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
