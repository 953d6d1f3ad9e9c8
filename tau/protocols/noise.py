"""
libp2p Noise (C{/noise}, libp2p/specs noise/README.md): the XX handshake of
C{Noise_XX_25519_ChaChaPoly_SHA256} (L{tau.protocols.noisestate}), then
encrypted transport messages.

Every Noise message travels as a frame: a 2-byte big-endian length, then at
most L{MAX_MESSAGE} (65535) bytes.  Each side has a static X25519 key of its
own, made once per host and unrelated to its identity; the second and third
handshake messages carry, encrypted, a C{NoiseHandshakePayload}
(C{tau/pb/noise.proto}) with the sender's libp2p public key and that key's
signature of C{"noise-libp2p-static-key:" || static public key}.  A peer is
known once its signature checks out against the static key the handshake
proved it holds.  We send no extensions; the remote's are ignored (so the
muxer is negotiated with multistream-select afterwards, as over TLS).

The layer is wired as L{tau.protocols.tls.TLSSecurity.secure}'s::

    layer, whenSecure = security.secure(lowerTransport, isClient=True,
                                        protocol=upper, initialBytes=rest)
    # the lower protocol forwards dataReceived / connectionLost to layer
    peer = await whenSecure   # the verified remote PeerID
"""

import struct

from google.protobuf.message import DecodeError
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IProtocol, ITransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tau.identity import InvalidKey, PublicKey
from tau.pb import noise_pb2
from tau.protocols.noisestate import MAX_MESSAGE, MAX_PLAINTEXT, TAGLEN, HandshakeState, NoiseError
from tau.ratelog import PeerLog, connectionKey

log = Logger()
peerLog = PeerLog(log)

PROTOCOL_ID = "/noise"
#: What the identity key signs, followed by the static X25519 public key.
SIGNATURE_PREFIX = b"noise-libp2p-static-key:"
#: How long a handshake may take before the connection is dropped.
HANDSHAKE_TIMEOUT = 10.0
#: The largest handshake payload we read (a protobuf with a public key, a
#: signature and extensions: a few hundred bytes, RSA keys included).
MAX_HANDSHAKE_PAYLOAD = 8192

_LENGTH = struct.Struct(">H")
_HANDSHAKE, _SECURE, _CLOSED = "handshake", "secure", "closed"


class NoiseHandshakeFailed(Exception):
    """
    The Noise handshake failed, or the connection was lost during it.
    """


class NoiseVerifyError(NoiseHandshakeFailed):
    """
    The remote's handshake payload did not prove its identity: no key, a
    bad key, a bad signature, or not the peer we dialled.
    """


class NoiseHandshakeTimeout(NoiseHandshakeFailed):
    """
    The remote did not complete the handshake in time.
    """


# --- the handshake payload ---


def signedStaticKey(staticPublic):
    """
    The bytes an identity key signs to vouch for C{staticPublic}.
    """
    return SIGNATURE_PREFIX + staticPublic


def makePayload(hostKey, staticPublic):
    """
    Our C{NoiseHandshakePayload}: C{hostKey}'s public key and its signature
    of C{staticPublic}, serialised.
    """
    payload = noise_pb2.NoiseHandshakePayload(
        identity_key=hostKey.publicKey().toProtobuf(),
        identity_sig=hostKey.sign(signedStaticKey(staticPublic)),
    )
    return payload.SerializeToString(deterministic=True)


def readPayload(data, remoteStatic):
    """
    Check the remote's handshake payload against the static key it proved.

    @param data: the decrypted payload.
    @param remoteStatic: the remote's static X25519 public key (raw).
    @return: the remote's L{PublicKey}.
    @raise NoiseVerifyError: saying what is wrong.
    """
    if len(data) > MAX_HANDSHAKE_PAYLOAD:
        raise NoiseVerifyError(f"handshake payload of {len(data)} bytes, the limit is {MAX_HANDSHAKE_PAYLOAD}")
    message = noise_pb2.NoiseHandshakePayload()
    try:
        message.ParseFromString(data)
    except DecodeError as e:
        raise NoiseVerifyError(f"handshake payload is not a NoiseHandshakePayload: {e}") from None
    if not message.identity_key:
        raise NoiseVerifyError("handshake payload has no identity key")
    try:
        key = PublicKey.fromProtobuf(message.identity_key)
    except InvalidKey as e:
        raise NoiseVerifyError(f"handshake payload has a bad identity key: {e}") from None
    if not key.verify(message.identity_sig, signedStaticKey(remoteStatic)):
        raise NoiseVerifyError("bad identity signature of the Noise static key")
    return key


# --- the layer ---


def _address(transport):
    try:
        return transport.getPeer()
    except Exception:
        return None


