"""
A network of sans-IO gossipsub routers on one L{Clock}: each RPC goes
through the real encoder and decoder and arrives one tick (0 s) later.
"""

import random

from twisted.internet.task import Clock

from tau.identity import PrivateKey
from tau.pubsub.message import FLOODSUB, MESHSUB_10, MESHSUB_11, decodeRPC, encodeRPC, signMessage
from tau.pubsub.router import GossipParams, GossipRouter


class SimNode:
    def __init__(self, net, key, protocol=MESHSUB_11, **options):
        self.net = net
        self.key = key
        self.peerID = key.peerID()
        self.protocol = protocol
        self.delivered = []
        self.sent = []
        self.validate = None
        self.pxOffers = []
        self.seqno = 0
        self.router = GossipRouter(
            self.peerID,
            net.clock,
            self._send,
            self.delivered.append,
            validate=lambda m: self.validate(m) if self.validate else True,
            connect=self.pxOffers.extend,
            rng=random.Random(len(net.nodes)),
            **options,
        )

    def _send(self, peer, rpc):
        self.sent.append((peer, rpc))
        self.net.transmit(self, peer, encodeRPC(rpc))

    def publish(self, topic, data):
        self.seqno += 1
        message = signMessage(self.key, topic, data, self.seqno.to_bytes(8, "big"))
        return self.router.publish(message)


class SimNet:
    def __init__(self, seed=0):
        self.clock = Clock()
        self.nodes = []
        self.byID = {}
        self.links = set()
        self.cut = set()
        self.rng = random.Random(seed)

    def node(self, protocol=MESHSUB_11, **options):
        n = SimNode(self, PrivateKey.generate(), protocol, **options)
        self.nodes.append(n)
        self.byID[n.peerID] = n
        return n

    def connect(self, a, b):
        """
        a dialled b: both add each other (a's side is outbound).
        """
        self.links.add(frozenset((a.peerID, b.peerID)))
        order = [MESHSUB_11, MESHSUB_10, FLOODSUB]
        proto = order[max(order.index(a.protocol), order.index(b.protocol))]
        a.router.addPeer(b.peerID, proto, outbound=True)
        b.router.addPeer(a.peerID, proto, outbound=False)

    def disconnect(self, a, b):
        self.links.discard(frozenset((a.peerID, b.peerID)))
        a.router.removePeer(b.peerID)
        b.router.removePeer(a.peerID)

    def transmit(self, sender, peer, data):
        if frozenset((sender.peerID, peer)) not in self.links:
            return
        target = self.byID[peer]
        self.clock.callLater(0, self._arrive, sender.peerID, target, data)

    def _arrive(self, sender, target, data):
        if frozenset((sender, target.peerID)) in self.links:
            target.router.handleRPC(sender, decodeRPC(data))

    def settle(self, rounds=20):
        for _ in range(rounds):
            if not self.clock.getDelayedCalls():
                return
            self.clock.advance(0)

    def heartbeats(self, count=1):
        for _ in range(count):
            self.clock.advance(1.0)
            for n in self.nodes:
                n.router.heartbeat()
            self.settle()


def params(**kw):
    return GossipParams(**kw)
