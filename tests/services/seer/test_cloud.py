"""
seer in a cloud of real nodes in this process: nodes given
C{seer.announce-ip} tell seer what they run through their beacon, seer
answers their names over DNS, and a node that stops drops out within the
TTL.
"""

import yaml
from twisted.internet import reactor
from twisted.names import client, dns
from twisted.trial.unittest import TestCase

from tau.private import writePrivate
from tests.cloud import NETWORK, Cloud, until

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
