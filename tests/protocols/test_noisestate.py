"""
Tests for L{tau.protocols.noisestate}: Noise_XX_25519_ChaChaPoly_SHA256,
checked against the cacophony test vectors.
"""

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tau.protocols.noisestate import (
    MAX_MESSAGE,
    MAX_NONCE,
    TAGLEN,
    CipherState,
    HandshakeState,
    NoiseError,
    NonceExhausted,
)

# The Noise_XX_25519_ChaChaPoly_SHA256 vector of cacophony's vectors
# (haskell-cryptography/cacophony, vectors/cacophony.txt): keys, prologue,
# the three handshake messages, then three transport messages alternating
# from the responder.
VECTOR = {
    "prologue": "4a6f686e2047616c74",
    "init_static": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
    "init_ephemeral": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
    "resp_static": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
    "resp_ephemeral": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
    "handshake_hash": "c8e5f64e846193be2a834104c2a009868d6c9f3bd3c186299888b488b2f1f58e",
    "messages": [
        (
            "4c756477696720766f6e204d69736573",
            "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79444c756477696720766f6e204d69736573",
        ),
        (
            "4d757272617920526f746862617264",
            "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f14480884381cbad1f276e038c48378ffce2b65285"
            "e08d6b68aaa3629a5a8639392490e5b9bd5269c2f1e4f488ed8831161f19b7815528f8982ffe09be9b5c412f8a0db50f"
            "8814c7194e83f23dbd8d162c9326ad",
        ),
        (
            "462e20412e20486179656b",
            "c7195ffacac1307ff99046f219750fc47693e23c3cb08b89c2af808b444850a80ae475b9df0f169ae80a89be0865b57f"
            "58c9fea0d4ec82a286427402f113e4b6ae769a1d95941d49b25030",
        ),
        ("4361726c204d656e676572", "96763ed773f8e47bb3712f0e29b3060ffc956ffc146cee53d5e1df"),
        ("4a65616e2d426170746973746520536179", "3e40f15f6f3a46ae446b253bf8b1d9ffb6ed9b174d272328ff91a7e2e5c79c07f5"),
        (
            "457567656e2042f6686d20766f6e2042617765726b",
            "eb3f3515110702e047a6c9da4478b6ead94873c11c0f2d710ddb3f09fce024b3a58502ae3f",
        ),
    ],
}


def key(name):
    return X25519PrivateKey.from_private_bytes(bytes.fromhex(VECTOR[name]))


def vectorPair():
    prologue = bytes.fromhex(VECTOR["prologue"])
    initiator = HandshakeState(True, key("init_static"), prologue, key("init_ephemeral"))
    responder = HandshakeState(False, key("resp_static"), prologue, key("resp_ephemeral"))
    return initiator, responder


def handshake(initiator, responder, payloads=(b"", b"", b"")):
    for i, payload in enumerate(payloads):
        writer, reader = (initiator, responder) if i % 2 == 0 else (responder, initiator)
        assert reader.readMessage(writer.writeMessage(payload)) == payload


class VectorTests(SynchronousTestCase):
    def test_handshakeMessages(self):
        """
        With the vector's keys each handshake message is byte for byte the
        vector's, the reader gets the payload back, and both sides end with
        the vector's handshake hash.
        """
        initiator, responder = vectorPair()
        for i, (payload, ciphertext) in enumerate(VECTOR["messages"][:3]):
            writer, reader = (initiator, responder) if i % 2 == 0 else (responder, initiator)
            message = writer.writeMessage(bytes.fromhex(payload))
            self.assertEqual(message.hex(), ciphertext)
            self.assertEqual(reader.readMessage(message), bytes.fromhex(payload))
        self.assertTrue(initiator.complete and responder.complete)
        self.assertEqual(initiator.handshakeHash.hex(), VECTOR["handshake_hash"])
        self.assertEqual(responder.handshakeHash.hex(), VECTOR["handshake_hash"])
        self.assertEqual(initiator.rs, responder.staticPublic)
        self.assertEqual(responder.rs, initiator.staticPublic)

    def test_transportMessages(self):
        """
        After the split the transport messages are the vector's, each side's
        send cipher matching the other's receive cipher.
        """
        initiator, responder = vectorPair()
        handshake(initiator, responder, [bytes.fromhex(p) for p, _ in VECTOR["messages"][:3]])
        iSend, iReceive = initiator.split()
        rSend, rReceive = responder.split()
        for i, (payload, ciphertext) in enumerate(VECTOR["messages"][3:]):
            send, receive = (rSend, iReceive) if i % 2 == 0 else (iSend, rReceive)
            message = send.encryptWithAd(b"", bytes.fromhex(payload))
            self.assertEqual(message.hex(), ciphertext)
            self.assertEqual(receive.decryptWithAd(b"", message), bytes.fromhex(payload))


