"""
What the git hosting tests share: a real git client run as a child
process, a webhook receiver on loopback, git hosting on loopback with an
access policy in memory.
"""

import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.utils import getProcessOutputAndValue
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from tau.githost import Denied, IGitAccess, Missing
from tau.githost.process import GIT
from tau.githost.repos import Repositories
from tau.githost.resource import GitResource, GitSite
from tau.githost.webhook import WebhookSender


def clientEnvironment(home):
    """
    A git client's environment that reads no config but its own, never
    prompts, and commits as a fixed author.
    """
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "LANG": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "GIT_AUTHOR_NAME": "Alice",
        "GIT_AUTHOR_EMAIL": "alice@example.com",
        "GIT_COMMITTER_NAME": "Alice",
        "GIT_COMMITTER_EMAIL": "alice@example.com",
    }


class GitClient:
    """
    Runs the real git client (through the reactor, never in its thread).
    """

    def __init__(self, case):
        self.home = os.path.abspath(case.mktemp())
        os.makedirs(self.home)

    async def run(self, *args, cwd=None):
        """
        C{(exit code, stdout + stderr text)} of C{git args...}.
        """
        out, err, code = await getProcessOutputAndValue(GIT, args, env=clientEnvironment(self.home),
                                                        path=cwd or self.home, reactor=reactor)
        return code, (out + err).decode("utf-8", "replace")

    async def ok(self, *args, cwd=None):
        code, output = await self.run(*args, cwd=cwd)
        if code != 0:
            raise AssertionError(f"git {' '.join(args)} failed ({code}):\n{output}")
        return output

    async def newWork(self, name="work", files=None):
        """
        A work tree with one commit on C{main}; its path.
        """
        path = os.path.join(self.home, name)
        await self.ok("init", "--quiet", "--initial-branch=main", path)
        for filename, text in (files or {"README.md": "hello\n"}).items():
            with open(os.path.join(path, filename), "w") as f:
                f.write(text)
        await self.ok("add", "-A", cwd=path)
        await self.ok("commit", "--quiet", "-m", "first", cwd=path)
        return path

    async def head(self, path, rev="HEAD"):
        return (await self.ok("rev-parse", rev, cwd=path)).strip()


class Receiver(Resource):
    """
    A webhook endpoint: keeps C{(headers, raw body)} of every POST, answers
    the codes in C{answers} first, then 200.
    """

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.received = []
        self.answers = []
        self._waiting = []

    def render_POST(self, request):
        request.content.seek(0)
        self.received.append((request.path, request.requestHeaders, request.content.read()))
        code = self.answers.pop(0) if self.answers else 200
        request.setResponseCode(code)
        for d in self._waiting[:]:
            if len(self.received) >= d.count:
                self._waiting.remove(d)
                d.callback(self.received)
        return b"{}"

    def wait(self, count=1, timeout=30):
        d = Deferred()
        d.count = count
        if len(self.received) >= count:
            d.callback(self.received)
            return d
        self._waiting.append(d)
        return d.addTimeout(timeout, reactor)


async def listen(case, site):
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site)
    case.addCleanup(port.stopListening)
    return port.getHost().port


@implementer(IGitAccess)
class MemoryAccess:
    """
    Repositories in memory: C{repos} maps an id to its hook C{(id, secret)},
    C{tokens} a token to who holds it and the ids it may push to.
    """

    def __init__(self, hookURL):
        self.hookURL = hookURL
        self.repos = {}
        self.tokens = {}
        self.publicRead = False

    async def authorize(self, repoID, credential, write):
        if repoID not in self.repos:
            if credential is None:
                raise Denied("no credential")
            raise Missing("repository not found")
        if not write and self.publicRead:
            return {"name": "anonymous", "email": ""}
        if credential is None:
            raise Denied("no credential")
        holder = self.tokens.get(credential[1])
        if holder is None:
            raise Denied("unknown token")
        name, reach = holder
        if repoID not in reach:
            raise Missing("repository not found")
        return {"name": name, "email": f"{name}@example.com"}

    async def pushTarget(self, repoID):
        hook, secret = self.repos[repoID]
        return {"hook": hook, "url": self.hookURL + hook, "secret": secret,
                "repository": {"id": repoID, "name": f"r{repoID}", "full_name": f"alice/r{repoID}", "owner": "alice"}}


class Hosting:
    """
    Git hosting on 127.0.0.1:0 with a L{MemoryAccess}, webhooks posted to a
    L{Receiver} on 127.0.0.1:0.
    """

    async def start(self, case, maxBody=8 << 20, **options):
        self.receiver = Receiver()
        hookPort = await listen(case, Site(self.receiver))
        self.access = MemoryAccess(f"http://127.0.0.1:{hookPort}/github/")
        self.root = os.path.abspath(case.mktemp())
        self.repos = Repositories(self.root, reactor)
        await self.repos.prepare()
        self.webhooks = WebhookSender(reactor, backoff=(0.05, 0.1))
        self.resource = GitResource(self.access, self.repos, reactor, lambda: self.base, self.webhooks,
                                    maxBody=maxBody, **options)
        case.addCleanup(self.resource.stop)
        self.site = GitSite(self.resource, maxBody)
        self.port = await listen(case, self.site)
        self.base = f"http://127.0.0.1:{self.port}/"
        return self

    def url(self, repoID, token=None, user="alice"):
        if token is None:
            return f"{self.base}{repoID}.git"
        return f"http://{user}:{token}@127.0.0.1:{self.port}/{repoID}.git"
