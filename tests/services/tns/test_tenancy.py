"""
Tenants are isolated on every tns command: bob, holding his own valid
credential, walks every command with alice's project and domain and gets
exactly the answer that ids nobody has get; a caller without a credential
too.  A command this walk does not know fails the test, so a new one
cannot be added without saying how it keeps tenants apart.  Within those
rules bob publishes his own project, and on a domain alice also uses his
entries join hers instead of replacing them.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from tau.project import compileProject
from tau.services.commands import RemoteError
from tau.services.tns.client import TNSClient
from tests.project.helpers import PROJECT_ID as ALICE
from tests.services.tns.helpers import OTHER_PROJECT as BOB, Tenants, calls, makeCommands, shopProject

NOBODY = "QmYyGtbAfLeZNPFKEg3seJtkKY3TTQMmC93S2mjyRsZF2o"
HOST = ["http", "functions", "com", "example", "api", "links"]
NOHOST = ["http", "functions", "org", "nowhere", "links"]


def iv(project, resource="QmRes"):
    return f"branches/main/projects/{project}/functions/{resource}"


# command -> [body from (project id, host path)]
WALK = {
    "fetch": [
        lambda p, h: {"path": ["branches", "main", "commit", "c1", "projects", p]},
        lambda p, h: {"path": ["projects", p, "branches", "main", "current"]},
        lambda p, h: {"path": ["projects", p]},
        lambda p, h: {"path": ["wasm", "project", p]},
        lambda p, h: {"path": h},
        lambda p, h: {"path": ["libraries"]},
        lambda p, h: {"path": ["domains"]},
        lambda p, h: {"path": []},
    ],
    "lookup": [
        lambda p, h: {"prefix": ["projects", p], "regex": False},
        lambda p, h: {"prefix": h, "regex": False},
        lambda p, h: {"prefix": [".*" + p], "regex": True},
        lambda p, h: {"prefix": [], "regex": False},
    ],
    "list": [lambda p, h: {"depth": 10}],
    "stats": [lambda p, h: {"action": "db"}],
    "push": [
        lambda p, h: {"path": ["projects", p, "branches", "main", "current"], "data": {"current": "evil"}},
        lambda p, h: {"path": ["branches", "main", "commit", "c9", "projects", p], "data": {"name": "x"}},
        lambda p, h: {"path": h, "data": [iv(p)]},
        lambda p, h: {"path": [], "data": {"/".join(h): [iv(p)]}},
        lambda p, h: {"path": ["repositories", "github", "1", p, "type"], "data": 3},
        lambda p, h: {"path": ["assets", p], "data": "bafy"},
    ],
}


class TenancyTests(TestCase):
    async def setUp(self):
        self.tenants = Tenants({"tokA": [ALICE], "tokB": [BOB]})
        self.commands, self.kvdb, self.pubsub = makeCommands(tenants=self.tenants)
        trusted = TNSClient(None, None, None, Clock(), calls=calls(self.commands))
        await trusted.publish(compileProject(shopProject(self.mktemp())), "c1")

    async def answer(self, peer, token, name, body):
        if token is not None:
            body = dict(body, token=token)
        try:
            return await calls(self.commands, peer).call(name, body)
        except RemoteError as e:
            return ("error", str(e))

    async def test_walk(self):
        self.assertEqual(set(self.commands.handlers), set(WALK))
        for token in ("tokB", None):
            for name, bodies in WALK.items():
                for body in bodies:
                    before = self.kvdb.snapshot()
                    theirs = await self.answer("bob", token, name, body(ALICE, HOST))
                    self.assertEqual(self.kvdb.snapshot(), before, (name, body(ALICE, HOST)))
                    missing = await self.answer("bob", token, name, body(NOBODY, NOHOST))
                    text = repr(theirs).replace(ALICE, NOBODY).replace("/".join(HOST), "/".join(NOHOST))
                    self.assertEqual(text, repr(missing), (token, name, body(ALICE, HOST)))
                    if not isinstance(theirs, tuple):   # an error may name the path given, nothing else
                        self.assertNotIn(ALICE, repr(theirs))
                        self.assertNotIn("com/example", repr(theirs))

    async def test_ownProject(self):
        """
        Bob publishes his project on the host alice uses: it is stored, his
        entries join alice's index entries, and each sees only their own.
        """
        bob = TNSClient(None, None, None, Clock(), calls=calls(self.commands, "bob"), token="tokB")
        await bob.publish(compileProject(shopProject(self.mktemp(), BOB)), "b1")
        self.assertEqual((await bob.project(BOB))["commit"], "b1")
        trusted = TNSClient(None, None, None, Clock(), calls=calls(self.commands))
        links = await trusted.fetch(HOST)
        self.assertEqual(sorted({v.split("/")[3] for v in links}), sorted([ALICE, BOB]))
        self.assertEqual({v.split("/")[3] for v in await bob.fetch(HOST)}, {BOB})
        alice = TNSClient(None, None, None, Clock(), calls=calls(self.commands, "alice"), token="tokA")
        self.assertEqual({v.split("/")[3] for v in await alice.fetch(HOST)}, {ALICE})
        self.assertEqual((await alice.http("api.example.com", "/items", "GET"))["project"], ALICE)

    async def test_credentialAsked(self):
        """
        auth's answer for a credential is kept a few seconds, and a refused
        credential is an error (not an empty reach).
        """
        for _ in range(3):
            await self.answer("bob", "tokB", "fetch", {"path": ["x"]})
        self.assertEqual(self.tenants.asked, 1)
        self.assertEqual(await self.answer("bob", "nope", "fetch", {"path": ["x"]}),
                         ("error", 'router: executing command "fetch" failed: GitHub refused the token'))
