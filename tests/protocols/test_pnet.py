"""
Tests for L{tau.protocols.pnet}: swarm keys, XSalsa20 and the private-network
layer.
"""

import base64
import hashlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.test import iosim
from twisted.test.proto_helpers import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tau.identity import PrivateKey
from tau.protocols.pnet import (
    NONCE_SIZE,
    XSalsa20,
    formatSwarmKey,
    generateSwarmKey,
    parseSwarmKey,
    wrap,
)
from tau.protocols.tls import TLSSecurity

KEY_HEX = "1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389"
KEY = bytes.fromhex(KEY_HEX)

# libsodium test/default/stream.c and stream.exp (after NaCl's tests/stream.c
# and stream3.c): the XSalsa20 stream for this key and nonce; its first 63
# bytes, and the SHA-256 of its first 4 MiB.
NACL_NONCE = bytes.fromhex("69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37")
NACL_FIRST_63 = bytes.fromhex(
    "eea6a7251c1e72916d11c2cb214d3c252539121d8e234e652d651fa4c8cff880"
    "309e645a74e9e0a60d8243acd9177ab51a1beb8d5a2f5d700c093c5e558557"
)
NACL_4MIB_SHA256 = "662b9d0e3463029156069b12f918691a98f7dfb2ca0393c96bbfc6b1fbd630a2"


class SwarmKeyTests(SynchronousTestCase):
    def test_base16(self):
        text = b"/key/swarm/psk/1.0.0/\n/base16/\n" + KEY_HEX.encode() + b"\n"
        self.assertEqual(parseSwarmKey(text), KEY)

    def test_base16Variants(self):
        """
        No trailing newline, CRLF line ends, upper-case hex, trailing blanks.
        """
        for text in [
            b"/key/swarm/psk/1.0.0/\n/base16/\n" + KEY_HEX.encode(),
            b"/key/swarm/psk/1.0.0/\r\n/base16/\r\n" + KEY_HEX.upper().encode() + b"\r\n",
            b"/key/swarm/psk/1.0.0/\n/base16/\n" + KEY_HEX.encode() + b"  \n\n",
        ]:
            self.assertEqual(parseSwarmKey(text), KEY, text)

    def test_str(self):
        self.assertEqual(parseSwarmKey(f"/key/swarm/psk/1.0.0/\n/base16/\n{KEY_HEX}\n"), KEY)

    def test_base64(self):
        text = b"/key/swarm/psk/1.0.0/\n/base64/\n" + base64.b64encode(KEY) + b"\n"
        self.assertEqual(parseSwarmKey(text), KEY)

    def test_bin(self):
        self.assertEqual(parseSwarmKey(b"/key/swarm/psk/1.0.0/\n/bin/\n" + KEY), KEY)
        self.assertEqual(parseSwarmKey(b"/key/swarm/psk/1.0.0/\n/bin/\n" + KEY + b"\n"), KEY)

    def test_badHeader(self):
        e = self.assertRaises(
            ValueError, parseSwarmKey, b"/key/swarm/psk/2.0.0/\n/base16/\n" + KEY_HEX.encode()
        )
        self.assertIn("/key/swarm/psk/1.0.0/", str(e))
        self.assertRaises(ValueError, parseSwarmKey, KEY_HEX.encode())
        self.assertRaises(ValueError, parseSwarmKey, b"")

    def test_missingEncoding(self):
        e = self.assertRaises(ValueError, parseSwarmKey, b"/key/swarm/psk/1.0.0/\n/base16/")
        self.assertIn("encoding line", str(e))

    def test_unknownEncoding(self):
        e = self.assertRaises(
            ValueError, parseSwarmKey, b"/key/swarm/psk/1.0.0/\n/base32/\n" + KEY_HEX.encode()
        )
        self.assertIn("/base16/, /base64/ or /bin/", str(e))

    def test_badHex(self):
        e = self.assertRaises(
            ValueError, parseSwarmKey, b"/key/swarm/psk/1.0.0/\n/base16/\n" + b"zz" * 32
        )
        self.assertIn("hex", str(e))
        self.assertRaises(
            ValueError, parseSwarmKey, b"/key/swarm/psk/1.0.0/\n/base16/\n" + b"a" * 63
        )

    def test_badBase64(self):
        e = self.assertRaises(ValueError, parseSwarmKey, b"/key/swarm/psk/1.0.0/\n/base64/\n!!!!")
        self.assertIn("base64", str(e))

    def test_wrongLength(self):
        for body in [KEY_HEX[:-2], KEY_HEX + "00"]:
            e = self.assertRaises(
                ValueError, parseSwarmKey, b"/key/swarm/psk/1.0.0/\n/base16/\n" + body.encode()
            )
            self.assertIn("32 bytes", str(e))
        self.assertRaises(ValueError, parseSwarmKey, b"/key/swarm/psk/1.0.0/\n/bin/\n" + KEY[:31])

    def test_generate(self):
        text = generateSwarmKey()
        lines = text.split(b"\n")
        self.assertEqual(lines[:2], [b"/key/swarm/psk/1.0.0/", b"/base16/"])
        self.assertEqual(len(lines[2]), 64)
        self.assertEqual(len(parseSwarmKey(text)), 32)
        self.assertNotEqual(parseSwarmKey(text), parseSwarmKey(generateSwarmKey()))

    def test_format(self):
        self.assertEqual(parseSwarmKey(formatSwarmKey(KEY)), KEY)
        self.assertRaises(ValueError, formatSwarmKey, KEY[:16])


