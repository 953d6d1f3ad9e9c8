"""
Database and storage instances on a fleet (one clock): found in tns, held
(claimed and opened) by the best placed max(1, min(3, fleet)) members,
moved to the next member when an owner dies, let go when tns no longer
has them; the instance commands; the reconcile topic; the config section.
"""

import cbor2
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tau.errors import ConfigError
from tau.services.commands import RemoteError
from tau.services.hoarder import RECONCILE_TOPIC
from tau.services.hoarder.config import HoarderConfig
from tau.services.hoarder.instances import instanceHash
from tau.services.hoarder.placement import owners
from tests.services.hoarder.helpers import Fleet
from tests.services.hoarder.test_stash import clientTo

PROJECT = "QmProject"
APP = "QmApp"
COMMIT = "c1"


def publishProject(fleet, databases=True):
    """
    A project in tns: database C{carts} (in application C{APP}) and
    storage C{pics}, or none.
    """
    leaves = fleet.tns.calls.leaves
    leaves.clear()
    leaves[("projects", PROJECT, "branches", "main", "current", "current")] = COMMIT
    base = ("branches", "main", "commit", COMMIT, "projects", PROJECT)
    leaves[base + ("id",)] = PROJECT
    if databases:
        leaves[base + ("applications", APP, "name")] = "backoffice"
        for key, value in {"name": "carts", "match": "carts", "size": 1000}.items():
            leaves[base + ("applications", APP, "databases", "QmDb", key)] = value
        for key, value in {"name": "pics", "match": "pics", "size": 1000}.items():
            leaves[base + ("storages", "QmSt", key)] = value
    fleet.tns.drop("/tns/updates")


DB_HASH = instanceHash(PROJECT, APP, "carts")
ST_HASH = instanceHash(PROJECT, "", "pics")


