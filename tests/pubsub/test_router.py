"""
The sans-IO gossipsub router, on a simulated network driven by a Clock.
"""

import random

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from tau.identity import PrivateKey
from tau.pb import rpc_pb2
from tau.pubsub.message import FLOODSUB, MESHSUB_10, RPC, Prune, jsMsgID, signMessage
from tau.pubsub.router import GossipParams, ValidationError
from tau.pubsub.score import ScoreParams

from tests.pubsub.sim import SimNet

T = "topic"


def randomGraph(net, nodes, degree, seed=1):
    rng = random.Random(seed)
    for i, a in enumerate(nodes):
        others = [b for b in nodes if b is not a]
        for b in rng.sample(others, degree):
            if frozenset((a.peerID, b.peerID)) not in net.links:
                net.connect(a, b)


def published(node):
    return [(m.topic, m.data) for m in node.delivered]


def pair(*joining):
    """
    Two connected nodes C{a} and C{b}; those named in C{joining} ("a", "b")
    join L{T} in that order, the network settling after each.
    """
    net = SimNet()
    a, b = net.node(), net.node()
    net.connect(a, b)
    for name in joining:
        {"a": a, "b": b}[name].router.join(T)
        net.settle()
    return net, a, b


def publisherAndSubscribers(count=8):
    """
    A node C{a}, not in L{T}, connected to C{count} others that joined it;
    C{a} publishes through fanout only (no flood publish).
    """
    net = SimNet()
    a = net.node()
    others = [net.node() for _ in range(count)]
    for o in others:
        net.connect(a, o)
        o.router.join(T)
    net.settle()
    a.router.params.floodPublish = False
    return net, a, others


class MeshTests(SynchronousTestCase):
    def test_meshFormsAndEveryoneGetsEachMessageOnce(self):
        net = SimNet()
        nodes = [net.node() for _ in range(30)]
        randomGraph(net, nodes, 4)
        for n in nodes:
            n.router.join(T)
        net.settle()
        net.heartbeats(3)
        p = GossipParams()
        for n in nodes:
            mesh = n.router.mesh[T]
            known = len(n.router.topicPeers(T))
            self.assertLessEqual(len(mesh), p.Dhi)
            self.assertGreaterEqual(len(mesh), min(p.Dlo, known))
            # mesh links are symmetric
            for peer in mesh:
                self.assertIn(n.peerID, net.byID[peer].router.mesh[T])
        d = nodes[0].publish(T, b"hello")
        net.settle()
        self.assertEqual(self.successResultOf(d).data, b"hello")
        for n in nodes:
            self.assertEqual(published(n), [(T, b"hello")], n.peerID)
        # forwarding (not flooding) carried it: publishing without flood
        # publish still reaches everyone
        nodes[5].router.params.floodPublish = False
        nodes[5].publish(T, b"mesh only")
        net.settle()
        for n in nodes:
            self.assertEqual(published(n)[-1], (T, b"mesh only"))

    def test_meshShrinksAboveDhi(self):
        net = SimNet()
        hub = net.node()
        leaves = [net.node() for _ in range(20)]
        for leaf in leaves:
            net.connect(hub, leaf)  # the hub dialled: all outbound for it
        hub.router.join(T)
        net.settle()
        for leaf in leaves:
            leaf.router.join(T)
        net.settle()
        # every leaf grafted the hub; the hub accepts outbound peers past Dhi
        self.assertGreater(len(hub.router.mesh[T]), 12)
        net.heartbeats(1)
        self.assertEqual(len(hub.router.mesh[T]), 6)
        pruned = [leaf for leaf in leaves if hub.peerID not in leaf.router.mesh.get(T, ())]
        self.assertEqual(len(pruned), 14)
        for leaf in pruned:
            self.assertTrue(leaf.router._backedOff(hub.peerID, T))
            self.assertTrue(hub.router._backedOff(leaf.peerID, T))
        # the PRUNEs offered other peers of the topic (PX), with the backoff
        prunes = [p for _, rpc in hub.sent for p in rpc.prune]
        self.assertEqual(len(prunes), 14)
        self.assertEqual({p.backoff for p in prunes}, {60})
        self.assertTrue(all(len(p.peers) == 16 for p in prunes))

    def test_graftRefusedAboveDhiForInbound(self):
        net = SimNet()
        hub = net.node()
        leaves = [net.node() for _ in range(15)]
        for leaf in leaves:
            net.connect(leaf, hub)  # leaves dialled: inbound for the hub
        hub.router.join(T)
        net.settle()
        for leaf in leaves:
            leaf.router.join(T)
        net.settle()
        self.assertEqual(len(hub.router.mesh[T]), 12)

    def test_leavePrunesWithUnsubscribeBackoff(self):
        net, a, b = pair("a", "b")
        self.assertIn(b.peerID, a.router.mesh[T])
        a.router.leave(T)
        net.settle()
        self.assertNotIn(T, a.router.mesh)
        self.assertNotIn(a.peerID, b.router.mesh[T])
        self.assertNotIn(a.peerID, b.router.topicPeers(T))
        prunes = [p for _, rpc in a.sent for p in rpc.prune]
        self.assertEqual([(p.topic, p.backoff) for p in prunes], [(T, 10)])

    def test_graftDuringBackoffIsPenalised(self):
        net, a, b = pair("a", "b")
        self.assertIn(a.peerID, b.router.mesh[T])
        b.router.handleRPC(a.peerID, RPC(prune=[Prune(T, [], 60)]))
        self.assertNotIn(a.peerID, b.router.mesh[T])
        # a grafts again at once: a flood
        b.router.handleRPC(a.peerID, RPC(graft=[T]))
        net.settle()
        self.assertNotIn(a.peerID, b.router.mesh[T])
        self.assertLess(b.router.score.score(a.peerID), 0)
        self.assertIn(T, [p.topic for _, rpc in b.sent for p in rpc.prune])

    def test_graftForUnknownTopicIgnored(self):
        net, a, b = pair()
        b.router.handleRPC(a.peerID, RPC(graft=["nope"]))
        net.settle()
        self.assertEqual(b.sent, [])
        self.assertNotIn("nope", b.router.mesh)

    def test_fanoutThenExpiry(self):
        net, a, others = publisherAndSubscribers()
        a.publish(T, b"x")
        net.settle()
        self.assertEqual(len(a.router.fanout[T]), 6)
        self.assertEqual(sum(1 for o in others if published(o)), 6)
        net.clock.advance(61)
        a.router.heartbeat()
        self.assertNotIn(T, a.router.fanout)

    def test_joinUsesFanout(self):
        net, a, others = publisherAndSubscribers()
        a.publish(T, b"x")
        fanout = set(a.router.fanout[T])
        a.router.join(T)
        self.assertEqual(a.router.mesh[T], fanout)


