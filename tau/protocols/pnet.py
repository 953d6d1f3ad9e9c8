"""
libp2p private networks, PSK v1 (libp2p/specs pnet/Private-Networks-PSK-V1.md).

All nodes of a private network share a 256-bit key (the C{swarm.key} file).
Every connection is wrapped before anything else runs on it: each side sends
a random 24-byte nonce, then everything it sends is XORed with the XSalsa20
keystream of (PSK, its own nonce); what it receives is decrypted with the
keystream of (PSK, the remote's nonce).  There is no authentication here: a
peer with another key just produces garbage, which the next layer
(multistream-select) rejects.

XSalsa20 is libsodium's C{crypto_stream_xsalsa20_xor_ic}, called through
ctypes (libsodium is Debian's C{libsodium23}); the keystream position is
carried across calls, so writes of any size can follow each other.

Wiring (same style as L{tau.protocols.tls.TLSSecurity.secure})::

    layer = wrap(tcpTransport, psk, protocol=upper)
    # the TCP protocol forwards dataReceived/connectionLost to layer,
    # or: tcpTransport.protocol = layer
"""

import base64
import binascii
import ctypes
import ctypes.util
import os

from twisted.internet.interfaces import IConsumer, IProtocol, ITransport
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()

KEY_SIZE = 32
NONCE_SIZE = 24
SWARM_KEY_HEADER = b"/key/swarm/psk/1.0.0/"
_BLOCK = 64


# --- XSalsa20 from libsodium ---


def _loadSodium():
    candidates = []
    found = ctypes.util.find_library("sodium")
    if found:
        candidates.append(found)
    candidates += ["libsodium.so.23", "libsodium.so.26", "libsodium.so", "libsodium.dylib"]
    errors = []
    for name in candidates:
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            errors.append(str(e))
            continue
        if lib.sodium_init() < 0:
            raise ImportError("libsodium failed to initialise")
        xor = lib.crypto_stream_xsalsa20_xor_ic
        xor.argtypes = [
            ctypes.c_void_p,  # out
            ctypes.c_char_p,  # in
            ctypes.c_ulonglong,  # length
            ctypes.c_char_p,  # nonce (24)
            ctypes.c_uint64,  # initial 64-byte block counter
            ctypes.c_char_p,  # key (32)
        ]
        xor.restype = ctypes.c_int
        return xor
    raise ImportError(
        "libsodium is needed for private networks (apt-get install libsodium23): " + "; ".join(errors)
    )


_xsalsa20XorIC = _loadSodium()


