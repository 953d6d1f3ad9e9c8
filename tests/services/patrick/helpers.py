"""
What the patrick tests share: a push event and its signed headers, auth's
answers in memory, and patrick nodes and monkeys on fake hosts of one
network, sharing a fake kvdb and a pubsub.
"""

import hashlib
import hmac
import json

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from tau.fakes import FakeHost, FakeKVDB, FakePubSub
from tau.services.commands import RemoteError
from tau.services.framework import CommandRouter, call
from tau.services.patrick import PROTOCOL
from tau.services.patrick.client import PatrickClient
from tau.services.patrick.commands import Commands
from tau.services.patrick.config import PatrickConfig
from tau.services.patrick.job import Job, Meta, Repository
from tau.services.patrick.lifecycle import Jobs
from tau.services.patrick.members import DEAD_AFTER, Members
from tau.services.patrick.storage import Storage

PROJECT = "QmWwcZoxfgAihk2bC38RCyVHBLTdiYx4XJA7iwMRgXGCne"
HOOK = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
SECRET = "s3cret"
REPO = 101
AFTER = "a" * 40


def pushEvent(ref="refs/heads/main", after=AFTER, repo=REPO, pushedAt=1700000000, **extra):
    event = {
        "ref": ref, "before": "0" * 40, "after": after,
        "head_commit": {"id": after},
        "repository": {"id": repo, "ssh_url": f"http://git.example.com/{repo}.git", "pushed_at": pushedAt},
    }
    event.update(extra)
    return event


def encoded(event):
    return json.dumps(event).encode()


def sign(body, secret=SECRET, sha1=True, sha256=True):
    headers = {"X-GitHub-Event": "push", "X-GitHub-Hook-ID": HOOK, "Content-Type": "application/json"}
    if sha1:
        headers["X-Hub-Signature"] = "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    if sha256:
        headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return headers


class FakeAuth:
    """
    auth's answers: one hook (L{HOOK} of repository L{REPO}, provider
    C{github}) whose repository is in L{PROJECT}; C{tokens} maps a
    credential to the projects it reaches.
    """

    def __init__(self):
        self.hooks = {HOOK: {"id": HOOK, "provider": "github", "github_id": 5, "secret": SECRET, "repository": REPO}}
        self.repositories = {("github", str(REPO)): PROJECT}
        self.tokens = {"github tokA": [PROJECT], "github tokB": []}
        self.asked = []

    async def hook(self, hookID):
        self.asked.append(("hook", hookID))
        if hookID not in self.hooks:
            raise RemoteError('router: executing command "hooks" failed: hook not found')
        return dict(self.hooks[hookID])

    async def repository(self, repoID, provider):
        project = self.repositories.get((provider, str(repoID)))
        if project is None:
            raise RemoteError('router: executing command "repositories" failed: repository not found')
        return {"id": repoID, "provider": provider, "project": project, "key": "k"}

    async def projectsOf(self, credential):
        if credential not in self.tokens:
            raise RemoteError('router: executing command "projects" failed: GitHub refused the token')
        return list(self.tokens[credential])


def newJob(n=0, after=None, timestamp=None):
    """
    A job of a push of L{REPO} (its id as webhooks make it).
    """
    from tau.services.patrick.job import pushJobID

    meta = Meta(ref="refs/heads/main", before="0" * 40, after=after or f"{n:040x}", headCommit=after or f"{n:040x}",
                repository=Repository(id=REPO, provider="github", sshURL="http://x/101.git", branch="main",
                                      pushedAt=1700000000 + n))
    return Job(id=pushJobID(meta), timestamp=1700000000 + n if timestamp is None else timestamp, meta=meta)


class Direct:
    """
    A L{PatrickClient}'s calls from C{host} to one patrick node.
    """

    def __init__(self, host, target):
        self.host = host
        self.target = target

    async def call(self, name, body=None, *, peers=None):
        return await call(self.host, self.target, PROTOCOL, name, body)


