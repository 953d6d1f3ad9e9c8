"""
Security protocols on the host: TLS and Noise negotiated in the configured
order on real loopback TCP, and the C{p2p-security} config key.
"""

import os
import struct

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tau.config import loadConfig, publicView
from tau.dialer import DialError
from tau.identity import PrivateKey
from tau.protocols import ping
from tau.protocols.multistream import encodeMessage
from tau.protocols.noise import NoiseSecurity
from tau.protocols.tls import TLSSecurity
from tau.security import DEFAULT, makeSecurities
from tests.hosts import addressOf, roundTrip, startHost
from tests import test_config
from tests.test_config import ConfigTestsMixin

TLS, NOISE = "/tls/1.0.0", "/noise"


class Raw(Protocol):
    def __init__(self):
        self.received = b""
        self.lost = Deferred()

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost.callback(reason.value)


class NegotiationTests(TestCase):
    async def connect(self, dialerSecurity, listenerSecurity):
        a = await startHost(self, security=dialerSecurity)
        b = await startHost(self, security=listenerSecurity)
        conn = await a.connect(addressOf(b))
        return a, b, conn

    async def test_noiseEchoAndPing(self):
        """
        Two Noise-only hosts: the connection is Noise on both ends, echo
        streams carry 3 MiB byte-exact both ways and ping answers.
        """
        a, b, conn = await self.connect(["noise"], ["noise"])
        self.assertEqual(conn.security, NOISE)
        self.assertEqual(b.connections()[0].security, NOISE)
        self.assertEqual(b.connections()[0].remotePeer, a.peerID)
        payload = os.urandom(3 << 20)
        self.assertEqual(await roundTrip(a, b.peerID, payload), payload)
        self.assertEqual(await roundTrip(b, a.peerID, payload[:1000]), payload[:1000])
        self.assertEqual(len(await ping.ping(a, b.peerID, count=2)), 2)

    async def test_dialerOrderWins(self):
        """
        The dialer proposes in its order; a listener offering both takes it.
        """
        _, _, conn = await self.connect(["noise", "tls"], ["tls", "noise"])
        self.assertEqual(conn.security, NOISE)
        _, _, conn = await self.connect(["tls", "noise"], ["noise", "tls"])
        self.assertEqual(conn.security, TLS)

    async def test_defaultFallsBackToNoise(self):
        """
        A default host (TLS first, Noise too) reaches a Noise-only host and
        is reached by one; TLS-only and default still use TLS.
        """
        _, _, conn = await self.connect(list(DEFAULT), ["noise"])
        self.assertEqual(conn.security, NOISE)
        _, _, conn = await self.connect(["noise"], list(DEFAULT))
        self.assertEqual(conn.security, NOISE)
        _, _, conn = await self.connect(["tls"], list(DEFAULT))
        self.assertEqual(conn.security, TLS)

    async def test_nothingInCommon(self):
        """
        A TLS-only host and a Noise-only host cannot connect; the error
        says what was proposed.
        """
        a = await startHost(self, security=["tls"])
        b = await startHost(self, security=["noise"])
        with self.assertRaises(DialError) as caught:
            await a.connect(addressOf(b), timeout=5)
        self.assertIn("/tls/1.0.0", str(caught.exception))
        self.assertEqual(a.connections(), [])
        self.assertEqual(b.connections(), [])

    async def test_wrongPeerRefused(self):
        """
        Dialling an address with another peer's id over Noise fails.
        """
        a = await startHost(self, security=["noise"])
        b = await startHost(self, security=["noise"])
        other = PrivateKey.generate().peerID()
        with self.assertRaises(DialError) as caught:
            await a.connect(f"{b.listenAddresses()[0]}/p2p/{other}", timeout=5)
        self.assertIn("expected", str(caught.exception))

    async def test_privateSwarmWithNoise(self):
        key = os.urandom(32)
        a = await startHost(self, swarmKey=key, security=["noise"])
        b = await startHost(self, swarmKey=key, security=["noise"])
        conn = await a.connect(addressOf(b))
        self.assertEqual(conn.security, NOISE)
        self.assertEqual(await roundTrip(a, b.peerID, b"members only"), b"members only")

    async def test_relayedNoise(self):
        """
        Noise end to end over a circuit relay (the relay speaks TLS to
        both): the relayed connection is Noise and carries streams.
        """
        from tau.relay import RelayLimits
        from tests.relay.helpers import startRelayHost

        r, _, _ = await startRelayHost(self, service="on", limits=RelayLimits(data=8 << 20, duration=60), security=["tls"])
        a, aClient, _ = await startRelayHost(self, security=["noise", "tls"])
        b, _, _ = await startRelayHost(self, security=["noise", "tls"])
        await aClient.listen(r.peerID, addressOf(r))
        conn = await b.connect(f"{addressOf(r)}/p2p-circuit/p2p/{a.peerID}")
        self.assertEqual((conn.relay, conn.security), (r.peerID, NOISE))
        self.assertEqual(r.connections(a.peerID)[0].security, TLS)
        payload = os.urandom(1 << 20)
        self.assertEqual(await roundTrip(b, a.peerID, payload), payload)

    async def test_garbageInsideNoise(self):
        """
        A bogus handshake after selecting /noise drops the connection; the
        host carries on.
        """
        a = await startHost(self, security=["noise"])
        raw = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", a.listeningPorts()[0]), Raw())
        first = b"\x01" * 32
        second = os.urandom(200)
        raw.transport.write(
            encodeMessage("/multistream/1.0.0") + encodeMessage(NOISE)
            + struct.pack(">H", len(first)) + first + struct.pack(">H", len(second)) + second
        )
        await raw.lost
        self.assertEqual(a.connections(), [])
        b = await startHost(self, security=["noise"])
        await b.connect(addressOf(a))


