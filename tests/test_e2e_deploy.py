"""
End to end, in CI: deploys by C{git push} to a dream cloud (L{tau.dream}:
one real C{twistd -n taubyte} node per service, on loopback).

Through auth's HTTP API a token makes three hosted repositories (config,
code, website) and a project of the first two; real C{git push}es post
webhooks to patrick, monkeys take the jobs, build in the sandbox with the
real toolchains (WAT with wabt, Rust with Debian's rustc) and publish to
tns; then C{curl} through the gateway gets each function's answer and the
website's page.  A pushed change serves its new version while tns keeps
the old commit.  The monkey that built and stored a new build is killed
before anyone asks for it: hoarder's copy serves it.
"""

import json
import os
import shutil
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tau.dream import startDream
from tau.dream.universe import SHAPE
from tau.services.patrick.job import JobStatus
from tests.cloud import until
from tests.githost.helpers import GitClient
from tests.netclients import curl
from tests.processes import TAU, run
from tests.services.auth.helpers import request

FIXTURES = Path(__file__).parent / "fixtures" / "deploy"
NAME = "deploy"
DOMAIN = f"hello.g.{NAME}.localtau"
#: seconds from a push to its version served (builds run in the sandbox on
#: a shared 2-CPU machine)
SERVED_WITHIN = 240

FUNCTION = """id: {id}
description: {what}
source: .
trigger:
  type: https
  method: GET
  domains: [deploy]
  paths: [{path}]
execution:
  timeout: 5s
  memory: 16MB
  call: hello
"""

WEBSITE = """id: {id}
description: the website repository
domains: [deploy]
paths: [/]
source:
  branch: main
  github:
    id: {repo}
    fullname: {fullname}
"""


def configFiles(projectId, websiteRepo):
    """
    The config repository of the project: two functions, from the code
    repository, and a website from its own repository.
    """
    return {
        "config.yaml": f"id: {projectId}\nname: deploy\ndescription: deployed by git push\n",
        "domains/deploy.yaml": f"id: QmbxUBSx6Wcq9TSkDoDgfj94YxZKV6zi4FENjABbT3cJNa\nfqdn: {DOMAIN}\n",
        "functions/hellowat.yaml": FUNCTION.format(id="QmPT6dJHnSc6npt2VPnW8sPeyeVwgmaJiqc2Jk4jbxZ1Na",
                                                   what="a WAT function", path="/wat"),
        "functions/hellorust.yaml": FUNCTION.format(id="QmPT6dJHnSc6npt2VPnW8sPeyeVwgmaJiqc2Jk4jbxZ1Nb",
                                                    what="a Rust function", path="/rust"),
        "websites/site.yaml": WEBSITE.format(id="QmWbJTYQ4XPTSjDYEtDktZbrgYX4zJHmG4Hxj8JMmMYjVa",
                                             repo=websiteRepo["id"], fullname=websiteRepo["fullname"]),
    }


def writeTree(root, files):
    for path, text in files.items():
        full = Path(root) / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(text)


