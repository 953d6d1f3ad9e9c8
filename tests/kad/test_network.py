"""
The DHT over real hosts on loopback.
"""

import hashlib
import random
import statistics

import multihash
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.trial.unittest import TestCase

from tau.kad.network import DHTService
from tests.hosts import addressOf, startHost


def contentKey(i):
    return multihash.encode(hashlib.sha256(b"key %d" % i).digest(), 0x12)


async def startDHT(case, peers=()):
    host = await startHost(case)
    dht = DHTService(host, reactor, peers=peers)
    dht.startService()
    case.addCleanup(lambda: dht.stopService() if dht.running else None)
    return host, dht


class TwentyNodesTests(TestCase):
    timeout = 300

    async def test_hundredKeysFoundFromANodeThatProvidedNone(self):
        """
        20 nodes bootstrapped from one; 100 keys provided from random nodes
        are all found from a node that provided none.
        """
        first = await startDHT(self)
        nodes = [first] + [await startDHT(self, peers=[addressOf(first[0])]) for _ in range(18)]
        await gatherResults([d._bootstrapping for _, d in nodes[1:]])
        for _, dht in nodes[1:]:
            await dht.core.refresh()
        rng = random.Random(4)
        providers = {}
        for i in range(100):
            host, dht = rng.choice(nodes)
            told = await dht.provide(contentKey(i))
            self.assertGreater(told, 0)
            providers[i] = host.peerID
        # The 20th node joins now: no record was sent to it, so each key is
        # found through the network, not in its own store.
        seeker = await startDHT(self, peers=[addressOf(rng.choice(nodes)[0])])
        await seeker[1]._bootstrapping
        times = []
        for i in range(100):
            started = reactor.seconds()
            found = await seeker[1].findProviders(contentKey(i), 1)
            times.append(reactor.seconds() - started)
            self.assertIn(providers[i], [peer for peer, addrs in found], f"key {i}")
        times.sort()
        print(
            f"\n20 nodes, 100 keys: findProviders median {statistics.median(times) * 1000:.1f} ms, "
            f"p95 {times[94] * 1000:.1f} ms"
        )

    async def test_findPeerAcrossTheNetwork(self):
        first = await startDHT(self)
        nodes = [first] + [await startDHT(self, peers=[addressOf(first[0])]) for _ in range(5)]
        await gatherResults([d._bootstrapping for _, d in nodes[1:]])
        a, b = nodes[1], nodes[5]
        for conn in a[0].connections(b[0].peerID):
            await conn.close()
        addrs = await a[1].findPeer(b[0].peerID)
        self.assertIn(b[0].listenAddresses()[0], [x.split("/p2p/")[0] for x in addrs])
