"""
patrick's HTTP API (Taubyte's routes, on an endpoint string; any host).

    POST /github/{hook}                 a push webhook -> the job (Go's JSON field names)
    GET  /ping                          {"ping": "pong"}
    GET  /jobs                          {"jobs": [job + "Project"]}   (tau: every job the caller reaches)
    GET  /jobs/{projectId}              {"ProjectId", "JobIds"}
    GET  /job/{jid}                     {"job"}
    GET  /logs/{cid}                    the log's bytes (at most max-log), of a job the caller reaches
    POST /cancel/{jid}                  {"cancelled"}
    POST /retry/{jid}                   {"retry"}
    GET  /download/{jobId}/{resourceId} the asset's bytes (zip or wasm), at most max-download

Every route but the webhook and C{/ping} wants C{Authorization: github
<token>} (or C{oauth}/C{tau} C{<token>}), checked by auth: the caller
reaches the jobs of the projects auth lists for it.  Taubyte serves
C{/download} to anyone; tau checks it as the other routes.

The webhook is refused (and logged) when its hook is unknown (404), its
C{X-Hub-Signature-256} is missing, SHA-1 only or wrong (401), its body is
over C{max-body} (413) or not a push of a branch this cloud builds, of
the hook's own repository, of a project (400, the message says what).  A
redelivered webhook answers the job it made then, which is not run again.

Errors are JSON C{{"code": status, "error": text}}, as Taubyte's.
"""

import json

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from tau.services.commands import RemoteError
from tau.services.framework import ServiceError
from tau.services.patrick.job import Job, pushJobID
from tau.services.patrick.storage import MAX_ID
from tau.services.tns.client import projectsOfRepository
from tau.services.patrick.webhook import ZERO, PayloadError, SignatureError, checkSignature, parsePush
from tau.weblimits import HTTPError, LimitedSite, matchRoute

log = Logger()

#: seconds a log or an asset may take to come
FETCH_TIMEOUT = 30.0


class Raw:
    """
    An answer that is bytes, not JSON.
    """

    def __init__(self, data, contentType):
        self.data = data
        self.contentType = contentType


def _id(value, what):
    if not 0 < len(value) <= MAX_ID or "/" in value:
        raise HTTPError(400, f"{what}: expected an id of 1 to {MAX_ID} characters")
    return value


def assetType(data):
    if data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        return b"application/zip"
    if data.startswith(b"\0asm"):
        return b"application/wasm"
    return b"application/octet-stream"