class GossipTests(SynchronousTestCase):
    def pair(self):
        net, a, b = pair()
        # keep them out of each other's mesh
        a.router._addBackoff(b.peerID, T, 100)
        b.router._addBackoff(a.peerID, T, 100)
        a.router.join(T)
        net.settle()
        b.router.join(T)
        net.settle()
        self.assertEqual(a.router.mesh[T], set())
        self.assertEqual(b.router.mesh[T], set())
        return net, a, b

    def test_ihaveIwantRepairs(self):
        net, a, b = self.pair()
        a.router.params.floodPublish = False
        a.publish(T, b"gossiped")
        net.settle()
        self.assertEqual(published(b), [])
        a.router.heartbeat()
        net.settle()
        self.assertEqual(published(b), [(T, b"gossiped")])
        kinds = [(bool(rpc.ihave), bool(rpc.iwant), bool(rpc.messages)) for _, rpc in a.sent + b.sent if rpc.hasControl() or rpc.messages]
        self.assertIn((True, False, False), kinds)
        self.assertIn((False, True, False), kinds)

    def test_brokenPromisePenalised(self):
        net, a, b = self.pair()
        b.router.handleRPC(a.peerID, RPC(ihave=[(T, [b"never-sent"])]))
        self.assertEqual([rpc.iwant for _, rpc in b.sent if rpc.iwant], [[b"never-sent"]])
        self.assertEqual(b.router.score.score(a.peerID), 0)
        net.clock.advance(4)
        b.router.heartbeat()
        self.assertEqual(b.router.stats["brokenPromises"], 1)
        self.assertLess(b.router.score.score(a.peerID), 0)

    def test_ihaveInTheOtherIdForm(self):
        """
        A js peer announces js ids (key || seqno) of messages we saw under go
        ids (from || seqno): no IWANT for them, and a promise made for a js
        id is kept by the message.
        """
        net, a, b = self.pair()
        seen = self.successResultOf(a.publish(T, b"seen"))
        net.settle()
        b.router.heartbeat()
        self.assertEqual(published(b), [(T, b"seen")])
        b.sent.clear()
        b.router.handleRPC(a.peerID, RPC(ihave=[(T, [jsMsgID(seen)])]))
        self.assertEqual([rpc.iwant for _, rpc in b.sent if rpc.iwant], [])
        a.router.params.floodPublish = False
        new = self.successResultOf(a.publish(T, b"new"))
        b.router.handleRPC(a.peerID, RPC(ihave=[(T, [jsMsgID(new)])]))
        self.assertEqual([rpc.iwant for _, rpc in b.sent if rpc.iwant], [[jsMsgID(new)]])
        b.router.handleRPC(a.peerID, RPC(messages=[new.wire()]))
        net.clock.advance(4)
        b.router.heartbeat()
        self.assertEqual(b.router.stats["brokenPromises"], 0)

    def test_ihaveLimits(self):
        net, a, b = self.pair()
        p = b.router.params
        for i in range(p.maxIHaveMessages + 3):
            b.router.handleRPC(a.peerID, RPC(ihave=[(T, [b"id%d" % i])]))
        asked = [rpc.iwant for _, rpc in b.sent if rpc.iwant]
        self.assertEqual(len(asked), p.maxIHaveMessages)
        b.router.heartbeat()
        b.sent.clear()
        b.router.handleRPC(a.peerID, RPC(ihave=[(T, [b"x%d" % i for i in range(6000)])]))
        b.router.handleRPC(a.peerID, RPC(ihave=[(T, [b"more"])]))
        asked = [rpc.iwant for _, rpc in b.sent if rpc.iwant]
        self.assertEqual([len(x) for x in asked], [p.maxIHaveLength])

    def test_iwantRetransmissionCap(self):
        net, a, b = self.pair()
        a.router.params.floodPublish = False
        message = self.successResultOf(a.publish(T, b"x"))
        a.sent.clear()
        for _ in range(5):
            a.router.handleRPC(b.peerID, RPC(iwant=[message.msgID]))
        served = [m for _, rpc in a.sent for m in rpc.messages]
        self.assertEqual(len(served), 3)

    def test_mcacheForgetsAfterHistory(self):
        net, a, b = self.pair()
        message = self.successResultOf(a.publish(T, b"x"))
        for _ in range(5):
            a.router.heartbeat()
        a.sent.clear()
        a.router.handleRPC(b.peerID, RPC(iwant=[message.msgID]))
        self.assertEqual(a.sent, [])


