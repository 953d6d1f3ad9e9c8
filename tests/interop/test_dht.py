"""
tau and js-libp2p (@libp2p/kad-dht, server mode) in one DHT.
"""

import hashlib

import cid as pycid
import multihash
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tau.identity import PeerID
from tau.kad.network import DHTService
from tests.hosts import startHost
from tests.interop.jspeer import startJsPeer


def content(data):
    mh = multihash.encode(hashlib.sha256(data).digest(), 0x12)
    return str(pycid.make_cid(1, "raw", mh)), mh


class TauJsDHTTests(TestCase):
    timeout = 180

    async def network(self):
        js = await startJsPeer(reactor, dht=True)
        self.addCleanup(lambda: Deferred.fromCoroutine(js.stop()))
        nodes = []
        for _ in range(2):
            host = await startHost(self)
            dht = DHTService(host, reactor, peers=[js.addrs[0]])
            dht.startService()
            self.addCleanup(lambda dht=dht: dht.stopService() if dht.running else None)
            await dht._bootstrapping
            nodes.append((host, dht))
        return js, nodes

    async def test_providersBothWays(self):
        js, [(a, dhtA), (b, dhtB)] = await self.network()
        ours, key = content(b"provided by tau")
        self.assertGreater(await dhtA.provide(key), 0)
        found = await js.command("dhtFindProviders", cid=ours, count=1)
        self.assertEqual([p["peer"] for p in found["providers"]], [str(a.peerID)])
        self.assertIn(a.listenAddresses()[0], found["providers"][0]["addrs"])
        theirs, key = content(b"provided by js")
        await js.command("dhtProvide", cid=theirs)
        found = await dhtB.findProviders(key, 1)
        self.assertEqual([peer for peer, _ in found], [PeerID.fromString(js.peerId)])

    async def test_findNodeBothWays(self):
        js, [(a, dhtA), (b, dhtB)] = await self.network()
        found = await js.command("dhtFindPeer", peer=str(b.peerID))
        self.assertIn(b.listenAddresses()[0], found["addrs"])
        closest = await js.command("dhtClosestPeers", peer=str(a.peerID))
        self.assertIn(str(a.peerID), closest["peers"])
        table = await js.command("dhtRoutingTable")
        self.assertEqual(set(table["peers"]), {str(a.peerID), str(b.peerID)})
        peers = await dhtA.core.findClosestPeers(PeerID.fromString(js.peerId).toBytes())
        self.assertIn(b.peerID, [info.peerID for info in peers])
        self.assertIn(PeerID.fromString(js.peerId), dhtB.core.table)
