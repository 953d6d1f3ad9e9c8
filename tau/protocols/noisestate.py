"""
The Noise Protocol Framework (revision 34), sans-IO, for the one protocol
libp2p uses: C{Noise_XX_25519_ChaChaPoly_SHA256}.

L{HandshakeState} runs the XX pattern::

    -> e
    <- e, ee, s, es
    -> s, se

and, once the three messages are through, L{HandshakeState.split} gives the
two L{CipherState}s of the transport phase.  Everything here works on whole
Noise messages (at most L{MAX_MESSAGE} bytes); framing them on a byte stream
is the caller's business (L{tau.protocols.noise}).

The primitives are C{cryptography}'s: X25519, ChaCha20-Poly1305 (IETF, a
96-bit nonce of four zero bytes and the 64-bit little-endian counter) and
HKDF over HMAC-SHA256 (Noise's HKDF is RFC 5869's with the chaining key as
salt and no info).
"""

import hashlib
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"
#: Bytes of an X25519 public key, and of a SHA-256 hash.
DHLEN = 32
HASHLEN = 32
#: Bytes of the Poly1305 tag on every encrypted message.
TAGLEN = 16
#: The largest Noise message (handshake or transport), tag included.
MAX_MESSAGE = 65535
#: The largest plaintext of one transport message.
MAX_PLAINTEXT = MAX_MESSAGE - TAGLEN
#: 2^64-1 is reserved: a CipherState refuses to use it, so nonces never wrap.
MAX_NONCE = 2**64 - 1

#: The XX pattern: the tokens of each message, the initiator sends the even ones.
XX = (("e",), ("e", "ee", "s", "es"), ("s", "se"))

_NONCE = struct.Struct("<4xQ")


class NoiseError(Exception):
    """
    A Noise message was malformed or failed to authenticate, or a state
    was used out of turn.
    """


class NonceExhausted(NoiseError):
    """
    A CipherState used all its nonces: the connection must end (it would
    otherwise reuse a nonce).
    """


def _publicBytes(private):
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _dh(private, publicRaw):
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(publicRaw))
    except ValueError as e:
        # cryptography refuses low-order points (an all-zero shared secret).
        raise NoiseError(f"bad X25519 public key: {e}") from None


def hkdf(chainingKey, inputKeyMaterial):
    """
    Noise's C{HKDF(ck, ikm, 2)}: two 32-byte outputs.
    """
    out = HKDF(algorithm=hashes.SHA256(), length=2 * HASHLEN, salt=chainingKey, info=b"").derive(inputKeyMaterial)
    return out[:HASHLEN], out[HASHLEN:]


class CipherState:
    """
    A key and a nonce counter: ChaCha20-Poly1305 with associated data.

    Without a key (the start of a handshake) plaintext passes through.  The
    counter goes up by one per message and stops at L{MAX_NONCE}: from then
    on every call raises L{NonceExhausted}.  A message that fails to
    authenticate does not use up a nonce.

    @ivar n: the next nonce.
    """

    __slots__ = ("_aead", "n")

    def __init__(self, key=None):
        self._aead = None if key is None else ChaCha20Poly1305(key)
        self.n = 0

    def hasKey(self):
        return self._aead is not None

    def encryptWithAd(self, ad, plaintext):
        aead = self._aead
        if aead is None:
            return bytes(plaintext)
        n = self.n
        if n >= MAX_NONCE:
            raise NonceExhausted("nonces exhausted: the connection must be closed")
        ciphertext = aead.encrypt(_NONCE.pack(n), plaintext, ad)
        self.n = n + 1
        return ciphertext

    def decryptWithAd(self, ad, ciphertext):
        aead = self._aead
        if aead is None:
            return bytes(ciphertext)
        n = self.n
        if n >= MAX_NONCE:
            raise NonceExhausted("nonces exhausted: the connection must be closed")
        try:
            plaintext = aead.decrypt(_NONCE.pack(n), ciphertext, ad)
        except InvalidTag:
            raise NoiseError("message failed to authenticate") from None
        self.n = n + 1
        return plaintext


class SymmetricState:
    """
    The chaining key C{ck}, the handshake hash C{h} and the handshake's
    L{CipherState}.
    """

    def __init__(self, protocolName):
        if len(protocolName) <= HASHLEN:
            h = protocolName.ljust(HASHLEN, b"\x00")
        else:
            h = hashlib.sha256(protocolName).digest()
        self.h = h
        self.ck = h
        self.cipher = CipherState()

    def mixKey(self, inputKeyMaterial):
        self.ck, key = hkdf(self.ck, inputKeyMaterial)
        self.cipher = CipherState(key)

    def mixHash(self, data):
        self.h = hashlib.sha256(self.h + data).digest()

    def encryptAndHash(self, plaintext):
        ciphertext = self.cipher.encryptWithAd(self.h, plaintext)
        self.mixHash(ciphertext)
        return ciphertext

    def decryptAndHash(self, ciphertext):
        plaintext = self.cipher.decryptWithAd(self.h, ciphertext)
        self.mixHash(ciphertext)
        return plaintext

    def split(self):
        first, second = hkdf(self.ck, b"")
        return CipherState(first), CipherState(second)


