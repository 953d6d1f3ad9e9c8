"""
Tests for L{tau.kad.dht.KademliaCore}: answering requests with limits, and
the query API over a small simulated network.
"""

import random
import sqlite3

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tau.identity import PrivateKey
from tau.kad.dht import IKadTransport, KademliaCore
from tau.kad.keys import InvalidKey, kadID, peerKadID
from tau.kad.messages import KadProtocolError, Message, Record, parsePeers, peerEntry
from tau.kad.queries import NotFound
from tau.kad.records import InvalidRecord, RecordStore, Validator, defaultValidators, pkKey
from tau.kad.simulation import SIM_ADDR, SimNetwork, SimTransport
from tests.kad.helpers import RecordingTransport, peers

MH = b"\x12\x20" + b"m" * 32


def ids(message, field="closerPeers"):
    return [p.peerID for p in parsePeers(getattr(message, field), 1000)[0]]


class HandleTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.me = peers(1, seed=1)[0]
        self.transport = RecordingTransport()
        self.store = RecordStore()
        self.core = KademliaCore(self.me, self.clock, self.transport, self.store, k=5)
        self.others = peers(30, seed=2)
        for p in self.others:
            self.core.peerSeen(p, True)
        self.asker = peers(1, seed=3)[0]

    def test_transportInterface(self):
        verifyObject(IKadTransport, SimTransport(None, self.me))

    def test_findNode(self):
        """
        FIND_NODE answers the k closest fresh peers, with addresses, never the
        asker.
        """
        key = self.others[0].toBytes()
        r = self.core.handle(self.others[0], Message(type=Message.FIND_NODE, key=key))
        target = kadID(key)
        expected = sorted(self.core.table.peers(), key=lambda p: peerKadID(p) ^ target)[1:6]
        self.assertEqual(ids(r), expected)
        self.assertTrue(all(p.addrs for p in r.closerPeers))

    def test_findNodeTarget(self):
        """
        A peer we can reach (even a client-mode one, not in the table) is put
        first when it is the target; asking for us gets us.
        """
        target = peers(1, seed=9)[0]
        r = self.core.handle(self.asker, Message(type=Message.FIND_NODE, key=target.toBytes()))
        self.assertEqual(ids(r)[0], target)
        self.assertEqual(len(r.closerPeers), 6)
        r = self.core.handle(self.asker, Message(type=Message.FIND_NODE, key=self.me.toBytes()))
        self.assertEqual(ids(r), [self.me])
        self.assertEqual(list(r.closerPeers[0].addrs), [b"/me"])

    def test_staleNotHandedOut(self):
        """
        Peers that have not answered within C{staleAfter} are not given out.
        """
        self.clock.advance(3601)
        fresh = self.others[:2]
        for p in fresh:
            self.core.peerSeen(p, True)
        r = self.core.handle(self.asker, Message(type=Message.FIND_NODE, key=b"x"))
        self.assertEqual(set(ids(r)), set(fresh))

    def test_badRequests(self):
        for m in (
            Message(type=Message.FIND_NODE),
            Message(type=Message.GET_PROVIDERS, key=b"not a multihash"),
            Message(type=Message.ADD_PROVIDER, key=b"\x00\x51" + b"x" * 81),
            Message(type=Message.PUT_VALUE, key=b"/pk/x"),
            Message(type=Message.PUT_VALUE, key=b"/pk/x", record=Record(key=b"/pk/y", value=b"")),
            Message(type=Message.PUT_VALUE, key=b"/pk/x", record=Record(key=b"/pk/x", value=b"junk")),
            Message(type=Message.PUT_VALUE, key=b"/nope/x", record=Record(key=b"/nope/x", value=b"")),
        ):
            self.assertRaises(KadProtocolError, self.core.handle, self.asker, m)

    def test_ping(self):
        r = self.core.handle(self.asker, Message(type=Message.PING))
        self.assertEqual(r.type, Message.PING)

    def test_clientModeAnswersNothing(self):
        core = KademliaCore(self.me, self.clock, self.transport, self.store, mode="client")
        self.assertRaises(KadProtocolError, core.handle, self.asker, Message(type=Message.PING))
        self.assertRaises(ValueError, KademliaCore, self.me, self.clock, self.transport, self.store, mode="x")

    def test_addAndGetProviders(self):
        """
        ADD_PROVIDER stores only the sender's own entry, and only with an
        address; GET_PROVIDERS returns it with closer peers.
        """
        other = self.others[5]
        m = Message(
            type=Message.ADD_PROVIDER,
            key=MH,
            providerPeers=[peerEntry(other, [SIM_ADDR]), peerEntry(self.asker), peerEntry(self.asker, [SIM_ADDR])],
        )
        self.assertIsNone(self.core.handle(self.asker, m))
        r = self.core.handle(other, Message(type=Message.GET_PROVIDERS, key=MH))
        self.assertEqual(r.type, Message.GET_PROVIDERS)
        got = parsePeers(r.providerPeers, 10)[0]
        self.assertEqual([(p.peerID, p.addrs) for p in got], [(self.asker, (SIM_ADDR,))])
        self.assertEqual(len(r.closerPeers), 5)
        self.assertEqual(self.core.stats["ADD_PROVIDER entries ignored"], 2)

    def test_addrlessProviderIgnored(self):
        m = Message(type=Message.ADD_PROVIDER, key=MH, providerPeers=[peerEntry(self.asker)])
        self.core.handle(self.asker, m)
        self.assertEqual(self.store.getProviders(MH, self.clock.seconds()), [])

    def test_providerAddressesParsed(self):
        """
        ADD_PROVIDER keeps only addresses that parse as multiaddrs, at most
        C{maxAddrsPerProvider} of them; an entry with none is ignored.
        """
        junk = [bytes([i]) * 1024 for i in range(16)]
        m = Message(type=Message.ADD_PROVIDER, key=MH, providerPeers=[peerEntry(self.asker, junk)])
        self.core.handle(self.asker, m)
        self.assertEqual(self.store.providerCount(), 0)
        self.assertEqual(self.core.stats["ADD_PROVIDER entries ignored"], 1)
        good = [SIM_ADDR[:-2] + port.to_bytes(2, "big") for port in range(1, 11)]
        m = Message(type=Message.ADD_PROVIDER, key=MH, providerPeers=[peerEntry(self.asker, junk + good)])
        self.core.handle(self.asker, m)
        [(peer, addrs)] = self.store.getProviders(MH, self.clock.seconds())
        self.assertEqual((peer, addrs), (self.asker, tuple(good[:8])))

    def test_addProviderFloodCapped(self):
        """
        A peer sending ADD_PROVIDER faster than the rate limit gets no more
        records stored until its bucket refills; others are unaffected.
        """
        core = KademliaCore(
            self.me, self.clock, self.transport, RecordStore(), addProviderBurst=10, addProviderRate=1.0
        )

        def add(peer, i):
            key = b"\x12\x20" + i.to_bytes(32, "big")
            core.handle(peer, Message(type=Message.ADD_PROVIDER, key=key, providerPeers=[peerEntry(peer, [SIM_ADDR])]))

        for i in range(100):
            add(self.asker, i)
        self.assertEqual(core.store.providerCount(self.asker), 10)
        self.assertEqual(core.stats["ADD_PROVIDER rate-limited"], 90)
        add(self.others[0], 1000)
        self.assertEqual(core.store.providerCount(self.others[0]), 1)
        self.clock.advance(5)
        for i in range(100, 120):
            add(self.asker, i)
        self.assertEqual(core.store.providerCount(self.asker), 15)

    def test_addProviderPerSource(self):
        """
        The identities of one source (a machine) share a budget of
        ADD_PROVIDER on top of each one's own; other sources, and requests
        of no known source, are not held to it.
        """
        core = KademliaCore(
            self.me, self.clock, self.transport, RecordStore(),
            addProviderBurst=10, addProviderRate=1.0, addProviderSourceBurst=15, addProviderSourceRate=2.0,
        )
        keys = iter(range(1000))

        def add(peer, source):
            key = b"\x12\x20" + next(keys).to_bytes(32, "big")
            message = Message(type=Message.ADD_PROVIDER, key=key, providerPeers=[peerEntry(peer, [SIM_ADDR])])
            core.handle(peer, message, source)

        sybils = self.others[:3]
        for peer in sybils:
            for _ in range(10):
                add(peer, "192.0.2.1")
        self.assertEqual([core.store.providerCount(p) for p in sybils], [10, 5, 0])
        add(self.others[3], "192.0.2.2")
        add(self.others[4], None)
        self.assertEqual(core.store.providerCount(self.others[3]), 1)
        self.assertEqual(core.store.providerCount(self.others[4]), 1)
        self.clock.advance(1)
        for _ in range(3):
            add(sybils[2], "192.0.2.1")
        self.assertEqual(core.store.providerCount(sybils[2]), 2)

    def test_providerRecordsEvicted(self):
        """
        Beyond the store's cap, a new record from any peer evicts the oldest
        one; the core counts the evictions.
        """
        core = KademliaCore(self.me, self.clock, self.transport, RecordStore(maxProviderRecords=2))
        for i, peer in enumerate(self.others[:3]):
            self.clock.advance(1)
            key = b"\x12\x20" + i.to_bytes(32, "big")
            core.handle(peer, Message(type=Message.ADD_PROVIDER, key=key, providerPeers=[peerEntry(peer, [SIM_ADDR])]))
        self.assertEqual(core.stats["provider records stored"], 3)
        self.assertEqual(core.stats["provider records evicted"], 1)
        self.assertEqual(core.store.providerCount(self.others[0]), 0)

    def test_perPeerRecordLimit(self):
        core = KademliaCore(self.me, self.clock, self.transport, RecordStore(maxRecordsPerPeer=3))
        for i in range(5):
            key = b"\x12\x20" + i.to_bytes(32, "big")
            core.handle(self.asker, Message(type=Message.ADD_PROVIDER, key=key, providerPeers=[peerEntry(self.asker, [SIM_ADDR])]))
        self.assertEqual(core.store.providerCount(self.asker), 3)
        self.assertEqual(core.stats["ADD_PROVIDER over limit"], 2)

    def test_fullDiskDropsRecords(self):
        """
        On a full disk (dht.sqlite: "database or disk is full") a peer's
        provider record is dropped and counted, its PUT_VALUE refused as a
        protocol answer; neither escapes as an unexpected error.
        """
        class FullStore(RecordStore):
            def addProvider(self, *a, **kw):
                raise sqlite3.OperationalError("database or disk is full")

            def putValue(self, *a, **kw):
                raise sqlite3.OperationalError("database or disk is full")

        core = KademliaCore(self.me, self.clock, self.transport, FullStore())
        core.handle(self.asker, Message(type=Message.ADD_PROVIDER, key=MH, providerPeers=[peerEntry(self.asker, [SIM_ADDR])]))
        self.assertEqual(core.stats["ADD_PROVIDER disk full"], 1)
        key = PrivateKey.generate()
        k = pkKey(key.peerID())
        m = Message(type=Message.PUT_VALUE, key=k, record=Record(key=k, value=key.publicKey().toProtobuf()))
        e = self.assertRaises(KadProtocolError, core.handle, self.asker, m)
        self.assertEqual(str(e), "PUT_VALUE refused: the disk is full")

    def test_putAndGetValue(self):
        key = PrivateKey.generate()
        k = pkKey(key.peerID())
        value = key.publicKey().toProtobuf()
        m = Message(type=Message.PUT_VALUE, key=k, record=Record(key=k, value=value))
        r = self.core.handle(self.asker, m)
        self.assertEqual((r.key, r.record.value), (k, value))
        r = self.core.handle(self.asker, Message(type=Message.GET_VALUE, key=k))
        self.assertEqual(r.record.value, value)
        self.assertTrue(r.record.timeReceived.endswith(b"Z"))
        self.assertEqual(len(r.closerPeers), 5)
        r = self.core.handle(self.asker, Message(type=Message.GET_VALUE, key=b"/pk/other"))
        self.assertFalse(r.HasField("record"))

    def test_valueSizeLimit(self):
        k = pkKey(self.asker)
        m = Message(type=Message.PUT_VALUE, key=k, record=Record(key=k, value=b"x" * 9000))
        self.assertRaises(KadProtocolError, self.core.handle, self.asker, m)