class ValidationTests(SynchronousTestCase):
    def line(self, count=3):
        net = SimNet()
        nodes = [net.node() for _ in range(count)]
        for x, y in zip(nodes, nodes[1:]):
            net.connect(x, y)
        for n in nodes:
            n.router.join(T)
        net.settle()
        net.heartbeats(1)
        return net, nodes

    def test_forwardedAlongALine(self):
        net, nodes = self.line(5)
        nodes[0].publish(T, b"far")
        net.settle()
        self.assertEqual([published(n) for n in nodes], [[(T, b"far")]] * 5)

    def test_badSignatureRejected(self):
        net, (a, b, c) = self.line()
        forger = PrivateKey.generate()
        m = signMessage(forger, T, b"forged", (1).to_bytes(8, "big"))
        pb = rpc_pb2.Message()
        pb.CopyFrom(m.toProtobuf())
        pb.data = b"changed"
        b.router.handleRPC(a.peerID, RPC(messages=[pb]))
        net.settle()
        self.assertEqual(published(b), [])
        self.assertEqual(published(c), [])
        self.assertEqual(b.router.stats["invalid"], 1)
        self.assertLess(b.router.score.score(a.peerID), 0)
        # a forged copy does not poison the seen cache for the real one
        pb.data = b"forged"
        b.router.handleRPC(a.peerID, RPC(messages=[pb]))
        net.settle()
        self.assertEqual(published(c), [(T, b"forged")])

    def test_validatorRejects(self):
        net, (a, b, c) = self.line()
        b.validate = lambda m: m.data != b"bad"
        a.publish(T, b"bad")
        a.publish(T, b"good")
        net.settle()
        self.assertEqual(published(b), [(T, b"good")])
        self.assertEqual(published(c), [(T, b"good")])
        self.assertEqual(b.router.stats["rejected"], 1)
        self.assertLess(b.router.score.score(a.peerID), 0)

    def test_asyncValidator(self):
        net, (a, b, c) = self.line()
        pending = []

        def validate(m):
            d = Deferred()
            pending.append((m, d))
            return d

        b.validate = validate
        a.publish(T, b"1")
        a.publish(T, b"2")
        net.settle()
        self.assertEqual(len(pending), 2)
        # a duplicate during validation is not validated twice
        b.router.handleRPC(a.peerID, RPC(messages=[pending[0][0].wire()]))
        self.assertEqual(len(pending), 2)
        pending[1][1].callback(True)
        pending[0][1].callback(None)  # ignore: no delivery, no penalty
        net.settle()
        self.assertEqual(published(c), [(T, b"2")])
        self.assertEqual(b.router.stats["ignored"], 1)
        self.assertGreaterEqual(b.router.score.score(a.peerID), 0)

    def test_publishRefusedByValidator(self):
        net, (a, b, c) = self.line()
        a.validate = lambda m: False
        self.failureResultOf(a.publish(T, b"x"), ValidationError)
        net.settle()
        self.assertEqual(published(b), [])

    def test_publishTooLarge(self):
        net, (a, b, c) = self.line()
        a.router.params.maxMessageData = 10
        self.failureResultOf(a.publish(T, b"x" * 11), ValidationError)

    def test_duplicatesDeliveredOnce(self):
        net, (a, b, c) = self.line()
        m = self.successResultOf(a.publish(T, b"once"))
        for _ in range(3):
            b.router.handleRPC(a.peerID, RPC(messages=[m.wire()]))
        net.settle()
        self.assertEqual(published(b), [(T, b"once")])
        self.assertEqual(b.router.stats["duplicates"], 3)

    def test_ownMessagesDeliveredLocally(self):
        net, (a, b, c) = self.line()
        a.publish(T, b"mine")
        self.assertEqual(published(a), [(T, b"mine")])
        self.assertIsNone(a.delivered[0].receivedFrom)
        net.settle()
        self.assertEqual(b.delivered[0].receivedFrom, a.peerID)
        self.assertEqual(c.delivered[0].receivedFrom, b.peerID)
        self.assertEqual(c.delivered[0].source, a.peerID)

    def test_floodIsThrottledThenGraylisted(self):
        net, (a, b, c) = self.line()
        flooder = PrivateKey.generate()
        burst = int(b.router.params.messageBurst)
        wires = [signMessage(flooder, T, b"%d" % i, i.to_bytes(8, "big")).wire() for i in range(burst + 100)]
        for i in range(0, len(wires), 1000):
            b.router.handleRPC(a.peerID, RPC(messages=wires[i : i + 1000]))
        net.settle()
        self.assertEqual(len(published(b)), burst)
        self.assertEqual(b.router.stats["throttled"], 100)
        self.assertEqual(b.router.score._peers[a.peerID].behaviourPenalty, 1)
        for _ in range(3):
            b.router.handleRPC(a.peerID, RPC(messages=[signMessage(flooder, T, b"more", (1 << 40).to_bytes(8, "big")).wire()] * 3000))
        self.assertLess(b.router.score.score(a.peerID), b.router.thresholds.graylist)
        before = len(published(b))
        b.router.handleRPC(a.peerID, RPC(messages=[signMessage(flooder, T, b"late", (1 << 41).to_bytes(8, "big")).wire()]))
        net.settle()
        self.assertEqual(len(published(b)), before)
        self.assertGreater(b.router.stats["graylisted"], 0)

    def test_messagesForUnknownTopicsIgnored(self):
        net, (a, b, c) = self.line()
        m = signMessage(PrivateKey.generate(), "elsewhere", b"x", (1).to_bytes(8, "big"))
        b.router.handleRPC(a.peerID, RPC(messages=[m.wire()]))
        net.settle()
        self.assertEqual(b.router.stats["ignored"], 1)
        self.assertEqual(published(c), [])


