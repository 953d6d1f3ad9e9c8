"""
What the auth tests share: an in-memory git provider, an L{Auth} on a fake
store, and a started L{AuthService} on loopback.
"""

import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from zope.interface import implementer

from tau.fakes import FakeKVDB
from tau.services.auth.config import AuthConfig
from tau.services.auth.core import Auth
from tau.services.auth.providers import Caller, IGitProvider, LocalProvider, Unauthorized
from tau.services.auth.secrets import Secrets
from tau.services.auth.service import makeAuth
from tau.services.auth.storage import Storage
from tests.services.auth.fakegithub import WRITE, startFakeGitHub

WEBHOOK = "https://patrick.tau.example.com/github/"


@implementer(IGitProvider)
class FakeProvider:
    """
    A git provider in memory: C{users} maps a token to a login, C{access}
    a login to the repository ids it may write to.
    """

    name = "github"

    def __init__(self):
        self.users = {}
        self.access = {}
        self.hooks = []
        self.keys = []
        self.removed = []

    async def identify(self, token):
        if token not in self.users:
            raise Unauthorized("unknown token")
        return Caller(self.name, self.users[token], token)

    async def repository(self, caller, repoID):
        if str(repoID) in self.access.get(caller.name, ()):
            return {"id": str(repoID), "fullname": f"{caller.name}/r{repoID}", "ssh": f"git@x:{repoID}"}
        return None

    async def repositories(self, caller):
        return [await self.repository(caller, r) for r in sorted(self.access.get(caller.name, ()))]

    async def addHook(self, caller, repo, url, secret):
        self.hooks.append((repo["id"], url, secret))
        return 500 + len(self.hooks)

    async def addDeployKey(self, caller, repo, title, publicKey):
        self.keys.append((repo["id"], publicKey))
        return 700 + len(self.keys)

    async def removeDeployKey(self, caller, repo, keyID):
        self.removed.append((repo["id"], keyID))

    async def removeHook(self, caller, repo, hookID):
        self.removed.append((repo["id"], hookID))


async def makeCore():
    """
    C{(auth, kvdb, github, local)}: an L{Auth} on a L{FakeKVDB} with a
    L{FakeProvider} for alice (repositories 101, 102) and bob (201, 202).
    """
    kvdb = FakeKVDB()
    storage = Storage(kvdb)
    await storage.open()
    github = FakeProvider()
    github.users.update({"tokA": "alice", "tokB": "bob"})
    github.access.update({"alice": {"101", "102"}, "bob": {"201", "202"}})
    local = LocalProvider(storage)
    auth = Auth(storage, Secrets(os.urandom(32)), {"github": github, "oauth": github, "tau": local}, WEBHOOK)
    return auth, kvdb, github, local


class Cloud:
    """
    A started auth service on a real host, its HTTP API on 127.0.0.1:0,
    GitHub faked on loopback: alice (token tokA) writes to 101 and 102,
    bob (tokB) to 201 and 202.
    """

    async def start(self, case, host, trusted=lambda peer: False, **config):
        self.github, base = await startFakeGitHub(case)
        self.github.addUser("tokA", "alice")
        self.github.addUser("tokB", "bob")
        for rid, owner in ((101, "alice"), (102, "alice"), (201, "bob"), (202, "bob")):
            self.github.addRepo(rid, f"{owner}/repo{rid}", {owner: WRITE})
        self.kvdb = FakeKVDB()
        self.root = case.mktemp()
        settings = {"http-listen": "tcp:0:interface=127.0.0.1", "github-api": base}
        settings.update(config)
        self.service = makeAuth(host, self.kvdb, reactor, AuthConfig.check("test", settings), self.root, trusted,
                                networkFQDN="example.com")
        self.service.startService()
        case.addCleanup(lambda: self.service.stopService() if self.service.running else None)
        await self.service.whenReady()
        self.url = f"http://127.0.0.1:{self.service.listener.port.getHost().port}"
        return self


def later(coroutine):
    return Deferred.fromCoroutine(coroutine)


def httpClient():
    """
    A treq client without persistent connections (nothing left open when
    a test ends).
    """
    from treq.client import HTTPClient
    from twisted.web.client import Agent, HTTPConnectionPool

    return HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


async def request(method, url, token=None, body=None, raw=None):
    """
    C{(status, JSON answer)} of one HTTP request.
    """
    import json

    import treq

    headers = {}
    if token is not None:
        headers["Authorization"] = token
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    response = await httpClient().request(method, url, headers=headers, data=data)
    content = await treq.content(response)
    return response.code, json.loads(content)