class HandshakeStateTests(SynchronousTestCase):
    def pair(self):
        return HandshakeState(True, X25519PrivateKey.generate()), HandshakeState(False, X25519PrivateKey.generate())

    def test_turns(self):
        """
        Each side writes only on its turn, reads only on the other's, and
        nothing is possible once the handshake is complete.
        """
        initiator, responder = self.pair()
        self.assertRaises(NoiseError, responder.writeMessage, b"")
        self.assertRaises(NoiseError, initiator.readMessage, b"x" * 32)
        self.assertRaises(NoiseError, initiator.split)
        handshake(initiator, responder)
        self.assertRaises(NoiseError, initiator.writeMessage, b"")
        self.assertRaises(NoiseError, responder.readMessage, b"")

    def test_tamperedMessageFails(self):
        """
        A flipped bit in the second message fails to authenticate, and the
        failed state refuses to go on.
        """
        initiator, responder = self.pair()
        responder.readMessage(initiator.writeMessage(b""))
        message = bytearray(responder.writeMessage(b"payload"))
        message[40] ^= 1
        self.assertRaises(NoiseError, initiator.readMessage, bytes(message))
        self.assertRaises(NoiseError, initiator.writeMessage, b"")

    def test_shortMessages(self):
        """
        Messages too short for their keys or their payload's tag are refused
        by name.
        """
        initiator, responder = self.pair()
        e = self.assertRaises(NoiseError, responder.readMessage, b"x" * 31)
        self.assertIn("ephemeral", str(e))
        initiator, responder = self.pair()
        responder.readMessage(initiator.writeMessage(b""))
        second = responder.writeMessage(b"")
        e = self.assertRaises(NoiseError, initiator.readMessage, second[: 32 + 32 + TAGLEN - 1])
        self.assertIn("static key", str(e))
        initiator, responder = self.pair()
        responder.readMessage(initiator.writeMessage(b""))
        second = responder.writeMessage(b"")
        e = self.assertRaises(NoiseError, initiator.readMessage, second[: 32 + 48 + TAGLEN - 1])
        self.assertIn("tag", str(e))

    def test_messageLimit(self):
        """
        A message of exactly 65535 bytes is written; one byte more is refused.
        """
        initiator, responder = self.pair()
        payload = b"p" * (MAX_MESSAGE - 32)
        message = initiator.writeMessage(payload)
        self.assertEqual(len(message), MAX_MESSAGE)
        self.assertEqual(responder.readMessage(message), payload)
        initiator, _ = self.pair()
        e = self.assertRaises(NoiseError, initiator.writeMessage, payload + b"p")
        self.assertIn("65535", str(e))
        _, responder = self.pair()
        e = self.assertRaises(NoiseError, responder.readMessage, b"x" * (MAX_MESSAGE + 1))
        self.assertIn("65535", str(e))

    def test_lowOrderKeyRefused(self):
        """
        An ephemeral key of low order (an all-zero shared secret) is refused.
        """
        initiator, responder = self.pair()
        responder.readMessage(initiator.writeMessage(b""))
        second = bytearray(responder.writeMessage(b""))
        second[:32] = bytes(32)
        e = self.assertRaises(NoiseError, initiator.readMessage, bytes(second))
        self.assertIn("X25519", str(e))

    @given(st.binary(max_size=300), st.integers(min_value=0, max_value=2))
    def test_garbageOnlyNoiseErrors(self, data, step):
        """
        Whatever arrives at any step, reading it returns a payload or raises
        L{NoiseError}, nothing else.
        """
        initiator, responder = self.pair()
        if step == 0:
            reader = responder
        elif step == 1:
            responder.readMessage(initiator.writeMessage(b""))
            reader = initiator
        else:
            responder.readMessage(initiator.writeMessage(b""))
            initiator.readMessage(responder.writeMessage(b""))
            reader = responder
        try:
            reader.readMessage(data)
        except NoiseError:
            pass

    @given(st.lists(st.binary(max_size=200), min_size=3, max_size=3), st.lists(st.binary(max_size=2000), max_size=5))
    def test_roundTrip(self, payloads, messages):
        """
        Any payloads go through the handshake and any messages through the
        transport ciphers, each way.
        """
        initiator, responder = self.pair()
        handshake(initiator, responder, payloads)
        iSend, iReceive = initiator.split()
        rSend, rReceive = responder.split()
        for message in messages:
            self.assertEqual(rReceive.decryptWithAd(None, iSend.encryptWithAd(None, message)), message)
            self.assertEqual(iReceive.decryptWithAd(None, rSend.encryptWithAd(None, message)), message)


class CipherStateTests(SynchronousTestCase):
    def test_nonceStopsBeforeWrapping(self):
        """
        The last nonce usable is 2^64-2; 2^64-1 is reserved and every use
        after that is refused, so a nonce never comes back.
        """
        send, receive = CipherState(b"k" * 32), CipherState(b"k" * 32)
        send.n = receive.n = MAX_NONCE - 1
        message = send.encryptWithAd(None, b"last")
        self.assertEqual(send.n, MAX_NONCE)
        self.assertEqual(receive.decryptWithAd(None, message), b"last")
        self.assertRaises(NonceExhausted, send.encryptWithAd, None, b"one more")
        self.assertRaises(NonceExhausted, receive.decryptWithAd, None, message)
        self.assertEqual(send.n, MAX_NONCE)

    def test_failedDecryptKeepsNonce(self):
        """
        A message that fails to authenticate does not use up a nonce: the
        real one still decrypts.
        """
        send, receive = CipherState(b"k" * 32), CipherState(b"k" * 32)
        message = send.encryptWithAd(None, b"hello")
        self.assertRaises(NoiseError, receive.decryptWithAd, None, message[:-1] + bytes([message[-1] ^ 1]))
        self.assertEqual(receive.n, 0)
        self.assertEqual(receive.decryptWithAd(None, message), b"hello")

    def test_noKeyPassesThrough(self):
        cipher = CipherState()
        self.assertEqual(cipher.encryptWithAd(b"ad", b"plain"), b"plain")
        self.assertEqual(cipher.decryptWithAd(b"ad", b"plain"), b"plain")
        self.assertEqual(cipher.n, 0)
