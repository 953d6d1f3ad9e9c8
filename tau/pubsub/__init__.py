"""
Publish/subscribe: gossipsub v1.1 (C{/meshsub/1.1.0}, C{/meshsub/1.0.0}) with
C{/floodsub/1.0.0} for peers that speak only that.

    sub = node.pubsub.subscribe("topic")
    await node.pubsub.publish("topic", b"hello")
    async for message in sub:
        ...

L{tau.pubsub.router} is the sans-IO router, L{tau.pubsub.message} the wire
format and StrictSign, L{tau.pubsub.service} the binding to a host.
"""

from tau.pubsub.message import FLOODSUB, MESHSUB_10, MESHSUB_11, PROTOCOLS, InvalidMessage, Message, RPCError, goMsgID, jsMsgID
from tau.pubsub.router import GossipParams, GossipRouter, ValidationError
from tau.pubsub.score import ScoreParams, Thresholds, TopicScoreParams
from tau.pubsub.service import PubSubService, Subscription, SubscriptionCancelled

__all__ = [
    "FLOODSUB",
    "MESHSUB_10",
    "MESHSUB_11",
    "PROTOCOLS",
    "GossipParams",
    "GossipRouter",
    "InvalidMessage",
    "Message",
    "PubSubService",
    "RPCError",
    "ScoreParams",
    "Subscription",
    "SubscriptionCancelled",
    "Thresholds",
    "TopicScoreParams",
    "ValidationError",
    "goMsgID",
    "jsMsgID",
]
