"""
The smart-HTTP endpoints of the hosted repositories, as one twisted.web
resource on its own site:

    GET  /<id>.git/info/refs?service=git-upload-pack|git-receive-pack
    POST /<id>.git/git-upload-pack
    POST /<id>.git/git-receive-pack

Pushing always needs a credential; reading needs one unless the host's
L{IGitAccess} lets anyone read.  The dumb protocol is not served.  Limits:
a request body over C{maxBody} bytes is answered 413 and the connection
closed as soon as it is seen; C{maxProcesses} git processes at once (then
503); each may run C{timeout} seconds.
"""

import re

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from tau.githost import Denied, Missing
from tau.githost.cgi import spawnBackend
from tau.githost.credentials import parseAuthorization
from tau.githost.payload import encode, parseUpdates, pushEvent
from tau.githost.repos import ZERO, checkID

log = Logger()

_PATH = re.compile(r"^/([A-Za-z0-9_.-]{1,100}?)(?:\.git)?/(info/refs|git-upload-pack|git-receive-pack)$")
SERVICES = ("git-upload-pack", "git-receive-pack")
REALM = b'Basic realm="tau git"'


class GitResource(Resource):
    """
    @param access: L{tau.githost.IGitAccess}.
    @param repos: L{tau.githost.repos.Repositories}.
    @param reactor: IReactorProcess, IReactorTime.
    @param baseURL: C{() -> text}: where the repositories are reached,
        ending with C{/} (clone URLs in webhooks).
    @param webhooks: a L{tau.githost.webhook.WebhookSender}, or None (no
        webhooks).
    """

    isLeaf = True

    def __init__(self, access, repos, reactor, baseURL, webhooks, *, maxBody, timeout=600.0, maxProcesses=16):
        super().__init__()
        self.access = access
        self.repos = repos
        self.reactor = reactor
        self.baseURL = baseURL
        self.webhooks = webhooks
        self.maxBody = maxBody
        self.timeout = timeout
        self.maxProcesses = maxProcesses
        self.active = 0
        self._background = set()

    def cloneURL(self, repoID):
        return f"{self.baseURL()}{repoID}.git"

    def render(self, request):
        if getattr(request, "tooLarge", False):
            return NOT_DONE_YET
        d = Deferred.fromCoroutine(self._serve(request))
        d.addErrback(lambda f: log.failure("git HTTP {path} failed", f, path=request.path))
        return NOT_DONE_YET

    def _answer(self, request, status, text, headers=()):
        if request.finished or request.channel is None:
            return
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        for name, value in headers:
            request.setHeader(name, value)
        request.write(text.encode("utf-8") + b"\n")
        request.finish()

    async def _serve(self, request):
        try:
            path = request.path.decode("utf-8")
        except UnicodeDecodeError:
            return self._answer(request, 400, "the path is not UTF-8")
        match = _PATH.match(path)
        repoID = checkID(match.group(1)) if match else None
        if repoID is None:
            return self._answer(request, 404, "not a git repository path (/<id>.git/info/refs ...)")
        tail = match.group(2)
        method = request.method
        if tail == "info/refs":
            if method != b"GET":
                return self._answer(request, 405, "use GET", [(b"allow", b"GET")])
            service = (request.args.get(b"service") or [b""])[0].decode("latin-1")
            if service not in SERVICES:
                return self._answer(request, 403, "only the smart HTTP protocol is served (service=git-upload-pack)")
        else:
            if method != b"POST":
                return self._answer(request, 405, "use POST", [(b"allow", b"POST")])
            service = tail
        write = service == "git-receive-pack"
        credential = parseAuthorization(request.getHeader(b"authorization"))
        try:
            pusher = await self.access.authorize(repoID, credential, write)
        except Denied as e:
            return self._answer(request, 401, f"authentication required: {e}", [(b"www-authenticate", REALM)])
        except Missing as e:
            return self._answer(request, 404, str(e) or "repository not found")
        if self.active >= self.maxProcesses:
            return self._answer(request, 503, "too many git requests at once, try again", [(b"retry-after", b"5")])
        if request.finished or request.channel is None:
            return
        self.active += 1
        try:
            await self.repos.ensure(repoID)
            if request.finished or request.channel is None:
                return
            protocol = spawnBackend(self.reactor, request, request.content,
                                    self._environment(request, repoID, tail, write, pusher), self.timeout)
            code, updates, error = await protocol.done
        finally:
            self.active -= 1
        if error:
            log.warn("git {service} of {repo} failed: {why}", service=service, repo=repoID, why=error)
        if write and tail == "git-receive-pack" and updates:
            self._later(self._announce(repoID, pusher, parseUpdates(updates)))
            self._later(self.repos.gc(repoID, self.timeout))

    def _environment(self, request, repoID, tail, write, pusher):
        body = request.content
        body.seek(0, 2)
        length = body.tell()
        body.seek(0)
        env = self.repos.environment(
            GIT_PROJECT_ROOT=str(self.repos.root),
            GIT_HTTP_EXPORT_ALL="1",
            GIT_HTTP_MAX_REQUEST_BUFFER=str(self.maxBody),
            PATH_INFO=f"/{repoID}.git/{tail}",
            REQUEST_METHOD=request.method.decode("ascii"),
            QUERY_STRING=request.uri.partition(b"?")[2].decode("latin-1"),
            CONTENT_TYPE=(request.getHeader(b"content-type") or b"").decode("latin-1"),
            CONTENT_LENGTH=str(length),
            SERVER_PROTOCOL="HTTP/1.1",
            REMOTE_ADDR=getattr(request.getClientAddress(), "host", "") or "",
        )
        for header, name in ((b"git-protocol", "GIT_PROTOCOL"), (b"content-encoding", "HTTP_CONTENT_ENCODING")):
            value = request.getHeader(header)
            if value:
                env[name] = value.decode("latin-1")
        if write:
            env["REMOTE_USER"] = pusher.get("name") or "git"
            env["TAU_PUSH_FD"] = "3"
        return env

    def _later(self, coroutine):
        d = Deferred.fromCoroutine(coroutine)
        self._background.add(d)
        d.addErrback(lambda f: log.failure("announcing a push failed", f))
        d.addBoth(lambda _: self._background.discard(d))

    async def _announce(self, repoID, pusher, updates):
        """
        Post one push event per updated ref (GitHub's way) to the
        repository's webhook, in the background.
        """
        if self.webhooks is None or not updates:
            return
        target = await self.access.pushTarget(repoID)
        if target is None:
            return
        now = int(self.reactor.seconds())
        for before, after, ref in updates:
            commits = [] if after == ZERO else await self.repos.commits(repoID, before, after)
            event = pushEvent(ref=ref, before=before, after=after, commits=commits, repository=target["repository"],
                              cloneURL=self.cloneURL(repoID), pusher=pusher, pushedAt=now)
            log.info("push to {repo} {ref} {before}..{after}: webhook {hook}", repo=repoID, ref=ref,
                     before=before[:12], after=after[:12], hook=target["hook"])
            self.webhooks.send(target["url"], target["hook"], target["secret"], encode(event))

    def stop(self):
        """
        Stop announcing: cancel what is pending; fires when it ended.
        """
        pending = list(self._background)
        for d in pending:
            d.cancel()
        waits = [DeferredList(pending, consumeErrors=True)]
        if self.webhooks is not None:
            waits.append(self.webhooks.stop())
        return DeferredList(waits, consumeErrors=True)


