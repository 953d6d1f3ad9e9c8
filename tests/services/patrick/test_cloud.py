"""
A real deploy trigger: a git push to a repository hosted by a real auth
node reaches a real patrick node (auth posts the webhook, signed with the
hook's secret, to patrick's C{POST /github/<hook>}) and a job appears; the
tau CLI (a real process, through the node's control API) and patrick's
HTTP API list the same jobs in the same states.
"""

import json

import yaml
from twisted.trial.unittest import TestCase

from tau.private import writePrivate
from tau.services.patrick.job import JobStatus
from tests.cloud import Cloud, until
from tests.githost.helpers import GitClient
from tests.processes import TAU, run
from tests.services.auth.helpers import request

from twisted.internet import reactor


class PushToJobTests(TestCase):
    timeout = 180

    async def setUp(self):
        self.cloud = Cloud(self)
        await self.cloud.start(["patrick"])
        self.patrick = self.cloud.nodes[0].shapeServices["patrick"]
        # auth posts pushes to this patrick
        index = self.cloud.prepare("auth")
        shapeFile = self.cloud.roots[index] / "config" / "cloud-auth.yaml"
        shape = yaml.safe_load(shapeFile.read_text())
        shape["auth"] = {"webhook-url": self.patrick.url + "/github/"}
        writePrivate(shapeFile, yaml.safe_dump(shape))
        self.cloud.nodes.append(await self.cloud._startNode(index))
        await self.cloud.connect()
        auth = self.cloud.nodes[1].shapeServices["auth"]
        self.authURL = f"http://127.0.0.1:{auth.listener.port.getHost().port}"
        admin = "admin " + (self.cloud.nodes[1].config.dataDir / "auth" / "admin-token").read_text().strip()
        status, answer = await request("POST", self.authURL + "/tokens", admin, {"name": "ci", "repositories": []})
        self.assertEqual(status, 200, answer)
        self.token = "tau " + answer["token"]
        self.git = GitClient(self)

    async def newRepo(self, name):
        status, answer = await request("POST", f"{self.authURL}/repositories/new/{name}", self.token)
        self.assertEqual(status, 200, answer)
        return answer["repository"]

    async def push(self, repo, work):
        url = repo["clone_url"].replace("http://", f"http://ci:{self.token[4:]}@", 1)
        await self.git.ok("push", url, "main", cwd=work)

    async def tau(self, *args, node=0):
        status, out, err = await run(reactor, TAU + ["--root", str(self.cloud.roots[node]), "--shape",
                                                     self.cloud.shapeName(node), *args])
        self.assertEqual(status, 0, out + err)
        return out

    async def listed(self):
        """
        C{(CLI's, HTTP's)} [(id, status)] of every job.
        """
        cli = [(j["Id"], j["Status"]) for j in json.loads(await self.tau("job", "list", "--json"))]
        status, answer = await request("GET", self.patrick.url + "/jobs", self.token)
        self.assertEqual(status, 200, answer)
        return cli, [(j["Id"], j["Status"]) for j in answer["jobs"]]

    async def test_pushMakesAJob(self):
        config = await self.newRepo("shop-config")
        code = await self.newRepo("shop-code")
        status, answer = await request("POST", f"{self.authURL}/project/new/shop", self.token,
                                       {"config": {"id": config["id"]}, "code": {"id": code["id"]}})
        self.assertEqual(status, 200, answer)
        project = answer["project"]["id"]
        work = await self.git.newWork()
        head = await self.git.head(work)
        await self.push(config, work)

        async def created():
            return len(await self.patrick.jobs.all()) == 1

        await until(created, "the push's job")
        [job] = await self.patrick.jobs.all()
        self.assertEqual((job.meta.after, job.meta.headCommit, job.meta.ref), (head, head, "refs/heads/main"))
        self.assertEqual((job.meta.repository.id, job.meta.repository.provider), (int(config["id"]), "local"))
        self.assertEqual(job.meta.repository.sshURL, config["clone_url"])
        self.assertEqual(await self.patrick.storage.projectOf(job.id), project)

        # its first run fails, the retry fails too: failed; another push is open
        from tau.store.unixfs import cidText

        logCID = cidText((await self.cloud.nodes[0].content.add(b"git-clone ok\nbuild: exit 1\n")).cid)
        for attempt in range(2):
            taken = await self.patrick.jobs.dequeue("monkey-1")
            if taken is None:   # the node settles (hears its peers) in its first seconds
                await until(lambda: self._settled(), "patrick settled")
                taken = await self.patrick.jobs.dequeue("monkey-1")
            await self.patrick.jobs.failed("monkey-1", job.id, {f"run-{attempt}": logCID})
        self.assertEqual((await self.patrick.jobs.info(job.id)).status, JobStatus.FAILED)
        logs = await self.tau("job", "logs", job.id)
        self.assertEqual(logs, f"== run-0 ({logCID})\ngit-clone ok\nbuild: exit 1\n"
                               f"== run-1 ({logCID})\ngit-clone ok\nbuild: exit 1\n")
        with open(f"{work}/more.txt", "w") as f:
            f.write("more\n")
        await self.git.ok("add", "-A", cwd=work)
        await self.git.ok("commit", "--quiet", "-m", "second", cwd=work)
        await self.push(config, work)

        async def second():
            return len(await self.patrick.jobs.all()) == 2

        await until(second, "the second push's job")
        cli, http = await self.listed()
        self.assertEqual(cli, http)
        self.assertEqual(sorted(s for _, s in cli), [JobStatus.FAILED, JobStatus.OPEN])
        table = (await self.tau("job", "list")).splitlines()
        self.assertEqual(len(table), 2)
        self.assertTrue(table[1].startswith(f"{job.id}  failed     attempt 2  local/{config['id']}@main  {head[:12]}"),
                        table)

        # retried through the CLI: open again, in both
        await self.tau("job", "retry", job.id)
        cli, http = await self.listed()
        self.assertEqual(cli, http)
        self.assertEqual([s for _, s in cli], [JobStatus.OPEN, JobStatus.OPEN])
        shown = json.loads(await self.tau("job", "show", job.id))
        self.assertEqual((shown["Id"], shown["State"], shown["Attempt"]), (job.id, "open", 0))
        # the auth node runs no patrick: its CLI asks the patrick node over p2p
        elsewhere = json.loads(await self.tau("job", "list", "--json", node=1))
        self.assertEqual([(j["Id"], j["Status"]) for j in elsewhere], cli)

    async def _settled(self):
        return self.patrick.members.settled


