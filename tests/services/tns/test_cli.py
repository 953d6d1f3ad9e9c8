"""
tau project push, tau tns fetch and tau tns lookup: the tau CLI (a real
process) against a running node of a cloud in this process (tns is not in
node shapes yet, so the node runs it as tests/cloud.py starts it).
"""

import json
import subprocess
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests.cloud import Cloud, until
from tests.processes import TAU, environment, run
from tests.project.helpers import PROJECT_ID
from tests.services.tns.helpers import GET_ITEMS, SITE, shopProject


def gitRepository(folder):
    """
    Make C{folder} a git repository with one commit; its id.
    """
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": folder, "PATH": "/usr/bin:/bin"}
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "."], ["git", "commit", "-qm", "config"]):
        subprocess.run(argv, cwd=folder, env=env, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                          check=True).stdout.strip()


class CLITests(TestCase):
    timeout = 180

    async def setUp(self):
        self.cloud = await Cloud(self).start(["tns", "tns"])
        self.root = self.cloud.roots[0]

    async def tau(self, *args, root=None, env=None):
        return await run(reactor, TAU + ["--root", str(root or self.root), "--shape", "cloud-tns", *args], env=env)

    async def ok(self, *args, root=None):
        status, out, err = await self.tau(*args, root=root)
        self.assertEqual(status, 0, out + err)
        return out

    async def test_pushFetchLookup(self):
        folder = shopProject(self.mktemp())
        head = gitRepository(folder)
        out = await self.ok("project", "push", folder)
        self.assertEqual(out, f"published {PROJECT_ID} main@{head} through {self.cloud.nodes[0].host.peerID}\n")
        current = f"projects/{PROJECT_ID}/branches/main/current"
        self.assertEqual(json.loads(await self.ok("tns", "fetch", current)), head)
        found = json.loads(await self.ok("tns", "lookup", "http", "API.example.com", "/items"))
        self.assertEqual((found["kind"], found["id"], found["commit"]), ("function", GET_ITEMS, head))
        found = json.loads(await self.ok("tns", "lookup", "http", "api.example.com", "/docs/x", "--method", "HEAD"))
        self.assertEqual(found["id"], SITE)
        found = json.loads(await self.ok("tns", "lookup", "resource", PROJECT_ID, GET_ITEMS))
        self.assertEqual(found["config"]["paths"], ["/items"])
        keys = json.loads(await self.ok("tns", "lookup", "keys", current))
        self.assertEqual(keys, [f"/{current}/current"])
        status, out, err = await self.tau("tns", "lookup", "http", "api.example.com", "/nothing", "--method", "POST")
        self.assertEqual((status, out), (1, "tau: nothing found for http api.example.com /nothing\n"))

        # another commit, given: the pointer moves, read through the other node
        await self.ok("project", "push", folder, "--commit", "c2")
        other = self.cloud.roots[1]

        async def moved():
            return json.loads(await self.ok("tns", "fetch", current, root=other)) == "c2"

        await until(moved, "the new commit on the other node")

    async def test_errors(self):
        """
        A broken project is refused with every error, and nothing is
        published; a folder without git needs --commit.
        """
        folder = Path(shopProject(self.mktemp()))
        (folder / "functions" / "get_items.yaml").write_text("id: nope\n")
        status, out, err = await self.tau("project", "push", str(folder), "--commit", "c1")
        self.assertEqual(status, 1)
        self.assertTrue(err.startswith("tau: functions/get_items.yaml:1: execution/call: required attribute\n"), err)
        self.assertIn("functions/get_items.yaml:1: id: failed parsing `nope` as a CID", err)
        self.assertEqual(json.loads(await self.ok("tns", "fetch", f"projects/{PROJECT_ID}")), None)
        # (the test's folder is inside tau's own repository: git must not look above it)
        status, out, err = await self.tau("project", "push", str(folder),
                                          env=environment(GIT_CEILING_DIRECTORIES=str(folder.resolve().parent)))
        self.assertEqual(status, 1)
        self.assertIn("give --commit", err)