class XSalsa20Tests(SynchronousTestCase):
    def test_naclVector(self):
        self.assertEqual(XSalsa20(KEY, NACL_NONCE).process(bytes(63)), NACL_FIRST_63)

    def test_naclLongVector(self):
        """
        The 4 MiB stream of NaCl's stream test, fetched in uneven pieces.
        """
        cipher = XSalsa20(KEY, NACL_NONCE)
        digest = hashlib.sha256()
        remaining = 4194304
        size = 1
        while remaining:
            n = min(size, remaining)
            digest.update(cipher.process(bytes(n)))
            remaining -= n
            size = size * 3 + 1
        self.assertEqual(digest.hexdigest(), NACL_4MIB_SHA256)

    def test_roundTrip(self):
        data = b"private network" * 100
        encrypted = XSalsa20(KEY, NACL_NONCE).process(data)
        self.assertNotEqual(encrypted, data)
        self.assertEqual(XSalsa20(KEY, NACL_NONCE).process(encrypted), data)

    @given(st.binary(max_size=600), st.lists(st.integers(0, 130), max_size=30))
    def test_continuity(self, data, cuts):
        """
        Any split of a stream into writes gives the one-shot result.
        """
        whole = XSalsa20(KEY, NACL_NONCE).process(data)
        cipher = XSalsa20(KEY, NACL_NONCE)
        pieces, offset = [], 0
        for cut in cuts:
            pieces.append(cipher.process(data[offset : offset + cut]))
            offset += cut
        pieces.append(cipher.process(bytearray(data[offset:])))
        self.assertEqual(b"".join(pieces), whole)

    def test_manySmallWrites(self):
        cipher = XSalsa20(KEY, NACL_NONCE)
        out = b"".join(cipher.process(b"\x00") for _ in range(1000))
        self.assertEqual(out[:63], NACL_FIRST_63)
        self.assertEqual(out, XSalsa20(KEY, NACL_NONCE).process(bytes(1000)))

    def test_sizes(self):
        self.assertRaises(ValueError, XSalsa20, KEY[:31], NACL_NONCE)
        self.assertRaises(ValueError, XSalsa20, KEY, NACL_NONCE[:23])


