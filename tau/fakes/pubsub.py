"""
A fake of pubsub (L{tau.interfaces.IPubSub}): topics in memory.
"""

from types import SimpleNamespace

from zope.interface import implementer

from tau.interfaces import IPubSub
from tau.pubsub.message import MAX_TOPIC_LENGTH
from tau.pubsub.service import Subscription


@implementer(IPubSub)
class FakePubSub:
    """
    Topics in memory: what is published is checked by the topic's
    validator (if any) and delivered to every subscription of the topic at
    once, with C{source} this node (None unless given).

    @ivar published: C{(topic, data)} in order, rejected ones included.
    @ivar peers: topic -> the peers L{topicPeers} answers.
    """

    def __init__(self, source=None):
        self.source = source
        self.subscriptions = {}
        self.published = []
        self.validators = {}
        self.peers = {}

    def subscribe(self, topic):
        if not topic or len(topic) > MAX_TOPIC_LENGTH:
            raise ValueError("an empty or too long topic")
        subscription = Subscription(topic, self)
        self.subscriptions.setdefault(topic, []).append(subscription)
        return subscription

    def _unsubscribe(self, subscription):
        subscriptions = self.subscriptions.get(subscription.topic, [])
        if subscription in subscriptions:
            subscriptions.remove(subscription)

    async def publish(self, topic, data):
        self.published.append((topic, data))
        message = SimpleNamespace(topic=topic, data=data, source=self.source)
        validator = self.validators.get(topic)
        if validator is not None:
            verdict = validator(message)
            if hasattr(verdict, "__await__"):
                verdict = await verdict
            if not verdict:
                return
        for subscription in list(self.subscriptions.get(topic, ())):
            subscription._push(message)

    def topicPeers(self, topic):
        return list(self.peers.get(topic, ()))

    def addValidator(self, topic, fn):
        self.validators[topic] = fn

    def removeValidator(self, topic):
        self.validators.pop(topic, None)