class TwoPatrickNodesTests(TestCase):
    """
    Two real patrick nodes (real hosts, gossipsub heartbeats, the kvdb
    replicating between them): they hear each other, and the jobs made on
    one are handed out once, whichever node the dequeuers ask.
    """

    timeout = 120

    async def test_eachJobOnce(self):
        from tau.services.framework import call
        from tau.services.patrick import PROTOCOL
        from tests.services.patrick.helpers import PROJECT, newJob

        cloud = Cloud(self)
        await cloud.start(["patrick", "patrick"])
        nodes = cloud.nodes
        services = [n.shapeServices["patrick"] for n in nodes]

        async def heard():
            return all(len(s.members.live()) == 2 and s.members.settled for s in services)

        await until(heard, "the patrick nodes hearing each other")
        jobs = [(await services[0].jobs.submit(newJob(n), PROJECT))[0] for n in range(12)]

        async def replicated():
            return len(await services[1].jobs.all()) == 12

        await until(replicated, "the jobs on the other node")
        taken = []

        async def dequeue(caller, node):
            if caller is node:
                answer = await services[nodes.index(node)].local().call("patrick", {"action": "dequeue"})
            else:
                answer = await call(caller.host, node.host.peerID, PROTOCOL, "patrick", {"action": "dequeue"})
            if answer["available"]:
                taken.append(answer["job"][1])
            return answer["available"]

        async def allTaken():
            # every node asks every node, as monkeys asking patricks by turns
            for caller in nodes:
                for node in nodes:
                    await dequeue(caller, node)
            return len(taken) >= len(jobs)

        await until(allTaken, "every job handed out")
        self.assertEqual(sorted(taken), sorted(j.id for j in jobs))
        self.assertEqual(len(taken), len(set(taken)))
