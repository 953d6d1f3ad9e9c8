"""
tns in a cloud on loopback (three tns nodes and an auth node, real hosts,
pubsub, block stores and kvdb): a project published through one tns node
is read from the others; with one tns node stopped lookups still answer;
a restarted tns node serves what it had.
"""

from twisted.trial.unittest import TestCase

from tau.project import compileProject
from tau.services.commands import RemoteError
from tau.services.framework import call
from tau.services.tns import PROTOCOL
from tau.services.tns.config import TNSConfig
from tests.cloud import Cloud, until
from tests.project.helpers import PROJECT_ID
from tests.hosts import addressOf, startHost
from tests.services.tns.helpers import GET_ITEMS, SITE, shopProject


class CloudTests(TestCase):
    timeout = 240

    async def test_replicatedLookups(self):
        cloud = await Cloud(self).start(["tns", "tns", "tns", "auth"])
        first, second, third, auth = cloud.nodes
        compiled = compileProject(shopProject(self.mktemp()))
        stored = await first.tnsClient.publish(compiled, "c1")
        self.assertEqual(stored, first.host.peerID)

        async def served(node):
            found = await node.tnsClient.http("api.example.com", "/items", "GET")
            return found is not None and found["id"] == GET_ITEMS and found["commit"] == "c1"

        for node in (second, third):
            await until(lambda node=node: served(node), "the project on another tns node")
            found = await node.tnsClient.project(PROJECT_ID)
            self.assertEqual(found["object"], compiled.object)

        # the auth node runs no tns: its client asks the tns nodes
        self.assertEqual((await auth.tnsClient.http("api.example.com", "/docs", "GET"))["id"], SITE)

        await cloud.kill(1)
        for _ in range(6):   # every turn of the client's peers, the stopped one included
            auth.tnsClient.close()
            self.assertEqual((await auth.tnsClient.http("api.example.com", "/items", "GET"))["id"], GET_ITEMS)

        # a restarted tns node serves what it had, before it meets anyone
        restarted = await cloud.restart(1, connect=False)
        self.assertEqual((await restarted.tnsClient.http("api.example.com", "/items", "GET"))["commit"], "c1")

        # a caller that is not a service of the cloud reaches what auth
        # says its credential reaches: tns asks auth over the network
        await cloud.connect()
        stranger = await startHost(self)
        await stranger.connect(addressOf(first.host))
        with self.assertRaises(RemoteError) as e:
            await call(stranger, first.host.peerID, PROTOCOL, "fetch", {"path": ["projects"], "token": "tau nope"})
        self.assertEqual(str(e.exception), 'router: executing command "fetch" failed: this cloud did not issue the token')
        self.assertEqual(await call(stranger, first.host.peerID, PROTOCOL, "fetch",
                                    {"path": ["projects", PROJECT_ID]}), {"object": None})

    async def test_replicasBeforeAnswer(self):
        """
        With replicas: 3 a publish returns only once every tns node holds
        it: the others answer from their own replica at once.
        """
        cloud = Cloud(self, TNSConfig(replicas=3, writeTimeout=60))
        await cloud.start(["tns", "tns", "tns"])
        first, second, third = cloud.nodes
        await until(lambda: _meshed(cloud.nodes), "the tns database's pubsub mesh")
        await first.tnsClient.publish(compileProject(shopProject(self.mktemp())), "c1")
        for node in (second, third):
            self.assertEqual(await node.tns.storage.get(["projects", PROJECT_ID, "branches", "main", "current",
                                                         "current"]), "c1")


async def _meshed(nodes):
    topic = f"/tau/kvdb/1.0.0/{nodes[0].tns.storage.database}"
    return all(len(n.pubsub.topicPeers(topic)) >= len(nodes) - 1 for n in nodes)
