"""
What the monkey tests share: a small patrick and a small auth (command
routers answered from lists, in the test only), git hosting on loopback
holding the project's repositories, and a monkey wired to them.
"""

import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred

from tau import fakes
from tau.build.sandbox import MiB, Sandbox
from tau.githost.credentials import deployReadToken
from tau.services.auth.client import AuthClient
from tau.services.framework import CommandRouter, LocalCalls
from tau.services.monkey.config import MonkeyConfig
from tau.services.monkey.service import makeMonkey
from tau.services.patrick.client import PatrickClient
from tau.services.patrick.job import Job, Meta, Repository
from tests.build.test_taubyte import BUILD_SH, PING_RS, PING_WAT
from tests.githost.helpers import GitClient, Hosting

PROJECT = "QmWwcZoxfgAihk2bC38RCyVHBLTdiYx4XJA7iwMRgXGCne"
CONFIG_REPO, CODE_REPO, WEBSITE_REPO, LIBRARY_REPO = 201, 202, 203, 204
FUNCTION_WAT = "QmPT6dJHnSc6npt2VPnW8sPeyeVwgmaJiqc2Jk4jbxZ1N7"
FUNCTION_RUST = "QmTDPCiJR8JVkjd1ZUabBHqBffZZKGSKhrJHeXqRUnu9P4"
WEBSITE = "QmWbJTYQ4XPTSjDYEtDktZbrgYX4zJHmG4Hxj8JMmMYjVo"
DOMAIN = "QmbxUBSx6Wcq9TSkDoDgfj94YxZKV6zi4FENjABbT3cJNg"
LIBRARY = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
MONKEY_PEER = "monkey-under-test"


def function(resourceId, name, call):
    return (f"id: {resourceId}\nsource: .\ntrigger:\n  type: https\n  method: GET\n  domains: [main]\n"
            f"  paths: [/{name}]\nexecution:\n  timeout: 5s\n  memory: 16MB\n  call: {call}\n")


CONFIG_FILES = {
    "config.yaml": f"id: {PROJECT}\nname: demo\n",
    "domains/main.yaml": f"id: {DOMAIN}\nfqdn: demo.example.com\n",
    "functions/ping.yaml": function(FUNCTION_WAT, "ping", "ping"),
    "functions/rping.yaml": function(FUNCTION_RUST, "rping", "ping"),
    "websites/site.yaml": (f"id: {WEBSITE}\ndomains: [main]\npaths: [/]\nsource:\n  branch: main\n  github:\n"
                           f"    id: {WEBSITE_REPO}\n    fullname: demo/site\n"),
    "libraries/shared.yaml": (f"id: {LIBRARY}\nsource:\n  branch: main\n  path: /\n  github:\n"
                              f"    id: \"{LIBRARY_REPO}\"\n    fullname: demo/shared\n"),
}

TAUBYTE = ".taubyte/config.yaml"


def taubyteConfig(image, steps=("build",)):
    return {TAUBYTE: f"version: 1.00\nenvironment:\n  image: {image}\n  variables: {{}}\nworkflow:\n"
                     + "".join(f"  - {s}\n" for s in steps)}


CODE_FILES = {
    **{f"functions/ping/{k}": v for k, v in taubyteConfig("tau/wat").items()},
    "functions/ping/.taubyte/build.sh": BUILD_SH,
    "functions/ping/ping.wat": PING_WAT,
    **{f"functions/rping/{k}": v for k, v in taubyteConfig("taubyte/rust-wasi:latest").items()},
    "functions/rping/.taubyte/build.sh": BUILD_SH,
    "functions/rping/lib.rs": PING_RS,
}

WEBSITE_FILES = {
    **taubyteConfig("tau/wat"),
    ".taubyte/build.sh": 'cp -r "$SRC/public/." "$OUT/"\n',
    "public/index.html": "<h1>demo</h1>\n",
    "public/about/index.html": "<p>about</p>\n",
}


class TestPatrick:
    """
    patrick's C{patrick} command answered from a list of jobs (for these
    tests only): C{dequeue} pops one and assigns it, C{isAssigned} says
    whether it still is (C{unassign} takes it back), C{done} and
    C{failed} are kept in C{reports} with their time.
    """

    def __init__(self, clock):
        self.clock = clock
        self.queue = []
        self.assigned = set()
        self.reports = []
        self.asked = []
        self._waiting = []
        self.router = CommandRouter("/patrick/v1", clock)
        self.router.define("patrick", self._patrick)

    def client(self):
        return PatrickClient(None, None, client=LocalCalls(self.router._handlers, MONKEY_PEER))

    async def _patrick(self, peer, body):
        action = body["action"]
        if action == "dequeue":
            if not self.queue:
                return {"available": False}
            job = self.queue.pop(0)
            self.assigned.add(job.id)
            return {"available": True, "job": job.toCBOR()}
        jid = body["jid"]
        if action == "isAssigned":
            self.asked.append((jid, self.clock.seconds()))
            return {"assigned": jid in self.assigned}
        if action in ("done", "failed"):
            if jid not in self.assigned:
                raise ValueError(f"job {jid} is not assigned to {peer}")
            self.assigned.discard(jid)
            self.reports.append({"action": action, "jid": jid, "logs": body["cid"], "assets": body["assetCid"],
                                 "at": self.clock.seconds()})
            for d in self._waiting[:]:
                if len(self.reports) >= d.count:
                    self._waiting.remove(d)
                    d.callback(self.reports)
            return None
        raise ValueError(f"unknown action {action}")

    def wait(self, count=1, timeout=120):
        d = Deferred()
        d.count = count
        if len(self.reports) >= count:
            d.callback(self.reports)
            return d
        self._waiting.append(d)
        return d.addTimeout(timeout, reactor)


