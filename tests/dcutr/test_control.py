"""
The control API commands of this branch: swarm/holepunch and perf.
"""

from twisted.trial.unittest import TestCase

from tau.dcutr import PROTOCOL_ID, Outcome
from tests.test_node import api, startedNode


class ControlTests(TestCase):
    timeout = 60

    async def test_holePunchOutcomes(self):
        """
        swarm/holepunch lists the outcomes, answers one peer's, and 404 for
        a peer never punched; the node serves /libp2p/dcutr.
        """
        node = await startedNode(self)
        code, body = await api(node, "id")
        self.assertIn(PROTOCOL_ID, body["Protocols"])
        self.assertEqual(await api(node, "swarm/holepunch"), (200, {"Peers": []}))
        peer = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"
        code, body = await api(node, "swarm/holepunch", arg=peer)
        self.assertEqual(code, 404)
        self.assertIn("no hole punch", body["Message"])
        from tau.identity import PeerID

        node.holepunch.outcomes[PeerID.fromString(peer)] = Outcome("relayed", "initiator", "R", attempts=3, reason="dropped", rtt=0.0123)
        code, body = await api(node, "swarm/holepunch", arg=peer)
        self.assertEqual(code, 200)
        self.assertEqual(
            body,
            {"Peer": peer, "State": "relayed", "Role": "initiator", "Relay": "R", "Attempts": 3, "Addr": None,
             "Reason": "dropped", "RTT": 12.3, "Seconds": None},
        )
        self.assertEqual([p["Peer"] for p in (await api(node, "swarm/holepunch"))[1]["Peers"]], [peer])

    async def test_holePunchingOff(self):
        node = await startedNode(self, dcutr={"hole-punching": False})
        self.assertIsNone(node.holepunch)
        code, body = await api(node, "id")
        self.assertNotIn(PROTOCOL_ID, body["Protocols"])
        self.assertEqual(await api(node, "swarm/holepunch"), (200, {"Peers": []}))

    async def test_perf(self):
        """
        perf moves the asked bytes on one stream to a peer serving perf;
        sizes past 1 GiB are refused.
        """
        a = await startedNode(self)
        b = await startedNode(self, perf=True)
        target = (await api(b, "id"))[1]["Addresses"][0]
        self.assertEqual((await api(a, "swarm/connect", arg=target))[0], 200)
        code, body = await api(a, "perf", arg=str(b.config.peerID), download=str(1 << 20), upload="1000")
        self.assertEqual(code, 200, body)
        self.assertEqual((body["Download"]["Bytes"], body["Upload"]["Bytes"]), (1 << 20, 1000))
        self.assertGreater(body["Download"]["Seconds"], 0)
        self.assertEqual(body["Addr"], target.split("/p2p/")[0])
        code, body = await api(a, "perf", arg=str(b.config.peerID), download=str((1 << 30) + 1))
        self.assertEqual(code, 400)
        self.assertIn("download must be", body["Message"])
        self.assertEqual((await api(a, "perf", arg=str(b.config.peerID), download=str(1 << 30), upload="x"))[0], 400)
        code, body = await api(b, "perf", arg=str(a.config.peerID), download="10")
        self.assertEqual(code, 502)
