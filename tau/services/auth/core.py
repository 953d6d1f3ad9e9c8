"""
auth's records and rules, shared by its p2p commands and its HTTP API.

Tenancy: a project belongs to the repositories (config and code) it was
created with; a caller reaches a project, a repository or a hook only when
its provider says it may write to those repositories.  Everything a
caller does not reach is answered exactly as what does not exist
(L{NotFound}, with a text that names no id), so ids cannot be probed.
Trusted callers (other services of the cloud, over p2p) reach everything.
"""

import os
import re

import cid as pycid
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tau.cids import DAG_PB, makeCID
from tau.services.auth.providers import Unauthorized, parseCredential

PROJECT_MISSING = "project not found"
REPOSITORY_MISSING = "repository not found"
HOOK_MISSING = "hook not found"
CERTIFICATE_MISSING = "certificate not found"
CACHE_MISSING = "cache entry not found"

#: the longest project name, fqdn, acme cache key
MAX_NAME = 253
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_REPO_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class NotFound(Exception):
    """
    Not there, or not the caller's: the same answer.
    """


class Invalid(ValueError):
    """
    A request that is wrong in itself (a missing field, a bad fqdn).
    """


def checkFQDN(fqdn):
    if not isinstance(fqdn, str) or not 0 < len(fqdn) <= MAX_NAME:
        raise Invalid(f"fqdn: expected a domain name of at most {MAX_NAME} characters")
    name = fqdn.lower().rstrip(".")
    labels = name.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels if label != "*") or "*" in labels[1:]:
        raise Invalid(f"fqdn: {fqdn!r} is not a domain name")
    return name


def checkRepoID(provider, repoID):
    """
    A repository id as text; GitHub's are numbers.
    """
    if isinstance(repoID, int) and not isinstance(repoID, bool):
        repoID = str(repoID)
    if not isinstance(repoID, str) or not _REPO_ID.match(repoID):
        raise Invalid("id: expected a repository id")
    if provider == "github" and not repoID.isdigit():
        raise Invalid("id: a GitHub repository id is a number")
    return repoID


def newProjectID(name):
    """
    A new project id, a CIDv0 (C{Qm...}) as Taubyte's.
    """
    return str(makeCID(name.encode("utf-8") + b"\0" + os.urandom(16), DAG_PB, version=0))


def checkProjectID(text):
    if not isinstance(text, str) or len(text) < 8 or len(text) > 128:
        raise Invalid("project: expected a project id (a CID)")
    try:
        pycid.from_string(text)
    except Exception:
        raise Invalid(f"project: {text!r} is not a CID") from None
    return text


