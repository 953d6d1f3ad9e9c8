"""
C{tau pubsub} against two running twistd nodes: sub (streamed), pub, peers,
ls, and the subscription ending with the CLI.
"""

import json
import signal

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.processes import TAU, spawn, stopped
from tests import test_cli_p2p


class PubSubCommandTests(TestCase):
    timeout = 180

    startNode = test_cli_p2p.P2PCommandTests.startNode
    tau = test_cli_p2p.P2PCommandTests.tau
    ok = test_cli_p2p.P2PCommandTests.ok

    async def eventually(self, root, args, expected, tries=40, among=()):
        """
        Until C{tau ARGS} prints C{expected} (lines starting with one of
        C{among} aside: the node's own topics).
        """
        for _ in range(tries):
            out = await self.ok(root, *args)
            if [line for line in out.split() if not (among and line.startswith(tuple(among)))] == expected:
                return
            await deferLater(reactor, 0.25)
        self.fail(f"tau {' '.join(args)} never printed {expected} (last: {out!r})")

    async def test_subPubPeers(self):
        (rootA, idA, addrA), (rootB, idB, addrB) = await self.startNode(), await self.startNode()
        await self.ok(rootA, "swarm", "connect", addrB)
        sub = spawn(reactor, TAU + ["--root", str(rootB), "pubsub", "sub", "chat"])
        self.addCleanup(stopped, sub)
        jsonSub = spawn(reactor, TAU + ["--root", str(rootB), "pubsub", "sub", "chat", "--json"])
        self.addCleanup(stopped, jsonSub)
        # the node's services replicate their databases, seers gossip, patricks and hoarders beat, on topics of their own
        await self.eventually(rootB, ["pubsub", "ls"], ["chat"], among=["/tau/kvdb/", "/seer/oracle/", "/patrick/v1/", "/hoarder/"])
        await self.eventually(rootA, ["pubsub", "peers", "chat"], [idB])
        await self.eventually(rootA, ["pubsub", "peers"], [idB])
        await self.ok(rootA, "pubsub", "pub", "chat", "hello from A")
        await sub.waitFor(b"hello from A\n")
        await jsonSub.waitFor(b"\n")
        message = json.loads(jsonSub.out.decode().splitlines()[0])
        self.assertEqual((message["From"], message["Topic"], message["ReceivedFrom"]), (idA, "chat", idA))
        # both subscriptions end with their CLI: the node leaves the topic
        sub.kill(signal.SIGINT)
        jsonSub.kill(signal.SIGTERM)
        await sub.ended()
        await jsonSub.ended()
        await self.eventually(rootB, ["pubsub", "ls"], [], among=["/tau/kvdb/", "/seer/oracle/", "/patrick/v1/", "/hoarder/"])
        await self.eventually(rootA, ["pubsub", "peers", "chat"], [])

    async def test_errors(self):
        root, peerID, address = await self.startNode()
        for args, words in [
            (("pubsub", "pub", "", "x"), "topic"),
            (("pubsub", "peers", "x" * 2000), "topic"),
            (("pubsub", "pub", "t", ""), "empty"),
        ]:
            status, out, err = await self.tau(root, *args)
            self.assertNotEqual(status, 0)
            self.assertNotIn("Traceback", out + err)
            lines = err.splitlines()
            self.assertEqual(len(lines), 1, err)
            self.assertTrue(lines[0].startswith("tau: ") and words in lines[0], lines[0])