class InstanceTests(TestCase):
    async def setUp(self):
        self.fleet = Fleet(self)
        publishProject(self.fleet)
        self.nodes = await self.fleet.add(4)
        # the nodes that started first held everything while alone; they
        # let go once the owners hold (by the backstop reconcile)
        self.fleet.advance(16)
        self.caller = self.fleet.plain()

    def holders(self, name):
        return sorted(n.me for n in self.fleet.running()
                      if any(db.startswith(name + "@") for db in n.service.reconciler.loaded.values()))

    async def test_bestThreeHold(self):
        live = sorted(n.me for n in self.nodes)
        self.assertEqual(self.holders(f"db-{PROJECT}-QmDb"), sorted(owners(DB_HASH, live, 3)))
        self.assertEqual(self.holders(f"st-{PROJECT}-QmSt"), sorted(owners(ST_HASH, live, 3)))
        client = clientTo(self.fleet, self.nodes[0], self.caller.peerID)
        self.assertEqual(await client.replicas(PROJECT, APP, "carts"), sorted(owners(DB_HASH, live, 3)))
        status = await client.status(PROJECT, APP, "carts")
        self.assertEqual(status["peers"], sorted(owners(DB_HASH, live, 3)))
        self.assertEqual(status["loaded"], self.nodes[0].me in owners(DB_HASH, live, 3))
        metas = await client.metas([DB_HASH, "unknown"])
        self.assertEqual(metas, {DB_HASH: {"kind": 0, "configId": "QmDb", "project": PROJECT, "application": APP,
                                           "match": "carts", "branch": "main"}})
        # the database substrate serves the resource from
        self.assertIn(f"db-{PROJECT}-QmDb@service:substrate", self.fleet.kvdb.stored)

    async def test_ownerDiesMoved(self):
        """
        An owner dies: once it is dead (5 s) the fourth node claims and
        opens the database.
        """
        live = sorted(n.me for n in self.nodes)
        chosen = owners(DB_HASH, live, 3)
        fourth = next(n for n in self.nodes if n.me not in chosen)
        self.fleet.kill(self.fleet.byID(chosen[0]))
        self.fleet.advance(4)
        self.assertNotIn(fourth.me, self.holders(f"db-{PROJECT}-QmDb"))
        self.fleet.advance(2)
        self.assertIn(fourth.me, self.holders(f"db-{PROJECT}-QmDb"))
        client = clientTo(self.fleet, fourth, self.caller.peerID)
        self.assertEqual(await client.replicas(PROJECT, APP, "carts"), sorted(chosen[1:] + [fourth.me]))

    async def test_smallFleet(self):
        fleet = Fleet(self)
        publishProject(fleet)
        [only] = await fleet.add(1)
        self.assertEqual(only.kvdb.opened, ["hoarder"])
        fleet.advance(15)   # alone, no member joins: the backstop
        self.assertEqual(sorted(only.kvdb.opened[1:]), [f"db-{PROJECT}-QmDb", f"st-{PROJECT}-QmSt"])
        self.assertEqual(only.kvdb.opened[0], "hoarder")

    async def test_goneFromTnsReleased(self):
        publishProject(self.fleet, databases=False)
        self.fleet.advance(15)   # the backstop
        client = clientTo(self.fleet, self.nodes[0], self.caller.peerID)
        self.assertEqual(await client.replicas(PROJECT, APP, "carts"), [])
        self.assertEqual([n.service.reconciler.loaded for n in self.nodes], [{}] * 4)

    async def test_loadUnload(self):
        live = sorted(n.me for n in self.nodes)
        outside = next(n for n in self.nodes if n.me not in owners(DB_HASH, live, 3))
        client = clientTo(self.fleet, outside, self.caller.peerID)
        self.assertEqual(await client._action("load", project=PROJECT, application=APP, match="carts"),
                         {"loaded": True})
        self.assertIn(outside.me, await client.replicas(PROJECT, APP, "carts"))
        self.assertEqual(await client._action("unload", project=PROJECT, application=APP, match="carts"),
                         {"loaded": False})
        self.assertNotIn(outside.me, await client.replicas(PROJECT, APP, "carts"))
        e = await self.assertFailure(Deferred.fromCoroutine(
            client._action("load", project=PROJECT, application=APP, match="nothing")), RemoteError)
        self.assertIn("no instance", str(e))
        outsider = self.fleet.plain(outsider=True)
        e = await self.assertFailure(Deferred.fromCoroutine(clientTo(self.fleet, outside, outsider.peerID)._action(
            "load", project=PROJECT, application=APP, match="carts")), RemoteError)
        self.assertIn("not a node of this cloud", str(e))

    async def test_reconcileTopic(self):
        node = self.nodes[0]
        before = node.service.reconciler.runs
        await self.nodes[1].service.requestReconcile(DB_HASH)
        self.assertEqual(node.service.reconciler.runs, before + 1)
        # too big, or not the shape of one: refused by the validator
        await self.nodes[1].pubsub.publish(RECONCILE_TOPIC, cbor2.dumps({"Hash": "x" * 5000, "Meta": None}))
        await self.nodes[1].pubsub.publish(RECONCILE_TOPIC, cbor2.dumps(["Hash"]))
        self.assertEqual(node.service.reconciler.runs, before + 1)


class ConfigTests(TestCase):
    def test_defaults(self):
        config = HoarderConfig.check("test", None)
        self.assertEqual((config.heartbeat, config.deadAfter, config.backstop, config.jitter), (1.0, 5.0, 15.0, 0.5))

    def test_fields(self):
        config = HoarderConfig.check("test", {"zone": "eu-1", "max-cids": 10, "jitter": 0})
        self.assertEqual((config.zone, config.maxCids, config.jitter), ("eu-1", 10, 0.0))

    def test_bad(self):
        for value, field in [({"max-cids": 0}, "hoarder.max-cids"), ({"heartbeat": -1}, "hoarder.heartbeat"),
                             ({"zone": "z" * 65}, "hoarder.zone"), ({"dead-after": 1}, "hoarder.dead-after"),
                             ({"nope": 1}, "hoarder.nope")]:
            e = self.assertRaises(ConfigError, HoarderConfig.check, "test", value)
            self.assertIn(field, str(e))
