"""
Git hosting on an auth node: who may read and push the repositories the
cloud hosts (provider C{local}), and where their pushes are announced
(the repository's hook: auth's C{webhook-url} + hook id, signed with the
hook's secret).  L{tau.githost} serves them; this module is the
L{tau.githost.IGitAccess} it asks.

Pushing wants a C{tau} token that reaches the repository (HTTP Basic:
C{http://<anything>:<token>@host/<id>.git}).  Reading wants the same, or
the repository's deploy read token (L{tau.githost.credentials.deployReadToken}
of the deploy key a builder gets from C{repositories get}), unless the
config lets anyone read.
"""

import hmac

from zope.interface import implementer

from tau.githost import Denied, IGitAccess, Missing
from tau.githost.credentials import deployReadToken
from tau.services.auth.core import EVERYTHING, REPOSITORY_MISSING
from tau.services.auth.providers import Unauthorized


@implementer(IGitAccess)
class AuthGitAccess:
    """
    @param auth: L{tau.services.auth.core.Auth}.
    @param local: the L{tau.services.auth.providers.LocalProvider}.
    @param publicRead: whether anyone may clone a hosted repository.
    """

    provider = "local"

    def __init__(self, auth, local, publicRead=False):
        self.auth = auth
        self.local = local
        self.publicRead = publicRead

    def _key(self, repoID):
        return f"/repositories/{self.provider}/{repoID}"

    async def authorize(self, repoID, credential, write):
        record = await self.auth.storage.get(self._key(repoID))
        if record is None:
            if credential is None:
                raise Denied("a token is needed")
            raise Missing(REPOSITORY_MISSING)
        if not write and self.publicRead:
            return {"name": "anonymous", "email": ""}
        if credential is None:
            raise Denied("a token is needed (http://<name>:<tau token>@host/...)")
        _user, password = credential
        if password.startswith("tau-deploy-"):
            if write:
                raise Denied("a deploy read token does not push")
            private = self.auth.secrets.open(record["key"], self._key(repoID).encode())
            if hmac.compare_digest(password.encode(), deployReadToken(private).encode()):
                return {"name": "deploy", "email": ""}
            raise Denied("the deploy read token is not this repository's")
        try:
            caller = await self.local.identify(password)
        except Unauthorized as e:
            raise Denied(str(e)) from None
        if await self.local.repository(caller, repoID) is None:
            raise Missing(REPOSITORY_MISSING)
        return {"name": caller.name, "email": ""}

    async def pushTarget(self, repoID):
        record = await self.auth.storage.get(self._key(repoID))
        if record is None or not record.get("hook"):
            return None
        hook = await self.auth.getHook(EVERYTHING, record["hook"])
        fullname = record.get("fullname") or repoID
        owner, _, name = fullname.rpartition("/")
        return {"hook": hook["id"], "url": self.auth.webhookURL + hook["id"], "secret": hook["secret"],
                "repository": {"id": repoID, "name": name, "full_name": fullname, "owner": owner or name}}
