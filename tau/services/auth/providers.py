"""
Who a caller is and which repositories it reaches: git providers.

A credential is C{"<scheme> <token>"}, as Taubyte's HTTP C{Authorization}
header: C{github} or C{oauth} for a GitHub token, C{tau} for a token this
cloud issued itself (L{LocalProvider}, for the repositories the cloud
hosts).  Over p2p the same text travels in a command body's C{token} key.

L{GitHubProvider} calls GitHub's REST API with treq; L{LocalProvider}
answers from the tokens it issued (stored hashed: a stolen database does
not give a usable token).
"""

import hashlib
import json
import re
import secrets as _random

import treq
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool
from zope.interface import Attribute, Interface, implementer


#: the largest answer read from a provider (bytes)
MAX_ANSWER = 4 << 20
#: repositories asked of GitHub per page, and pages read at most (10,000
#: repositories)
PAGE = 100
MAX_PAGES = 100
#: the longest credential accepted (bytes)
MAX_CREDENTIAL = 1024
#: repositories one local token may reach
MAX_LOCAL_REPOSITORIES = 1000
_HOSTED_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$")

log = Logger()


class Unauthorized(Exception):
    """
    No credential, or one the provider does not accept.
    """


class ProviderError(Exception):
    """
    The provider could not be asked or refused a change.
    """


class Caller:
    """
    Who a credential belongs to.

    @ivar provider: the provider's name (C{github}, C{local}).
    @ivar name: the user's name at the provider.
    @ivar token: the provider token itself.
    """

    def __init__(self, provider, name, token):
        self.provider = provider
        self.name = name
        self.token = token

    def __repr__(self):
        return f"<Caller {self.provider}:{self.name}>"


class IGitProvider(Interface):
    name = Attribute("the provider's name, as records hold it")

    async def identify(token):
        """
        The L{Caller} of C{token}; raise L{Unauthorized} when it is not valid.
        """

    async def repository(caller, repoID):
        """
        C{{"id": text, "fullname", "ssh"}} of repository C{repoID} if the
        caller reaches it (may change it), else None.
        """

    async def repositories(caller):
        """
        The same for every repository the caller reaches.
        """

    async def addHook(caller, repo, url, secret):
        """
        Make the provider post pushes of C{repo} to C{url}; its hook id.
        """

    async def addDeployKey(caller, repo, title, publicKey):
        """
        Give C{publicKey} (OpenSSH text) read access to C{repo}; the key's
        id at the provider.
        """

    async def removeDeployKey(caller, repo, keyID):
        """
        Take the deploy key's access away (a key already gone is not an
        error).
        """

    async def removeHook(caller, repo, hookID):
        """
        Stop the hook (a hook already gone is not an error).
        """


def parseCredential(text):
    """
    C{(scheme, token)} of C{"<scheme> <token>"}.

    @raise Unauthorized: when it is not of that form.
    """
    if not isinstance(text, str) or not text or len(text) > MAX_CREDENTIAL:
        raise Unauthorized("expected a credential: github <token>, oauth <token> or tau <token>")
    scheme, _, token = text.strip().partition(" ")
    token = token.strip()
    if not token or " " in token:
        raise Unauthorized("expected a credential: github <token>, oauth <token> or tau <token>")
    return scheme.lower(), token