class XSalsa20:
    """
    An XSalsa20 keystream, XORed over successive chunks of a byte stream.

    L{process} continues where the previous call stopped, so splitting a
    stream into chunks of any size gives the same result as one call.
    """

    __slots__ = ("_key", "_nonce", "_position")

    def __init__(self, key, nonce):
        if len(key) != KEY_SIZE:
            raise ValueError(f"XSalsa20 key must be {KEY_SIZE} bytes, not {len(key)}")
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"XSalsa20 nonce must be {NONCE_SIZE} bytes, not {len(nonce)}")
        self._key = bytes(key)
        self._nonce = bytes(nonce)
        self._position = 0

    def process(self, data):
        """
        Encrypt or decrypt (the same operation) the next C{len(data)} bytes.
        """
        length = len(data)
        if not length:
            return b""
        if type(data) is not bytes:
            data = bytes(data)
        skip = self._position % _BLOCK
        if skip:
            # Start mid-block: run the block from its beginning over a zero
            # prefix and drop the prefix's output.
            data = bytes(skip) + data
        out = ctypes.create_string_buffer(length + skip)
        _xsalsa20XorIC(out, data, length + skip, self._nonce, self._position // _BLOCK, self._key)
        self._position += length
        if skip:
            return ctypes.string_at(ctypes.addressof(out) + skip, length)
        return out.raw


# --- swarm.key files ---


def parseSwarmKey(data):
    """
    Read a C{swarm.key} file::

        /key/swarm/psk/1.0.0/
        /base16/
        <64 hex digits>

    The encoding line may also be C{/base64/} or C{/bin/} (raw bytes), as go
    accepts.  Trailing whitespace after a text key is allowed.

    @param data: the file's bytes.
    @return: the 32-byte pre-shared key.
    @raise ValueError: saying what is wrong with the file.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    header, newline, rest = data.partition(b"\n")
    if not newline or header.rstrip(b"\r") != SWARM_KEY_HEADER:
        raise ValueError(
            f"swarm key must start with the line {SWARM_KEY_HEADER.decode()!r}, "
            f"found {header[:40]!r}"
        )
    encoding, newline, body = rest.partition(b"\n")
    encoding = encoding.rstrip(b"\r")
    if not newline:
        raise ValueError("swarm key has no encoding line (/base16/, /base64/ or /bin/)")
    if encoding == b"/bin/":
        if len(body) == KEY_SIZE + 1 and body.endswith(b"\n"):
            body = body[:-1]
        key = body
    elif encoding == b"/base16/":
        text = body.strip()
        try:
            key = binascii.unhexlify(text)
        except (binascii.Error, ValueError):
            raise ValueError("swarm key is not valid hex (base16)") from None
    elif encoding == b"/base64/":
        text = body.strip()
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("swarm key is not valid base64") from None
    else:
        raise ValueError(
            f"swarm key encoding must be /base16/, /base64/ or /bin/, not {encoding[:40]!r}"
        )
    if len(key) != KEY_SIZE:
        raise ValueError(f"swarm key must be {KEY_SIZE} bytes (256 bits), not {len(key)}")
    return key


def formatSwarmKey(psk):
    """
    The C{swarm.key} file text (base16) for a 32-byte key.
    """
    if len(psk) != KEY_SIZE:
        raise ValueError(f"swarm key must be {KEY_SIZE} bytes, not {len(psk)}")
    return SWARM_KEY_HEADER + b"\n/base16/\n" + binascii.hexlify(psk) + b"\n"


def generateSwarmKey():
    """
    A new random swarm key, as C{swarm.key} file text.
    """
    return formatSwarmKey(os.urandom(KEY_SIZE))


# --- the layer ---


@implementer(IProtocol, ITransport, IConsumer)
class PrivateNetworkLayer:
    """
    The pnet layer of one connection: the protocol of the lower transport and
    the transport of the upper protocol.

    The upper protocol is connected at once and may write at once: our nonce
    goes out first, and our direction needs nothing from the remote.  Bytes
    from the remote are held until its nonce is complete.

    Other attributes (C{setTcpNoDelay}, ...) are looked up on the lower
    transport.
    """

    def __init__(self, psk, protocol, *, randomBytes=os.urandom):
        if len(psk) != KEY_SIZE:
            raise ValueError(f"pre-shared key must be {KEY_SIZE} bytes, not {len(psk)}")
        self._psk = bytes(psk)
        self._randomBytes = randomBytes
        self.wrappedProtocol = protocol
        self.transport = None
        self.connected = False
        self.disconnecting = False
        self._encrypt = None
        self._decrypt = None
        self._pendingNonce = b""

    # IProtocol, facing the lower transport

    def makeConnection(self, transport):
        self.transport = transport
        self.connected = True
        nonce = self._randomBytes(NONCE_SIZE)
        self._encrypt = XSalsa20(self._psk, nonce)
        transport.write(nonce)
        self.wrappedProtocol.makeConnection(self)

    def connectionMade(self):
        pass

    def logPrefix(self):
        return "pnet"

    def dataReceived(self, data):
        decrypt = self._decrypt
        if decrypt is None:
            data = self._pendingNonce + data
            if len(data) < NONCE_SIZE:
                self._pendingNonce = data
                return
            self._pendingNonce = b""
            self._decrypt = decrypt = XSalsa20(self._psk, data[:NONCE_SIZE])
            data = data[NONCE_SIZE:]
            if not data:
                return
        self.wrappedProtocol.dataReceived(decrypt.process(data))

    def connectionLost(self, reason):
        self.connected = False
        protocol, self.wrappedProtocol = self.wrappedProtocol, None
        if protocol is not None:
            protocol.connectionLost(reason)

    # ITransport, facing the upper protocol

    def write(self, data):
        if self.disconnecting or not self.connected:
            return
        self.transport.write(self._encrypt.process(data))

    def writeSequence(self, iovec):
        self.write(b"".join(iovec))

    def loseConnection(self):
        self.disconnecting = True
        self.transport.loseConnection()

    def abortConnection(self):
        self.disconnecting = True
        self.transport.abortConnection()

    def getPeer(self):
        return self.transport.getPeer()

    def getHost(self):
        return self.transport.getHost()

    def registerProducer(self, producer, streaming):
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self):
        self.transport.unregisterProducer()

    def __getattr__(self, name):
        transport = self.__dict__.get("transport")
        if transport is None:
            raise AttributeError(name)
        return getattr(transport, name)


def wrap(transport, psk, *, protocol, initialBytes=b"", randomBytes=os.urandom):
    """
    Put the private-network layer on C{transport}, a fresh connection.

    Sends our nonce and connects C{protocol} (C{makeConnection}) right away.
    The caller then routes the lower protocol's C{dataReceived} and
    C{connectionLost} to the returned layer (or sets C{transport.protocol} to
    it, as TCP allows).  Closing and producers pass straight through.

    @param psk: the 32-byte key from L{parseSwarmKey}.
    @param initialBytes: bytes already read from C{transport}.
    @rtype: L{PrivateNetworkLayer}
    """
    layer = PrivateNetworkLayer(psk, protocol, randomBytes=randomBytes)
    layer.makeConnection(transport)
    if initialBytes:
        layer.dataReceived(initialBytes)
    return layer