class LaggingKVDB(FakeKVDB):
    """
    One node's view of a replicated kvdb: its writes are seen here at once
    and by the other views (C{peers}) C{lag} seconds later, as a CRDT
    replicates.
    """

    def __init__(self, clock, peers, lag):
        super().__init__()
        self.clock = clock
        self.peers = peers
        self.lag = lag
        if peers:
            # a new node catches up with what was written before it came
            self.stored = {name: dict(db) for name, db in peers[0].stored.items()}
        peers.append(self)

    def _spread(self, db, entries):
        def apply():
            for view in self.peers:
                if view is not self:
                    target = view.stored.setdefault(db, {})
                    for key, value in entries:
                        if value is None:
                            target.pop(key, None)
                        else:
                            target[key] = value
        self.clock.callLater(self.lag, apply)

    async def put(self, db, key, value, replicas=1, timeout=30.0):
        return await self.write(db, [(key, value)], replicas, timeout)

    async def delete(self, db, key, replicas=1, timeout=30.0):
        return await self.write(db, [(key, None)], replicas, timeout)

    async def write(self, db, entries, replicas=1, timeout=30.0):
        from tau.kvdb.service import asKey

        answer = await super().write(db, entries, replicas, timeout)
        self._spread(db, [(asKey(k), None if v is None else bytes(v)) for k, v in entries])
        return answer


class Node:
    """
    One patrick node: its host, members, jobs and commands, serving on its
    fake host.
    """

    def __init__(self, cloud, config):
        self.cloud = cloud
        self.host = FakeHost(cloud.clock, network=cloud.network)
        self.pubsub = FakePubSub(source=self.host.peerID)
        self.pubsub.subscriptions = cloud.subscriptions
        self.kvdb = cloud.kvdb if cloud.lag is None else LaggingKVDB(cloud.clock, cloud.views, cloud.lag)
        self.storage = Storage(self.kvdb)
        self.members = Members(self.pubsub, self.host.peerID, cloud.clock, lambda peer: True, config.heartbeat)
        self.notes = []
        self.jobs = Jobs(self.storage, self.members, cloud.clock, config, note=self.note)
        self.commands = Commands(self.jobs, self.members, self.host, cloud.trusted)
        self.router = CommandRouter(PROTOCOL, cloud.clock)
        self.commands.define(self.router)

    async def note(self, text):
        self.notes.append(text)
        return f"bafynote{len(self.notes)}"

    async def start(self):
        await self.storage.open()
        self.members.start()
        self.router.install(self.host)

    def stop(self):
        self.members.stop()


class Cloud:
    """
    Patrick nodes on one fake network with one kvdb and one pubsub, a
    L{Clock} (with C{lag}, each node has its own view of the kvdb, which
    sees the others' writes C{lag} seconds late); C{monkey()} makes a host of the cloud and a client of a
    node.
    """

    def __init__(self, case, lag=None, **config):
        self.case = case
        self.lag = lag
        self.views = []
        self.clock = Clock()
        self.network = {}
        self.subscriptions = {}
        self.kvdb = FakeKVDB()
        self.config = PatrickConfig(**config)
        self.nodes = []
        self.strangers = set()

    def trusted(self, peer):
        return peer not in self.strangers

    async def start(self, count=1, settle=True):
        for _ in range(count):
            node = Node(self, self.config)
            await node.start()
            self.case.addCleanup(node.stop)
            self.nodes.append(node)
        if settle:
            self.settle()
        return self

    def settle(self):
        """
        Let the nodes hear each other and settle.
        """
        for _ in range(DEAD_AFTER + 1):
            self.clock.advance(self.config.heartbeat)

    def monkey(self, node=0, stranger=False):
        host = FakeHost(self.clock, network=self.network)
        if stranger:
            self.strangers.add(host.peerID)
        return host, PatrickClient(None, None, client=Direct(host, self.nodes[node].host.peerID))


def run(coroutine):
    return Deferred.fromCoroutine(coroutine)