class FloodsubTests(SynchronousTestCase):
    def test_floodsubPeersBothWays(self):
        net = SimNet()
        gossip1, flood, gossip2 = net.node(), net.node(protocol=FLOODSUB), net.node()
        net.connect(gossip1, flood)
        net.connect(flood, gossip2)
        for n in (gossip1, flood, gossip2):
            n.router.join(T)
        net.settle()
        self.assertEqual(gossip1.router.mesh[T], set(), "floodsub peers are not in meshes")
        gossip1.publish(T, b"a")
        net.settle()
        # the floodsub node forwards to everyone subscribed
        self.assertEqual(published(gossip2), [(T, b"a")])
        flood.publish(T, b"b")
        net.settle()
        self.assertEqual(published(gossip1)[-1], (T, b"b"))
        self.assertEqual(published(gossip2)[-1], (T, b"b"))
        # no control messages to a floodsub peer
        for peer, rpc in gossip1.sent + gossip2.sent:
            if peer == flood.peerID:
                self.assertFalse(rpc.hasControl())

    def test_meshsub10PeerGetsNoPX(self):
        net = SimNet()
        a, b = net.node(), net.node(protocol=MESHSUB_10)
        net.connect(a, b)
        b.router.join(T)
        net.settle()
        a.router.join(T)
        net.settle()
        a.router.leave(T)
        prunes = [p for _, rpc in a.sent for p in rpc.prune]
        self.assertEqual(prunes, [Prune(T)])


