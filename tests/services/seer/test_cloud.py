"""
seer in a cloud of real nodes in this process: nodes given
C{seer.announce-ip} tell seer what they run through their beacon, seer
answers their names over DNS, and a node that stops drops out within the
TTL; two seers share what they hear through their gossip.
"""

import json

import yaml
from twisted.internet import reactor
from twisted.names import client, dns
from twisted.trial.unittest import TestCase

from tau.identity import PrivateKey
from tau.private import writePrivate
from tau.services.framework import call
from tau.services.seer import PROTOCOL
from tau.services.seer.beacon import SeerClient
from tau.services.seer.oracle import TOPIC, encodeNodeData
from tau.services.seer.usage import parseUsage, readUsage
from tests.cloud import NETWORK, Cloud, until
from tests.services.seer.test_service import FixedSeer

TTL = 3
ADDRESSES = {"seer": "127.0.0.6", "tns": "127.0.0.7"}


class SeerCloud(Cloud):
    """
    A cloud whose nodes tell seer their shape's address (L{ADDRESSES}).
    """

    def prepare(self, shape):
        index = super().prepare(shape)
        path = self.roots[index] / "config" / f"cloud-{shape}.yaml"
        config = yaml.safe_load(path.read_text())
        config["seer"] = {"ttl": TTL, "announce-ip": ADDRESSES[shape]}
        writePrivate(path, yaml.safe_dump(config))
        return index


class CloudTests(TestCase):
    timeout = 120

    async def test_beaconsAndExpiry(self):
        """
        The tns node is answered for C{tns.tau.<fqdn>} with its address
        once its beacon reached seer, and no more within the TTL after it
        stopped.
        """
        cloud = await SeerCloud(self).start(["seer", "tns"])
        seer = cloud.nodes[0].shapeServices["seer"]
        resolver = client.Resolver(servers=[("127.0.0.1", seer.ports[0].getHost().port)], reactor=reactor)

        async def addresses(name):
            message = await resolver.queryUDP([dns.Query(name, dns.A, dns.IN)], timeout=(5,))
            return sorted(a.payload.dottedQuad() for a in message.answers)

        async def answered(name, expected):
            return await addresses(name) == expected

        await until(lambda: answered(f"tns.tau.{NETWORK}", ["127.0.0.7"]), "the tns node in seer's answers", limit=30)
        self.assertEqual(await addresses(f"seer.tau.{NETWORK}"), ["127.0.0.6"])
        await cloud.kill(1)
        await until(lambda: answered(f"tns.tau.{NETWORK}", []), "the stopped tns node gone", limit=TTL * 5)
        self.assertEqual(await addresses(f"seer.tau.{NETWORK}"), ["127.0.0.6"])


class GossipCloud(Cloud):
    """
    A cloud whose nodes tell seer nothing by themselves (the test does).
    """

    def prepare(self, shape):
        index = super().prepare(shape)
        path = self.roots[index] / "config" / f"cloud-{shape}.yaml"
        config = yaml.safe_load(path.read_text())
        config["seer"] = {"ttl": TTL}
        writePrivate(path, yaml.safe_dump(config))
        return index


class GossipTests(TestCase):
    timeout = 120

    async def test_heardByOneAnsweredByAnother(self):
        """
        Two seers: a node that tells only the first is answered by the
        second (over DNS and C{heartbeat info}) through their gossip on
        /seer/oracle/v1, and drops out of the second's answers within the
        TTL once it stops; a message on the topic from a node that is
        not a seer of the cloud is rejected and not stored.
        """
        cloud = await GossipCloud(self).start(["seer", "seer", "tns"])
        first, second = (cloud.nodes[i].shapeServices["seer"] for i in (0, 1))
        node = cloud.nodes[2]
        told = SeerClient(node.host, None, client=FixedSeer(node.host, cloud.nodes[0].host.peerID))
        resolver = client.Resolver(servers=[("127.0.0.1", second.ports[0].getHost().port)], reactor=reactor)

        async def addresses(name):
            message = await resolver.queryUDP([dns.Query(name, dns.A, dns.IN)], timeout=(5,))
            return sorted(a.payload.dottedQuad() for a in message.answers)

        async def toldFirst():
            # until the seers' mesh formed, a message may find no one: tell again
            await told.announce({"tns": {"IP": "127.0.0.7"}})
            await told.heartbeat(readUsage(str(cloud.roots[2])), "tns-node")
            return await addresses(f"tns.tau.{NETWORK}") == ["127.0.0.7"]

        await until(toldFirst, "the second seer answering the node told the first", limit=30)
        self.assertIsNotNone(first.registry.node(str(node.host.peerID)))
        info = await call(node.host, cloud.nodes[1].host.peerID, PROTOCOL, "heartbeat",
                          {"action": "info", "id": str(node.host.peerID)})
        usage = json.loads(info["usage"])
        self.assertEqual((usage["Name"], usage["Type"], usage["Address"]), ("tns-node", ["tns"], "127.0.0.7"))
        self.assertGreater(usage["TotalMem"], 0)

        forged = PrivateKey.generate().peerID()
        await node.pubsub.publish(TOPIC, encodeNodeData(str(forged), "forged", {"gateway": {"IP": "127.0.0.66"}},
                                                        parseUsage(b"\xa0")))

        async def rejected():
            return second.oracle.rejected > 0

        await until(rejected, "the second seer rejecting the tns node's message", limit=30)
        self.assertIsNone(second.registry.node(str(forged)))

        async def gone():
            return await addresses(f"tns.tau.{NETWORK}") == []

        await until(gone, "the silent node gone from the second seer", limit=TTL * 5)
