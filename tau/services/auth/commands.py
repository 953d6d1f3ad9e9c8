"""
auth's commands on C{/auth/v1}, as Taubyte's spec sheet has them (every
body carries C{action}):

    projects      get {id} | list | create {name, config, code}
    repositories  get {provider, id} | list | register {provider, id} | unregister {provider, id}
    hooks         get {id} | list
    domain        register {fqdn, project} | verify {fqdn, project, value} -> {valid}
    acme          get/get-static {fqdn} | set/set-static {fqdn, certificate}
                  | cache-get {key} | cache-set {key, data} | cache-delete {key}

Who is served: a peer C{trusted} says is a service of this cloud reaches
everything (Taubyte's services trust each other).  Any other caller
presents a credential in the body's C{token} key (C{"github <token>"} or
C{"tau <token>"}, a tau extension: Taubyte's p2p API has no caller
identity) and reaches what its provider says; without one it reaches
nothing, and is answered as if what it asks for did not exist.
C{domain verify} (seer's check of a TXT record: C{value} is its text) is a
tau extension too.

Errors are answered as go's router answers them: C{router: executing
command "projects" failed: project not found}.
"""

from twisted.internet.defer import maybeDeferred

from tau.services.auth.core import EVERYTHING, NOBODY, Invalid, checkRepoID


class Commands:
    """
    @param auth: L{tau.services.auth.core.Auth}.
    @param trusted: C{trusted(peer) -> bool}, or a coroutine or Deferred of
        one (L{tau.interfaces.IMembers.isMember}).
    """

    def __init__(self, auth, trusted):
        self.auth = auth
        self.trusted = trusted
        self.actions = {
            "projects": {"get": self._projectGet, "list": self._projectList, "create": self._projectCreate},
            "repositories": {"get": self._repoGet, "list": self._repoList, "register": self._repoRegister,
                             "unregister": self._repoUnregister},
            "hooks": {"get": self._hookGet, "list": self._hookList},
            "domain": {"register": self._domainRegister, "verify": self._domainVerify},
            "acme": {"get": self._acmeGet, "get-static": self._acmeGetStatic, "set": self._acmeSet,
                     "set-static": self._acmeSetStatic, "cache-get": self._cacheGet,
                     "cache-set": self._cacheSet, "cache-delete": self._cacheDelete},
        }

    def define(self, router):
        for command, actions in self.actions.items():
            router.define(command, self._handler(command, actions))

    def _handler(self, command, actions):
        noun = {"repositories": "Repository", "projects": "Project", "hooks": "Hook", "domain": "Domain",
                "acme": "Acme"}[command]

        async def handle(peer, body):
            body = body or {}
            action = body.get("action")
            if not isinstance(action, str):
                raise Invalid("action: expected text")
            method = actions.get(action)
            if method is None:
                raise Invalid(f"{noun} action `{action}` not recognized")
            return await method(await self._scope(peer, body), body)

        return handle

    async def _scope(self, peer, body):
        token = body.get("token")
        if token is not None:
            return await self.auth.scopeOf(token)
        return EVERYTHING if await maybeDeferred(self.trusted, peer) else NOBODY

    # projects

    async def _projectGet(self, scope, body):
        return await self.auth.getProject(scope, body.get("id"))

    async def _projectList(self, scope, body):
        return {"ids": await self.auth.listProjects(scope)}

    async def _projectCreate(self, scope, body):
        return await self.auth.createProject(scope, body.get("name"), body.get("config"), body.get("code"))

    # repositories

    @staticmethod
    def _provider(body):
        provider = body.get("provider")
        if not isinstance(provider, str):
            raise Invalid("provider: expected text")
        return provider

    async def _repoGet(self, scope, body):
        provider = self._provider(body)
        repoID = body.get("id")
        if provider == "github" and (isinstance(repoID, bool) or not isinstance(repoID, int)):
            raise Invalid("id: expected an integer")
        return await self.auth.getRepository(scope, provider, repoID)

    async def _repoList(self, scope, body):
        provider = body.get("provider", "github")
        return {"ids": await self.auth.listRepositories(scope, self._provider({"provider": provider}))}

    async def _repoRegister(self, scope, body):
        provider = self._provider(body)
        return await self.auth.registerRepository(scope, provider, checkRepoID(provider, body.get("id")))

    async def _repoUnregister(self, scope, body):
        return await self.auth.unregisterRepository(scope, self._provider(body), body.get("id"))

    # hooks

    async def _hookGet(self, scope, body):
        return await self.auth.getHook(scope, body.get("id"))

    async def _hookList(self, scope, body):
        return {"hooks": await self.auth.listHooks(scope)}

    # domain

    async def _domainRegister(self, scope, body):
        return await self.auth.registerDomain(scope, body.get("fqdn"), body.get("project"))

    async def _domainVerify(self, scope, body):
        return {"valid": self.auth.verifyDomain(body.get("fqdn"), body.get("project"), body.get("value"))}

    # acme

    async def _acmeGet(self, scope, body, static=False):
        return {"certificate": await self.auth.getCertificate(scope, body.get("fqdn"), static)}

    async def _acmeGetStatic(self, scope, body):
        return await self._acmeGet(scope, body, static=True)

    async def _acmeSet(self, scope, body, static=False):
        await self.auth.setCertificate(scope, body.get("fqdn"), body.get("certificate"), static)
        return None

    async def _acmeSetStatic(self, scope, body):
        return await self._acmeSet(scope, body, static=True)

    async def _cacheGet(self, scope, body):
        return {"data": await self.auth.getCache(scope, body.get("key"))}

    async def _cacheSet(self, scope, body):
        await self.auth.setCache(scope, body.get("key"), body.get("data"))
        return None

    async def _cacheDelete(self, scope, body):
        await self.auth.deleteCache(scope, body.get("key"))
        return None
