"""
hoarder in a cloud on loopback (real hosts, gossipsub, kvdb; nodes in this
process): a project with a database published on the tns node; the two
hoarder nodes claim the database and open it, so what the substrate node
writes into it replicates to them.
"""

from twisted.trial.unittest import TestCase

from tau.project import compileProject
from tau.services.hoarder.client import HoarderClient
from tau.services.hoarder.instances import instanceHash
from tests.cloud import Cloud, until
from tests.project.helpers import APP_ID, PROJECT_ID
from tests.services.tns.helpers import DATABASE, shopProject


class CloudTests(TestCase):
    timeout = 120

    async def test_databaseReplicatedToHoarders(self):
        cloud = await Cloud(self).start(["tns", "substrate", "hoarder", "hoarder"])
        tnsNode, substrateNode, *hoarders = cloud.nodes
        await tnsNode.tnsClient.publish(compileProject(shopProject(self.mktemp())), "c1")
        name = (await substrateNode.kvdb.serviceDatabase("substrate", f"db-{PROJECT_ID}-{DATABASE}")).name
        await substrateNode.kvdb.put(name, b"k/cart-1", b"3 apples")
        # a member asks for a reconcile (else the 15 s backstop finds it)
        await hoarders[0].shapeServices["hoarder"].requestReconcile(instanceHash(PROJECT_ID, APP_ID, "carts"))

        async def held():
            for node in hoarders:
                if name not in node.kvdb.databases() or await node.kvdb.get(name, b"k/cart-1") != b"3 apples":
                    return False
            return True

        await until(held, "the database on both hoarders", limit=60)
        client = HoarderClient(substrateNode.host, substrateNode.dht)
        expected = sorted(str(n.host.peerID) for n in hoarders)

        async def claimed():
            # each hoarder's claim replicated to the one that answers
            return sorted(await client.replicas(PROJECT_ID, APP_ID, "carts")) == expected

        await until(claimed, "both claims seen by the hoarders", limit=30)