def newDeployKey():
    """
    C{(private PEM "EC PRIVATE KEY", public OpenSSH text)} of a new ECDSA
    P-256 key, as Taubyte's deploy keys.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private.decode("ascii"), public.decode("ascii")


class Scope:
    """
    What one caller reaches.  L{everything} for trusted callers; a caller
    with a provider asks it (answers kept for this request only).
    """

    def __init__(self, provider=None, caller=None, everything=False):
        self.provider = provider
        self.caller = caller
        self.everything = everything
        self._repos = {}
        self._all = None

    def forget(self):
        """
        Ask the provider again (the caller's reach changed).
        """
        self._repos = {}
        self._all = None

    @property
    def providerName(self):
        return self.provider.name if self.provider is not None else None

    async def repository(self, provider, repoID):
        """
        The provider's C{{id, fullname, ssh}} of a repository the caller
        reaches, else None.
        """
        if self.everything:
            return {"id": str(repoID), "fullname": "", "ssh": ""}
        if self.provider is None or provider != self.provider.name:
            return None
        key = str(repoID)
        if self._all is not None:
            return self._all.get(key)
        if key not in self._repos:
            self._repos[key] = await self.provider.repository(self.caller, key)
        return self._repos[key]

    async def repositories(self):
        """
        C{{id: info}} of every repository the caller reaches (not for
        trusted callers).
        """
        if self._all is None:
            self._all = {} if self.provider is None else {
                r["id"]: r for r in await self.provider.repositories(self.caller)}
        return self._all

    async def reachesProject(self, project):
        if self.everything:
            return True
        if project.get("provider") != self.providerName:
            return False
        for repo in (project["config"], project["code"]):
            if await self.repository(project["provider"], repo) is None:
                return False
        return True


#: reaches nothing: a caller that is neither trusted nor presents a token
NOBODY = Scope()
#: reaches everything: a trusted service of the cloud
EVERYTHING = Scope(everything=True)


class Auth:
    """
    @param storage: L{tau.services.auth.storage.Storage}.
    @param secrets: L{tau.services.auth.secrets.Secrets}.
    @param providers: C{{scheme: IGitProvider}} (C{github}, C{oauth},
        C{tau}).
    @param webhookURL: where providers post pushes, the hook id appended.
    @ivar onCertificate: C{async (fqdn, static, pem)} told of every TLS
        certificate stored here, or None.
    """

    def __init__(self, storage, secrets, providers, webhookURL):
        self.storage = storage
        self.secrets = secrets
        self.providers = providers
        self.webhookURL = webhookURL
        self.byName = {p.name: p for p in providers.values()}
        self.onCertificate = None

    async def scopeOf(self, credential):
        """
        The L{Scope} of C{"<scheme> <token>"}.

        @raise Unauthorized: when no provider accepts it.
        """
        scheme, token = parseCredential(credential)
        provider = self.providers.get(scheme)
        if provider is None:
            raise Unauthorized(f"unknown credential scheme {scheme!r} (expected " + ", ".join(sorted(self.providers)) + ")")
        return Scope(provider, await provider.identify(token))

    # projects

    async def _project(self, scope, projectID):
        if not isinstance(projectID, str) or not 0 < len(projectID) <= 128 or "/" in projectID:
            raise NotFound(PROJECT_MISSING)
        record = await self.storage.get("/projects/" + projectID)
        if record is None or not await scope.reachesProject(record):
            raise NotFound(PROJECT_MISSING)
        return record

    async def getProject(self, scope, projectID):
        record = await self._project(scope, projectID)
        return {k: record[k] for k in ("id", "name", "provider", "code", "config")}

    async def listProjects(self, scope):
        if scope.everything:
            return await self.storage.names("/projects/")
        if scope.provider is None:
            return []
        reached = await scope.repositories()
        return [pid for pid, record in await self.storage.records("/projects/")
                if record.get("provider") == scope.providerName
                and record["config"] in reached and record["code"] in reached]

    async def createProject(self, scope, name, config, code, projectID=None):
        """
        A project built from repositories C{config} and C{code}, which the
        caller must reach; both are registered (webhook, deploy key) if
        they are not yet.  With C{projectID} (import), an id already taken
        is refused unless the caller reaches that project.
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise Invalid("name: expected 1 to 128 letters, digits, '.', '_' or '-'")
        provider = scope.providerName or "github"
        config = checkRepoID(provider, config)
        code = checkRepoID(provider, code)
        for repo in (config, code):
            if await scope.repository(provider, repo) is None:
                raise NotFound(REPOSITORY_MISSING)
        if projectID is None:
            projectID = newProjectID(name)
        else:
            checkProjectID(projectID)
            existing = await self.storage.get("/projects/" + projectID)
            if existing is not None and not await scope.reachesProject(existing):
                raise Invalid(f"project id {projectID} is taken")
        for repo in dict.fromkeys((config, code)):
            await self._register(scope, provider, repo, projectID)
        record = {"id": projectID, "name": name, "provider": provider, "config": config, "code": code}
        await self.storage.put("/projects/" + projectID, record)
        return {"id": projectID, "name": name}

    async def deleteProject(self, scope, projectID):
        record = await self._project(scope, projectID)
        await self.storage.delete("/projects/" + record["id"])
        for repoID in dict.fromkeys((record["config"], record["code"])):
            key = f"/repositories/{record['provider']}/{repoID}"
            repo = await self.storage.get(key)
            if repo is not None and repo["project"] == record["id"]:
                repo["project"] = ""
                await self.storage.put(key, repo)
        return {"project": {"id": record["id"], "status": "deleted"}}

    # repositories

    async def _repository(self, scope, provider, repoID):
        try:
            repoID = checkRepoID(provider, repoID)
        except Invalid:
            raise NotFound(REPOSITORY_MISSING) from None
        record = await self.storage.get(f"/repositories/{provider}/{repoID}")
        if record is None or await scope.repository(provider, repoID) is None:
            raise NotFound(REPOSITORY_MISSING)
        return record

    async def _register(self, scope, provider, repoID, project=None):
        """
        Register C{repoID} (webhook and deploy key at the provider for a
        caller, none for a trusted service, as Taubyte's p2p register), or
        link it to C{project}; its public deploy key.
        """
        key = f"/repositories/{provider}/{repoID}"
        record = await self.storage.get(key)
        if record is not None:
            if project is not None and record.get("project") != project:
                record["project"] = project
                await self.storage.put(key, record)
            return record["public"]
        info = await scope.repository(provider, repoID)
        hookID = os.urandom(16).hex()
        secret = os.urandom(24).hex()
        private, public = newDeployKey()
        providerHook = providerKey = 0
        if scope.caller is not None:
            providerHook = await scope.provider.addHook(scope.caller, info, self.webhookURL + hookID, secret)
            providerKey = await scope.provider.addDeployKey(scope.caller, info, "tau deploy key", public)
        await self.storage.put("/hooks/" + hookID, {
            "id": hookID, "provider": provider, "github_id": providerHook, "repository": repoID,
            "secret": self.secrets.seal(secret, ("/hooks/" + hookID).encode()),
        })
        await self.storage.put(key, {
            "id": repoID, "provider": provider, "project": project or "", "fullname": info["fullname"],
            "ssh": info["ssh"], "hook": hookID, "public": public, "deploy_key": providerKey,
            "key": self.secrets.seal(private, key.encode()),
            "token": None if scope.caller is None else self.secrets.seal(scope.caller.token, key.encode() + b"#token"),
        })
        return public

    async def registerRepository(self, scope, provider, repoID):
        if provider not in self.byName:
            raise Invalid(f"provider {provider!r} is not supported")
        repoID = checkRepoID(provider, repoID)
        if await scope.repository(provider, repoID) is None:
            raise NotFound(REPOSITORY_MISSING)
        return {"key": await self._register(scope, provider, repoID)}

    async def getRepository(self, scope, provider, repoID):
        record = await self._repository(scope, provider, repoID)
        key = f"/repositories/{provider}/{record['id']}"
        return {
            "id": int(record["id"]) if provider == "github" else record["id"],
            "provider": provider,
            "project": record["project"],
            "key": self.secrets.open(record["key"], key.encode()).decode("ascii"),
        }

    async def createHosted(self, scope, name):
        """
        A new repository hosted by this cloud (L{tau.githost}), made by a
        caller with a C{tau} token, registered at once (its hook and
        secret, its deploy key): C{{id, provider, fullname, clone_url,
        hook}}.
        """
        if scope.caller is None or not hasattr(scope.provider, "create"):
            raise Invalid("hosted repositories are made with a tau token (Authorization: tau <token>)")
        try:
            repoID = await scope.provider.create(scope.caller, name)
        except ValueError as e:
            raise Invalid(str(e)) from None
        scope.forget()
        provider = scope.providerName
        await self._register(scope, provider, repoID)
        record = await self.storage.get(f"/repositories/{provider}/{repoID}")
        return {"id": repoID, "provider": provider, "fullname": record["fullname"], "clone_url": record["ssh"],
                "hook": record["hook"]}

    async def repositoryHooks(self, scope, provider, repoID):
        record = await self._repository(scope, provider, repoID)
        return {"hooks": [record["hook"]]}

    async def listRepositories(self, scope, provider="github"):
        names = await self.storage.names(f"/repositories/{provider}/")
        if scope.everything:
            return names
        reached = await scope.repositories() if scope.providerName == provider else {}
        return [n for n in names if n in reached]

    async def unregisterRepository(self, scope, provider, repoID):
        record = await self._repository(scope, provider, repoID)
        key = f"/repositories/{provider}/{record['id']}"
        hook = await self.storage.get("/hooks/" + record["hook"])
        sealedToken = record.get("token")
        if sealedToken is not None and provider in self.byName:
            # the webhook and deploy key made at the provider go too, with
            # the token that made them when a service asks
            owner = scope.caller
            if owner is None:
                token = self.secrets.open(sealedToken, key.encode() + b"#token").decode("utf-8")
                owner = await self.byName[provider].identify(token)
            if hook is not None and hook["github_id"]:
                await self.byName[provider].removeHook(owner, record, hook["github_id"])
            if record.get("deploy_key"):
                await self.byName[provider].removeDeployKey(owner, record, record["deploy_key"])
        await self.storage.delete("/hooks/" + record["hook"])
        await self.storage.delete(key)
        return {"status": "success"}

    # hooks

    async def getHook(self, scope, hookID):
        if not isinstance(hookID, str) or not 0 < len(hookID) <= 128 or "/" in hookID:
            raise NotFound(HOOK_MISSING)
        record = await self.storage.get("/hooks/" + hookID)
        if record is None or await scope.repository(record["provider"], record["repository"]) is None:
            raise NotFound(HOOK_MISSING)
        repo = record["repository"]
        return {
            "id": record["id"],
            "provider": record["provider"],
            "github_id": record["github_id"],
            "secret": self.secrets.open(record["secret"], ("/hooks/" + hookID).encode()).decode("utf-8"),
            "repository": int(repo) if repo.isdigit() else repo,
        }

    async def listHooks(self, scope):
        records = await self.storage.records("/hooks/")
        if scope.everything:
            return [hid for hid, _ in records]
        if scope.provider is None:
            return []
        reached = await scope.repositories()
        return [hid for hid, r in records if r["provider"] == scope.providerName and r["repository"] in reached]

    # domains

    async def registerDomain(self, scope, fqdn, project):
        fqdn = checkFQDN(fqdn)
        checkProjectID(project)
        await self._project(scope, project)
        return {"token": self.secrets.domainToken(fqdn, project), "entry": f"{project[:8]}.{fqdn}", "type": "txt"}

    def verifyDomain(self, fqdn, project, token):
        """
        Whether C{token} is the validation token of C{fqdn} for C{project}
        (what a DNS TXT record shows); anyone may ask, it tells nothing
        about who owns what.
        """
        if not isinstance(token, str) or not isinstance(project, str):
            raise Invalid("value, project: expected text")
        return self.secrets.checkDomainToken(checkFQDN(fqdn), project, token)

    # TLS certificates and the ACME cache (trusted callers only)

    @staticmethod
    def certificateKey(fqdn, static=False):
        return ("/acme-static/" if static else "/acme/") + checkFQDN(fqdn)

    async def getCertificate(self, scope, fqdn, static=False):
        if not scope.everything:
            raise NotFound(CERTIFICATE_MISSING)
        key = self.certificateKey(fqdn, static)
        sealed = await self.storage.getRaw(key)
        if sealed is None:
            raise NotFound(CERTIFICATE_MISSING)
        return self.secrets.open(sealed, key.encode())

    async def setCertificate(self, scope, fqdn, certificate, static=False):
        if not scope.everything:
            raise NotFound(CERTIFICATE_MISSING)
        if not isinstance(certificate, bytes) or not certificate:
            raise Invalid("certificate: expected bytes (PEM certificate chain and key)")
        key = self.certificateKey(fqdn, static)
        await self.storage.putRaw(key, self.secrets.seal(certificate, key.encode()))
        if self.onCertificate is not None:
            await self.onCertificate(checkFQDN(fqdn), static, certificate)

    @staticmethod
    def cacheKey(name):
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME or any(ord(c) < 0x20 for c in name):
            raise Invalid(f"key: expected 1 to {MAX_NAME} characters")
        return "/acme-cache/" + name

    async def getCache(self, scope, name):
        if not scope.everything:
            raise NotFound(CACHE_MISSING)
        key = self.cacheKey(name)
        sealed = await self.storage.getRaw(key)
        if sealed is None:
            raise NotFound(CACHE_MISSING)
        return self.secrets.open(sealed, key.encode())

    async def setCache(self, scope, name, data):
        if not scope.everything:
            raise NotFound(CACHE_MISSING)
        if not isinstance(data, bytes):
            raise Invalid("data: expected bytes")
        key = self.cacheKey(name)
        await self.storage.putRaw(key, self.secrets.seal(data, key.encode()))

    async def deleteCache(self, scope, name):
        if not scope.everything:
            raise NotFound(CACHE_MISSING)
        await self.storage.delete(self.cacheKey(name))