class MakeSecuritiesTests(SynchronousTestCase):
    def test_order(self):
        key = PrivateKey.generate()
        securities = makeSecurities(["noise", "tls"], key, reactor)
        self.assertEqual(list(securities), [NOISE, TLS])
        self.assertIsInstance(securities[NOISE], NoiseSecurity)
        self.assertIsInstance(securities[TLS], TLSSecurity)
        self.assertEqual(list(makeSecurities(DEFAULT, key, reactor)), [TLS, NOISE])

    def test_refused(self):
        key = PrivateKey.generate()
        for names, words in [([], "at least one"), (["ssl"], "unknown"), (["tls", "tls"], "twice")]:
            e = self.assertRaises(ValueError, makeSecurities, names, key, reactor)
            self.assertIn(words, str(e))


class ConfigTests(ConfigTestsMixin, SynchronousTestCase):
    def test_default(self):
        config = loadConfig(shape="full", root=self.root)
        self.assertEqual(config.p2pSecurity, ("tls", "noise"))
        self.assertEqual(publicView(config)["p2p-security"], ["tls", "noise"])

    def test_given(self):
        """
        The node's host speaks what the config gives, in its order.
        """
        from twisted.internet.testing import MemoryReactorClock

        from tau.node import makeNode

        path = self.writeConfig({"p2p-security": ["noise", "tls"]})
        config = loadConfig(shape="full", root=self.root, configFile=path)
        self.assertEqual(config.p2pSecurity, ("noise", "tls"))
        node = makeNode(config, MemoryReactorClock())
        self.assertEqual(list(node.host.securities), [NOISE, TLS])


class BadSecurityConfigTests(ConfigTestsMixin, SynchronousTestCase):
    """
    Wrong C{p2p-security} values, each named, nothing on disk changed.
    """

    assertRefused = test_config.BadConfigTests.assertRefused

    def test_badSecurity(self):
        self.assertRefused({"p2p-security": "tls"}, "p2p-security", ["expected a list"])
        self.assertRefused({"p2p-security": []}, "p2p-security", ["one or more of tls, noise"])
        self.assertRefused({"p2p-security": ["tls", "ssl"]}, "p2p-security[1]", ["unknown security protocol 'ssl'"])
        self.assertRefused({"p2p-security": ["noise", "noise"]}, "p2p-security[1]", ["listed twice"])