def network(n=60, seed=3, **kw):
    net = SimNetwork(n, seed=seed, **kw)
    net.buildTables()
    return net


class QueryTests(SynchronousTestCase):
    def test_findPeer(self):
        net = network()
        a, b = net.ids[0], net.ids[-1]
        net.nodes[a].table.remove(b)
        info = net.run(net.nodes[a].findPeer(b))
        self.assertEqual((info.peerID, info.addrs), (b, (SIM_ADDR,)))

    def test_findPeerMissing(self):
        net = network()
        ghost = peers(1, seed=77)[0]
        d = net.nodes[net.ids[0]].findPeer(ghost)
        self.assertRaises(NotFound, net.run, d)

    def test_findClosestPeers(self):
        net = network(200, k=10)
        key = b"some key"
        got = net.run(net.nodes[net.ids[5]].findClosestPeers(key))
        self.assertEqual([i.peerID for i in got], net.trueClosest(key, 10))

    def test_provideAndFind(self):
        """
        A provided key is found by another node, through its multihash, and
        the provider remembers to republish it.
        """
        net = network()
        provider, seeker = net.nodes[net.ids[1]], net.nodes[net.ids[2]]
        told = net.run(provider.provide(MH))
        self.assertEqual(told, 20)
        net.settle()
        holders = [p for p, c in net.nodes.items() if c.store._db and c.store.getProviders(MH, net.clock.seconds())]
        self.assertGreaterEqual(len(holders), 20)
        found = net.run(seeker.findProviders(MH, count=1))
        self.assertEqual([(i.peerID, i.addrs) for i in found], [(provider.selfID, (SIM_ADDR,))])
        self.assertEqual(provider.store.provided(), [MH])

    def test_findProvidersLocal(self):
        net = network()
        node = net.nodes[net.ids[1]]
        net.run(node.provide(MH))
        found = net.run(node.findProviders(MH, count=1))
        self.assertEqual([i.peerID for i in found], [node.selfID])

    def test_invalidProviderKey(self):
        net = network(10)
        d = net.nodes[net.ids[0]].provide(b"nope")
        self.failureResultOf(d, InvalidKey)
        d = net.nodes[net.ids[0]].findProviders(b"nope")
        self.failureResultOf(d, InvalidKey)

    def test_putAndGetValue(self):
        net = network()
        key = PrivateKey.generate()
        k, v = pkKey(key.peerID()), key.publicKey().toProtobuf()
        stored = net.run(net.nodes[net.ids[3]].putValue(k, v))
        self.assertEqual(stored, 20)
        self.assertEqual(net.run(net.nodes[net.ids[4]].getValue(k)), v)
        self.assertEqual(net.run(net.nodes[net.ids[4]].getValue(k, quorum=5)), v)

    def test_putInvalidValue(self):
        net = network(10)
        d = net.nodes[net.ids[0]].putValue(pkKey(net.ids[1]), b"junk")
        self.failureResultOf(d, InvalidRecord)
        d = net.nodes[net.ids[0]].getValue(b"/unknown/x")
        self.failureResultOf(d, InvalidRecord)

    def test_getValueMissing(self):
        net = network()
        d = net.nodes[net.ids[0]].getValue(pkKey(net.ids[1]))
        self.assertRaises(NotFound, net.run, d)

    def test_getValueIgnoresInvalidAnswers(self):
        """
        A peer answering GET_VALUE with a record that fails validation is
        ignored (and counted).
        """
        net = network()
        key = PrivateKey.generate()
        k = pkKey(key.peerID())
        lax = Validator(lambda key, value: None, lambda key, values: 0)
        for core in net.nodes.values():
            core.validators = {"pk": lax}
            core.store.putValue(k, b"forged", 0.0)
        asker = net.nodes[net.ids[0]]
        asker.validators = defaultValidators()
        self.assertRaises(NotFound, net.run, asker.getValue(k))
        self.assertGreater(asker.stats["invalid records received"], 0)

    def test_cancel(self):
        """
        Cancelling a query cancels its requests in flight.
        """
        clock = Clock()
        transport = RecordingTransport()
        core = KademliaCore(peers(1)[0], clock, transport, RecordStore())
        for p in peers(30, seed=8):
            core.peerSeen(p, True)
        d = core.findProviders(MH)
        self.assertEqual(len(transport.requests), 10)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(transport.cancelled, 10)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_stopCancelsQueries(self):
        clock = Clock()
        transport = RecordingTransport()
        core = KademliaCore(peers(1)[0], clock, transport, RecordStore())
        core.peerSeen(peers(1, seed=5)[0], True)
        core.start()
        d = core.findClosestPeers(b"k")
        core.stop()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_responseTypeChecked(self):
        """
        An answer of the wrong type counts as a failure of that peer.
        """
        clock = Clock()
        transport = RecordingTransport(answer=lambda p, m: Message(type=Message.PING))
        core = KademliaCore(peers(1)[0], clock, transport, RecordStore(), maxFailures=1)
        target = peers(1, seed=5)[0]
        core.peerSeen(target, True)
        self.assertEqual(self.successResultOf(core.findClosestPeers(b"k")), [])
        self.assertNotIn(target, core.table)