@implementer(IProtocol, ITransport, IConsumer)
class NoiseLayer:
    """
    The Noise layer of one connection: the protocol of the lower transport
    and, once the peer is verified, the transport of the upper protocol.

    The plaintext of all the frames one read completes reaches the upper
    protocol in one C{dataReceived}; one write goes down as one lower write
    of as many frames as it needs.  Producers pass straight through to the
    lower transport, whose other attributes (C{setTcpNoDelay}, ...) are
    looked up there too.

    @ivar remotePeer: the verified remote L{tau.identity.PeerID}, L{None}
        until then.
    @ivar transport: the lower transport.
    """

    remotePeer = None

    def __init__(self, handshake, payload, upper, *, clock, expectedPeer, whenSecure):
        self.transport = None
        self.connected = False
        self.disconnecting = False
        self._handshake = handshake
        self._payload = payload
        self._upper = upper
        self._clock = clock
        self._expectedPeer = expectedPeer
        self._whenSecure = whenSecure
        self._state = _HANDSHAKE
        self._buffer = b""
        self._send = None
        self._receive = None
        self._timer = None

    # the handshake

    def startTimer(self, timeout):
        self._timer = self._clock.callLater(timeout, self._timedOut)

    def _stopTimer(self):
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _timedOut(self):
        self._timer = None
        if self._state == _HANDSHAKE:
            self._fail(NoiseHandshakeTimeout("Noise handshake did not complete in time"), "handshake timed out")

    def _fail(self, error, what):
        """
        End the handshake with C{error} (logged, rate-limited, as C{what}).
        """
        if self._state != _HANDSHAKE:
            return
        self._state = _CLOSED
        self._stopTimer()
        peerLog.info(
            self._clock, what, "Noise handshake with {peer} failed: {reason}",
            peer=_address(self.transport), limitBy=connectionKey(self.transport), reason=str(error),
        )
        if not self._whenSecure.called:
            self._whenSecure.errback(Failure(error))
        self.transport.abortConnection()

    def _writeFrame(self, message):
        self.transport.write(_LENGTH.pack(len(message)) + message)

    def _handshakeMessage(self, message):
        """
        The remote's next handshake message: answer it, and check its
        payload when it carries one.
        """
        handshake = self._handshake
        payload = handshake.readMessage(message)
        if handshake.rs is None:
            # The first message: an ephemeral key; its payload (libp2p
            # sends none) is ignored, within the limit.
            if len(payload) > MAX_HANDSHAKE_PAYLOAD:
                raise NoiseVerifyError(f"handshake payload of {len(payload)} bytes, the limit is {MAX_HANDSHAKE_PAYLOAD}")
            self._writeFrame(handshake.writeMessage(self._payload))
            return
        key = readPayload(payload, handshake.rs)
        peer = key.peerID()
        if self._expectedPeer is not None and peer != self._expectedPeer:
            raise NoiseVerifyError(f"peer is {peer}, expected {self._expectedPeer}")
        if not handshake.complete:
            self._writeFrame(handshake.writeMessage(self._payload))
        self._secured(peer)

    def _secured(self, peer):
        self._send, self._receive = self._handshake.split()
        self._handshake = None
        self._payload = None
        self._state = _SECURE
        self._stopTimer()
        self.remotePeer = peer
        upper = self._upper
        upper.makeConnection(self)
        if not self._whenSecure.called:
            self._whenSecure.callback(peer)

    # IProtocol, facing the lower transport

    def makeConnection(self, transport):
        self.transport = transport
        self.connected = True
        if self._handshake.writing():
            self._writeFrame(self._handshake.writeMessage(b""))

    def connectionMade(self):
        pass

    def logPrefix(self):
        return "noise"

    def dataReceived(self, data):
        if self._state == _CLOSED:
            return
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        size = len(data)
        view = memoryview(data)
        offset = 0
        plaintext = []
        try:
            while size - offset >= 2:
                (length,) = _LENGTH.unpack_from(data, offset)
                end = offset + 2 + length
                if end > size:
                    break
                frame = view[offset + 2:end]
                offset = end
                if self._state == _SECURE:
                    if length < TAGLEN:
                        raise NoiseError(f"transport message of {length} bytes, shorter than its tag")
                    plaintext.append(self._receive.decryptWithAd(None, frame))
                elif self._state == _HANDSHAKE:
                    try:
                        self._handshakeMessage(frame)
                    except (NoiseError, NoiseVerifyError) as e:
                        what = "rejected" if isinstance(e, NoiseVerifyError) else "bad handshake"
                        self._fail(e if isinstance(e, NoiseHandshakeFailed) else NoiseHandshakeFailed(str(e)), what)
                        return
                else:
                    return
        except NoiseError as e:
            self._deliver(plaintext)
            self._transportError(str(e))
            return
        if offset < size:
            self._buffer = bytes(view[offset:])
        self._deliver(plaintext)

    def _deliver(self, plaintext):
        if plaintext and self._state == _SECURE:
            self._upper.dataReceived(plaintext[0] if len(plaintext) == 1 else b"".join(plaintext))

    def _transportError(self, reason):
        peerLog.info(
            self._clock, "transport error", "Noise connection with {peer} dropped: {reason}",
            peer=self.remotePeer or _address(self.transport), limitBy=connectionKey(self.transport), reason=reason,
        )
        self.disconnecting = True
        self.transport.abortConnection()

    def connectionLost(self, reason):
        self.connected = False
        self._stopTimer()
        state, self._state = self._state, _CLOSED
        self._buffer = b""
        if state == _HANDSHAKE:
            if not self._whenSecure.called:
                self._whenSecure.errback(Failure(NoiseHandshakeFailed(f"connection lost during the Noise handshake: {reason.getErrorMessage()}")))
        elif self._send is not None:
            upper, self._upper = self._upper, None
            if upper is not None:
                upper.connectionLost(reason)

    # ITransport, facing the upper protocol

    def write(self, data):
        if self._state != _SECURE or self.disconnecting:
            return
        send = self._send
        size = len(data)
        try:
            if size <= MAX_PLAINTEXT:
                if not size:
                    return
                message = send.encryptWithAd(None, data)
                self.transport.write(_LENGTH.pack(len(message)) + message)
                return
            view = memoryview(data)
            parts = []
            for start in range(0, size, MAX_PLAINTEXT):
                message = send.encryptWithAd(None, view[start:start + MAX_PLAINTEXT])
                parts.append(_LENGTH.pack(len(message)))
                parts.append(message)
        except NoiseError as e:
            self._transportError(str(e))
            return
        self.transport.writeSequence(parts)

    def writeSequence(self, iovec):
        self.write(b"".join(iovec))

    def loseConnection(self):
        if self.disconnecting:
            return
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


