"""
The auth service on real hosts: its commands over p2p (as the spec sheet
has them), its HTTP API, what a malformed request gets, certificates by
SNI name.
"""

import struct
from pathlib import Path

import cbor2
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tau.services import frames
from tau.services.auth import PROTOCOL
from tau.services.commands import RemoteError
from tau.services.framework import call
from tests.hosts import addressOf, startHost
from tests.services.auth.helpers import Cloud, request


class ServiceTestCase(TestCase):
    config = {}

    async def setUp(self):
        self.server = await startHost(self)
        self.service = await startHost(self)   # another service of the cloud: trusted
        self.stranger = await startHost(self)
        self.cloud = await Cloud().start(self, self.server, trusted=lambda peer: peer == self.service.peerID,
                                         **self.config)
        await self.service.connect(addressOf(self.server))
        await self.stranger.connect(addressOf(self.server))

    def command(self, host, name, body):
        return call(host, self.server.peerID, PROTOCOL, name, body)

    async def failing(self, host, name, body):
        e = await self.assertFailure(Deferred.fromCoroutine(self.command(host, name, body)), RemoteError)
        return str(e)

    async def newProject(self, token="github tokA", name="shop", config=101, code=102):
        status, answer = await request("POST", f"{self.cloud.url}/project/new/{name}", token,
                                       {"config": {"id": config}, "code": {"id": code}})
        self.assertEqual(status, 200, answer)
        return answer["project"]["id"]


class P2PTests(ServiceTestCase):
    async def test_projects(self):
        pid = await self.newProject()
        self.assertEqual(await self.command(self.service, "projects", {"action": "get", "id": pid}),
                         {"id": pid, "name": "shop", "provider": "github", "code": "102", "config": "101"})
        self.assertEqual(await self.command(self.service, "projects", {"action": "list"}), {"ids": [pid]})
        # a peer that is not a service of the cloud sees nothing without a token
        self.assertEqual(await self.command(self.stranger, "projects", {"action": "list"}), {"ids": []})
        self.assertEqual(await self.failing(self.stranger, "projects", {"action": "get", "id": pid}),
                         'router: executing command "projects" failed: project not found')
        # with its owner's token it sees it, with another's it does not
        self.assertEqual(await self.command(self.stranger, "projects", {"action": "list", "token": "github tokA"}),
                         {"ids": [pid]})
        self.assertEqual(await self.command(self.stranger, "projects", {"action": "list", "token": "github tokB"}),
                         {"ids": []})
        self.assertEqual(await self.failing(self.stranger, "projects", {"action": "list", "token": "github nope"}),
                         'router: executing command "projects" failed: GitHub refused the token')

    async def test_createOverP2P(self):
        answer = await self.command(self.stranger, "projects", {"action": "create", "name": "p2p", "config": "201",
                                                                "code": "202", "token": "github tokB"})
        self.assertEqual(answer["name"], "p2p")
        self.assertEqual([h[0] for h in self.cloud.github.hooks], ["bob/repo201", "bob/repo202"])

    async def test_hooksForPatrick(self):
        await self.newProject()
        hooks = (await self.command(self.service, "hooks", {"action": "list"}))["hooks"]
        self.assertEqual(len(hooks), 2)
        hook = await self.command(self.service, "hooks", {"action": "get", "id": hooks[0]})
        self.assertEqual(set(hook), {"id", "provider", "github_id", "secret", "repository"})
        sent = {body["config"]["url"]: body["config"]["secret"] for _name, body in self.cloud.github.hooks}
        self.assertEqual(sent[f"https://patrick.tau.example.com/github/{hook['id']}"], hook["secret"])
        self.assertIsInstance(hook["repository"], int)

    async def test_repositoriesForMonkey(self):
        pid = await self.newProject()
        repo = await self.command(self.service, "repositories", {"action": "get", "provider": "github", "id": 101})
        self.assertEqual((repo["id"], repo["provider"], repo["project"]), (101, "github", pid))
        self.assertIn("BEGIN EC PRIVATE KEY", repo["key"])
        self.assertEqual(await self.command(self.service, "repositories", {"action": "list"}), {"ids": ["101", "102"]})
        self.assertEqual(await self.failing(self.service, "repositories", {"action": "get", "provider": "github", "id": "101"}),
                         'router: executing command "repositories" failed: id: expected an integer')

    async def test_domain(self):
        pid = await self.newProject()
        answer = await self.command(self.stranger, "domain", {"action": "register", "fqdn": "shop.example.com",
                                                             "project": pid, "token": "github tokA"})
        self.assertEqual(answer["entry"], f"{pid[:8]}.shop.example.com")
        self.assertEqual(answer["type"], "txt")
        secrets = self.cloud.service.auth.secrets
        self.assertTrue(secrets.checkDomainToken("shop.example.com", pid, answer["token"]))

    async def test_acmeTrustedOnly(self):
        self.assertIsNone(await self.command(self.service, "acme", {"action": "set-static", "fqdn": "a.example.com",
                                                                   "certificate": b"pem"}))
        self.assertEqual(await self.command(self.service, "acme", {"action": "get-static", "fqdn": "a.example.com"}),
                         {"certificate": b"pem"})
        self.assertEqual(await self.failing(self.stranger, "acme", {"action": "get-static", "fqdn": "a.example.com"}),
                         'router: executing command "acme" failed: certificate not found')
        before = self.cloud.kvdb.snapshot()
        self.assertEqual(await self.failing(self.stranger, "acme", {"action": "set", "fqdn": "a.example.com",
                                                                   "certificate": b"mine"}),
                         'router: executing command "acme" failed: certificate not found')
        self.assertEqual(self.cloud.kvdb.snapshot(), before)