class MaintenanceTests(SynchronousTestCase):
    def test_bootstrapThroughTheNetwork(self):
        """
        Nodes joining one after the other through three known peers end up
        with routing tables good enough to find anyone.
        """
        net = SimNetwork(40, seed=4)
        net.bootstrapAll()
        self.assertTrue(all(len(c.table) >= 10 for c in net.nodes.values()))
        rng = random.Random(0)
        for _ in range(10):
            a, b = rng.sample(net.ids, 2)
            self.assertEqual(net.run(net.nodes[a].findPeer(b)).peerID, b)

    def test_bootstrapFailure(self):
        net = SimNetwork(5, seed=4)
        net.kill(0.2)
        (dead,) = net.dead
        core = net.nodes[next(p for p in net.ids if p != dead)]
        from tau.kad.messages import PeerInfo

        self.assertEqual(net.run(core.bootstrap([PeerInfo(dead, (SIM_ADDR,))])), 0)

    def test_refreshEvictsDeadPeers(self):
        """
        The periodic refresh looks up every due bucket and pings stale peers;
        dead peers get evicted.
        """
        net = network(100, staleAfter=1000.0)
        net.kill(0.2)
        node = net.nodes[net.live()[0]]
        deadInTable = [p for p in node.table.peers() if p in net.dead]
        self.assertTrue(deadInTable)
        net.clock.advance(1200)
        result = net.run(node.refresh())
        self.assertGreater(result["buckets"], 0)
        self.assertGreater(result["stale"], 0)
        net.run(node.refresh())
        self.assertEqual([p for p in node.table.peers() if p in net.dead], [])

    def test_timers(self):
        """
        L{KademliaCore.start} republishes provided keys every
        C{reprovideInterval} and expires old records.
        """
        net = network(30)
        node = net.nodes[net.ids[0]]
        node.reprovideInterval = 7200.0
        net.run(node.provide(MH))
        net.settle()
        node.start()
        self.addCleanup(node.stop)
        sent = node.stats["rpcs ADD_PROVIDER"]
        for _ in range(3):
            net.settle(3600)
        self.assertEqual(node.stats["rpcs ADD_PROVIDER"], 2 * sent)
        node.store.addProvider(MH, net.ids[1], [b"/x"], 0.0)
        net.settle(49 * 3600)
        self.assertNotIn(net.ids[1], [p for p, _ in node.store.getProviders(MH, net.clock.seconds())])
