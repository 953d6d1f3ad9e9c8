"""
Git hosting with the real git client over loopback: push, clone, the push
webhook and its signature, who is refused, what is too large.
"""

import hashlib
import hmac
import json
import os

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tau.githost.repos import ZERO
from tests.githost.helpers import GitClient, Hosting
from tests.services.auth.helpers import httpClient


class PushCloneTests(TestCase):
    timeout = 60

    async def setUp(self):
        self.git = GitClient(self)
        self.hosting = await Hosting().start(self)
        self.hosting.access.repos["101"] = ("hook101", "s3cret")
        self.hosting.access.tokens["tokA"] = ("alice", {"101"})

    async def test_pushWebhookClone(self):
        """
        A real push over HTTP lands in the bare repository, posts one push
        event signed with the hook's secret, and a real clone gets it back.
        """
        work = await self.git.newWork()
        head = await self.git.head(work)
        await self.git.ok("push", self.hosting.url("101", "tokA"), "main", cwd=work)
        received = await self.hosting.receiver.wait(1)
        path, headers, body = received[0]
        self.assertEqual(path, b"/github/hook101")
        h = lambda name: headers.getRawHeaders(name)[0]
        self.assertEqual(h("X-GitHub-Event"), "push")
        self.assertEqual(h("X-GitHub-Hook-ID"), "hook101")
        self.assertTrue(h("X-GitHub-Delivery"))
        self.assertEqual(h("X-Hub-Signature-256"),
                         "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest())
        self.assertEqual(h("X-Hub-Signature"), "sha1=" + hmac.new(b"s3cret", body, hashlib.sha1).hexdigest())
        event = json.loads(body)
        self.assertEqual((event["ref"], event["before"], event["after"]), ("refs/heads/main", ZERO, head))
        self.assertEqual(event["head_commit"]["id"], head)
        self.assertEqual(event["head_commit"]["message"], "first")
        self.assertEqual(event["repository"]["id"], 101)
        self.assertEqual(event["repository"]["full_name"], "alice/r101")
        self.assertEqual(event["repository"]["ssh_url"], self.hosting.url("101"))
        self.assertEqual(event["repository"]["clone_url"], self.hosting.url("101"))
        self.assertIsInstance(event["repository"]["pushed_at"], int)
        self.assertLess(abs(event["repository"]["pushed_at"] - reactor.seconds()), 60)
        self.assertEqual(event["pusher"]["name"], "alice")

        clone = os.path.join(self.git.home, "clone")
        await self.git.ok("clone", "--quiet", self.hosting.url("101", "tokA"), clone)
        with open(os.path.join(clone, "README.md")) as f:
            self.assertEqual(f.read(), "hello\n")
        self.assertEqual(await self.git.head(clone), head)

    async def test_secondPush(self):
        """
        A second push announces before = the first head, with its commits.
        """
        work = await self.git.newWork()
        first = await self.git.head(work)
        await self.git.ok("push", self.hosting.url("101", "tokA"), "main", cwd=work)
        await self.hosting.receiver.wait(1)
        with open(os.path.join(work, "a.txt"), "w") as f:
            f.write("a\n")
        await self.git.ok("add", "a.txt", cwd=work)
        await self.git.ok("commit", "--quiet", "-m", "second", cwd=work)
        second = await self.git.head(work)
        await self.git.ok("push", self.hosting.url("101", "tokA"), "main", "main:refs/heads/dev", cwd=work)
        received = await self.hosting.receiver.wait(3)
        events = {json.loads(body)["ref"]: json.loads(body) for _, _, body in received[1:]}
        self.assertEqual(set(events), {"refs/heads/main", "refs/heads/dev"})
        main = events["refs/heads/main"]
        self.assertEqual((main["before"], main["after"], main["created"]), (first, second, False))
        self.assertEqual([c["id"] for c in main["commits"]], [second])
        dev = events["refs/heads/dev"]
        self.assertEqual((dev["before"], dev["created"]), (ZERO, True))
        self.assertEqual([c["id"] for c in dev["commits"]], [first, second])

    async def test_wrongToken(self):
        """
        A push with a token the host does not know is refused and changes
        nothing; so is one with a token that does not reach the repository.
        """
        self.hosting.access.tokens["tokB"] = ("bob", {"201"})
        work = await self.git.newWork()
        code, output = await self.git.run("push", self.hosting.url("101", "nope"), "main", cwd=work)
        self.assertNotEqual(code, 0)
        self.assertIn("Authentication failed", output)
        code, output = await self.git.run("push", self.hosting.url("101", "tokB"), "main", cwd=work)
        self.assertNotEqual(code, 0)
        self.assertIn("not found", output)
        self.assertEqual(os.listdir(os.path.join(self.hosting.root, "101.git", "refs", "heads"))
                         if os.path.exists(os.path.join(self.hosting.root, "101.git")) else [], [])
        self.assertEqual(self.hosting.receiver.received, [])

    async def test_noCredentialRead(self):
        """
        Reads want a credential unless the access says anyone may read.
        """
        work = await self.git.newWork()
        await self.git.ok("push", self.hosting.url("101", "tokA"), "main", cwd=work)
        code, output = await self.git.run("ls-remote", self.hosting.url("101"))
        self.assertNotEqual(code, 0)
        self.assertIn("could not read Username", output)   # asked for credentials
        self.hosting.access.publicRead = True
        output = await self.git.ok("ls-remote", self.hosting.url("101"))
        self.assertIn("refs/heads/main", output)
        # but pushing still does
        code, output = await self.git.run("push", self.hosting.url("101"), "main:other", cwd=work)
        self.assertNotEqual(code, 0)

    async def test_bigPush(self):
        """
        A push over git's post buffer (1 MiB: sent chunked) is spooled,
        streamed to git and announced.
        """
        work = await self.git.newWork(files={"blob.bin": os.urandom(3 << 20).hex()})
        await self.git.ok("push", self.hosting.url("101", "tokA"), "main", cwd=work)
        await self.hosting.receiver.wait(1)
        clone = os.path.join(self.git.home, "clone")
        await self.git.ok("clone", "--quiet", self.hosting.url("101", "tokA"), clone)
        self.assertEqual(await self.git.head(clone), await self.git.head(work))

    async def test_unknownRepository(self):
        code, output = await self.git.run("ls-remote", self.hosting.url("999", "tokA"))
        self.assertNotEqual(code, 0)
        self.assertIn("not found", output)
        self.assertFalse(os.path.exists(os.path.join(self.hosting.root, "999.git")))


class RequestTests(TestCase):
    """
    Malformed and oversized requests, by hand.
    """

    timeout = 60
    maxBody = 64 << 10

    async def setUp(self):
        self.hosting = await Hosting().start(self, maxBody=self.maxBody)
        self.hosting.access.repos["101"] = ("hook101", "s3cret")
        self.hosting.access.tokens["tokA"] = ("alice", {"101"})
        self.auth = {"Authorization": "tau tokA"}

    async def request(self, method, path, headers=None, data=None):
        response = await httpClient().request(method, self.hosting.base + path, headers=headers, data=data)
        body = await response.content()
        return response.code, body

    async def test_paths(self):
        self.assertEqual((await self.request("GET", "101.git/HEAD", self.auth))[0], 404)
        self.assertEqual((await self.request("GET", "../etc/passwd", self.auth))[0], 404)
        self.assertEqual((await self.request("GET", ".hooks.git/info/refs?service=git-upload-pack", self.auth))[0], 404)
        code, body = await self.request("GET", "101.git/info/refs", self.auth)
        self.assertEqual(code, 403)
        self.assertIn(b"smart HTTP", body)
        self.assertEqual((await self.request("GET", "101.git/git-receive-pack", self.auth))[0], 405)
        code, body = await self.request("GET", "101.git/info/refs?service=git-upload-pack", self.auth)
        self.assertEqual(code, 200)
        self.assertIn(b"# service=git-upload-pack", body)

    async def test_challenge(self):
        code, _ = await self.request("GET", "101.git/info/refs?service=git-receive-pack")
        self.assertEqual(code, 401)

    async def test_pushBodyWithoutCredential(self):
        """
        A push body without credentials is refused before it is read.
        """
        code, body = await self.request("POST", "101.git/git-receive-pack", {}, b"0" * 1000)
        self.assertEqual(code, 401)
        self.assertIn(b"authentication required", body)

    async def test_bodiesAtOnce(self):
        """
        C{maxBodies} request bodies are received at once; one more is
        answered 503; a finished request frees its place.
        """
        site = self.hosting.site
        headers = dict(self.auth, **{"Content-Type": "application/x-git-upload-pack-request"})
        site.receiving = site.maxBodies - 1
        code, _ = await self.request("POST", "101.git/git-upload-pack", headers, b"0000")
        self.assertNotEqual(code, 503)
        self.assertEqual(site.receiving, site.maxBodies - 1)
        site.receiving = site.maxBodies
        code, body = await self.request("POST", "101.git/git-upload-pack", headers, b"0000")
        self.assertEqual(code, 503)
        self.assertEqual(site.receiving, site.maxBodies)
        site.receiving = 0

    async def test_bodyAtLimit(self):
        """
        A body of exactly C{maxBody} bytes reaches git (which refuses the
        garbage itself); one byte more is answered 413.
        """
        headers = dict(self.auth, **{"Content-Type": "application/x-git-upload-pack-request"})
        code, body = await self.request("POST", "101.git/git-upload-pack", headers, b"0" * self.maxBody)
        self.assertNotEqual(code, 413)
        code, body = await self.request("POST", "101.git/git-upload-pack", headers, b"0" * (self.maxBody + 1))
        self.assertEqual(code, 413)
        self.assertIn(b"over 65536 bytes", body)

    async def test_pushOverLimit(self):
        """
        A real push whose pack is over C{maxBody} fails with 413 and
        changes nothing.
        """
        git = GitClient(self)
        work = await git.newWork(files={"blob.bin": os.urandom(self.maxBody).hex()})
        code, output = await git.run("push", self.hosting.url("101", "tokA"), "main", cwd=work)
        self.assertNotEqual(code, 0)
        self.assertIn("413", output)
        self.assertEqual(self.hosting.receiver.received, [])

    async def test_processLimit(self):
        """
        C{maxProcesses} git requests are served at once; one more is
        answered 503.
        """
        self.hosting.resource.maxProcesses = 2
        self.hosting.resource.active = 1
        path = "101.git/info/refs?service=git-upload-pack"
        self.assertEqual((await self.request("GET", path, self.auth))[0], 200)
        self.hosting.resource.active = 2
        code, body = await self.request("GET", path, self.auth)
        self.assertEqual(code, 503)
        self.assertIn(b"too many git requests", body)
        self.hosting.resource.active = 0

    async def test_hugeDeclaredLength(self):
        """
        A Content-Length far over the limit is refused before the body
        comes (the client has sent none of it).
        """
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
        from twisted.internet.protocol import Protocol
        from twisted.internet.defer import Deferred

        class Raw(Protocol):
            def __init__(self):
                self.data = b""
                self.closed = Deferred()

            def dataReceived(self, data):
                self.data += data

            def connectionLost(self, reason):
                self.closed.callback(self.data)

        raw = Raw()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.hosting.port), raw)
        raw.transport.write(b"POST /101.git/git-receive-pack HTTP/1.1\r\nHost: x\r\nAuthorization: tau tokA\r\n"
                            b"Content-Length: 10000000000\r\n\r\n")
        answer = await raw.closed
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer)