class MalformedTests(ServiceTestCase):
    async def raw(self, data):
        stream = await self.stranger.newStream(self.server.peerID, [PROTOCOL])
        stream.write(data)
        [frame] = frames.FrameDecoder(1 << 20).feed(await stream.readToEnd(1 << 20))
        stream.reset()
        return cbor2.loads(frame.payload)["error"]

    async def test_badFramesAndBodies(self):
        await self.newProject()
        before = self.cloud.kvdb.snapshot()
        header = b"\x01\xec\x01\x00\x00"
        cases = [
            (header + struct.pack("<q", -1) + b"\x00", "router: decoding command failed"),
            (header + struct.pack("<q", 1 << 40) + b"\x00", "router: decoding command failed"),
            (frames.encodeFrame(b"\xa2\x10\x64pi", frames.DATA), "router: decoding command failed"),
            (frames.encodeFrame(b"\xff\xff", frames.DATA), "router: decoding command failed"),
            (frames.encodeFrame(cbor2.dumps({16: "drop", 64: {}}), frames.DATA), 'router: command "drop" not registered'),
            (frames.encodeFrame(cbor2.dumps({16: "projects", 64: {}}), frames.DATA),
             'router: executing command "projects" failed: action: expected text'),
            (frames.encodeFrame(cbor2.dumps({16: "projects", 64: {"action": "delete"}}), frames.DATA),
             'router: executing command "projects" failed: Project action `delete` not recognized'),
            (frames.encodeFrame(cbor2.dumps({16: "hooks", 64: {"action": "get", "id": ["x"]}}), frames.DATA),
             'router: executing command "hooks" failed: hook not found'),
            (frames.encodeFrame(cbor2.dumps({16: "projects", 64: {"action": "list", "token": 7}}), frames.DATA),
             'router: executing command "projects" failed: expected a credential'),
        ]
        for data, expected in cases:
            self.assertIn(expected, await self.raw(data))
        # the service goes on, nothing stored changed
        self.assertIn("time", await self.command(self.stranger, "ping", {}))
        self.assertEqual(self.cloud.kvdb.snapshot(), before)


    async def test_commandSizeLimit(self):
        # a command of exactly the router's limit is served, one byte more
        # is refused before it is read
        def padded(size):
            body = {"action": "list", "pad": b""}
            payload = cbor2.dumps({16: "projects", 64: body})
            body["pad"] = b"\0" * (size - len(payload) - 4)  # a 4-byte length after the bytes head
            payload = cbor2.dumps({16: "projects", 64: body})
            self.assertEqual(len(payload), size)
            return payload

        limit = self.cloud.service.router.maxMessage
        stream = await self.stranger.newStream(self.server.peerID, [PROTOCOL])
        stream.write(frames.encodeFrame(padded(limit), frames.DATA))
        [frame] = frames.FrameDecoder(1 << 20).feed(await stream.readToEnd(1 << 20))
        stream.reset()
        self.assertEqual(cbor2.loads(frame.payload), {"ids": []})
        header = b"\x01\xec\x01\x00\x00" + struct.pack("<q", limit + 1) + b"\x00"
        self.assertEqual(await self.raw(header),
                         f"router: decoding command failed: data frame of {limit + 1} bytes, limit {limit}")


