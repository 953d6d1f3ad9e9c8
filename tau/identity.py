"""
Node identity: libp2p keys and peer IDs.

Keys are encoded as the libp2p ``PublicKey``/``PrivateKey`` protobufs
(``tau/pb/crypto.proto``).  A peer ID is the multihash of the encoded public
key: the identity multihash when the encoding is at most 42 bytes (Ed25519,
secp256k1: the ID carries the key), sha2-256 otherwise (RSA, ECDSA).

tau's own keys are Ed25519.  Public keys of every libp2p key type can be
decoded and used to verify signatures, because remote peers may use them.
"""

import hashlib

import base58
import cid
import multihash
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from google.protobuf.message import DecodeError

from tau.pb import crypto_pb2

KEY_TYPES = {
    crypto_pb2.RSA: "RSA",
    crypto_pb2.Ed25519: "Ed25519",
    crypto_pb2.Secp256k1: "Secp256k1",
    crypto_pb2.ECDSA: "ECDSA",
}

# The largest encoded key we accept from anyone (an RSA-8192 SPKI is ~1.1 KB).
MAX_KEY_BYTES = 4096
# Keys whose protobuf encoding is at most this long are inlined in the peer ID.
MAX_INLINE_KEY_LENGTH = 42
# multicodec code of libp2p-key, used for the CIDv1 text form of peer IDs.
LIBP2P_KEY_CODEC = "libp2p-key"


class InvalidKey(ValueError):
    """
    A key or peer ID could not be decoded, or is of a kind we refuse.
    """


def _encodePublic(keyType, data):
    return crypto_pb2.PublicKey(Type=keyType, Data=data).SerializeToString(deterministic=True)


class PublicKey:
    """
    A libp2p public key of any supported type.  Use L{PublicKey.fromProtobuf}.
    """

    keyType = None

    def __init__(self, key, raw):
        self._key = key
        self._raw = raw

    @classmethod
    def fromProtobuf(cls, data):
        """
        Decode a protobuf-encoded libp2p public key.

        @raise InvalidKey: if C{data} is not a valid public key.
        """
        if len(data) > MAX_KEY_BYTES:
            raise InvalidKey(f"public key too long ({len(data)} bytes)")
        msg = crypto_pb2.PublicKey()
        try:
            msg.ParseFromString(data)
        except DecodeError as e:
            raise InvalidKey(f"not a libp2p public key: {e}") from None
        if not msg.IsInitialized():
            raise InvalidKey("libp2p public key misses its type or data")
        keyClass = _PUBLIC_CLASSES.get(msg.Type)
        if keyClass is None:
            raise InvalidKey(f"unsupported key type {msg.Type}")
        return keyClass.fromRaw(msg.Data)

    def toProtobuf(self):
        """
        The deterministic libp2p protobuf encoding of this key.
        """
        return _encodePublic(self.keyType, self._raw)

    def raw(self):
        """
        The key's own bytes, as the C{Data} field of the protobuf carries them.
        """
        return self._raw

    def peerID(self):
        return PeerID.fromPublicKey(self)

    def verify(self, signature, data):
        """
        @return: True when C{signature} is this key's signature of C{data}.
        """
        try:
            self._verify(signature, data)
        except (InvalidSignature, ValueError):
            return False
        return True

    def __eq__(self, other):
        if not isinstance(other, PublicKey):
            return NotImplemented
        return self.toProtobuf() == other.toProtobuf()

    def __hash__(self):
        return hash(self.toProtobuf())

    def __repr__(self):
        return f"<{type(self).__name__} {self.peerID()}>"


class Ed25519PublicKey(PublicKey):
    keyType = crypto_pb2.Ed25519

    @classmethod
    def fromRaw(cls, raw):
        if len(raw) != 32:
            raise InvalidKey(f"Ed25519 public key must be 32 bytes, not {len(raw)}")
        return cls(ed25519.Ed25519PublicKey.from_public_bytes(raw), bytes(raw))

    def _verify(self, signature, data):
        self._key.verify(signature, data)


class Secp256k1PublicKey(PublicKey):
    keyType = crypto_pb2.Secp256k1

    @classmethod
    def fromRaw(cls, raw):
        try:
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), raw)
        except (ValueError, UnsupportedAlgorithm) as e:
            raise InvalidKey(f"bad secp256k1 public key: {e}") from None
        return cls(key, bytes(raw))

    def _verify(self, signature, data):
        self._key.verify(signature, data, ec.ECDSA(hashes.SHA256()))


class _DERPublicKey(PublicKey):
    @classmethod
    def fromRaw(cls, raw):
        try:
            key = serialization.load_der_public_key(raw)
        except (ValueError, UnsupportedAlgorithm) as e:
            raise InvalidKey(f"bad {KEY_TYPES[cls.keyType]} public key: {e}") from None
        if not isinstance(key, cls.keyClass):
            raise InvalidKey(f"key data is not an {KEY_TYPES[cls.keyType]} key")
        return cls(key, bytes(raw))


class ECDSAPublicKey(_DERPublicKey):
    keyType = crypto_pb2.ECDSA
    keyClass = ec.EllipticCurvePublicKey

    def _verify(self, signature, data):
        self._key.verify(signature, data, ec.ECDSA(hashes.SHA256()))


class RSAPublicKey(_DERPublicKey):
    keyType = crypto_pb2.RSA
    keyClass = rsa.RSAPublicKey

    @classmethod
    def fromRaw(cls, raw):
        key = super().fromRaw(raw)
        if key._key.key_size < 2048:
            raise InvalidKey(f"RSA keys under 2048 bits are refused ({key._key.key_size})")
        return key

    def _verify(self, signature, data):
        self._key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())


