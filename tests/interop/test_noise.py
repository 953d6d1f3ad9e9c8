"""
tau <-> js-libp2p over TCP + Noise (@libp2p/noise) + yamux: each dials the
other with Noise the only protocol js speaks, then identify, ping, echo
streams and perf both ways; js's other key types; and the dialer's order
when both sides speak TLS and Noise.
"""

import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from tau.identity import PeerID, PublicKey
from tau.protocols import identify, perf, ping
from tests.hosts import addressOf, startHost
from tests.interop.jspeer import ECHO_PROTOCOL, startJsPeer

MiB = 1 << 20
NOISE = "/noise"


class TauJsNoiseTests(TestCase):
    timeout = 240

    async def js(self, **kwargs):
        peer = await startJsPeer(reactor, **kwargs)
        self.addCleanup(lambda: Deferred.fromCoroutine(peer.stop()))
        return peer

    async def echoToJs(self, tau, js, size=MiB, streams=4):
        peer = PeerID.fromString(js.peerId)
        payloads = [os.urandom(size) for _ in range(streams)]

        async def one(payload):
            stream = await tau.newStream(peer, [ECHO_PROTOCOL])
            stream.write(payload)
            stream.closeWrite()
            return await stream.readToEnd(2 * size)

        results = await gatherResults([Deferred.fromCoroutine(one(p)) for p in payloads])
        self.assertEqual(results, payloads)

    async def test_jsDialsTau(self):
        """
        js (Noise only) dials a default tau (TLS first, Noise too): the
        connection is Noise on both ends, identify runs both ways, js pings
        tau and echoes streams through it.
        """
        tau = await startHost(self)
        js = await self.js(encrypter="noise")
        conn = await js.command("dial", addr=addressOf(tau))
        self.assertEqual(conn["peer"], str(tau.peerID))
        self.assertEqual(conn["encryption"], NOISE)
        self.assertEqual(conn["multiplexer"], "/yamux/1.0.0")
        [ours] = tau.connections()
        self.assertEqual(ours.security, NOISE)
        self.assertEqual(str(ours.remotePeer), js.peerId)
        await identify.whenIdentified(tau, ours)
        self.assertIn("js-libp2p", tau.peerstore.get(ours.remotePeer).agentVersion)
        info = await js.command("peerInfo", peer=str(tau.peerID))
        self.assertEqual(PublicKey.fromProtobuf(bytes.fromhex(info["publicKey"])).peerID(), tau.peerID)
        answer = await js.command("ping", addr=addressOf(tau))
        self.assertGreaterEqual(answer["rtt"], 0)
        answer = await js.command("echo", addr=addressOf(tau), streams=4, bytes=MiB, timeout=120)
        self.assertEqual(answer["totalBytes"], 4 * MiB)

    async def test_tauDialsJs(self):
        """
        tau (Noise only) dials js (Noise only): identify, ping, and echo
        streams from tau through js.
        """
        tau = await startHost(self, security=["noise"])
        js = await self.js(encrypter="noise")
        conn = await tau.connect(js.addrs[0])
        self.assertEqual(conn.security, NOISE)
        self.assertEqual(str(conn.remotePeer), js.peerId)
        await identify.whenIdentified(tau, conn)
        await js.waitEvent(lambda e: e.get("event") == "identify" and e.get("peer") == str(tau.peerID))
        theirs = await js.command("connections")
        self.assertEqual([c["peer"] for c in theirs["connections"]], [str(tau.peerID)])
        rtts = await ping.ping(tau, conn.remotePeer, count=3)
        self.assertEqual(len(rtts), 3)
        await self.echoToJs(tau, js)

    async def test_perfEachWay(self):
        """
        32 MiB up and down over Noise, measured by tau and by js.
        """
        tau = await startHost(self, security=["noise"])
        js = await self.js(encrypter="noise")
        peer = PeerID.fromString(js.peerId)
        await tau.connect(js.addrs[0])
        result = await perf.perf(tau, peer, upload=32 * MiB, download=32 * MiB)
        self.assertEqual(result["upload"][0], 32 * MiB)
        self.assertEqual(result["download"][0], 32 * MiB)
        answer = await js.command("perf", addr=addressOf(tau), upload=32 * MiB, download=32 * MiB, timeout=120)
        self.assertEqual(answer["uploadBytes"], 32 * MiB)
        self.assertEqual(answer["downloadBytes"], 32 * MiB)

    async def test_otherKeyTypes(self):
        """
        js peers with secp256k1 and RSA identities sign their Noise
        static key; tau checks each and knows who they are, both ways.
        """
        tau = await startHost(self, security=["noise"])
        for keyType in ("secp256k1", "RSA"):
            js = await self.js(encrypter="noise", keyType=keyType)
            conn = await js.command("dial", addr=addressOf(tau))
            self.assertEqual(conn["encryption"], NOISE)
            self.assertIn(js.peerId, [str(c.remotePeer) for c in tau.connections()])
            other = await startHost(self, security=["noise"])
            mine = await other.connect(js.addrs[0])
            self.assertEqual(str(mine.remotePeer), js.peerId)

    async def test_dialerOrder(self):
        """
        When both speak TLS and Noise, the dialer's first choice wins: js
        preferring Noise gets Noise from a default tau, and tau preferring
        Noise gets Noise from js preferring TLS.
        """
        tau = await startHost(self)
        js = await self.js(encrypter="noise,tls")
        conn = await js.command("dial", addr=addressOf(tau))
        self.assertEqual(conn["encryption"], NOISE)
        noiseFirst = await startHost(self, security=["noise", "tls"])
        tlsFirst = await self.js(encrypter="tls,noise")
        mine = await noiseFirst.connect(tlsFirst.addrs[0])
        self.assertEqual(mine.security, NOISE)
        default = await startHost(self)
        mine = await default.connect(tlsFirst.addrs[0])
        self.assertEqual(mine.security, "/tls/1.0.0")