class GitRequest(Request):
    """
    A request whose body is bounded before it is kept: a C{Content-Length}
    over the site's C{maxBody}, or more bytes than it, are answered 413 at
    once and the client disconnected; a push without credentials is
    answered 401 before its body is read; at most C{maxBodies} bodies are
    received at once (then 503).  What is kept is spooled by twisted.web
    (memory under 100 kB, else a temporary file).
    """

    tooLarge = False
    _received = 0
    _counted = False

    def gotLength(self, length):
        site = self.channel.site
        path = getattr(self.channel, "_path", b"") or b""
        if length is not None and length > site.maxBody:
            super().gotLength(0)
            return self._refuse(b"413 Request Entity Too Large", f"the request body is over {site.maxBody} bytes")
        if path.split(b"?")[0].endswith(b"/git-receive-pack") and not self.requestHeaders.hasHeader(b"authorization"):
            super().gotLength(0)
            return self._refuse(b"401 Unauthorized", "authentication required", (b"www-authenticate", REALM))
        if length != 0:
            if site.receiving >= site.maxBodies:
                super().gotLength(0)
                return self._refuse(b"503 Service Unavailable", "too many git requests at once, try again",
                                    (b"retry-after", b"5"))
            site.receiving += 1
            self._site, self._counted = site, True
            self.notifyFinish().addBoth(self._release)
        super().gotLength(length)

    def _release(self, _):
        if self._counted:
            self._counted = False
            self._site.receiving -= 1

    def handleContentChunk(self, data):
        if self.tooLarge:
            return
        self._received += len(data)
        if self._received > self.channel.site.maxBody:
            self._refuse(b"413 Request Entity Too Large", f"the request body is over {self.channel.site.maxBody} bytes")
            return
        super().handleContentChunk(data)

    def _refuse(self, status, text, *headers):
        self.tooLarge = True
        self.requestHeaders.removeHeader(b"expect")   # no "100 Continue" after the answer
        body = (text + "\n").encode("utf-8")
        extra = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        transport = self.channel.transport
        transport.write(b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n" + extra +
                        b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        transport.loseConnection()


class GitSite(Site):
    """
    The site of a L{GitResource}, bodies limited to C{maxBody} bytes,
    C{maxBodies} of them received at once.
    """

    noisy = False
    requestFactory = GitRequest

    def __init__(self, resource, maxBody, maxBodies=32):
        super().__init__(resource)
        self.maxBody = maxBody
        self.maxBodies = maxBodies
        self.receiving = 0

    def log(self, request):
        pass
