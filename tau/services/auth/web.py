"""
auth's JSON HTTP API (Taubyte's auth routes), on an endpoint string.

Every route but the admin one wants C{Authorization: github <token>} (or
C{oauth <token>}, as Taubyte) or C{tau <token>} (a token this cloud
issued).  Answers are JSON; errors are C{{"error": text}} with 400 (bad
request), 401 (no valid credential), 404 (not there, or not the caller's:
the same answer), 405, 413 (body over C{max-body}) or 502 (the provider
failed).

    GET    /me                              {user: {login, provider}}
    GET    /projects                        {projects: [{id, name}]}
    GET    /projects/{id}                   {project: {id, name, provider, code, config}}
    DELETE /projects/{id}                   {project: {id, status}}
    POST   /project/new/{name}              {config: {id}, code: {id}} -> {project: {id, name}}
    POST   /project/import/{name}           {config: {id}, code: {id}, "project-id"} -> {project: {id, name}}
    GET    /repositories                    {repositories: [{id, provider}]}
    POST   /repositories/new/{name}   (tau token)   {repository: {id, provider, fullname, clone_url, hook}}
    GET    /repository/{provider}/{id}      {hooks: [hook id]}
    PUT    /repository/{provider}/{id}      {key: public deploy key}
    DELETE /repository/{provider}/{id}      {status}
    POST   /domain/{fqdn}/for/{project}     {token, entry, type}
    POST   /tokens    (Authorization: admin <token>)   {name, repositories} -> {token}
"""

import hmac
import json

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from tau.services.auth.core import Invalid, NotFound
from tau.services.auth.providers import ProviderError, Unauthorized
from tau.services.auth.secrets import SealError
from tau.weblimits import HTTPError, LimitedSite, matchRoute

log = Logger()


def _repoRef(value):
    if not isinstance(value, dict) or not isinstance(value.get("id"), (str, int)) or isinstance(value.get("id"), bool):
        raise Invalid("expected {\"id\": repository id}")
    return value["id"]


