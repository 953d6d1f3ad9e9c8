"""
Tenants are isolated on every route: bob, holding his own valid token,
walks every auth command and action over p2p and every HTTP route with
alice's project, repository, hook and certificate names, and gets exactly
the answer that ids nobody has get; a stranger without a token too.  A
command, action or route this walk does not know fails the test, so a new
one cannot be added without saying how it keeps tenants apart.
"""


from tau.services.commands import RemoteError
from tau.services.auth.core import newProjectID
from tests.services.auth.helpers import request
from tests.services.auth.test_service import ServiceTestCase

BOB = "github tokB"

# (command, action) -> body from the ids; None: a list, which must name
# none of alice's ids
COMMANDS = {
    ("projects", "get"): lambda i: {"id": i["project"]},
    ("projects", "list"): None,
    ("projects", "create"): lambda i: {"name": "x", "config": i["repo"], "code": i["repo2"]},
    ("repositories", "get"): lambda i: {"provider": "github", "id": int(i["repo"])},
    ("repositories", "list"): None,
    ("repositories", "register"): lambda i: {"provider": "github", "id": i["repo"]},
    ("repositories", "unregister"): lambda i: {"provider": "github", "id": i["repo"]},
    ("hooks", "get"): lambda i: {"id": i["hook"]},
    ("hooks", "list"): None,
    ("domain", "register"): lambda i: {"fqdn": "shop.example.com", "project": i["project"]},
    ("domain", "verify"): lambda i: {"fqdn": "shop.example.com", "project": i["project"], "value": "guess"},
    ("acme", "get"): lambda i: {"fqdn": i["fqdn"]},
    ("acme", "get-static"): lambda i: {"fqdn": i["fqdn"]},
    ("acme", "set"): lambda i: {"fqdn": i["fqdn"], "certificate": b"x"},
    ("acme", "set-static"): lambda i: {"fqdn": i["fqdn"], "certificate": b"x"},
    ("acme", "cache-get"): lambda i: {"key": i["key"]},
    ("acme", "cache-set"): lambda i: {"key": i["key"], "data": b"x"},
    ("acme", "cache-delete"): lambda i: {"key": i["key"]},
}

# (method, pattern) -> (path, JSON body) from the ids; None: no ids in it,
# and the answer must name none of alice's
ROUTES = {
    ("GET", "/me"): None,
    ("GET", "/projects"): None,
    ("GET", "/repositories"): None,
    ("GET", "/projects/{id}"): lambda i: (f"/projects/{i['project']}", None),
    ("DELETE", "/projects/{id}"): lambda i: (f"/projects/{i['project']}", None),
    ("POST", "/project/new/{name}"): lambda i: ("/project/new/x", {"config": {"id": i["repo"]}, "code": {"id": i["repo2"]}}),
    ("POST", "/project/import/{name}"): lambda i: ("/project/import/x", {
        "config": {"id": i["repo"]}, "code": {"id": i["repo2"]}, "project-id": i["project"]}),
    ("POST", "/repositories/new/{name}"): lambda i: ("/repositories/new/x", None),
    ("GET", "/repository/{provider}/{id}"): lambda i: (f"/repository/github/{i['repo']}", None),
    ("PUT", "/repository/{provider}/{id}"): lambda i: (f"/repository/github/{i['repo']}", None),
    ("DELETE", "/repository/{provider}/{id}"): lambda i: (f"/repository/github/{i['repo']}", None),
    ("POST", "/domain/{fqdn}/for/{project}"): lambda i: (f"/domain/shop.example.com/for/{i['project']}", None),
    ("POST", "/tokens"): lambda i: ("/tokens", {"name": "x", "repositories": [i["repo"]]}),
}