class NoiseSecurity:
    """
    libp2p Noise for one host: its static X25519 key and signed handshake
    payload, made once (on first use) and shared by all its connections.

    @param hostKey: the host's L{tau.identity.PrivateKey}.
    @param clock: an L{IReactorTime}, for the handshake timeout.
    @param staticKey: the L{X25519PrivateKey} to use instead of a fresh one
        (tests).
    """

    protocolID = PROTOCOL_ID

    def __init__(self, hostKey, clock, *, staticKey=None):
        self.hostKey = hostKey
        self.clock = clock
        self._static = staticKey
        self._payload = None

    def staticKey(self):
        """
        Our static L{X25519PrivateKey}.
        """
        if self._static is None:
            self._static = X25519PrivateKey.generate()
        return self._static

    def payload(self):
        """
        Our serialised, signed handshake payload.
        """
        if self._payload is None:
            static = self.staticKey()
            self._payload = makePayload(self.hostKey, HandshakeState(True, static).staticPublic)
        return self._payload

    def secure(self, transport, *, isClient, protocol, expectedPeer=None, initialBytes=b"", timeout=HANDSHAKE_TIMEOUT):
        """
        Start libp2p Noise over C{transport}, an established byte stream; as
        L{tau.protocols.tls.TLSSecurity.secure}.

        The initiator (C{isClient}) sends the first handshake message at
        once.  Once the remote's payload checks out (and names
        C{expectedPeer}, when given) the layer calls
        C{protocol.makeConnection(layer)}, then the Deferred fires with the
        remote L{tau.identity.PeerID}.

        On failure the Deferred fails with L{NoiseVerifyError},
        L{NoiseHandshakeTimeout} (after C{timeout} seconds) or
        L{NoiseHandshakeFailed}, the connection is aborted and C{protocol}
        never hears of it.  Cancelling the Deferred aborts the connection.

        @return: C{(layer, Deferred[PeerID])}
        """

        def cancel(d):
            layer._stopTimer()
            layer._state = _CLOSED
            transport.abortConnection()

        whenSecure = Deferred(cancel)
        handshake = HandshakeState(isClient, self.staticKey())
        layer = NoiseLayer(
            handshake, self.payload(), protocol,
            clock=self.clock, expectedPeer=expectedPeer, whenSecure=whenSecure,
        )
        layer.startTimer(timeout)
        layer.makeConnection(transport)
        if initialBytes:
            layer.dataReceived(initialBytes)
        return layer, whenSecure


__all__ = [
    "PROTOCOL_ID",
    "MAX_HANDSHAKE_PAYLOAD",
    "MAX_MESSAGE",
    "NoiseHandshakeFailed",
    "NoiseHandshakeTimeout",
    "NoiseLayer",
    "NoiseSecurity",
    "NoiseVerifyError",
    "makePayload",
    "readPayload",
]