class ScoreTests(SynchronousTestCase):
    def test_pxAcceptedOnlyFromGoodPeers(self):
        net, a, b = pair("b")
        offered = [(PrivateKey.generate().peerID(), None) for _ in range(20)]
        b.router.handleRPC(a.peerID, RPC(prune=[Prune(T, offered, 60)]))
        self.assertEqual(b.pxOffers, [], "score 0 is below acceptPX")
        b.router.score.params.appSpecificScore = lambda peer: 50.0
        b.router.handleRPC(a.peerID, RPC(prune=[Prune(T, offered, 60)]))
        self.assertEqual(len(b.pxOffers), 16)

    def test_firstDeliveriesAndTimeInMeshRaiseScore(self):
        net, a, b = pair("a", "b")
        for i in range(4):
            a.publish(T, b"%d" % i)
        net.settle()
        net.clock.advance(30)
        self.assertAlmostEqual(b.router.score.score(a.peerID), 4 * 0.5 + 30 * 0.01)
        # counters decay
        b.router.score.refresh()
        self.assertAlmostEqual(b.router.score.score(a.peerID), 4 * 0.5 * 0.9 + 30 * 0.01)

    def test_ipColocation(self):
        net = SimNet()
        a = net.node()
        peers = [PrivateKey.generate().peerID() for _ in range(12)]
        for p in peers:
            a.router.addPeer(p, "/meshsub/1.1.0", ips=["10.0.0.1"])
        self.assertEqual(a.router.score.score(peers[0]), -5.0 * 2**2)
        loop = [PrivateKey.generate().peerID() for _ in range(12)]
        for p in loop:
            a.router.addPeer(p, "/meshsub/1.1.0", ips=["127.0.0.1"])
        self.assertEqual(a.router.score.score(loop[0]), 0)

    def test_negativeScoreSurvivesReconnect(self):
        net, a, b = pair()
        b.router.score.penalise(a.peerID, 2)
        low = b.router.score.score(a.peerID)
        self.assertLess(low, 0)
        net.disconnect(a, b)
        net.connect(a, b)
        self.assertEqual(b.router.score.score(a.peerID), low)
        net.disconnect(a, b)
        net.clock.advance(ScoreParams().retainScore + 1)
        b.router.score.refresh()
        net.connect(a, b)
        self.assertEqual(b.router.score.score(a.peerID), 0)

    def test_negativePeersLeaveTheMesh(self):
        net, a, b = pair("a", "b")
        a.router.score.penalise(b.peerID, 1)
        a.router.heartbeat()
        net.settle()
        self.assertNotIn(b.peerID, a.router.mesh[T])
        self.assertNotIn(a.peerID, b.router.mesh[T])