_PUBLIC_CLASSES = {
    crypto_pb2.Ed25519: Ed25519PublicKey,
    crypto_pb2.Secp256k1: Secp256k1PublicKey,
    crypto_pb2.ECDSA: ECDSAPublicKey,
    crypto_pb2.RSA: RSAPublicKey,
}


class PrivateKey:
    """
    An Ed25519 host key: tau's identity.
    """

    keyType = crypto_pb2.Ed25519

    def __init__(self, key):
        self._key = key
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self._public = Ed25519PublicKey(key.public_key(), raw)

    @classmethod
    def generate(cls):
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def fromProtobuf(cls, data):
        """
        Decode a protobuf-encoded libp2p private key (Ed25519 only).  The key data
        is the 64-byte C{seed || public} form, or the legacy 96-byte form.

        @raise InvalidKey: if it is not a usable Ed25519 private key.
        """
        msg = crypto_pb2.PrivateKey()
        try:
            msg.ParseFromString(data)
        except DecodeError as e:
            raise InvalidKey(f"not a libp2p private key: {e}") from None
        if not msg.IsInitialized():
            raise InvalidKey("libp2p private key misses its type or data")
        if msg.Type != crypto_pb2.Ed25519:
            name = KEY_TYPES.get(msg.Type, str(msg.Type))
            raise InvalidKey(f"only Ed25519 host keys are supported, not {name}")
        if len(msg.Data) not in (64, 96):
            raise InvalidKey(f"Ed25519 private key must be 64 bytes, not {len(msg.Data)}")
        key = cls(ed25519.Ed25519PrivateKey.from_private_bytes(msg.Data[:32]))
        if msg.Data[32:64] != key._public.raw():
            raise InvalidKey("Ed25519 private key: the public half does not match the seed")
        return key

    def toProtobuf(self):
        seed = self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return crypto_pb2.PrivateKey(
            Type=self.keyType, Data=seed + self._public.raw()
        ).SerializeToString(deterministic=True)

    def publicKey(self):
        return self._public

    def peerID(self):
        return self._public.peerID()

    def sign(self, data):
        return self._key.sign(data)

    def cryptographyKey(self):
        """
        The underlying L{cryptography} key object.
        """
        return self._key

    def __repr__(self):
        return f"<PrivateKey {self.peerID()}>"


class PeerID:
    """
    A libp2p peer ID: the multihash of a public key.

    C{str()} gives the base58btc form (C{12D3KooW...}); L{PeerID.fromString}
    also reads the CIDv1 forms (C{bafz...}, C{k51...}).
    """

    __slots__ = ("_mh", "_text")

    def __init__(self, mh):
        self._mh = bytes(mh)
        self._text = None

    @classmethod
    def fromBytes(cls, data):
        """
        @raise InvalidKey: unless C{data} is an identity or sha2-256 multihash.
        """
        try:
            decoded = multihash.decode(bytes(data))
        except Exception as e:
            raise InvalidKey(f"peer ID is not a multihash: {e}") from None
        if decoded.code == 0x00:
            if len(decoded.digest) > MAX_INLINE_KEY_LENGTH:
                raise InvalidKey("identity peer ID longer than 42 bytes")
            PublicKey.fromProtobuf(decoded.digest)
        elif decoded.code != 0x12 or len(decoded.digest) != 32:
            raise InvalidKey(f"peer ID uses unsupported hash {decoded.name}")
        return cls(data)

    @classmethod
    def fromString(cls, text):
        """
        Parse a peer ID in base58btc (C{Qm...}, C{12D3...}, C{16U...}) or as a
        CIDv1 with the libp2p-key codec.

        @raise InvalidKey: when C{text} is not a peer ID.
        """
        if not isinstance(text, str) or not text:
            raise InvalidKey("empty peer ID")
        if text[0] in "1Q":
            try:
                return cls.fromBytes(base58.b58decode(text))
            except ValueError as e:
                raise InvalidKey(f"bad peer ID {text!r}: {e}") from None
        try:
            parsed = cid.from_string(text)
        except Exception as e:
            raise InvalidKey(f"bad peer ID {text!r}: {e}") from None
        if parsed.version != 1 or parsed.codec != LIBP2P_KEY_CODEC:
            raise InvalidKey(f"bad peer ID {text!r}: a CID with codec {parsed.codec}")
        return cls.fromBytes(parsed.multihash)

    @classmethod
    def fromPublicKey(cls, key):
        encoded = key.toProtobuf()
        if len(encoded) <= MAX_INLINE_KEY_LENGTH:
            return cls(multihash.encode(encoded, 0x00))
        return cls(multihash.encode(hashlib.sha256(encoded).digest(), 0x12))

    def toBytes(self):
        return self._mh

    def toCIDString(self):
        """
        The CIDv1 (libp2p-key, base32) text form: C{bafz...}.
        """
        return cid.make_cid(1, LIBP2P_KEY_CODEC, self._mh).encode("base32").decode("ascii")

    def extractPublicKey(self):
        """
        The public key inlined in an identity peer ID, or L{None}.
        """
        if self._mh[0] != 0:
            return None
        return PublicKey.fromProtobuf(multihash.decode(self._mh).digest)

    def matches(self, key):
        """
        True when C{key} (a L{PublicKey}) is the key this ID names.
        """
        return PeerID.fromPublicKey(key) == self

    def __str__(self):
        if self._text is None:
            self._text = base58.b58encode(self._mh).decode("ascii")
        return self._text

    def __repr__(self):
        return f"PeerID({str(self)!r})"

    def __eq__(self, other):
        if not isinstance(other, PeerID):
            return NotImplemented
        return self._mh == other._mh

    def __lt__(self, other):
        return self._mh < other._mh

    def __hash__(self):
        return hash(self._mh)
