"""
The serving engine against an in-memory store, without a network.
"""

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from tau import cids
from tau.bitswap.engine import Engine
from tau.bitswap.message import BLOCK, HAVE, PRESENCE_DONT_HAVE, PRESENCE_HAVE, Entry, Message
from tests.bitswap.fakes import MemoryBlockStore

PEER = "peer-a"
OTHER = "peer-b"


class Sender:
    def __init__(self):
        self.sent = []
        self.hold = None

    async def __call__(self, peer, message):
        self.sent.append((peer, message))
        if self.hold is not None:
            await self.hold


class EngineTests(SynchronousTestCase):
    def setUp(self):
        self.store = MemoryBlockStore()
        self.send = Sender()
        self.engine = Engine(self.store, self.send)
        self.small = self.store.add(b"s" * 100)
        self.large = self.store.add(b"L" * 5000)
        self.missing = cids.makeCID(b"nobody has this")

    def want(self, *entries, peer=PEER, full=False):
        self.engine.messageReceived(peer, Message(entries=list(entries), full=full))

    def blocks(self):
        return [data for _, m in self.send.sent for _, data in m.blocks]

    def presences(self):
        return [(c, kind) for _, m in self.send.sent for c, kind in m.presences]

    def test_wantBlock(self):
        """
        want-block is answered with the block, under the wanted CID's prefix.
        """
        self.want(Entry(self.large, wantType=BLOCK))
        self.assertEqual(self.blocks(), [b"L" * 5000])
        prefix, data = self.send.sent[0][1].blocks[0]
        self.assertEqual(cids.cidForBlock(prefix, data), self.large)
        self.assertEqual(self.engine.ledgers[PEER].wants, {})
        self.assertEqual(self.engine.ledgers[PEER].bytesSent, 5000)

    def test_wantHaveLarge(self):
        """
        want-have of a block over 1 KiB: HAVE.
        """
        self.want(Entry(self.large, wantType=HAVE))
        self.assertEqual(self.presences(), [(self.large, PRESENCE_HAVE)])
        self.assertEqual(self.blocks(), [])

    def test_wantHaveSmall(self):
        """
        want-have of a block of at most 1 KiB: the block itself.
        """
        self.want(Entry(self.small, wantType=HAVE))
        self.assertEqual(self.blocks(), [b"s" * 100])
        self.assertEqual(self.presences(), [])

    def test_dontHave(self):
        """
        A missing block: DONT_HAVE only when asked for, once, and the want
        stays so the block goes out when it arrives.
        """
        self.want(Entry(self.missing, wantType=BLOCK, sendDontHave=False))
        self.assertEqual(self.send.sent, [])
        other = cids.makeCID(b"also missing")
        self.want(Entry(other, wantType=HAVE, sendDontHave=True))
        self.assertEqual(self.presences(), [(other, PRESENCE_DONT_HAVE)])
        self.want(Entry(self.large, wantType=BLOCK))  # a new message: no repeat
        self.assertEqual(self.presences(), [(other, PRESENCE_DONT_HAVE)])
        self.store.blocks[self.missing.multihash] = b"nobody has this"
        self.engine.blocksAdded([self.missing])
        self.assertIn(b"nobody has this", self.blocks())

    def test_cancel(self):
        """
        A cancel removes the want: nothing is sent when the block arrives.
        """
        self.want(Entry(self.missing))
        self.want(Entry(self.missing, cancel=True))
        self.store.blocks[self.missing.multihash] = b"nobody has this"
        self.engine.blocksAdded([self.missing])
        self.assertEqual(self.send.sent, [])

    def test_full(self):
        """
        C{full} replaces the wantlist.
        """
        self.want(Entry(self.missing))
        other = cids.makeCID(b"other")
        self.want(Entry(other), full=True)
        self.assertEqual(list(self.engine.ledgers[PEER].wants), [other])

    def test_priority(self):
        """
        Higher priority first.
        """
        self.engine.maxMessage = 6000  # one large block per message
        blocks = [self.store.add(bytes([i]) * 5000) for i in range(3)]
        self.want(*[Entry(c, priority=p) for c, p in zip(blocks, (1, 9, 5))])
        self.assertEqual([m.blocks[0][1][0] for _, m in self.send.sent], [1, 2, 0])

    def test_batching(self):
        """
        Blocks are batched up to the message limit.
        """
        self.engine.maxMessage = 64 * 1024
        blocks = [self.store.add(bytes([i]) * 10000) for i in range(20)]
        self.want(*[Entry(c) for c in blocks])
        sizes = [m.blockBytes() for _, m in self.send.sent]
        self.assertEqual(sum(sizes), 200000)
        self.assertTrue(all(s <= 64 * 1024 for s in sizes), sizes)
        self.assertLess(len(sizes), 8)

    def test_wantlistLimit(self):
        """
        Wants beyond the per-peer limit are ignored.
        """
        self.engine.maxWantlist = 10
        self.want(*[Entry(cids.makeCID(str(i).encode())) for i in range(15)])
        ledger = self.engine.ledgers[PEER]
        self.assertEqual(len(ledger.wants), 10)
        self.assertEqual(ledger.wantsDropped, 5)

    def test_corruptNotServed(self):
        """
        A block the store reports corrupt is not served; DONT_HAVE instead.
        """
        self.store.corrupt.add(self.large.multihash)
        self.want(Entry(self.large, sendDontHave=True))
        self.assertEqual(self.blocks(), [])
        self.assertEqual(self.presences(), [(self.large, PRESENCE_DONT_HAVE)])
        self.flushLoggedErrors()

    def test_slowPeer(self):
        """
        While one peer's send is blocked, another peer is still answered;
        a cancel that arrives meanwhile is honoured.
        """
        self.engine.maxMessage = 6000
        hold = self.send.hold = Deferred()
        blocks = [self.store.add(bytes([i]) * 5000) for i in range(3)]
        self.want(*[Entry(c) for c in blocks])
        self.assertEqual(len(self.send.sent), 1)
        self.want(Entry(blocks[2], cancel=True))
        self.send.hold = None
        self.want(Entry(self.small), peer=OTHER)
        self.assertEqual([p for p, _ in self.send.sent], [PEER, OTHER])
        hold.callback(None)
        self.assertEqual([p for p, _ in self.send.sent], [PEER, OTHER, PEER])
        self.assertEqual(self.blocks()[-1], bytes([1]) * 5000)

    def test_disconnect(self):
        self.want(Entry(self.missing))
        self.engine.peerDisconnected(PEER)
        self.assertEqual(self.engine.ledgers, {})
        self.engine.blocksAdded([self.missing])
        self.assertEqual(self.send.sent, [])
