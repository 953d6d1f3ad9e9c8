"""
hoarder in real node processes on loopback: three C{twistd -n taubyte
--shape=cloud-hoarder} nodes admitted to one cloud, and a node in this
process (a tns node of the cloud, standing for a monkey) that has an
artefact pinned and stashes it.  Two hoarders hold it; one of them is
killed (SIGKILL) and the artefact is gone from the monkey: within a
minute the third hoarder has it, pushed by the survivor.
"""

import json

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tau.cids import cidText
from tau.services.hoarder.client import HoarderClient
from tests.cloud import Cloud, ProcessCloud, until


class ProcessTests(TestCase):
    timeout = 240

    async def ok(self, cloud, index, *args):
        status, out, err = await cloud.tau(index, *args)
        self.assertEqual(status, 0, f"tau {' '.join(args)} on node {index}: {out}{err}")
        return out

    async def test_holderKilledRebuilt(self):
        cloud = await ProcessCloud(self).start(["hoarder", "hoarder", "hoarder"])
        [monkey] = (await Cloud(self).start(["tns"])).nodes
        for address in cloud.addresses:
            await monkey.host.connect(address)
        ids = [str(key.peerID()) for key in cloud.keys]
        client = HoarderClient(monkey.host, monkey.dht)

        async def fleetOfThree():
            # every hoarder sees a fleet of 2 or more
            for peer in cloud.keys:
                status = await client.stashStatus([], peers=[peer.peerID()])
                if status["target"] != 2:
                    return False
            return True

        await until(fleetOfThree, "the hoarders to meet", limit=60)

        cid = cidText((await monkey.content.add(b"a build artefact\n" * 40000)).cid)
        answer = await client.stash(cid)
        self.assertEqual(answer["cid"], cid)
        self.assertEqual(len(answer["peers"]), 2)
        self.assertTrue(set(answer["peers"]) <= set(ids))
        [third] = [i for i, peer in enumerate(ids) if peer not in answer["peers"]]
        survivor, victim = (ids.index(p) for p in answer["peers"])

        async def pinnedOn(index):
            status, out, err = await cloud.tau(index, "pin", "ls")
            return status == 0 and cid in out.split()

        self.assertTrue(await pinnedOn(survivor))
        self.assertTrue(await pinnedOn(victim))
        self.assertFalse(await pinnedOn(third))

        # only the survivor has it now
        await monkey.content.unpin(cid)
        await monkey.content.gc()
        self.assertFalse(await monkey.content.has(cid))
        await cloud.kill(victim)
        killed = reactor.seconds()
        await until(lambda: pinnedOn(third), "the third hoarder to hold the artefact", limit=60)
        took = reactor.seconds() - killed
        self.assertLess(took, 60)
        status = await client.stashStatus([cid], peers=[cloud.keys[third].peerID()])
        self.assertEqual(status["claims"][cid], 2)
        # the tau CLI, through the third node's control API
        out = await self.ok(cloud, third, "hoarder", "status", cid)
        self.assertEqual(json.loads(out), {"claims": {cid: 2}, "target": 2})
        self.assertEqual(await self.ok(cloud, third, "hoarder", "list"), f"{cid}\n")
        self.assertEqual(await self.ok(cloud, third, "hoarder", "rare"), "")
        status, out, err = await cloud.tau(third, "hoarder", "status", "not-a-cid")
        self.assertEqual(json.loads(out), {"claims": {"not-a-cid": 0}, "target": 2})
        print(f"\nhoarder: the artefact was back at its target {took:.1f} s after a holder was killed")