class HandshakeState:
    """
    One side of a C{Noise_XX_25519_ChaChaPoly_SHA256} handshake.

    Call L{writeMessage} and L{readMessage} in turn (the initiator writes
    first); after the third message L{complete} is true and L{split} gives
    the transport ciphers.  Any L{NoiseError} ends the handshake: the state
    must not be used again.

    @param initiator: True on the side that sends the first message.
    @param static: our static L{X25519PrivateKey}.
    @param prologue: bytes both sides mix in first (libp2p uses none).
    @param ephemeral: our ephemeral key; a fresh one when not given (fixed
        ones are for known-answer tests only).
    @ivar rs: the remote's static public key (raw), once received.
    @ivar re: the remote's ephemeral public key (raw), once received.
    """

    def __init__(self, initiator, static, prologue=b"", ephemeral=None):
        self.initiator = initiator
        self.s = static
        self.e = ephemeral
        self.rs = None
        self.re = None
        self._symmetric = SymmetricState(PROTOCOL_NAME)
        self._symmetric.mixHash(prologue)
        self._step = 0
        self._failed = False

    @property
    def complete(self):
        return self._step == len(XX)

    @property
    def handshakeHash(self):
        return self._symmetric.h

    @property
    def staticPublic(self):
        """
        Our static public key (raw bytes).
        """
        return _publicBytes(self.s)

    def writing(self):
        """
        True when the next message is ours to write.
        """
        return not self.complete and (self._step % 2 == 0) == self.initiator

    def _begin(self, write):
        if self._failed:
            raise NoiseError("the handshake already failed")
        if self.complete:
            raise NoiseError("the handshake is complete")
        if self.writing() != write:
            raise NoiseError("not our turn to " + ("write" if write else "read"))
        tokens = XX[self._step]
        self._step += 1
        return tokens

    def _mixDH(self, token):
        # (our key, their key) for each DH token, seen from this side.
        local, remote = token[0], token[1]
        if not self.initiator:
            local, remote = remote, local
        ours = self.e if local == "e" else self.s
        theirs = self.re if remote == "e" else self.rs
        self._symmetric.mixKey(_dh(ours, theirs))

    def writeMessage(self, payload=b""):
        """
        The next handshake message, carrying C{payload}.

        @raise NoiseError: out of turn, or the message would pass
            L{MAX_MESSAGE} bytes.
        """
        tokens = self._begin(write=True)
        symmetric = self._symmetric
        out = []
        try:
            for token in tokens:
                if token == "e":
                    if self.e is None:
                        self.e = X25519PrivateKey.generate()
                    public = _publicBytes(self.e)
                    symmetric.mixHash(public)
                    out.append(public)
                elif token == "s":
                    out.append(symmetric.encryptAndHash(_publicBytes(self.s)))
                else:
                    self._mixDH(token)
            out.append(symmetric.encryptAndHash(payload))
        except NoiseError:
            self._failed = True
            raise
        message = b"".join(out)
        if len(message) > MAX_MESSAGE:
            self._failed = True
            raise NoiseError(f"handshake message of {len(message)} bytes, the limit is {MAX_MESSAGE}")
        return message

    def readMessage(self, message):
        """
        Read the remote's next handshake message.

        @return: its payload.
        @raise NoiseError: out of turn, too long or too short, a bad key, or
            a part that fails to authenticate.
        """
        tokens = self._begin(write=False)
        symmetric = self._symmetric
        message = bytes(message)
        try:
            if len(message) > MAX_MESSAGE:
                raise NoiseError(f"handshake message of {len(message)} bytes, the limit is {MAX_MESSAGE}")
            offset = 0
            for token in tokens:
                if token == "e":
                    public = message[offset:offset + DHLEN]
                    if len(public) != DHLEN:
                        raise NoiseError("handshake message too short for an ephemeral key")
                    offset += DHLEN
                    self.re = public
                    symmetric.mixHash(public)
                elif token == "s":
                    size = DHLEN + (TAGLEN if symmetric.cipher.hasKey() else 0)
                    part = message[offset:offset + size]
                    if len(part) != size:
                        raise NoiseError("handshake message too short for a static key")
                    offset += size
                    self.rs = symmetric.decryptAndHash(part)
                else:
                    self._mixDH(token)
            rest = message[offset:]
            if symmetric.cipher.hasKey() and len(rest) < TAGLEN:
                raise NoiseError("handshake message too short for its payload's tag")
            return symmetric.decryptAndHash(rest)
        except NoiseError:
            self._failed = True
            raise

    def split(self):
        """
        The transport ciphers, C{(send, receive)} for this side.

        @raise NoiseError: before the handshake is complete.
        """
        if not self.complete or self._failed:
            raise NoiseError("the handshake is not complete")
        first, second = self._symmetric.split()
        return (first, second) if self.initiator else (second, first)
