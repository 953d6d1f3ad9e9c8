"""
A monkey in a real node, over the real network: it takes jobs from a
patrick on another node (the test's, on a real p2p stream), asks auth
there, clones from loopback git hosting, publishes to the cloud's real
tns, stores in its node's block store, and answers the job command.
"""

from dataclasses import replace

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tau.project.indexes import assetKey
from tau.services.discovery import ServiceClient
from tau.services.substrate.assets import moduleOf
from tests.cloud import Cloud, until
from tests.services.monkey.helpers import CODE_REPO, CONFIG_REPO, FUNCTION_WAT, PROJECT, World
from tests.services.monkey.test_failures import ONE_FUNCTION, pingCode


class CloudTests(TestCase):
    timeout = 180

    async def test_jobsOverTheNetwork(self):
        """
        A config job and a code job pushed to loopback git run on the
        monkey node: the config and the function's build land in the
        cloud's tns, the logs and build in the monkey's store, patrick gets
        done for both, and the job command lists and shows them.
        """
        world = await World().start(self)
        cloud = await Cloud(self).start(["monkey", "tns"])
        monkeyNode, tnsNode = cloud.nodes
        monkey = monkeyNode.shapeServices["monkey"]
        monkey.config = replace(monkey.config, pollInterval=0.1)
        world.patrick.router.install(tnsNode.host)
        world.auth.router(reactor).install(tnsNode.host)
        self.addCleanup(tnsNode.host.removeHandler, "/patrick/v1")
        self.addCleanup(tnsNode.host.removeHandler, "/auth/v1")
        config = await world.push(CONFIG_REPO, ONE_FUNCTION)
        code = await world.push(CODE_REPO, pingCode())
        world.queue(world.job(CONFIG_REPO, config), world.job(CODE_REPO, code))
        reports = await world.patrick.wait(2, timeout=120)
        self.assertEqual([r["action"] for r in reports], ["done", "done"])
        tns = tnsNode.tnsClient
        await until(lambda: _commitIs(tns, config), "the config in tns")
        cid = reports[1]["assets"][FUNCTION_WAT]
        self.assertEqual(await tns.fetch(assetKey(PROJECT, FUNCTION_WAT, "main")), cid)
        data = b"".join([c async for c in await monkeyNode.content.cat(cid)])
        self.assertTrue(moduleOf(data, 1 << 20).startswith(b"\0asm"))
        calls = ServiceClient(tnsNode.host, None, "/monkey/v1")
        listed = await calls.call("job", {"action": "list"})
        self.assertEqual(listed["ids"], [r["jid"] for r in reports])
        status = await calls.call("job", {"action": "status", "jid": reports[1]["jid"]})
        self.assertEqual((status["status"], status["logs"]), (2, reports[1]["logs"]))


async def _commitIs(tns, commit):
    return await tns.currentCommit(PROJECT, "main") == commit
