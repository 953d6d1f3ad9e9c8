"""
Stashing on a fleet of hoarders (one clock, no network): a monkey's
artefact fetched, pinned, claimed and fanned out to its target; the
commands that read it; its limits; and a holder's death repaired within
seconds of the clock.
"""

from types import SimpleNamespace

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tau.cids import cidText
from tau.control import hoarder as control
from tau.control.routes import APIError
from tau.services.commands import RemoteError
from tau.services.framework import LocalCalls
from tau.services.hoarder.client import HoarderClient
from tau.services.hoarder.config import HoarderConfig
from tau.services.hoarder.placement import ranked
from tests.services.hoarder.helpers import Fleet


def clientTo(fleet, node, caller):
    """
    A L{HoarderClient} on C{node}'s commands, called as C{caller}.
    """
    return HoarderClient(None, None, client=LocalCalls(node.service.commands.handlers, caller))


class StashTests(TestCase):
    async def setUp(self):
        self.fleet = Fleet(self)
        self.nodes = await self.fleet.add(3)
        self.fleet.advance(1)
        self.monkey = self.fleet.plain()
        self.cid = cidText((await self.monkey.content.add(b"a build zip" * 100)).cid)

    def pinnedOn(self):
        return sorted(n.me for n in self.fleet.running() if any(cidText(c) == self.cid for c in n.content.pinned))

    async def test_stashFansOutToTarget(self):
        first = self.nodes[0]
        answer = await clientTo(self.fleet, first, self.monkey.peerID).stash(self.cid)
        self.assertEqual(answer["cid"], self.cid)
        self.assertEqual(len(answer["peers"]), 2)
        self.assertEqual(answer["peers"][0], first.me)
        # the other holder is the best placed of the others
        others = [n.me for n in self.nodes if n is not first]
        self.assertEqual(answer["peers"][1], ranked(self.cid, others)[0])
        self.assertEqual(self.pinnedOn(), sorted(answer["peers"]))
        client = clientTo(self.fleet, self.nodes[2], self.monkey.peerID)
        self.assertEqual(await client.stashStatus([self.cid]), {"claims": {self.cid: 2}, "target": 2})
        holder = self.fleet.byID(answer["peers"][1])
        self.assertEqual(await clientTo(self.fleet, holder, self.monkey.peerID).list(), [self.cid])
        self.assertEqual(await clientTo(self.fleet, holder, self.monkey.peerID).rare(), [])
        meta = await first.service.registry.stashMeta(self.cid)
        self.assertEqual(meta, {"Target": 2, "OwnerHash": ""})

    async def test_targetOne(self):
        answer = await clientTo(self.fleet, self.nodes[1], self.monkey.peerID).stash(self.cid, target=1)
        self.assertEqual(answer["peers"], [self.nodes[1].me])
        self.assertEqual(self.pinnedOn(), [self.nodes[1].me])

    async def test_holderDiesRepaired(self):
        """
        A holder dies: 5 s later it is dead, the surviving holder pushes
        the artefact to the third node, and it is back at its target.
        """
        answer = await clientTo(self.fleet, self.nodes[0], self.monkey.peerID).stash(self.cid)
        third = next(n for n in self.nodes if n.me not in answer["peers"])
        self.assertNotIn(third.me, self.pinnedOn())
        self.fleet.kill(self.fleet.byID(answer["peers"][1]))
        self.monkey.content.down = True    # only the surviving holder has it now
        self.fleet.advance(4)
        self.assertNotIn(third.me, self.pinnedOn())
        self.fleet.advance(3)
        self.assertIn(third.me, self.pinnedOn())
        status = await clientTo(self.fleet, third, self.monkey.peerID).stashStatus([self.cid])
        self.assertEqual(status, {"claims": {self.cid: 2}, "target": 2})

    async def test_fleetOfTwoAfterDeathKeepsOne(self):
        """
        With one hoarder left the target is one: nothing to push, not rare.
        """
        answer = await clientTo(self.fleet, self.nodes[0], self.monkey.peerID).stash(self.cid)
        third = next(n for n in self.nodes if n.me not in answer["peers"])
        self.fleet.kill(third)
        self.fleet.kill(self.fleet.byID(answer["peers"][1]))
        self.fleet.advance(7)
        client = clientTo(self.fleet, self.nodes[0], self.monkey.peerID)
        self.assertEqual(await client.stashStatus([self.cid]), {"claims": {self.cid: 1}, "target": 1})
        self.assertEqual(await client.rare(), [])

    async def test_notFetchable(self):
        """
        A CID no node has: the stash fails with the fetch's error, nothing
        is claimed.
        """
        missing = cidText((await self.fleet.plain().content.add(b"elsewhere")).cid)
        self.fleet.net[-1].down = True
        client = clientTo(self.fleet, self.nodes[0], self.monkey.peerID)
        e = await self.assertFailure(Deferred.fromCoroutine(client.stash(missing)), RemoteError)
        self.assertIn(f"fetching {missing} failed: NotFound", str(e))
        self.assertEqual(await client.stashStatus([missing]), {"claims": {missing: 0}, "target": 2})

    async def test_outsiderRefused(self):
        outsider = self.fleet.plain(outsider=True)
        e = await self.assertFailure(Deferred.fromCoroutine(clientTo(self.fleet, self.nodes[0], outsider.peerID).stash(self.cid)),
                                     RemoteError)
        self.assertIn("is not a node of this cloud", str(e))
        self.assertEqual(self.pinnedOn(), [])

    async def test_badRequests(self):
        client = clientTo(self.fleet, self.nodes[0], self.monkey.peerID)
        for body, why in [({"action": "stash", "cid": "not a cid"}, "cid:"),
                          ({"action": "stash", "cid": self.cid, "target": 0}, "target:"),
                          ({"action": "stash", "cid": self.cid, "target": 17}, "target:"),
                          ({"action": "stash", "cid": self.cid, "fanout": "yes"}, "fanout:"),
                          ({"action": "stashStatus", "cids": "x"}, "cids:"),
                          ({"action": "dance"}, "action dance unknown")]:
            e = await self.assertFailure(Deferred.fromCoroutine(client.client.call("hoarder", body)), RemoteError)
            self.assertIn(why, str(e))
        self.assertEqual(self.pinnedOn(), [])

    async def test_cidsPerRequestAtLimit(self):
        limit = HoarderConfig().maxCids
        client = clientTo(self.fleet, self.nodes[0], self.monkey.peerID)
        answer = await client.stashStatus([self.cid] + [f"c{i}" for i in range(limit - 1)])
        self.assertEqual(len(answer["claims"]), limit)
        e = await self.assertFailure(Deferred.fromCoroutine(client.stashStatus([f"c{i}" for i in range(limit + 1)])), RemoteError)
        self.assertIn(f"cids: {limit + 1} given, limit {limit}", str(e))