class HostilePeerTests(SynchronousTestCase):
    """
    What a peer that breaks the rules can make a router spend or keep.
    """

    def pair(self):
        return pair("b")

    def test_pruneForMadeUpTopicsKeepsNothing(self):
        """
        PRUNEs for topics we are not in are ignored (go-libp2p-pubsub does
        the same): a peer cannot fill the backoff table with made-up
        topics, each kept up to a day.
        """
        net, a, b = self.pair()
        b.router.handleRPC(a.peerID, RPC(prune=[Prune("made-up-%d" % i, [], 86400) for i in range(500)]))
        self.assertEqual(b.router.backoff, {})
        # a PRUNE for a topic we are in still counts
        b.router.handleRPC(a.peerID, RPC(prune=[Prune(T, [], 60)]))
        self.assertTrue(b.router._backedOff(a.peerID, T))

    def test_ihaveLooksAtBoundedIds(self):
        """
        An IHAVE with many more ids than maxIHaveLength costs at most
        maxIHaveLength look-ups.
        """
        import tau.pubsub.router as router

        net, a, b = self.pair()
        calls = []
        original = router.idForms

        def counting(msgID):
            calls.append(msgID)
            return original(msgID)

        self.patch(router, "idForms", counting)
        ids = [b"%040d" % i for i in range(30000)]
        b.router.handleRPC(a.peerID, RPC(ihave=[(T, ids[:15000]), (T, ids[15000:])]))
        p = b.router.params
        self.assertLessEqual(len(calls), p.maxIHaveLength)
        asked = [rpc.iwant for _, rpc in b.sent if rpc.iwant]
        self.assertEqual([len(x) for x in asked], [p.maxIHaveLength])

    def test_iwantReplyBounded(self):
        """
        An IWANT for every cached message gets at most maxIWantReplyBytes
        of payload back.
        """
        net, a, b = self.pair()
        b.router.params.floodPublish = False
        a.router.join(T)
        net.settle()
        ids = [self.successResultOf(b.publish(T, bytes([i]) * 100_000)).msgID for i in range(30)]
        b.router.params.maxIWantReplyBytes = 350_000
        b.sent.clear()
        b.router.handleRPC(a.peerID, RPC(iwant=ids))
        served = [m for _, rpc in b.sent for m in rpc.messages]
        self.assertEqual(len(served), 3)

    def test_badSignaturesStopAtGraylist(self):
        """
        One RPC full of badly signed messages costs a few signature checks:
        once the sender's score falls below the graylist threshold the rest
        is dropped unchecked.
        """
        net, a, b = self.pair()
        forger = PrivateKey.generate()
        wires = []
        for i in range(1000):
            pb = rpc_pb2.Message()
            pb.CopyFrom(signMessage(forger, T, b"x", i.to_bytes(8, "big")).toProtobuf())
            pb.data = b"tampered"
            wires.append(pb)
        b.router.handleRPC(a.peerID, RPC(messages=wires))
        self.assertLess(b.router.score.score(a.peerID), b.router.thresholds.graylist)
        self.assertLess(b.router.stats["invalid"], 10)

    def test_unjoinedTopicNotVerified(self):
        """
        Messages for a topic we are not in are dropped before their
        signature is checked, even when some peer is subscribed to it.
        """
        import tau.pubsub.router as router

        net, a, b = self.pair()
        b.router.handleRPC(a.peerID, RPC(subscriptions=[(True, "other")]))
        checked = []
        self.patch(router, "verifyMessage", checked.append)
        m = signMessage(PrivateKey.generate(), "other", b"x", (1).to_bytes(8, "big"))
        b.router.handleRPC(a.peerID, RPC(messages=[m.wire()]))
        self.assertEqual(checked, [])
        self.assertEqual(b.router.stats["ignored"], 1)

    def test_noGraftUntilBackoffPlusSlack(self):
        """
        After a PRUNE we graft again only once the backoff ran out plus a
        heartbeat of slack (gossipsub v1.1: the pruning peer clears its
        backoff at its next heartbeat and penalises an earlier GRAFT).
        """
        net, a, b = self.pair()
        a.router.join(T)
        net.settle()
        self.assertIn(a.peerID, b.router.mesh[T])
        b.router.handleRPC(a.peerID, RPC(prune=[Prune(T, [], 60)]))
        net.clock.advance(60.5)
        b.router.heartbeat()
        self.assertNotIn(a.peerID, b.router.mesh[T])
        net.clock.advance(1)
        b.router.heartbeat()
        net.settle()
        self.assertIn(a.peerID, b.router.mesh[T])
        self.assertIn(b.peerID, a.router.mesh[T])
        self.assertGreaterEqual(a.router.score.score(b.peerID), 0)