class Recorder(Protocol):
    def __init__(self, greeting=b""):
        self.greeting = greeting
        self.received = []
        self.lost = None

    def connectionMade(self):
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
    The raw connection's protocol: puts the pnet layer on and forwards to it.
    """

    def __init__(self, psk, upper):
        self.psk = psk
        self.upper = upper

    def connectionMade(self):
        self.layer = wrap(self.transport, self.psk, protocol=self.upper)

    def dataReceived(self, data):
        self.layer.dataReceived(data)

    def connectionLost(self, reason):
        self.layer.connectionLost(reason)


class LayerTests(SynchronousTestCase):
    def connect(self, serverKey, clientKey, serverUpper, clientUpper, clock=None):
        self.server = Lower(serverKey, serverUpper)
        self.client = Lower(clientKey, clientUpper)
        self.serverTransport = iosim.FakeTransport(self.server, True)
        self.clientTransport = iosim.FakeTransport(self.client, False)
        self.pump = iosim.connect(
            self.server, self.serverTransport, self.client, self.clientTransport, clock=clock
        )
        self.pump.flush()

    def test_exchange(self):
        serverUpper, clientUpper = Recorder(b"from server"), Recorder(b"from client")
        self.connect(KEY, KEY, serverUpper, clientUpper)
        self.assertEqual(serverUpper.data(), b"from client")
        self.assertEqual(clientUpper.data(), b"from server")
        payload = bytes(range(256)) * 1000
        for i in range(0, len(payload), 777):
            clientUpper.transport.write(payload[i : i + 777])
        serverUpper.transport.writeSequence([b"a", b"b", b"c"])
        self.pump.flush()
        self.assertEqual(serverUpper.data(), b"from client" + payload)
        self.assertEqual(clientUpper.data(), b"from serverabc")

    def test_wireFormat(self):
        """
        What goes on the wire is the nonce, then the plaintext XORed with the
        XSalsa20 stream of (PSK, that nonce).
        """
        transport = StringTransport()
        upper = Recorder()
        layer = wrap(transport, KEY, protocol=upper, randomBytes=lambda n: NACL_NONCE[:n])
        layer.write(bytes(30))
        layer.write(bytes(33))
        self.assertEqual(transport.value(), NACL_NONCE + NACL_FIRST_63)

    def test_receiveSplitNonce(self):
        """
        The remote nonce may arrive a byte at a time; data after it in the
        same read is decrypted.
        """
        transport = StringTransport()
        upper = Recorder()
        layer = wrap(transport, KEY, protocol=upper)
        wire = NACL_NONCE + XSalsa20(KEY, NACL_NONCE).process(b"hello there")
        for i in range(NONCE_SIZE - 1):
            layer.dataReceived(wire[i : i + 1])
        self.assertEqual(upper.received, [])
        layer.dataReceived(wire[NONCE_SIZE - 1 : NONCE_SIZE + 3])
        layer.dataReceived(wire[NONCE_SIZE + 3 :])
        self.assertEqual(upper.data(), b"hello there")

    def test_initialBytes(self):
        transport = StringTransport()
        upper = Recorder()
        wire = NACL_NONCE + XSalsa20(KEY, NACL_NONCE).process(b"early")
        wrap(transport, KEY, protocol=upper, initialBytes=wire)
        self.assertEqual(upper.data(), b"early")

    def test_differentKeys(self):
        """
        With another key the other side reads garbage, both ways.
        """
        otherKey = bytes(32)
        serverUpper, clientUpper = Recorder(b"/multistream/1.0.0\n"), Recorder(
            b"/multistream/1.0.0\n"
        )
        self.connect(KEY, otherKey, serverUpper, clientUpper)
        self.assertEqual(len(serverUpper.data()), len(b"/multistream/1.0.0\n"))
        self.assertNotEqual(serverUpper.data(), b"/multistream/1.0.0\n")
        self.assertNotEqual(clientUpper.data(), b"/multistream/1.0.0\n")

    def test_closePropagates(self):
        serverUpper, clientUpper = Recorder(), Recorder()
        self.connect(KEY, KEY, serverUpper, clientUpper)
        clientUpper.transport.loseConnection()
        self.pump.flush()
        self.assertIsNotNone(clientUpper.lost)
        self.assertIsNotNone(serverUpper.lost)

    def test_abort(self):
        transport = StringTransport()
        layer = wrap(transport, KEY, protocol=Recorder())
        layer.abortConnection()
        self.assertTrue(transport.disconnecting)

    def test_producer(self):
        @implementer(IPushProducer)
        class Producer:
            def pauseProducing(self):
                pass

            def resumeProducing(self):
                pass

            def stopProducing(self):
                pass

        transport = StringTransport()
        layer = wrap(transport, KEY, protocol=Recorder())
        producer = Producer()
        layer.registerProducer(producer, True)
        self.assertIs(transport.producer, producer)
        self.assertTrue(transport.streaming)
        layer.unregisterProducer()
        self.assertIsNone(transport.producer)

    def test_tlsOverPnet(self):
        """
        libp2p TLS runs on top of the pnet layer like on raw TCP.
        """
        clock = Clock()
        clock.advance(1_750_000_000)
        serverKey, clientKey = PrivateKey.generate(), PrivateKey.generate()
        serverUpper, clientUpper = Recorder(b"sealed"), Recorder()
        results = {}

        def tlsOn(side, hostKey, isClient, upper, expected=None):
            def onPnet(layer):
                tlsLayer, d = TLSSecurity(hostKey, clock).secure(
                    layer, isClient=isClient, protocol=upper, expectedPeer=expected
                )
                d.addCallback(lambda peer: results.update({side: peer}))
                return tlsLayer

            return onPnet

        class Forward(Protocol):
            def __init__(self, start):
                self.start = start

            def makeConnection(self, transport):
                self.inner = self.start(transport)

            def dataReceived(self, data):
                self.inner.dataReceived(data)

            def connectionLost(self, reason):
                self.inner.connectionLost(reason)

        self.connect(
            KEY,
            KEY,
            Forward(tlsOn("server", serverKey, False, serverUpper)),
            Forward(tlsOn("client", clientKey, True, clientUpper, serverKey.peerID())),
            clock=clock,
        )
        self.assertEqual(results, {"server": clientKey.peerID(), "client": serverKey.peerID()})
        self.assertEqual(clientUpper.data(), b"sealed")