class AuthResource(Resource):
    """
    The whole API as one leaf resource; L{routes} lists what it serves.

    @param auth: L{tau.services.auth.core.Auth}.
    @param local: the L{tau.services.auth.providers.LocalProvider}.
    """

    isLeaf = True

    def __init__(self, auth, local):
        super().__init__()
        self.auth = auth
        self.local = local
        self._routes = [
            ("GET", "/me", self.me),
            ("GET", "/projects", self.listProjects),
            ("GET", "/projects/{id}", self.getProject),
            ("DELETE", "/projects/{id}", self.deleteProject),
            ("POST", "/project/new/{name}", self.newProject),
            ("POST", "/project/import/{name}", self.importProject),
            ("GET", "/repositories", self.listRepositories),
            ("POST", "/repositories/new/{name}", self.createHosted),
            ("GET", "/repository/{provider}/{id}", self.getRepository),
            ("PUT", "/repository/{provider}/{id}", self.registerRepository),
            ("DELETE", "/repository/{provider}/{id}", self.unregisterRepository),
            ("POST", "/domain/{fqdn}/for/{project}", self.registerDomain),
            ("POST", "/tokens", self.issueToken),
        ]

    def routes(self):
        """
        C{[(method, pattern)]} of every route served.
        """
        return [(method, pattern) for method, pattern, _ in self._routes]

    def _match(self, method, path):
        (_, _, handler), args = matchRoute(self._routes, method, path)
        return handler, args

    def render(self, request):
        d = Deferred.fromCoroutine(self._serve(request))
        request.notifyFinish().addErrback(lambda _: d.cancel())
        return NOT_DONE_YET

    async def _serve(self, request):
        try:
            status, answer = 200, await self._dispatch(request)
        except HTTPError as e:
            status, answer = e.status, {"error": e.message}
        except NotFound as e:
            status, answer = 404, {"error": str(e)}
        except SealError as e:
            log.error("auth: a stored secret does not open: {why}", why=str(e))
            status, answer = 500, {"error": "a stored secret does not open"}
        except (Invalid, ValueError) as e:
            status, answer = 400, {"error": str(e)}
        except Unauthorized as e:
            status, answer = 401, {"error": f"not authorized: {e}"}
        except ProviderError as e:
            status, answer = 502, {"error": str(e)}
        except Exception as e:
            if request.finished or request.channel is None:
                return
            log.failure("auth HTTP {method} {path} failed", method=request.method, path=request.path)
            status, answer = 500, {"error": f"{e.__class__.__name__}"}
        if request.finished or request.channel is None:
            return
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        request.write(json.dumps(answer).encode("utf-8") + b"\n")
        request.finish()

    async def _dispatch(self, request):
        if getattr(request, "tooLarge", False):
            raise HTTPError(413, f"the request body is over {request.channel.site.maxBody} bytes")
        try:
            method = request.method.decode("ascii")
            path = request.path.decode("utf-8").rstrip("/") or "/"
        except UnicodeDecodeError:
            raise HTTPError(400, "the path is not UTF-8") from None
        handler, args = self._match(method, path)
        request.content.seek(0)
        raw = request.content.read()
        body = {}
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                raise HTTPError(400, "the body is not JSON") from None
            if not isinstance(body, dict):
                raise HTTPError(400, "the body is not a JSON object")
        credential = (request.getHeader(b"authorization") or b"").decode("latin-1")
        if handler == self.issueToken:
            return await handler(credential, body, **args)
        if not credential:
            raise Unauthorized("no Authorization header (github <token>, oauth <token> or tau <token>)")
        scope = await self.auth.scopeOf(credential)
        return await handler(scope, body, **args)

    # routes

    async def me(self, scope, body):
        return {"user": {"login": scope.caller.name, "provider": scope.providerName}}

    async def listProjects(self, scope, body):
        ids = await self.auth.listProjects(scope)
        projects = []
        for pid in ids:
            project = await self.auth.getProject(scope, pid)
            projects.append({"id": project["id"], "name": project["name"]})
        return {"projects": projects}

    async def getProject(self, scope, body, id):
        return {"project": await self.auth.getProject(scope, id)}

    async def deleteProject(self, scope, body, id):
        return await self.auth.deleteProject(scope, id)

    async def newProject(self, scope, body, name):
        project = await self.auth.createProject(scope, name, _repoRef(body.get("config")), _repoRef(body.get("code")))
        return {"project": project}

    async def importProject(self, scope, body, name):
        projectID = body.get("project-id")
        if not isinstance(projectID, str):
            raise Invalid("project-id: expected text")
        project = await self.auth.createProject(scope, name, _repoRef(body.get("config")), _repoRef(body.get("code")),
                                                projectID=projectID)
        return {"project": project}

    async def listRepositories(self, scope, body):
        provider = scope.providerName
        return {"repositories": [{"id": rid, "provider": provider}
                                 for rid in await self.auth.listRepositories(scope, provider)]}

    async def createHosted(self, scope, body, name):
        return {"repository": await self.auth.createHosted(scope, name)}

    async def getRepository(self, scope, body, provider, id):
        return await self.auth.repositoryHooks(scope, provider, id)

    async def registerRepository(self, scope, body, provider, id):
        return await self.auth.registerRepository(scope, provider, id)

    async def unregisterRepository(self, scope, body, provider, id):
        return await self.auth.unregisterRepository(scope, provider, id)

    async def registerDomain(self, scope, body, fqdn, project):
        return await self.auth.registerDomain(scope, fqdn, project)

    async def issueToken(self, credential, body):
        scheme, _, token = credential.partition(" ")
        if scheme.lower() != "admin" or not hmac.compare_digest(token.strip().encode(), self.auth.secrets.adminToken().encode()):
            raise Unauthorized("this route wants Authorization: admin <the node's admin token>")
        return {"token": await self.local.issue(body.get("name"), body.get("repositories"))}


class AuthSite(LimitedSite):
    """
    The site of the API (bodies past C{maxBody} answered 413).
    """
