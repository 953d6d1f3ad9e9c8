"""
tau pubsub sub|pub|peers|ls.
"""

import base64
import json
import sys

from tau.cli import UsageError, runReactor
from tau.cli.swarm import _config
from tau.control.client import call, stream


def register(sub):
    p = sub.add_parser("pubsub", help="publish and subscribe (gossipsub)")
    psub = p.add_subparsers(dest="action", metavar="ACTION")
    psub.required = True
    s = psub.add_parser("sub", help="print each message of a topic as it arrives (Ctrl-C stops)")
    s.add_argument("topic")
    s.add_argument("--json", action="store_true", help="one JSON object a message (From, Data in base64, Seqno, Topic)")
    s.set_defaults(run=pubsubSub)
    s = psub.add_parser("pub", help="publish a message on a topic")
    s.add_argument("topic")
    s.add_argument("message", help="the message; - reads it from stdin")
    s.set_defaults(run=pubsubPub)
    s = psub.add_parser("peers", help="the peers subscribed to a topic (every pubsub peer without one)")
    s.add_argument("topic", nargs="?")
    s.set_defaults(run=pubsubPeers)
    psub.add_parser("ls", help="the topics this node is subscribed to").set_defaults(run=pubsubLs)


class _Lines:
    """
    Cut the streamed answer into lines and print each message.
    """

    def __init__(self, asJSON, out):
        self.asJSON = asJSON
        self.out = out
        self.buffer = b""

    def __call__(self, chunk):
        self.buffer += chunk
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if line.strip():
                self.show(json.loads(line))

    def show(self, message):
        if self.asJSON:
            self.out.write(json.dumps(message) + "\n")
        else:
            data = base64.b64decode(message["Data"])
            self.out.write(data.decode("utf-8", "replace") + "\n")
        self.out.flush()


async def _sub(reactor, config, topic, asJSON):
    await stream(reactor, config, "pubsub/sub", {"arg": topic}, _Lines(asJSON, sys.stdout))


def pubsubSub(args):
    runReactor(_sub, _config(args), args.topic, args.json)
    return 0


async def _call(reactor, config, name, params, body=None):
    return await call(reactor, config, name, params, body=body)


def pubsubPub(args):
    if args.message == "-":
        data = sys.stdin.buffer.read()
    else:
        data = args.message.encode("utf-8")
    if not data and args.message != "-":
        raise UsageError("the message is empty")
    runReactor(_call, _config(args), "pubsub/pub", {"arg": args.topic}, data)
    return 0


def pubsubPeers(args):
    params = {"arg": args.topic} if args.topic else {}
    answer = runReactor(_call, _config(args), "pubsub/peers", params)
    for peer in answer["Strings"]:
        print(peer)
    return 0


def pubsubLs(args):
    answer = runReactor(_call, _config(args), "pubsub/ls", {})
    for topic in answer["Strings"]:
        print(topic)
    return 0
