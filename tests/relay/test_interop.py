"""
Circuit relay v2 against js-libp2p 3.x with @libp2p/circuit-relay-v2
(tests/interop/js/relay.mjs): a js relay between two tau nodes, and a tau
relay between two js nodes.
"""

import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tau.identity import PeerID
from tau.protocols import identify
from tau.relay import RelayLimits
from tests.hosts import addressOf, roundTrip
from tests.interop.jspeer import JS_DIR, JsPeerUnavailable, startJsPeer
from tests.relay.helpers import startRelayHost

MiB = 1 << 20


class RelayInteropTests(TestCase):
    timeout = 180

    async def jsNode(self, *args):
        if not (JS_DIR / "node_modules" / "@libp2p" / "circuit-relay-v2").exists():
            raise JsPeerUnavailable("npm ci --prefix tests/interop/js first")
        peer = await startJsPeer(reactor, script="relay.mjs", extraArgs=args)
        self.addCleanup(lambda: Deferred.fromCoroutine(peer.stop()))
        return peer

    async def test_jsRelayBetweenTauNodes(self):
        """
        tau A reserves a slot on a js relay, tau B dials A through it; both
        open streams over the relayed connection, byte-exact, and identify
        runs on it.
        """
        relay = await self.jsNode("--relay-server", "--relay-data", str(16 * MiB))
        relayPeer = PeerID.fromString(relay.peerId)
        a, aClient, _ = await startRelayHost(self)
        b, _, _ = await startRelayHost(self)
        reservation = await aClient.listen(relayPeer, relay.addrs[0])
        self.assertEqual(reservation.relay, relayPeer)
        self.assertGreater(reservation.expire, reactor.seconds())
        self.assertTrue(reservation.voucher)
        self.assertEqual(reservation.limit.data, 16 * MiB)
        self.assertIn(str(a.peerID), (await relay.command("reservations"))["peers"])
        circuit = f"{relay.addrs[0]}/p2p-circuit/p2p/{a.peerID}"
        self.assertIn(circuit.split("/p2p/" + str(a.peerID))[0], a.announcedAddresses())

        conn = await b.connect(circuit)
        self.assertEqual(conn.remotePeer, a.peerID)
        self.assertEqual(conn.relay, relayPeer)
        self.assertTrue(conn.limited)
        result = await identify.whenIdentified(b, conn)
        self.assertEqual(result.agentVersion, a.agentVersion)
        payload = os.urandom(2 * MiB)
        self.assertEqual(await roundTrip(b, a.peerID, payload), payload)
        self.assertEqual(await roundTrip(a, b.peerID, payload[: MiB // 2]), payload[: MiB // 2])
        [inbound] = [c for c in a.connections(b.peerID)]
        self.assertEqual(inbound.relay, relayPeer)
        self.assertEqual(inbound.direction, "inbound")

    async def test_tauRelayBetweenJsNodes(self):
        """
        js A listens through a tau relay (/p2p-circuit), js B dials it there
        and echoes bytes through it.
        """
        r, _, service = await startRelayHost(self, service="on", limits=RelayLimits(data=64 * MiB, duration=120))
        relayAddr = addressOf(r)
        jsA = await self.jsNode("--listen", f"{relayAddr}/p2p-circuit")
        circuitAddrs = [x for x in jsA.addrs if "/p2p-circuit" in x]
        self.assertEqual(circuitAddrs, [f"{relayAddr}/p2p-circuit/p2p/{jsA.peerId}"])
        self.assertIn(PeerID.fromString(jsA.peerId), service.store)
        jsB = await self.jsNode()
        conn = await jsB.command("dial", addr=circuitAddrs[0])
        self.assertEqual(conn["peer"], jsA.peerId)
        self.assertTrue(conn["limited"])
        self.assertEqual(conn["encryption"], "/tls/1.0.0")
        result = await jsB.command("echo", peer=jsA.peerId, bytes=4 * MiB, streams=2)
        self.assertEqual(result["bytes"], 4 * MiB)
        self.assertEqual(len(service.circuits), 1)
        [circuit] = service.circuits
        self.assertGreaterEqual(circuit.counts[0], 8 * MiB)
        self.assertGreaterEqual(circuit.counts[1], 8 * MiB)