class PatrickResource(Resource):
    """
    The whole API as one leaf resource.

    @param jobs: L{tau.services.patrick.lifecycle.Jobs}.
    @param patrick: a L{tau.services.patrick.client.PatrickClient} on this
        node's own commands (cancel and retry go to a job's owner).
    @param auth: has C{async hook(id)}, C{async repository(id, provider)}
        and C{async projectsOf(credential)} (auth's answers; they raise
        L{RemoteError} for what auth refuses).
    @param content: has C{cat(cid, offset, length, timeout)}, or None.
    @param config: L{tau.services.patrick.config.PatrickConfig}.
    @param clock: IReactorTime.
    @param tns: an L{tau.interfaces.ITNSClient}: the project of a library
        or website repository (auth knows only a project's config and code
        repositories), or None.
    """

    isLeaf = True

    def __init__(self, jobs, patrick, auth, content, config, clock, tns=None):
        super().__init__()
        self.jobs = jobs
        self.patrick = patrick
        self.auth = auth
        self.tns = tns
        self.content = content
        self.config = config
        self.clock = clock
        self._routes = [
            ("POST", "/github/{hook}", self.webhook, False),
            ("GET", "/ping", self.ping, False),
            ("GET", "/jobs", self.allJobs, True),
            ("GET", "/jobs/{project}", self.projectJobs, True),
            ("GET", "/job/{jid}", self.job, True),
            ("GET", "/logs/{cid}", self.logs, True),
            ("POST", "/cancel/{jid}", self.cancel, True),
            ("POST", "/retry/{jid}", self.retry, True),
            ("GET", "/download/{jid}/{resource}", self.download, True),
        ]

    def routes(self):
        return [(method, pattern) for method, pattern, _, _ in self._routes]

    def _match(self, method, path):
        (_, _, handler, authenticated), args = matchRoute(self._routes, method, path)
        return handler, args, authenticated

    def render(self, request):
        d = Deferred.fromCoroutine(self._serve(request))
        request.notifyFinish().addErrback(lambda _: d.cancel())
        return NOT_DONE_YET

    async def _serve(self, request):
        try:
            status, answer = 200, await self._dispatch(request)
        except HTTPError as e:
            status, answer = e.status, {"code": e.status, "error": e.message}
        except Exception as e:
            if request.finished or request.channel is None:
                return
            log.failure("patrick HTTP {method} {path} failed", method=request.method, path=request.path)
            status, answer = 500, {"code": 500, "error": e.__class__.__name__}
        if request.finished or request.channel is None:
            return
        request.setResponseCode(status)
        if isinstance(answer, Raw):
            request.setHeader(b"content-type", answer.contentType)
            request.write(answer.data)
        else:
            request.setHeader(b"content-type", b"application/json")
            request.write(json.dumps(answer).encode("utf-8") + b"\n")
        request.finish()

    async def _dispatch(self, request):
        if getattr(request, "tooLarge", False):
            raise HTTPError(413, f"the request body is over {self.config.maxBody} bytes")
        try:
            method = request.method.decode("ascii")
            path = request.path.decode("utf-8").rstrip("/") or "/"
        except UnicodeDecodeError:
            raise HTTPError(400, "the path is not UTF-8") from None
        handler, args, authenticated = self._match(method, path)
        if not authenticated:
            return await handler(request, **args)
        credential = (request.getHeader(b"authorization") or b"").decode("latin-1").strip()
        if not credential:
            raise HTTPError(401, "no Authorization header (github <token>, oauth <token> or tau <token>)")
        try:
            projects = set(await self.auth.projectsOf(credential))
        except RemoteError as e:
            raise HTTPError(401, f"not authorized: {str(e).partition(' failed: ')[2] or e}") from None
        except ServiceError as e:
            raise HTTPError(502, f"auth did not answer: {e}") from None
        return await handler(projects, **args)

    # the webhook

    def _refuse(self, request, status, hook, why):
        log.warn("patrick: webhook for hook {hook} from {client} refused ({status}): {why}", hook=hook,
                 client=str(request.getClientAddress()), status=status, why=why)
        raise HTTPError(status, why)

    async def webhook(self, request, hook):
        if len(hook) > MAX_ID:
            self._refuse(request, 404, hook[:MAX_ID], "hook not found")
        event = (request.getHeader(b"x-github-event") or b"").decode("latin-1")
        if event == "ping":
            return {"ping": "pong"}
        if event != "push":
            self._refuse(request, 400, hook, "this is not a push event")
        request.content.seek(0)
        raw = request.content.read()
        if not raw:
            self._refuse(request, 400, hook, "the body is empty")
        try:
            record = await self.auth.hook(hook)
        except RemoteError:
            self._refuse(request, 404, hook, "hook not found")
        except ServiceError as e:
            raise HTTPError(502, f"auth did not answer: {e}") from None
        header = lambda name: (request.getHeader(name) or b"").decode("latin-1") or None  # noqa: E731
        try:
            checkSignature(record["secret"], raw, header(b"x-hub-signature-256"), header(b"x-hub-signature"))
        except SignatureError as e:
            self._refuse(request, 401, hook, str(e))
        try:
            meta = parsePush(raw)
        except PayloadError as e:
            self._refuse(request, 400, hook, str(e))
        repo = meta.repository
        if str(repo.id) != str(record.get("repository")):
            self._refuse(request, 400, hook, f"repository.id: {repo.id} is not the hook's repository")
        if self.config.branches and repo.branch not in self.config.branches:
            self._refuse(request, 400, hook, f"only builds branches {list(self.config.branches)}, got `{repo.branch}`")
        if meta.after == ZERO:
            return {"ignored": f"branch {repo.branch} deleted"}
        repo.provider = record.get("provider") or "github"
        jid = pushJobID(meta)
        if jid is None:
            self._refuse(request, 400, hook, "the push lacks ref, after or repository.pushed_at (its job's id)")
        try:
            project = (await self.auth.repository(repo.id, repo.provider)).get("project") or ""
            why = f"repository {repo.id} is in no project"
        except RemoteError as e:
            project, why = "", f"repository {repo.id}: {str(e).partition(' failed: ')[2] or e}"
        if not project and self.tns is not None:
            project = await self._projectInTNS(request, hook, repo.id)
        if not project:
            self._refuse(request, 400, hook, why)
        job, created = await self.jobs.submit(Job(id=jid, timestamp=int(self.clock.seconds()), meta=meta), project)
        if not created:
            log.info("patrick: webhook for hook {hook} redelivered: job {jid} already known, not run again",
                     hook=hook, jid=jid)
        return job.toJSON()

    async def _projectInTNS(self, request, hook, repoID):
        """
        The project whose config names repository C{repoID} as a library's
        or website's (tns C{repositories/github/<id>/<P>/...}, which
        compiled configs write), as Taubyte's patrick asks when auth knows
        none; "" when none does.
        """
        try:
            projects = await projectsOfRepository(self.tns, repoID)
        except (RemoteError, ServiceError) as e:
            raise HTTPError(502, f"tns did not answer: {e}") from None
        if len(projects) > 1:
            self._refuse(request, 400, hook, f"repository {repoID} is in several projects: {', '.join(projects)}")
        return projects[0] if projects else ""

    async def ping(self, request):
        return {"ping": "pong"}

    # what a caller reaches

    async def _reached(self, projects, jid):
        jid = _id(jid, "jid")
        job, _archived = await self.jobs.storage.job(jid)
        if job is None or await self.jobs.storage.projectOf(jid) not in projects:
            raise HTTPError(404, f"job {jid} not found")
        return job

    async def allJobs(self, projects):
        found = []
        for job in await self.jobs.all():
            project = await self.jobs.storage.projectOf(job.id)
            if project in projects:
                found.append(dict(job.toJSON(), Project=project))
        return {"jobs": found}

    async def projectJobs(self, projects, project):
        project = _id(project, "projectId")
        if project not in projects:
            raise HTTPError(404, f"project {project} not found")
        return {"ProjectId": project, "JobIds": await self.jobs.storage.jobsOf(project, self.config.maxJobs)}

    async def job(self, projects, jid):
        return {"job": (await self._reached(projects, jid)).toJSON()}

    async def cancel(self, projects, jid):
        await self._reached(projects, jid)
        return {"cancelled": await self._ask(self.patrick.cancel(jid))}

    async def retry(self, projects, jid):
        await self._reached(projects, jid)
        return {"retry": await self._ask(self.patrick.retry(jid))}

    async def _ask(self, coroutine):
        try:
            return await coroutine
        except RemoteError as e:
            raise HTTPError(400, str(e).partition(" failed: ")[2] or str(e)) from None

    async def _read(self, cid, limit, what):
        if self.content is None:
            raise HTTPError(503, "this node reads no content")
        try:
            chunks = await self.content.cat(cid, 0, limit + 1, FETCH_TIMEOUT)
            data = b""
            async for chunk in chunks:
                data += chunk
                if len(data) > limit:
                    raise HTTPError(413, f"the {what} is over {limit} bytes")
        except HTTPError:
            raise
        except Exception as e:
            raise HTTPError(404, f"{what} {cid}: {e}") from None
        return data

    async def logs(self, projects, cid):
        """
        A log of a job of the caller's projects (Taubyte serves any CID to
        any caller with a token).
        """
        cid = _id(cid, "cid")
        for project in sorted(projects):
            for jid in await self.jobs.storage.jobsOf(project, self.config.maxJobs):
                job, _archived = await self.jobs.storage.job(jid)
                if job is not None and cid in job.logs.values():
                    return Raw(await self._read(cid, self.config.maxLog, "log"), b"text/plain; charset=utf-8")
        raise HTTPError(404, f"log {cid} not found")

    async def download(self, projects, jid, resource):
        job = await self._reached(projects, jid)
        cid = job.assetCid.get(_id(resource, "resourceId"))
        if cid is None:
            raise HTTPError(404, f"job {jid} built no resource {resource}")
        data = await self._read(cid, self.config.maxDownload, "asset")
        return Raw(data, assetType(data))


class PatrickSite(LimitedSite):
    """
    The site of the API (bodies past C{maxBody} answered 413).
    """
