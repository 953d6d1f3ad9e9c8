"""
The fetching side of Bitswap on a fake clock: how long a want-block waits
on a peer.
"""

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tau import cids
from tau.bitswap.client import MAX_BLOCK_WAIT, Client
from tau.bitswap.message import BLOCK, PRESENCE_HAVE

from .fakes import MemoryBlockStore

PEER, OTHER = "peer-a", "peer-b"


class BlockWaitTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.sent = []   # (peer, entry)
        self.peers = [PEER]
        self.client = Client(
            MemoryBlockStore(), self.clock,
            sendWants=lambda peer, entries: self.sent.extend((peer, e) for e in entries),
            connectedPeers=lambda: list(self.peers), blockTimeout=5.0, fetchTimeout=120.0)
        self.blocks = [b"block %d " % i * 100 for i in range(10)]
        self.cids = [cids.makeCID(b) for b in self.blocks]

    def fetchAll(self):
        results = {}
        for c in self.cids:
            d = Deferred.fromCoroutine(self.client.fetch(c))
            d.addBoth(lambda r, c=c: results.__setitem__(c, r))
        # PEER says it has them all: each is then asked of it as a want-block
        self.client.presencesReceived(PEER, [(c, PRESENCE_HAVE) for c in self.cids])
        self.clock.advance(0)
        blockWants = [e.cid for p, e in self.sent if p == PEER and e.wantType == BLOCK and not e.cancel]
        self.assertEqual(blockWants, self.cids)
        return results

    def deliver(self, i):
        d = Deferred.fromCoroutine(
            self.client.blocksReceived(PEER, [(cids.prefixOf(self.cids[i]), self.blocks[i])]))
        self.assertEqual(self.successResultOf(d), None)

    def test_slowPeerKeepsItsWants(self):
        """
        A peer that sends one block every 2 s, ten asked at once (20 s in
        all, four times blockTimeout): no want leaves it for another peer,
        every fetch ends.
        """
        results = self.fetchAll()
        self.peers.append(OTHER)
        for i in range(10):
            self.clock.advance(2.0)
            self.deliver(i)
        self.assertEqual([e for p, e in self.sent if p == OTHER], [])
        self.assertEqual([results.get(c) for c in self.cids], self.blocks)
        self.assertEqual(self.client.wants, {})

    def test_silentPeerLosesItsWants(self):
        """
        A peer that sends nothing is given up after blockTimeout: the wants
        go to the other peers.
        """
        self.fetchAll()
        self.peers.append(OTHER)
        self.clock.advance(4.9)
        self.assertEqual([e for p, e in self.sent if p == OTHER], [])
        self.clock.advance(0.1)
        self.assertEqual([e.cid for p, e in self.sent if p == OTHER], self.cids)   # who has them?

    def test_waitIsBounded(self):
        """
        A peer that keeps sending blocks, but never the last one: that want
        moves on after MAX_BLOCK_WAIT blockTimeouts.
        """
        self.fetchAll()
        self.peers.append(OTHER)
        moved = lambda: [e.cid for p, e in self.sent if p == OTHER]  # noqa: E731
        t = 0.0
        for i in range(9):
            self.clock.advance(3.0)
            t += 3.0
            self.deliver(i)
            if t < MAX_BLOCK_WAIT * 5.0:
                self.assertEqual(moved(), [], t)
        self.clock.advance(MAX_BLOCK_WAIT * 5.0 - t)
        self.assertEqual(moved(), [self.cids[9]])
