"""
What auth keeps secret at rest, and the node secrets it derives.

A 32-byte master key lives in the node's root, C{ROOT/auth/master.key},
created mode 0600 on first use.  Each secret value (hook secrets, provider
tokens, deploy private keys, TLS private keys) is sealed with AES-256-GCM
under a key derived from it, a fresh 12-byte nonce per value, and the
record's key as associated data, so a sealed value copied into another
record does not open.  A sealed value is CBOR C{{"k": key id, "f": key
fingerprint, "n": nonce, "c": ciphertext}}; the key id (C{"v1"}) names the
derivation, so a future key can be told from this one, and the
fingerprint names the master key.

The store is replicated: every auth node of a cloud must hold the same
master key (copy C{ROOT/auth/master.key} to each, as the swarm key), or a
value sealed on one does not open on another, which the error says.

The same master key derives the key of domain validation tokens
(HMAC-SHA256) and the admin credential of the HTTP API.
"""

import base64
import hashlib
import hmac
import os

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from twisted.internet.threads import deferToThreadPool

KEY_FILE = "master.key"
#: the admin credential, for the node's operator (C{Authorization: admin
#: <its text>})
ADMIN_FILE = "admin-token"
KEY_ID = "v1"


class SealError(ValueError):
    """
    A sealed value that does not open (wrong key, wrong record, altered).
    """


def _derive(master, purpose):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"tau-auth/" + purpose).derive(master)


def _create(path, data):
    """
    Write C{data} to a new file C{path} (0600); False when it exists.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def _readOrCreate(folder):
    """
    The master key in C{folder}, created (0600, folder 0700) when absent,
    with the admin token file beside it.  Runs in a thread.
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / KEY_FILE
    key = os.urandom(32)
    if not _create(path, key):
        key = path.read_bytes()
        if len(key) != 32:
            raise ValueError(f"{path}: expected a 32-byte key, found {len(key)} bytes")
    secrets = Secrets(key)
    _create(folder / ADMIN_FILE, secrets.adminToken().encode("ascii") + b"\n")
    return secrets


async def loadSecrets(folder, reactor):
    """
    The L{Secrets} of the key in C{folder} (created on first use).
    """
    return await deferToThreadPool(reactor, reactor.getThreadPool(), _readOrCreate, folder)


class Secrets:
    """
    Seal and open values; derive node secrets.  Cheap CPU work (one AES-GCM
    or HMAC over a few kilobytes), done in the reactor thread.
    """

    def __init__(self, master):
        self._aead = AESGCM(_derive(master, b"seal/" + KEY_ID.encode()))
        self.fingerprint = _derive(master, b"fingerprint")[:8].hex()
        self._domains = _derive(master, b"domain-validation")
        self._admin = _derive(master, b"admin-token")

    def seal(self, value, context):
        """
        C{value} (bytes or text) sealed for the record C{context} (bytes).
        """
        if isinstance(value, str):
            value = value.encode("utf-8")
        nonce = os.urandom(12)
        return cbor2.dumps({"k": KEY_ID, "f": self.fingerprint, "n": nonce,
                            "c": self._aead.encrypt(nonce, value, context)})

    def open(self, sealed, context):
        """
        The bytes sealed in C{sealed} for C{context}.

        @raise SealError: when it does not open.
        """
        try:
            box = cbor2.loads(sealed)
            if box["k"] != KEY_ID:
                raise SealError(f"sealed with key {box['k']!r}, this node has {KEY_ID!r}")
            if box["f"] != self.fingerprint:
                raise SealError(f"sealed under master key {box['f']}, this node holds {self.fingerprint}: "
                                "every auth node of the cloud needs the same ROOT/auth/master.key")
            return self._aead.decrypt(box["n"], box["c"], context)
        except SealError:
            raise
        except (InvalidTag, ValueError, KeyError, TypeError, cbor2.CBORDecodeError) as e:
            raise SealError(f"a sealed value does not open ({e.__class__.__name__})") from None

    def domainToken(self, fqdn, project):
        """
        The validation token of C{fqdn} for C{project}: an HMAC the node can
        check later without storing it.
        """
        mac = hmac.new(self._domains, f"{fqdn.lower()}\n{project}".encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def checkDomainToken(self, fqdn, project, token):
        return hmac.compare_digest(self.domainToken(fqdn, project), token)

    def adminToken(self):
        """
        The credential of the HTTP API's admin routes (C{Authorization:
        admin <token>}); the operator reads it in C{ROOT/auth/admin-token}.
        """
        return base64.urlsafe_b64encode(self._admin).rstrip(b"=").decode("ascii")