class TestAuth:
    """
    auth's C{repositories get} and C{projects get} from dicts.
    """

    def __init__(self):
        self.repositories = {}
        self.projects = {}
        self.handlers = {"repositories": self._repositories, "projects": self._projects}
        self.client = AuthClient(None, None, client=LocalCalls(self.handlers, MONKEY_PEER))

    def router(self, clock):
        """
        These commands on C{/auth/v1}, to install on a host.
        """
        router = CommandRouter("/auth/v1", clock)
        for name, handler in self.handlers.items():
            router.define(name, handler)
        return router

    async def _repositories(self, peer, body):
        record = self.repositories.get((body["provider"], body["id"]))
        if record is None:
            raise ValueError("repository not found")
        return record

    async def _projects(self, peer, body):
        return self.projects[body["id"]]


def key(repoId):
    return f"-----BEGIN EC PRIVATE KEY-----\ntest key of {repoId}\n-----END EC PRIVATE KEY-----\n"


class World:
    """
    A project's three repositories on loopback git hosting, auth and
    patrick for them, tns and content in memory, and a monkey.
    """

    async def start(self, case, **config):
        self.case = case
        self.git = GitClient(case)
        self.hosting = await Hosting().start(case)
        self.auth = TestAuth()
        self.auth.projects[PROJECT] = {"id": PROJECT, "name": "demo", "provider": "github",
                                       "code": str(CODE_REPO), "config": str(CONFIG_REPO)}
        for repoId in (CONFIG_REPO, CODE_REPO, WEBSITE_REPO, LIBRARY_REPO):
            self.hosting.access.repos[str(repoId)] = (f"hook{repoId}", "s3cret")
            self.hosting.access.tokens[f"push{repoId}"] = ("alice", {str(repoId)})
            self.hosting.access.tokens[deployReadToken(key(repoId))] = ("deploy", {str(repoId)})
            self.auth.repositories[("github", repoId)] = {"id": repoId, "provider": "github", "project": PROJECT,
                                                          "key": key(repoId)}
        self.patrick = TestPatrick(reactor)
        self.tns = fakes.fakeTNSClient(reactor)
        self.content = fakes.FakeContent()
        defaults = dict(pollInterval=0.05, leaseInterval=10.0, buildCPU=20, buildWall=60.0, buildOutput=16 * MiB,
                        buildSource=64 * MiB, buildMemory=2048 * MiB)
        defaults.update(config)
        self.config = MonkeyConfig(**defaults)
        self.workdir = os.path.abspath(case.mktemp())
        self.monkey = makeMonkey(fakes.FakeHost(reactor), None, self.content, self.tns, reactor, self.config,
                                 self.workdir, sandbox=Sandbox(reactor), patrick=self.patrick.client(),
                                 auth=self.auth.client)
        self.commits = {}
        return self

    def startMonkey(self):
        self.monkey.startService()
        self.case.addCleanup(self.monkey.stopService)
        return self.monkey.whenReady()

    async def push(self, repoId, files, name=None, message="change"):
        """
        Commit C{files} to repository C{repoId}'s work tree and push it:
        the new head.
        """
        work = os.path.join(self.git.home, name or f"r{repoId}")
        if not os.path.isdir(work):
            await self.git.ok("init", "--quiet", "--initial-branch=main", work)
        for path, text in files.items():
            full = os.path.join(work, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            if text is None:
                if os.path.exists(full):
                    os.remove(full)
                continue
            with open(full, "w") as f:
                f.write(text)
        await self.git.ok("add", "-A", cwd=work)
        await self.git.ok("commit", "--quiet", "--allow-empty", "-m", message, cwd=work)
        await self.git.ok("push", "--quiet", self.hosting.url(str(repoId), f"push{repoId}"), "main", cwd=work)
        return await self.git.head(work)

    def job(self, repoId, after, jid=None, url=None):
        """
        A job of a push of C{after} to C{repoId}, as patrick queues it.
        """
        meta = Meta(ref="refs/heads/main", before="0" * 40, after=after, headCommit=after,
                    repository=Repository(id=repoId, provider="github", sshURL=url or self.hosting.url(str(repoId)),
                                          branch="main", pushedAt=1))
        return Job(id=jid or f"job-{repoId}-{after[:8]}", meta=meta)

    def queue(self, *jobs):
        self.patrick.queue.extend(jobs)

    async def cat(self, cid):
        return b"".join([chunk async for chunk in await self.content.cat(cid)])

    async def logOf(self, report):
        """
        The whole log of a reported job (text).
        """
        return (await self.cat(report["logs"][report["jid"]])).decode("utf-8", "replace")