@implementer(IGitProvider)
class GitHubProvider:
    """
    GitHub's REST API at C{base} (C{https://api.github.com}).
    """

    name = "github"
    page = PAGE

    def __init__(self, base, reactor, timeout=10.0):
        self.base = base.rstrip("/")
        self.reactor = reactor
        self.timeout = timeout
        self._http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

    async def _call(self, method, path, token, body=None, expect=(200,)):
        headers = {
            "Authorization": f"token {token}",
            "Accept": "application/vnd.github+json",
            "User-Agent": "tau-auth",
        }
        kwargs = {"headers": headers}
        if body is not None:
            kwargs["data"] = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"

        async def exchange():
            response = await self._http.request(method, self.base + path, **kwargs)
            chunks, size = [], [0]

            def collect(data):
                size[0] += len(data)
                if size[0] > MAX_ANSWER:
                    raise ProviderError(f"GitHub answered more than {MAX_ANSWER} bytes")
                chunks.append(data)

            await treq.collect(response, collect)
            return response.code, b"".join(chunks)

        running = Deferred.fromCoroutine(exchange())
        expired = []

        def expire():
            expired.append(True)
            running.cancel()

        timer = self.reactor.callLater(self.timeout, expire)
        try:
            code, data = await running
        except Exception as e:
            if expired:
                raise ProviderError(f"GitHub did not answer {method} {path} in {self.timeout} seconds") from None
            if isinstance(e, ProviderError):
                raise
            raise ProviderError(f"GitHub {method} {path}: {e.__class__.__name__}: {e}") from None
        finally:
            if timer.active():
                timer.cancel()
        if code == 401:
            raise Unauthorized("GitHub refused the token")
        if code in (403, 429) and code not in expect:
            raise ProviderError(f"GitHub answered {code} to {method} {path} (rate limited or forbidden)")
        if code not in expect:
            return code, None
        try:
            return code, json.loads(data) if data else None
        except ValueError:
            raise ProviderError(f"GitHub {method} {path}: the answer is not JSON") from None

    async def identify(self, token):
        code, user = await self._call("GET", "/user", token)
        if code != 200 or not isinstance(user, dict) or not isinstance(user.get("login"), str):
            raise Unauthorized("GitHub does not know the token")
        return Caller(self.name, user["login"], token)

    @staticmethod
    def _info(repo):
        """
        A repository the caller may write to (as Taubyte's C{repoAccess}:
        admin, maintain or push permission), else None.
        """
        if not isinstance(repo, dict) or isinstance(repo.get("id"), bool) or not isinstance(repo.get("id"), int):
            return None
        permissions = repo.get("permissions")
        if not isinstance(permissions, dict) or not any(permissions.get(p) is True for p in ("admin", "maintain", "push")):
            return None
        return {"id": str(repo["id"]), "fullname": str(repo.get("full_name", "")), "ssh": str(repo.get("ssh_url", ""))}

    async def repository(self, caller, repoID):
        if not str(repoID).isdigit():
            return None
        code, repo = await self._call("GET", f"/repositories/{int(repoID)}", caller.token)
        if code != 200:
            return None
        return self._info(repo)

    async def repositories(self, caller):
        found = []
        for page in range(1, MAX_PAGES + 1):
            code, repos = await self._call("GET", f"/user/repos?per_page={self.page}&page={page}", caller.token)
            if code != 200 or not isinstance(repos, list):
                raise ProviderError(f"GitHub answered {code} to the list of repositories")
            found.extend(info for info in map(self._info, repos) if info is not None)
            if len(repos) < self.page:
                break
        return found

    async def addHook(self, caller, repo, url, secret):
        body = {"name": "web", "active": True, "events": ["push"],
                "config": {"url": url, "content_type": "json", "secret": secret, "insecure_ssl": "0"}}
        code, hook = await self._call("POST", f"/repos/{repo['fullname']}/hooks", caller.token, body, expect=(201,))
        if code != 201 or not isinstance(hook, dict) or not isinstance(hook.get("id"), int):
            raise ProviderError(f"GitHub refused the webhook of {repo['fullname']} ({code})")
        return hook["id"]

    async def addDeployKey(self, caller, repo, title, publicKey):
        body = {"title": title, "key": publicKey, "read_only": True}
        code, key = await self._call("POST", f"/repos/{repo['fullname']}/keys", caller.token, body, expect=(201,))
        if code != 201 or not isinstance(key, dict) or not isinstance(key.get("id"), int):
            raise ProviderError(f"GitHub refused the deploy key of {repo['fullname']} ({code})")
        return key["id"]

    async def removeDeployKey(self, caller, repo, keyID):
        code, _ = await self._call("DELETE", f"/repos/{repo['fullname']}/keys/{int(keyID)}", caller.token,
                                   expect=(204, 404))
        if code not in (204, 404):
            raise ProviderError(f"GitHub refused to remove the deploy key of {repo['fullname']} ({code})")

    async def removeHook(self, caller, repo, hookID):
        code, _ = await self._call("DELETE", f"/repos/{repo['fullname']}/hooks/{int(hookID)}", caller.token,
                                   expect=(204, 404))
        if code not in (204, 404):
            raise ProviderError(f"GitHub refused to remove the webhook of {repo['fullname']} ({code})")