class AssetSweepTests(TestCase):
    async def test_adoptedByBestPlaced(self):
        """
        A build CID in tns's C{assets/} that no hoarder holds is adopted,
        10 s after start, by the best placed member, and fanned out.
        """
        fleet = Fleet(self)
        monkey = fleet.plain()
        cid = cidText((await monkey.content.add(b"website build" * 50)).cid)
        fleet.tns.calls.leaves[("assets", "QmAssetKey")] = cid
        fleet.tns.calls.leaves[("assets", "QmBadKey")] = "not a cid"
        nodes = await fleet.add(3)
        fleet.advance(9)
        holders = lambda: sorted(n.me for n in nodes if any(cidText(c) == cid for c in n.content.pinned))
        self.assertEqual(holders(), [])
        fleet.advance(2)
        best = ranked(cid, [n.me for n in nodes])
        self.assertEqual(holders(), sorted(best[:2]))
        meta = await nodes[0].service.registry.stashMeta(cid)
        self.assertEqual(meta, {"Target": 2, "OwnerHash": "QmAssetKey"})


class StopTests(TestCase):
    async def test_stopCancelsReconcile(self):
        """
        A reconcile waiting on a push that does not answer is cancelled
        when the service stops: the stop does not wait for it.
        """
        fleet = Fleet(self)
        nodes = await fleet.add(3)
        fleet.advance(1)
        monkey = fleet.plain()
        cid = cidText((await monkey.content.add(b"artefact")).cid)
        answer = await clientTo(fleet, nodes[0], monkey.peerID).stash(cid)
        survivor = fleet.byID(answer["peers"][0])
        pending = []

        async def hanging(peer, cid, target, owner):
            d = Deferred()
            pending.append(d)
            await d

        survivor.service.stasher.push = hanging
        fleet.kill(fleet.byID(answer["peers"][1]))
        fleet.advance(7)
        self.assertEqual(len(pending), 1)
        stopped = survivor.service.stopService()
        self.assertTrue(stopped.called)
        self.assertTrue(pending[0].called)   # cancelled


class ControlTests(TestCase):
    """
    The control API's hoarder commands on a node that runs hoarder.
    """

    async def test_commands(self):
        fleet = Fleet(self)
        nodes = await fleet.add(2)
        fleet.advance(1)
        node = SimpleNamespace(host=nodes[0].host, dht=None, shapeServices={"hoarder": nodes[0].service})
        cid = cidText((await nodes[0].content.add(b"pinned here")).cid)
        answer = await control.stash(node, {"arg": [cid], "target": ["2"]})
        self.assertEqual(answer, {"Cid": cid, "Peers": [nodes[0].me, nodes[1].me]})
        self.assertEqual(await control.stashStatus(node, {"arg": [cid]}), {"Claims": {cid: 2}, "Target": 2})
        self.assertEqual(await control.listStashed(node, {}), {"Ids": [cid]})
        self.assertEqual(await control.rare(node, {}), {"Rare": []})
        self.assertEqual(await control.replicas(node, {"arg": ["P"], "match": ["m"]}), {"Peers": []})
        for call, args, why in [(control.stash, {"arg": [cid], "target": ["x"]}, "target: expected a whole number"),
                                (control.stash, {"arg": ["nope"]}, "hoarder: router"),
                                (control.stashStatus, {"arg": ["c"] * (control.MAX_CIDS + 1)}, "expected 1 to 1000")]:
            e = await self.assertFailure(Deferred.fromCoroutine(call(node, args)), APIError)
            self.assertIn(why, str(e))
        self.assertEqual(len((await control.stashStatus(node, {"arg": ["c"] * control.MAX_CIDS}))["Claims"]), 1)


class RestashTests(TestCase):
    async def test_stashedTwice(self):
        """
        A CID stashed again through another hoarder is not pushed again to
        its holders: the answer names them.
        """
        fleet = Fleet(self)
        nodes = await fleet.add(3)
        fleet.advance(1)
        monkey = fleet.plain()
        cid = cidText((await monkey.content.add(b"twice")).cid)
        first = await clientTo(fleet, nodes[0], monkey.peerID).stash(cid)
        third = next(n for n in nodes if n.me not in first["peers"])
        pushes = sum(n.service.stasher.pushes for n in nodes)
        again = await clientTo(fleet, third, monkey.peerID).stash(cid)
        self.assertEqual(again["peers"][0], third.me)
        self.assertEqual(sorted(again["peers"]), sorted(n.me for n in nodes))
        self.assertEqual(sum(n.service.stasher.pushes for n in nodes), pushes)
