"""
Control API commands for pubsub: sub (streamed), pub, peers, ls.
"""

import base64
import json

from tau.control.routes import APIError, BodyStream, argument, command
from tau.pubsub.message import topicName
from tau.pubsub.router import ValidationError


def _pubsub(node):
    if node.pubsub is None or not node.pubsub.running:
        raise APIError("pubsub is not running on this node", status=503)
    return node.pubsub


def _topic(args):
    topic = argument(args)
    if topicName(topic) is None:
        raise APIError("a topic is text of 1 to 1024 characters")
    return topic


def messageJSON(message):
    return {
        "From": str(message.source),
        "Data": base64.b64encode(message.data).decode("ascii"),
        "Seqno": message.seqno.hex(),
        "Topic": message.topic,
        "ReceivedFrom": None if message.receivedFrom is None else str(message.receivedFrom),
    }


@command("pubsub/sub")
async def subscribe(node, args):
    """
    The messages of a topic as they arrive, one JSON object a line
    (C{From}, C{Data} in base64, C{Seqno} in hex, C{Topic},
    C{ReceivedFrom}), until the client goes away.
    """
    sub = _pubsub(node).subscribe(_topic(args))

    async def lines():
        try:
            async for message in sub:
                yield json.dumps(messageJSON(message)).encode("utf-8") + b"\n"
        finally:
            sub.cancel()

    return BodyStream(lines(), contentType=b"application/x-ndjson")


@command("pubsub/pub", body=True)
async def publish(node, args, body):
    """
    Publish the request body on a topic.
    """
    pubsub = _pubsub(node)
    topic = _topic(args)
    limit = pubsub.router.params.maxMessageData
    data = body.read(limit + 1)
    if len(data) > limit:
        raise APIError(f"the message is over {limit} bytes", status=413)
    try:
        message = await pubsub.publish(topic, data)
    except ValidationError as e:
        raise APIError(str(e)) from None
    return {"Topic": topic, "Seqno": message.seqno.hex(), "Peers": len(pubsub.topicPeers(topic))}


@command("pubsub/peers")
async def peers(node, args):
    """
    The peers subscribed to a topic, or every pubsub peer without one.
    """
    pubsub = _pubsub(node)
    if argument(args, required=False) is None:
        found = pubsub.peers()
    else:
        found = pubsub.topicPeers(_topic(args))
    return {"Strings": sorted(str(p) for p in found)}


@command("pubsub/ls")
async def topics(node, args):
    return {"Strings": _pubsub(node).topics()}