class DeployTests(TestCase):
    timeout = 900

    async def setUp(self):
        self.dream = await startDream(reactor, Path(self.mktemp()).resolve(), name=NAME)
        self.addCleanup(self.dream.stop)
        urls = self.dream.urls
        self.auth, self.patrick = urls["auth"], urls["patrick"]
        self.gateway = urls["gateway"].rpartition("/")[2]
        [authNode] = [n for n in self.dream.nodes if "auth" in n.shape]
        admin = "admin " + (Path(authNode.root) / "storage" / SHAPE / "auth" / "admin-token").read_text().strip()
        status, answer = await request("POST", self.auth + "/tokens", admin, {"name": "ci", "repositories": []})
        self.assertEqual(status, 200, answer)
        self.token = answer["token"]
        self.git = GitClient(self)

    async def newRepository(self, name):
        status, answer = await request("POST", f"{self.auth}/repositories/new/{name}", "tau " + self.token)
        self.assertEqual(status, 200, answer)
        return answer["repository"]

    def pushURL(self, repo):
        return repo["clone_url"].replace("http://", f"http://ci:{self.token}@", 1)

    async def push(self, repo, work, message):
        await self.git.ok("add", "-A", cwd=work)
        await self.git.ok("commit", "--quiet", "--allow-empty", "-m", message, cwd=work)
        await self.git.ok("push", "--quiet", self.pushURL(repo), "main", cwd=work)
        return await self.git.head(work)

    async def work(self, name, files=None, copyFrom=None):
        path = os.path.join(self.git.home, name)
        await self.git.ok("init", "--quiet", "--initial-branch=main", path)
        if copyFrom is not None:
            shutil.copytree(copyFrom, path, dirs_exist_ok=True)
        writeTree(path, files or {})
        return path

    async def jobs(self):
        status, answer = await request("GET", self.patrick + "/jobs", "tau " + self.token)
        self.assertEqual(status, 200, answer)
        return answer["jobs"]

    async def jobOf(self, commit):
        """
        The job of the push of C{commit}, once it ended; its state must
        be success.
        """
        found = []

        async def ended():
            found[:] = [j for j in await self.jobs() if j["Meta"]["after"] == commit]
            return bool(found) and JobStatus(found[0]["Status"]).ended
        await until(ended, f"the job of {commit[:12]} ended", limit=SERVED_WITHIN)
        self.assertEqual(found[0]["Status"], JobStatus.SUCCESS, found[0])
        return found[0]

    async def served(self, path, body):
        via = {DOMAIN: ("127.0.0.1", int(self.gateway.rpartition(":")[2]))}
        answers = []

        async def serves():
            status, _, got = await curl(reactor, f"http://{DOMAIN}{path}", via=via)
            answers[:] = [(status, got)]
            return (status, got) == (200, body)
        await until(serves, f"{path} answered {body!r} through the gateway (last: {answers})", limit=SERVED_WITHIN)

    async def test_pushToServing(self):
        config = await self.newRepository("deploy-config")
        code = await self.newRepository("deploy-code")
        site = await self.newRepository("deploy-site")
        status, answer = await request("POST", f"{self.auth}/project/new/deploy", "tau " + self.token,
                                       {"config": {"id": config["id"]}, "code": {"id": code["id"]}})
        self.assertEqual(status, 200, answer)
        projectId = answer["project"]["id"]

        configWork = await self.work("config", configFiles(projectId, site))
        configCommit = await self.push(config, configWork, "the project")
        await self.jobOf(configCommit)
        codeWork = await self.work("code", copyFrom=FIXTURES / "code")
        codeCommit = await self.push(code, codeWork, "two functions")
        siteWork = await self.work("site", copyFrom=FIXTURES / "website")
        await self.push(site, siteWork, "the website")

        await self.served("/wat", b"hello from wat v1")
        await self.served("/rust", b"hello from rust")
        await self.served("/", (FIXTURES / "website" / "public" / "index.html").read_bytes())
        first = await self.jobOf(codeCommit)
        self.assertEqual(len(first["AssetCid"]), 2, first)

        # a new commit of the config: tns keeps the old one beside it
        configCommit2 = await self.push(config, configWork, "an empty change of the config")
        await self.jobOf(configCommit2)

        # a change of the code: the new version serves
        wat = Path(codeWork) / "functions" / "hellowat" / "main.wat"
        wat.write_text(wat.read_text().replace("wat v1", "wat v2"))
        # the monkey that builds it is killed as soon as the job is done:
        # the build is then only on hoarder's nodes
        codeCommit2 = await self.push(code, codeWork, "v2")
        second = await self.jobOf(codeCommit2)
        self.assertNotEqual(second["AssetCid"], first["AssetCid"])
        # the monkey stashed its build with hoarder (one hoarder node here)
        [newBuild] = set(second["AssetCid"].values()) - set(first["AssetCid"].values())

        async def stashed():
            status, out, err = await self.tau("hoarder", "status", newBuild, service="hoarder")
            return status == 0 and json.loads(out)["claims"].get(newBuild, 0) >= 1
        await until(stashed, f"hoarder holds {newBuild}", limit=60)
        # killed, not stopped: no goodbye to its peers
        for node in self.dream.nodes:
            if "monkey" in node.shape:
                node.process.signal("KILL")
                await node.process.whenEnded()
        await self.served("/wat", b"hello from wat v2")
        await self.served("/rust", b"hello from rust")

        # tns keeps the config of the first commit beside the second's
        for commit in (configCommit, configCommit2):
            status, out, err = await self.tau("tns", "fetch", f"branches/main/commit/{commit}/projects/{projectId}")
            self.assertEqual(status, 0, out + err)
            self.assertIn('"hellowat"', out)
        status, out, err = await self.tau("tns", "fetch", f"projects/{projectId}/branches/main/current")
        self.assertIn(configCommit2, out)

    async def tau(self, *args, service="tns"):
        """
        C{tau ARGS} against the dream's C{service} node: C{(status, out,
        err)}.
        """
        [node] = [n for n in self.dream.nodes if service in n.shape]
        return await run(reactor, TAU + ["--root", str(node.root), "--shape", SHAPE, *args])