class HTTPTests(ServiceTestCase):
    config = {"max-body": 200}

    async def test_me(self):
        self.assertEqual(await request("GET", self.cloud.url + "/me", "github tokA"),
                         (200, {"user": {"login": "alice", "provider": "github"}}))

    async def test_projects(self):
        pid = await self.newProject()
        self.assertEqual(await request("GET", self.cloud.url + "/projects", "oauth tokA"),
                         (200, {"projects": [{"id": pid, "name": "shop"}]}))
        self.assertEqual(await request("GET", self.cloud.url + "/projects", "github tokB"), (200, {"projects": []}))
        status, answer = await request("GET", f"{self.cloud.url}/projects/{pid}", "github tokA")
        self.assertEqual((status, answer["project"]["config"]), (200, "101"))
        self.assertEqual(await request("DELETE", f"{self.cloud.url}/projects/{pid}", "github tokA"),
                         (200, {"project": {"id": pid, "status": "deleted"}}))
        self.assertEqual(await request("GET", f"{self.cloud.url}/projects/{pid}", "github tokA"),
                         (404, {"error": "project not found"}))

    async def test_noValidToken(self):
        before = self.cloud.kvdb.snapshot()
        for token in (None, "github nope", "basic tokA", "github"):
            status, answer = await request("POST", f"{self.cloud.url}/project/new/x", token,
                                           {"config": {"id": 101}, "code": {"id": 102}})
            self.assertEqual(status, 401, token)
            self.assertTrue(answer["error"].startswith("not authorized: "), answer)
        self.assertEqual(self.cloud.kvdb.snapshot(), before)

    async def test_bodyLimit(self):
        body = b'{"config": {"id": 101}, "code": {"id": 102}}'
        exact = body + b" " * (200 - len(body))
        self.assertEqual((await request("POST", f"{self.cloud.url}/project/new/x", "github tokA", raw=exact))[0], 200)
        before = self.cloud.kvdb.snapshot()
        self.assertEqual(await request("POST", f"{self.cloud.url}/project/new/y", "github tokA", raw=exact + b" "),
                         (413, {"error": "the request body is over 200 bytes"}))
        self.assertEqual(self.cloud.kvdb.snapshot(), before)

    async def test_badRequests(self):
        url = self.cloud.url
        self.assertEqual(await request("GET", url + "/nothing", "github tokA"), (404, {"error": "no such route"}))
        self.assertEqual(await request("PATCH", url + "/projects", "github tokA"),
                         (405, {"error": "PATCH not allowed here (use GET)"}))
        self.assertEqual(await request("POST", url + "/project/new/x", "github tokA", raw=b"{nope"),
                         (400, {"error": "the body is not JSON"}))
        self.assertEqual(await request("POST", url + "/project/new/x", "github tokA", raw=b"[1]"),
                         (400, {"error": "the body is not a JSON object"}))
        self.assertEqual(await request("POST", url + "/project/new/x", "github tokA", {"config": 1}),
                         (400, {"error": 'expected {"id": repository id}'}))
        self.assertEqual(await request("POST", url + "/project/new/x!", "github tokA",
                                       {"config": {"id": 101}, "code": {"id": 102}}),
                         (400, {"error": "name: expected 1 to 128 letters, digits, '.', '_' or '-'"}))

    async def test_providerDown(self):
        self.cloud.github.limited = True
        self.assertEqual(await request("GET", self.cloud.url + "/projects", "github tokA"),
                         (502, {"error": "GitHub answered 403 to GET /user (rate limited or forbidden)"}))

    async def test_localTokens(self):
        admin = "admin " + (Path(self.cloud.root) / "auth" / "admin-token").read_text().strip()
        self.assertEqual((await request("POST", self.cloud.url + "/tokens", "admin wrong",
                                        {"name": "ci", "repositories": ["g1"]}))[0], 401)
        status, answer = await request("POST", self.cloud.url + "/tokens", admin, {"name": "ci", "repositories": ["g1", "g2"]})
        self.assertEqual(status, 200)
        token = "tau " + answer["token"]
        self.assertEqual(await request("GET", self.cloud.url + "/me", token),
                         (200, {"user": {"login": "ci", "provider": "local"}}))
        pid = await self.newProject(token, "hosted", "g1", "g2")
        self.assertEqual((await request("GET", f"{self.cloud.url}/projects/{pid}", token))[1]["project"]["provider"], "local")
        # the cloud's own repositories need no GitHub
        self.assertEqual(self.cloud.github.hooks, [])

    async def test_repositoryRoutes(self):
        url = f"{self.cloud.url}/repository/github/101"
        status, answer = await request("PUT", url, "github tokA")
        self.assertEqual(status, 200)
        self.assertTrue(answer["key"].startswith("ecdsa-sha2-nistp256 "))
        status, answer = await request("GET", url, "github tokA")
        self.assertEqual((status, len(answer["hooks"])), (200, 1))
        self.assertEqual(await request("GET", self.cloud.url + "/repositories", "github tokA"),
                         (200, {"repositories": [{"id": "101", "provider": "github"}]}))
        self.assertEqual(await request("DELETE", url, "github tokA"), (200, {"status": "success"}))
        self.assertEqual(self.cloud.github.removed, [("alice/repo101", "hooks", 9001), ("alice/repo101", "keys", 7001)])
