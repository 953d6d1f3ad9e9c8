"""
tns in a cloud of real node processes on loopback: three C{twistd -n
taubyte --shape=cloud-tns} nodes and one C{cloud-auth} node, admitted to
one cloud, driven with the tau CLI.  A project pushed through one tns
node is read from the others; with one tns node killed (SIGKILL) lookups
through the others and through the auth node (whose tns client finds the
tns nodes on the network) still answer; the killed node, restarted on its
root alone, serves what it had.
"""

import json

from twisted.trial.unittest import TestCase

from tests.cloud import ProcessCloud, until
from tests.project.helpers import PROJECT_ID
from tests.services.tns.helpers import GET_ITEMS, POST_ITEMS, SITE, shopProject

CURRENT = f"projects/{PROJECT_ID}/branches/main/current"


class ProcessCloudTests(TestCase):
    timeout = 180

    async def ok(self, cloud, index, *args):
        status, out, err = await cloud.tau(index, *args)
        self.assertEqual(status, 0, f"tau {' '.join(args)} on node {index}: {out}{err}")
        return json.loads(out) if args[0] == "tns" else out

    async def test_replicatedLookups(self):
        cloud = await ProcessCloud(self).start(["tns", "tns", "tns", "auth"])
        first, second, third, auth = range(4)
        out = await self.ok(cloud, first, "project", "push", shopProject(self.mktemp()), "--commit", "c1")
        self.assertEqual(out, f"published {PROJECT_ID} main@c1 through {cloud.keys[first].peerID()}\n")

        for node in (second, third):
            async def replicated(node=node):
                return await self.ok(cloud, node, "tns", "fetch", CURRENT) == "c1"

            await until(replicated, f"the project on tns node {node}", limit=40)
            found = await self.ok(cloud, node, "tns", "lookup", "http", "api.example.com", "/items")
            self.assertEqual((found["id"], found["commit"]), (GET_ITEMS, "c1"))

        # the auth node runs no tns: its client asks the tns nodes, all
        # three of which it met
        peers = await self.ok(cloud, auth, "swarm", "peers")
        for node in (first, second, third):
            self.assertIn(f"/p2p/{cloud.keys[node].peerID()}", peers)
        self.assertEqual((await self.ok(cloud, auth, "tns", "lookup", "http", "api.example.com", "/docs"))["id"], SITE)

        await cloud.kill(second)
        self.assertEqual(cloud.running(), [first, third, auth])
        for node in (first, third):
            self.assertEqual(await self.ok(cloud, node, "tns", "fetch", CURRENT), "c1")
        # tns's uncached command, as many times as the auth node's client
        # has tns nodes to take turns over (the killed one among them)
        for _ in range(3):
            self.assertEqual(await self.ok(cloud, auth, "tns", "lookup", "keys", CURRENT), [f"/{CURRENT}/current"])
        # and lookups it has not cached
        for args, expected in ((("http", "api.example.com", "/items"), GET_ITEMS),
                               (("http", "api.example.com", "/items", "--method", "POST"), POST_ITEMS),
                               (("http", "api.example.com", "/"), SITE)):
            self.assertEqual((await self.ok(cloud, auth, "tns", "lookup", *args))["id"], expected)
        found = await self.ok(cloud, auth, "tns", "lookup", "resource", PROJECT_ID, GET_ITEMS)
        self.assertEqual(found["config"]["paths"], ["/items"])

        # restarted on its root with no peers, it serves what it had
        await cloud.restart(second, connect=False)
        self.assertEqual(await self.ok(cloud, second, "tns", "fetch", CURRENT), "c1")
        found = await self.ok(cloud, second, "tns", "lookup", "http", "api.example.com", "/items")
        self.assertEqual((found["id"], found["commit"]), (GET_ITEMS, "c1"))
        self.assertEqual(await self.ok(cloud, second, "swarm", "peers"), "")
