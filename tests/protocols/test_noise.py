"""
Tests for L{tau.protocols.noise}: the libp2p Noise handshake payload and the
framed layer, two endpoints through L{twisted.test.iosim}.
"""

import struct

from hypothesis import given, strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.test import iosim
from twisted.test.proto_helpers import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tau.identity import PrivateKey
from tau.pb import noise_pb2
from tau.protocols.noise import (
    MAX_HANDSHAKE_PAYLOAD,
    NoiseHandshakeFailed,
    NoiseHandshakeTimeout,
    NoiseSecurity,
    NoiseVerifyError,
    makePayload,
    readPayload,
    signedStaticKey,
)
from tau.protocols.noisestate import MAX_MESSAGE, MAX_NONCE, MAX_PLAINTEXT


class Upper(Protocol):
    """
    The protocol above Noise: records what happens to it.
    """

    def __init__(self, greeting=b""):
        self.greeting = greeting
        self.received = []
        self.made = False
        self.lost = None

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
    Stands for multistream-select: starts Noise and forwards to the layer.
    """

    def __init__(self, security, isClient, upper, expectedPeer=None):
        self.security = security
        self.isClient = isClient
        self.upper = upper
        self.expectedPeer = expectedPeer
        self.whenSecure = Deferred()
        self.layer = None
        self.sent = []

    def connectionMade(self):
        self.layer, whenSecure = self.security.secure(
            self.transport, isClient=self.isClient, protocol=self.upper, expectedPeer=self.expectedPeer
        )
        whenSecure.chainDeferred(self.whenSecure)

    def dataReceived(self, data):
        self.layer.dataReceived(data)

    def connectionLost(self, reason):
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


def frames(data):
    """
    The lengths of the frames in C{data}, which must end on a frame.
    """
    lengths = []
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack_from(">H", data, offset)
        lengths.append(length)
        offset += 2 + length
    assert offset == len(data)
    return lengths


class LoggedTestsMixin:
    def captureLog(self):
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        return events

    def assertLogged(self, events, words):
        texts = [str(e.get("reason", "")) for e in events if e.get("log_namespace") == "tau.protocols.noise"]
        self.assertTrue(any(all(w in t for w in words) for t in texts), texts)


class HandshakeTests(LoggedTestsMixin, SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.serverKey = PrivateKey.generate()
        self.clientKey = PrivateKey.generate()
        self.serverSecurity = NoiseSecurity(self.serverKey, self.clock)
        self.clientSecurity = NoiseSecurity(self.clientKey, self.clock)

    def connect(self, *, clientExpects=None, serverGreeting=b"", clientGreeting=b""):
        self.serverUpper = Upper(serverGreeting)
        self.clientUpper = Upper(clientGreeting)
        self.server = Lower(self.serverSecurity, False, self.serverUpper)
        self.client = Lower(self.clientSecurity, True, self.clientUpper, clientExpects)
        self.serverResult = Result(self.server.whenSecure)
        self.clientResult = Result(self.client.whenSecure)
        self.serverTransport = iosim.FakeTransport(self.server, True)
        self.clientTransport = iosim.FakeTransport(self.client, False)
        self.pump = iosim.connect(self.server, self.serverTransport, self.client, self.clientTransport, clock=self.clock)
        self.pump.flush()

    def test_handshake(self):
        """
        Both sides learn each other's PeerID, the upper protocols are
        connected with C{remotePeer} set, and plaintext flows both ways.
        """
        self.connect(serverGreeting=b"hello client", clientGreeting=b"hello server")
        self.assertEqual(self.clientResult.value, self.serverKey.peerID())
        self.assertEqual(self.serverResult.value, self.clientKey.peerID())
        self.assertEqual(self.clientUpper.peerAtConnect, self.serverKey.peerID())
        self.assertEqual(self.serverUpper.peerAtConnect, self.clientKey.peerID())
        self.assertEqual(self.serverUpper.data(), b"hello server")
        self.assertEqual(self.clientUpper.data(), b"hello client")

    def test_expectedPeer(self):
        """
        The dialer accepts the peer it expects and refuses another, by name.
        """
        self.connect(clientExpects=self.serverKey.peerID())
        self.assertEqual(self.clientResult.value, self.serverKey.peerID())
        events = self.captureLog()
        other = PrivateKey.generate().peerID()
        self.connect(clientExpects=other)
        self.clientResult.failure.trap(NoiseVerifyError)
        self.assertIn(f"expected {other}", str(self.clientResult.failure.value))
        self.assertFalse(self.clientUpper.made)
        self.assertFalse(self.serverUpper.made)
        self.assertIsNotNone(self.serverResult.failure)
        self.assertLogged(events, ["expected"])

    def test_badIdentitySignature(self):
        """
        A responder whose identity key signed another static key is refused
        ("bad identity signature"), logged, and the initiator's upper
        protocol never hears of it.
        """
        self.serverSecurity._payload = makePayload(self.serverKey, b"\x09" * 32)
        events = self.captureLog()
        self.connect()
        self.clientResult.failure.trap(NoiseVerifyError)
        self.assertIn("bad identity signature", str(self.clientResult.failure.value))
        self.assertFalse(self.clientUpper.made)
        self.assertFalse(self.serverUpper.made)
        self.assertLogged(events, ["bad identity signature"])

    def test_badInitiatorSignature(self):
        """
        The responder checks the initiator's signature the same way.
        """
        self.clientSecurity._payload = makePayload(self.clientKey, b"\x09" * 32)
        self.connect()
        self.serverResult.failure.trap(NoiseVerifyError)
        self.assertIn("bad identity signature", str(self.serverResult.failure.value))
        self.assertFalse(self.serverUpper.made)

    def test_timeout(self):
        """
        A responder that never answers: the dialer gives up after the
        timeout and aborts the connection.
        """
        transport = StringTransport()
        upper = Upper()
        layer, whenSecure = self.clientSecurity.secure(transport, isClient=True, protocol=upper, timeout=5)
        result = Result(whenSecure)
        self.assertEqual(frames(transport.value()), [32])
        self.clock.advance(4.9)
        self.assertIsNone(result.failure)
        self.clock.advance(0.1)
        result.failure.trap(NoiseHandshakeTimeout)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(upper.made)

    def test_lostDuringHandshake(self):
        transport = StringTransport()
        layer, whenSecure = self.clientSecurity.secure(transport, isClient=True, protocol=Upper())
        result = Result(whenSecure)
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        layer.connectionLost(Failure(ConnectionDone()))
        result.failure.trap(NoiseHandshakeFailed)
        self.assertIn("connection lost", str(result.failure.value))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel(self):
        transport = StringTransport()
        layer, whenSecure = self.clientSecurity.secure(transport, isClient=True, protocol=Upper())
        whenSecure.cancel()
        self.failureResultOf(whenSecure)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class PayloadTests(SynchronousTestCase):
    def setUp(self):
        self.key = PrivateKey.generate()
        self.static = b"s" * 32

    def payloadOf(self, size):
        """
        A valid payload of exactly C{size} bytes (padded with a muxer name).
        """
        message = noise_pb2.NoiseHandshakePayload(
            identity_key=self.key.publicKey().toProtobuf(), identity_sig=self.key.sign(signedStaticKey(self.static))
        )
        base = len(message.SerializeToString())
        # extensions (tag 1 + length 2) holding stream_muxers (tag 1 +
        # length 2 + name): 6 bytes around the name when lengths take 2.
        message.extensions.stream_muxers.append("m" * (size - base - 6))
        data = message.SerializeToString()
        assert len(data) == size, (len(data), size)
        return data

    def test_valid(self):
        data = makePayload(self.key, self.static)
        self.assertEqual(readPayload(data, self.static), self.key.publicKey())

    def test_extensionsIgnored(self):
        """
        The remote's extensions (its muxers) do not get in the way.
        """
        message = noise_pb2.NoiseHandshakePayload()
        message.ParseFromString(makePayload(self.key, self.static))
        message.extensions.stream_muxers.append("/yamux/1.0.0")
        message.extensions.webtransport_certhashes.append(b"\x12\x20" + b"h" * 32)
        self.assertEqual(readPayload(message.SerializeToString(), self.static), self.key.publicKey())

    def test_sizeLimit(self):
        """
        A payload of exactly the limit is read; one byte more is refused for
        its size.
        """
        self.assertEqual(readPayload(self.payloadOf(MAX_HANDSHAKE_PAYLOAD), self.static), self.key.publicKey())
        e = self.assertRaises(NoiseVerifyError, readPayload, self.payloadOf(MAX_HANDSHAKE_PAYLOAD + 1), self.static)
        self.assertIn(f"the limit is {MAX_HANDSHAKE_PAYLOAD}", str(e))

    def test_refusals(self):
        """
        No key, a bad key, a signature of another static key, or garbage:
        each refused with its reason.
        """
        cases = [
            (noise_pb2.NoiseHandshakePayload(identity_sig=b"x").SerializeToString(), "no identity key"),
            (noise_pb2.NoiseHandshakePayload(identity_key=b"\x08\x01", identity_sig=b"x").SerializeToString(), "bad identity key"),
            (makePayload(self.key, b"t" * 32), "bad identity signature"),
            (b"\xff\xff\xff", "not a NoiseHandshakePayload"),
        ]
        for data, reason in cases:
            e = self.assertRaises(NoiseVerifyError, readPayload, data, self.static)
            self.assertIn(reason, str(e))

    def test_badKeysOfEveryType(self):
        """
        Keys of each type (RSA, Ed25519, secp256k1, ECDSA, unknown) whose
        bytes are wrong are refused as L{NoiseVerifyError}, nothing else.
        """
        from tau.pb import crypto_pb2

        keys = [b"\x08\x07\x12\x01a"]  # type 7
        for keyType in range(4):
            for data in [b"", b"x", b"\x30\x03\x02\x01\x01", b"\x02" * 33, b"\x04" + b"\x01" * 64, b"a" * 32]:
                keys.append(crypto_pb2.PublicKey(Type=keyType, Data=data).SerializeToString())
        for key in keys:
            payload = noise_pb2.NoiseHandshakePayload(identity_key=key, identity_sig=b"s" * 64)
            self.assertRaises(NoiseVerifyError, readPayload, payload.SerializeToString(), self.static)

    @given(st.binary(max_size=600))
    def test_garbage(self, data):
        """
        Any bytes: a key back or L{NoiseVerifyError}, nothing else.
        """
        try:
            readPayload(data, self.static)
        except NoiseVerifyError:
            pass


class TransportTests(LoggedTestsMixin, SynchronousTestCase):
    """
    After the handshake: framing, limits, and what ends a connection.
    """

    def setUp(self):
        self.clock = Clock()
        self.clientTransport, self.serverTransport = StringTransport(), StringTransport()
        self.clientUpper, self.serverUpper = Upper(), Upper()
        self.client, _ = NoiseSecurity(PrivateKey.generate(), self.clock).secure(
            self.clientTransport, isClient=True, protocol=self.clientUpper
        )
        self.server, _ = NoiseSecurity(PrivateKey.generate(), self.clock).secure(
            self.serverTransport, isClient=False, protocol=self.serverUpper
        )
        self.flush()
        self.assertTrue(self.clientUpper.made and self.serverUpper.made)

    def flush(self):
        while self.clientTransport.value() or self.serverTransport.value():
            data, fromServer = self.clientTransport.value(), self.serverTransport.value()
            self.clientTransport.clear()
            self.serverTransport.clear()
            if data:
                self.server.dataReceived(data)
            if fromServer:
                self.client.dataReceived(fromServer)

    def test_largeWriteSplitIntoFrames(self):
        """
        A write larger than one message goes out in frames of at most 65535
        bytes (the first exactly that), and arrives whole.
        """
        data = bytes(range(256)) * 1024
        self.client.write(data)
        lengths = frames(self.clientTransport.value())
        self.assertEqual(lengths[0], MAX_MESSAGE)
        self.assertTrue(all(length <= MAX_MESSAGE for length in lengths))
        self.flush()
        self.assertEqual(self.serverUpper.data(), data)

    def test_exactlyOneMessage(self):
        """
        A write of exactly the largest plaintext is one frame of 65535; one
        byte more is two.
        """
        self.client.write(b"a" * MAX_PLAINTEXT)
        self.assertEqual(frames(self.clientTransport.value()), [MAX_MESSAGE])
        self.clientTransport.clear()
        self.client.write(b"a" * (MAX_PLAINTEXT + 1))
        self.assertEqual(frames(self.clientTransport.value()), [MAX_MESSAGE, 17])

    def test_frameBytesOneAtATime(self):
        """
        Frames split anywhere still arrive whole, once each.
        """
        self.client.write(b"hello")
        self.client.write(b" world")
        data = self.clientTransport.value()
        self.clientTransport.clear()
        for i in range(len(data)):
            self.server.dataReceived(data[i:i + 1])
        self.assertEqual(self.serverUpper.data(), b"hello world")

    def test_tamperedFrameDrops(self):
        """
        A frame that fails to authenticate drops the connection, with a
        logged reason; what came before it is delivered.
        """
        events = self.captureLog()
        self.client.write(b"good")
        self.client.write(b"evil")
        data = bytearray(self.clientTransport.value())
        data[-1] ^= 1
        self.server.dataReceived(bytes(data))
        self.assertEqual(self.serverUpper.data(), b"good")
        self.assertTrue(self.serverTransport.disconnecting)
        self.assertLogged(events, ["authenticate"])
        self.server.dataReceived(b"\x00\x20" + b"x" * 32)
        self.assertEqual(self.serverUpper.data(), b"good")

    def test_shortFrameDrops(self):
        events = self.captureLog()
        self.server.dataReceived(b"\x00\x0f" + b"x" * 15)
        self.assertTrue(self.serverTransport.disconnecting)
        self.assertLogged(events, ["shorter than its tag"])

    def test_nonceExhaustedCloses(self):
        """
        When the send nonces run out, the next write closes the connection
        instead of reusing a nonce.
        """
        events = self.captureLog()
        self.client._send.n = self.server._receive.n = MAX_NONCE - 1
        self.client.write(b"last")
        self.flush()
        self.assertEqual(self.serverUpper.data(), b"last")
        self.client.write(b"too many")
        self.assertEqual(self.clientTransport.value(), b"")
        self.assertTrue(self.clientTransport.disconnecting)
        self.assertLogged(events, ["nonces exhausted"])

    def test_upperGetsConnectionLost(self):
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.server.connectionLost(Failure(ConnectionDone()))
        self.serverUpper.lost.trap(ConnectionDone)

    @given(st.binary(max_size=400))
    def test_garbageAfterHandshake(self, data):
        """
        Any bytes on a secure connection: waiting for the rest of a frame,
        or the connection dropped; never an exception, never delivered.
        """
        self.setUp()
        self.server.dataReceived(data)
        self.assertEqual(self.serverUpper.data(), b"")
        if len(data) >= 2 and len(data) >= 2 + struct.unpack_from(">H", data)[0]:
            self.assertTrue(self.serverTransport.disconnecting)


class HandshakeFuzzTests(SynchronousTestCase):
    @given(st.binary(max_size=400), st.booleans())
    def test_garbageDuringHandshake(self, data, isClient):
        """
        Any bytes during the handshake, on either side: waiting for more or
        a failed handshake, never an exception out of C{dataReceived}.
        """
        clock = Clock()
        transport = StringTransport()
        upper = Upper()
        layer, whenSecure = NoiseSecurity(PrivateKey.generate(), clock).secure(transport, isClient=isClient, protocol=upper)
        result = Result(whenSecure)
        layer.dataReceived(data)
        self.assertFalse(upper.made)
        if result.failure is not None:
            result.failure.trap(NoiseHandshakeFailed)
            self.assertTrue(transport.disconnecting)
        else:
            whenSecure.cancel()

    def test_oversizedFirstPayloadRefused(self):
        """
        A first message whose (plaintext) payload passes the limit is
        refused for its size; at the limit it is answered.
        """
        for size, refused in [(MAX_HANDSHAKE_PAYLOAD, False), (MAX_HANDSHAKE_PAYLOAD + 1, True)]:
            transport = StringTransport()
            layer, whenSecure = NoiseSecurity(PrivateKey.generate(), Clock()).secure(transport, isClient=False, protocol=Upper())
            result = Result(whenSecure)
            message = b"e" * 32 + b"p" * size
            layer.dataReceived(struct.pack(">H", len(message)) + message)
            if refused:
                result.failure.trap(NoiseVerifyError)
                self.assertIn(f"the limit is {MAX_HANDSHAKE_PAYLOAD}", str(result.failure.value))
            else:
                self.assertIsNone(result.failure)
                self.assertEqual(len(frames(transport.value())), 1)
                whenSecure.cancel()