class TenancyTests(ServiceTestCase):
    async def setUp(self):
        await super().setUp()
        project = await self.newProject("github tokA")
        await self.newProject("github tokB", "bobs", 201, 202)
        hooks = (await self.command(self.service, "hooks", {"action": "list"}))["hooks"]
        owners = {h: (await self.command(self.service, "hooks", {"action": "get", "id": h}))["repository"] for h in hooks}
        aliceHook = next(h for h, repo in owners.items() if repo == 101)
        await self.command(self.service, "acme", {"action": "set", "fqdn": "shop.example.com", "certificate": b"c"})
        await self.command(self.service, "acme", {"action": "set-static", "fqdn": "shop.example.com", "certificate": b"c"})
        await self.command(self.service, "acme", {"action": "cache-set", "key": "acct", "data": b"d"})
        self.alice = {"project": project, "repo": "101", "repo2": "102", "hook": aliceHook, "fqdn": "shop.example.com",
                      "key": "acct"}
        self.missing = {"project": newProjectID("nobody"), "repo": "999", "repo2": "998", "hook": "f" * 32,
                        "fqdn": "none.example.com", "key": "nokey"}
        self.secretNames = [project, "101", "102", aliceHook]

    async def answer(self, host, name, body):
        try:
            return "answer", await self.command(host, name, body)
        except RemoteError as e:
            return "error", str(e)

    def assertNamesNone(self, answer, what):
        values = set()

        def walk(value):
            if isinstance(value, dict):
                list(map(walk, value.values()))
            elif isinstance(value, (list, tuple)):
                list(map(walk, value))
            else:
                values.add(str(value))

        walk(answer)
        self.assertEqual(values & set(self.secretNames), set(), what)

    def test_walkKnowsEveryCommand(self):
        served = {(c, a) for c, actions in self.cloud.service.commands.actions.items() for a in actions}
        self.assertEqual(served, set(COMMANDS), "a command or action the tenancy walk does not cover")
        self.assertEqual(set(self.cloud.service.router.commands()), {c for c, _ in COMMANDS} | {"ping"})

    def test_walkKnowsEveryRoute(self):
        self.assertEqual(set(self.cloud.service.resource.routes()), set(ROUTES),
                         "an HTTP route the tenancy walk does not cover")

    async def test_p2p(self):
        before = self.cloud.kvdb.snapshot()
        for (command, action), body in sorted(COMMANDS.items()):
            for host, token in ((self.stranger, BOB), (self.stranger, None)):
                what = f"{command} {action} token={token}"
                if body is None:
                    got = await self.answer(host, command, dict({"action": action}, **({"token": token} if token else {})))
                    self.assertEqual(got[0], "answer", what)
                    self.assertNamesNone(got, what)
                    continue
                extra = {"action": action, **({"token": token} if token else {})}
                theirs = await self.answer(host, command, dict(body(self.alice), **extra))
                nobodys = await self.answer(host, command, dict(body(self.missing), **extra))
                self.assertEqual(theirs, nobodys, what)
                # a guessed validation token is not valid; everything else fails
                expected = ("answer", {"valid": False}) if action == "verify" else ("error", theirs[1])
                self.assertEqual(theirs, expected, what)
        self.assertEqual(self.cloud.kvdb.snapshot(), before)

    async def test_http(self):
        before = self.cloud.kvdb.snapshot()
        for (method, _pattern), make in sorted(ROUTES.items()):
            what = f"{method} {_pattern}"
            if make is None:
                status, answer = await request(method, self.cloud.url + _pattern, BOB)
                self.assertEqual(status, 200, what)
                self.assertNamesNone(answer, what)
                continue
            path, body = make(self.alice)
            theirs = await request(method, self.cloud.url + path, BOB, body)
            path, body = make(self.missing)
            nobodys = await request(method, self.cloud.url + path, BOB, body)
            self.assertEqual(theirs, nobodys, what)
            self.assertGreaterEqual(theirs[0], 400, what)
        self.assertEqual(self.cloud.kvdb.snapshot(), before)

    async def test_importOfATakenId(self):
        # with his own repositories and alice's project id, bob does not
        # take her project over (a missing id would be created)
        before = self.cloud.kvdb.snapshot()
        status, answer = await request("POST", self.cloud.url + "/project/import/mine", BOB, {
            "config": {"id": 201}, "code": {"id": 202}, "project-id": self.alice["project"]})
        self.assertEqual((status, answer), (400, {"error": f"project id {self.alice['project']} is taken"}))
        self.assertEqual(self.cloud.kvdb.snapshot(), before)
        status, _ = await request("POST", self.cloud.url + "/project/import/mine", BOB, {
            "config": {"id": 201}, "code": {"id": 202}, "project-id": self.missing["project"]})
        self.assertEqual(status, 200)