def tokenKey(token):
    return "/tokens/" + hashlib.sha256(token.encode("utf-8")).hexdigest()


@implementer(IGitProvider)
class LocalProvider:
    """
    Tokens this cloud issues, and the repositories it hosts itself
    (L{tau.githost}, served next to auth's HTTP API).  A repository is
    named by its id (text), reached by the tokens issued for it and by the
    token that created it (L{create}: numeric ids, as GitHub's).  Hooks and
    deploy keys are the cloud's own: nothing to tell.

    @param storage: L{tau.services.auth.storage.Storage}.
    @ivar cloneURL: C{(repoID) -> URL} of a hosted repository (set when git
        hosting listens), or None.
    """

    name = "local"

    def __init__(self, storage):
        self.storage = storage
        self.cloneURL = None

    async def issue(self, name, repositories):
        """
        A new token for C{name} reaching C{repositories} (ids).
        """
        if not isinstance(name, str) or not name or len(name) > 100:
            raise ValueError("a token's name is 1 to 100 characters")
        if not isinstance(repositories, list) or len(repositories) > MAX_LOCAL_REPOSITORIES or \
                not all(isinstance(r, str) and r and len(r) <= 100 and "/" not in r for r in repositories):
            raise ValueError(f"repositories: expected a list of at most {MAX_LOCAL_REPOSITORIES} ids")
        token = "tau_" + _random.token_urlsafe(32)
        await self.storage.put(tokenKey(token), {"name": name, "repositories": sorted(set(repositories))})
        return token

    async def create(self, caller, name):
        """
        A new hosted repository called C{name} (1 to 100 letters, digits,
        C{.}, C{_}, C{-}), reached by C{caller}'s token from now on; its id
        (a number, as text, as GitHub's).
        """
        if not isinstance(name, str) or not _HOSTED_NAME.match(name) or name.endswith(".git"):
            raise ValueError("name: expected 1 to 100 letters, digits, '.', '_' or '-' (not ending in .git)")
        key = tokenKey(caller.token)
        record = await self.storage.get(key)
        if record is None:
            raise Unauthorized("this cloud did not issue the token")
        if len(record["repositories"]) >= MAX_LOCAL_REPOSITORIES:
            raise ValueError(f"a token reaches at most {MAX_LOCAL_REPOSITORIES} repositories")
        while True:
            repoID = str(_random.randbelow(9 * 10 ** 11) + 10 ** 11)
            if await self.storage.get("/hosted/" + repoID) is None and \
                    await self.storage.get(f"/repositories/{self.name}/{repoID}") is None:
                break
        await self.storage.put("/hosted/" + repoID, {"id": repoID, "fullname": f"{caller.name}/{name}",
                                                     "owner": caller.name})
        record["repositories"] = sorted(set(record["repositories"]) | {repoID})
        await self.storage.put(key, record)
        return repoID

    async def identify(self, token):
        record = await self.storage.get(tokenKey(token))
        if record is None:
            raise Unauthorized("this cloud did not issue the token")
        return Caller(self.name, record["name"], token)

    async def _reach(self, caller):
        record = await self.storage.get(tokenKey(caller.token))
        return [] if record is None else record["repositories"]

    async def _info(self, repoID):
        hosted = await self.storage.get("/hosted/" + repoID)
        return {"id": repoID, "fullname": hosted["fullname"] if hosted else repoID,
                "ssh": self.cloneURL(repoID) if self.cloneURL is not None else ""}

    async def repository(self, caller, repoID):
        if str(repoID) in await self._reach(caller):
            return await self._info(str(repoID))
        return None

    async def repositories(self, caller):
        return [await self._info(r) for r in await self._reach(caller)]

    async def addHook(self, caller, repo, url, secret):
        return 0

    async def addDeployKey(self, caller, repo, title, publicKey):
        return 0

    async def removeDeployKey(self, caller, repo, keyID):
        return None

    async def removeHook(self, caller, repo, hookID):
        return None
