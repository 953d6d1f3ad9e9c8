"""
auth hosts git repositories: a tau token creates one (its hook and secret
made at once), a real git push to it is announced to the webhook URL with
a signature patrick checks with the secret auth gives it, a builder clones
with the read token of the deploy key auth gives it, and nobody else
reads or pushes.
"""

import hashlib
import hmac
import json
import os
from pathlib import Path

from twisted.web.server import Site

from tau.githost.credentials import deployReadToken
from tests.githost.helpers import GitClient, Receiver, listen
from tests.services.auth.helpers import request
from tests.services.auth.test_service import ServiceTestCase


class HostedGitTests(ServiceTestCase):
    timeout = 60

    async def setUp(self):
        self.receiver = Receiver()
        port = await listen(self, Site(self.receiver))
        self.config = {"webhook-url": f"http://127.0.0.1:{port}/github/"}
        await super().setUp()
        self.git = GitClient(self)
        admin = "admin " + (Path(self.cloud.root) / "auth" / "admin-token").read_text().strip()
        self.tokens = {}
        for name in ("ci", "other"):
            status, answer = await request("POST", self.cloud.url + "/tokens", admin, {"name": name, "repositories": []})
            self.assertEqual(status, 200, answer)
            self.tokens[name] = answer["token"]

    async def create(self, name, token=None):
        status, answer = await request("POST", f"{self.cloud.url}/repositories/new/{name}",
                                       "tau " + (token or self.tokens["ci"]))
        self.assertEqual(status, 200, answer)
        return answer["repository"]

    def withCredential(self, url, password, user="ci"):
        return url.replace("http://", f"http://{user}:{password}@", 1)

    async def test_createPushAnnounceClone(self):
        repo = await self.create("shop-config")
        self.assertTrue(repo["id"].isdigit())
        self.assertEqual((repo["provider"], repo["fullname"]), ("local", "ci/shop-config"))
        self.assertEqual(repo["clone_url"], f"{self.cloud.service.gitURL}{repo['id']}.git")
        # registered as auth registers a GitHub repository: hook with a secret, deploy key
        hook = await self.command(self.service, "hooks", {"action": "get", "id": repo["hook"]})
        self.assertEqual((hook["provider"], hook["repository"]), ("local", int(repo["id"])))
        record = await self.command(self.service, "repositories", {"action": "get", "provider": "local",
                                                                   "id": repo["id"]})
        self.assertIn("EC PRIVATE KEY", record["key"])
        # a project can be built from hosted repositories
        code = await self.create("shop-code")
        pid = await self.newProject("tau " + self.tokens["ci"], "shop", repo["id"], code["id"])

        work = await self.git.newWork()
        head = await self.git.head(work)
        await self.git.ok("push", self.withCredential(repo["clone_url"], self.tokens["ci"]), "main", cwd=work)
        path, headers, body = (await self.receiver.wait(1))[0]
        self.assertEqual(path, f"/github/{repo['hook']}".encode())
        self.assertEqual(headers.getRawHeaders("X-Hub-Signature-256")[0],
                         "sha256=" + hmac.new(hook["secret"].encode(), body, hashlib.sha256).hexdigest())
        self.assertEqual(headers.getRawHeaders("X-GitHub-Hook-ID")[0], repo["hook"])
        event = json.loads(body)
        self.assertEqual((event["ref"], event["after"], event["head_commit"]["id"]), ("refs/heads/main", head, head))
        self.assertEqual(event["repository"]["id"], int(repo["id"]))
        self.assertEqual(event["repository"]["full_name"], "ci/shop-config")
        self.assertEqual(event["repository"]["ssh_url"], repo["clone_url"])
        self.assertEqual(event["pusher"]["name"], "ci")
        # the repository says which project a push belongs to (patrick asks)
        record = await self.command(self.service, "repositories", {"action": "get", "provider": "local",
                                                                   "id": repo["id"]})
        self.assertEqual(record["project"], pid)

        # a builder clones with the deploy key's read token, and cannot push with it
        clone = os.path.join(self.git.home, "clone")
        await self.git.ok("clone", "--quiet", self.withCredential(repo["clone_url"], deployReadToken(record["key"]),
                                                                  "deploy"), clone)
        self.assertEqual(await self.git.head(clone), head)
        code_, output = await self.git.run("push", self.withCredential(repo["clone_url"], deployReadToken(record["key"])),
                                           "main:other", cwd=work)
        self.assertNotEqual(code_, 0)

    async def test_othersRefused(self):
        repo = await self.create("mine")
        work = await self.git.newWork()
        for password, expected in ((self.tokens["other"], "not found"), ("tau_nope", "Authentication failed"),
                                   (deployReadToken("not the key"), "Authentication failed")):
            code, output = await self.git.run("push", self.withCredential(repo["clone_url"], password), "main", cwd=work)
            self.assertNotEqual(code, 0, password)
            self.assertIn(expected, output, password)
            code, output = await self.git.run("ls-remote", self.withCredential(repo["clone_url"], password))
            self.assertNotEqual(code, 0, password)
        self.assertEqual(self.receiver.received, [])
        # a repository that is not registered is not made on disk
        code, output = await self.git.run("ls-remote", self.withCredential(
            f"{self.cloud.service.gitURL}123.git", self.tokens["ci"]))
        self.assertIn("not found", output)
        self.assertFalse((self.cloud.service.gitRoot / "123.git").exists())

    async def test_createNeedsATauToken(self):
        status, answer = await request("POST", f"{self.cloud.url}/repositories/new/x", "github tokA")
        self.assertEqual(status, 400)
        self.assertIn("tau token", answer["error"])
        status, answer = await request("POST", f"{self.cloud.url}/repositories/new/bad.git", "tau " + self.tokens["ci"])
        self.assertEqual(status, 400)
        self.assertIn("name", answer["error"])
