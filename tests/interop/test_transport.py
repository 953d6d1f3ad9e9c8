"""
tau <-> js-libp2p over TCP + TLS 1.3 + yamux: each dials the other, identify
both ways, ping, 100 concurrent echo streams of 512 KiB each way, perf 100 MiB each way,
and private swarms.
"""

import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from tau._version import __version__
from tau.host import DialError
from tau.identity import PeerID, PublicKey
from tau.protocols import perf, ping
from tests.hosts import addressOf, startHost
from tests.interop.jspeer import ECHO_PROTOCOL, startJsPeer, writeSwarmKey

MiB = 1 << 20
#: bytes per echo stream: two yamux initial windows (256 KiB), so every
#: stream waits for window updates, in both directions
ECHO_BYTES = 512 * 1024


class TauJsTests(TestCase):
    timeout = 300

    async def js(self, **kwargs):
        peer = await startJsPeer(reactor, **kwargs)
        self.addCleanup(lambda: Deferred.fromCoroutine(peer.stop()))
        return peer

    def assertJsSawTau(self, info, tau):
        """
        What js's peer store learnt from tau's identify.
        """
        self.assertTrue(info["known"])
        self.assertEqual(info["agentVersion"], f"tau/{__version__}")
        for protocol in ["/ipfs/id/1.0.0", "/ipfs/id/push/1.0.0", "/ipfs/ping/1.0.0", "/perf/1.0.0", ECHO_PROTOCOL]:
            self.assertIn(protocol, info["protocols"])
        key = PublicKey.fromProtobuf(bytes.fromhex(info["publicKey"]))
        self.assertEqual(key.peerID(), tau.peerID)
        self.assertIn(tau.listenAddresses()[0], [a.split("/p2p/")[0] for a in info["addrs"]])

    def assertTauSawJs(self, tau, js):
        peer = PeerID.fromString(js.peerId)
        record = tau.peerstore.get(peer)
        self.assertIsNotNone(record)
        self.assertIn("js-libp2p", record.agentVersion)
        self.assertIn("/ipfs/ping/1.0.0", record.protocols)
        self.assertIn(js.addrs[0].split("/p2p/")[0], tau.peerstore.addrs(peer))
        self.assertEqual(tau.peerstore.publicKey(peer).peerID(), peer)

    async def test_jsDialsTau(self):
        tau = await startHost(self)
        js = await self.js()
        conn = await js.command("dial", addr=addressOf(tau))
        self.assertEqual(conn["peer"], str(tau.peerID))
        self.assertEqual(conn["encryption"], "/tls/1.0.0")
        self.assertEqual(conn["multiplexer"], "/yamux/1.0.0")
        self.assertIsNotNone(conn["identifyMs"])
        self.assertJsSawTau(await js.command("peerInfo", peer=str(tau.peerID)), tau)
        [ours] = tau.connections()
        self.assertEqual(ours.direction, "inbound")
        from tau.protocols import identify

        await identify.whenIdentified(tau, ours)
        self.assertTauSawJs(tau, js)

    async def test_tauDialsJs(self):
        tau = await startHost(self)
        js = await self.js()
        conn = await tau.connect(js.addrs[0])
        self.assertEqual(str(conn.remotePeer), js.peerId)
        from tau.protocols import identify

        await identify.whenIdentified(tau, conn)
        self.assertTauSawJs(tau, js)
        await js.waitEvent(lambda e: e.get("event") == "identify" and e.get("peer") == str(tau.peerID))
        self.assertJsSawTau(await js.command("peerInfo", peer=str(tau.peerID)), tau)

    async def test_pingBothWays(self):
        tau = await startHost(self)
        js = await self.js()
        await tau.connect(js.addrs[0])
        rtts = await ping.ping(tau, PeerID.fromString(js.peerId), count=5)
        self.assertEqual(len(rtts), 5)
        self.assertTrue(all(0 < r < 1 for r in rtts), rtts)
        answer = await js.command("ping", addr=addressOf(tau))
        self.assertGreaterEqual(answer["rtt"], 0)

    async def test_hundredStreamsEachWay(self):
        """
        100 concurrent streams, each echoing 512 KiB (two initial windows:
        flow control is needed) byte-exact, from js to tau (checked by js)
        and from tau to js (checked here).  The bulk throughput is
        L{test_perfHundredMiBEachWay}'s.
        """
        tau = await startHost(self)
        js = await self.js()
        answer = await js.command("echo", addr=addressOf(tau), streams=100, bytes=ECHO_BYTES, timeout=240)
        self.assertEqual(answer["totalBytes"], 100 * ECHO_BYTES)
        peer = PeerID.fromString(js.peerId)
        payloads = [os.urandom(ECHO_BYTES) for _ in range(100)]

        async def one(payload):
            stream = await tau.newStream(peer, [ECHO_PROTOCOL])
            stream.write(payload)
            stream.closeWrite()
            return await stream.readToEnd(2 * ECHO_BYTES)

        results = await gatherResults([Deferred.fromCoroutine(one(p)) for p in payloads])
        self.assertEqual(len(results), 100)
        for got, sent in zip(results, payloads):
            self.assertEqual(got, sent)

    async def test_perfHundredMiBEachWay(self):
        tau = await startHost(self)
        js = await self.js()
        peer = PeerID.fromString(js.peerId)
        await tau.connect(js.addrs[0])
        result = await perf.perf(tau, peer, upload=100 * MiB, download=100 * MiB)
        self.assertEqual(result["upload"][0], 100 * MiB)
        self.assertEqual(result["download"][0], 100 * MiB)
        answer = await js.command("perf", addr=addressOf(tau), upload=100 * MiB, download=100 * MiB, timeout=120)
        self.assertEqual(answer["uploadBytes"], 100 * MiB)
        self.assertEqual(answer["downloadBytes"], 100 * MiB)

    async def test_privateSwarm(self):
        """
        With the same swarm key tau and js connect both ways; with another
        key, or none, neither can.
        """
        keyFile = self.mktemp()
        key = writeSwarmKey(keyFile)
        tau = await startHost(self, swarmKey=key)
        member = await self.js(swarmKeyPath=keyFile)
        await tau.connect(member.addrs[0])
        answer = await member.command("echo", addr=addressOf(tau), streams=2, bytes=1000)
        self.assertEqual(answer["totalBytes"], 2000)
        otherFile = self.mktemp()
        writeSwarmKey(otherFile)
        stranger = await self.js(swarmKeyPath=otherFile)
        public = await self.js()
        for js in (stranger, public):
            with self.assertRaises(DialError):
                await tau.connect(js.addrs[0], timeout=5)
            with self.assertRaises(Exception):
                await js.command("dial", addr=addressOf(tau), timeout=5)
        self.assertEqual([str(c.remotePeer) for c in tau.connections()], [member.peerId])
