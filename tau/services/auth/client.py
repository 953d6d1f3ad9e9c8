"""
L{AuthClient}: what other services (patrick, monkey, the gateway) use to
reach auth over the network; they never import its server code.
"""

from tau.services.auth import PROTOCOL
from tau.services.discovery import ServiceClient


class AuthClient:
    """
    @param host: the local host.
    @param routing: DHT routing (C{findProviders}), or None.
    @param token: a credential (C{"github <token>"}) sent with every call,
        or None for a trusted service of the cloud.
    """

    def __init__(self, host, routing, *, token=None, client=None):
        self.client = client or ServiceClient(host, routing, PROTOCOL)
        self.token = token

    async def _call(self, command, action, **body):
        body["action"] = action
        if self.token is not None:
            body["token"] = self.token
        return await self.client.call(command, body)

    # projects

    async def project(self, projectID):
        return await self._call("projects", "get", id=projectID)

    async def projects(self):
        return (await self._call("projects", "list"))["ids"]

    async def createProject(self, name, config, code):
        return await self._call("projects", "create", name=name, config=config, code=code)

    # repositories

    async def repository(self, repoID, provider="github"):
        """
        C{{id, provider, project, key}}: the deploy key a builder clones
        with.
        """
        return await self._call("repositories", "get", provider=provider, id=repoID)

    async def repositories(self):
        return (await self._call("repositories", "list"))["ids"]

    async def registerRepository(self, repoID, provider="github"):
        return (await self._call("repositories", "register", provider=provider, id=str(repoID)))["key"]

    async def unregisterRepository(self, repoID, provider="github"):
        await self._call("repositories", "unregister", provider=provider, id=str(repoID))

    # hooks

    async def hook(self, hookID):
        """
        C{{id, provider, github_id, secret, repository}}: patrick checks a
        webhook's signature with C{secret}.
        """
        return await self._call("hooks", "get", id=hookID)

    async def hooks(self):
        return (await self._call("hooks", "list"))["hooks"]

    # domains and certificates

    async def registerDomain(self, fqdn, project):
        return await self._call("domain", "register", fqdn=fqdn, project=project)

    async def verifyDomain(self, fqdn, project, token):
        """
        Whether C{token} (a TXT record's text) validates C{fqdn} for
        C{project}.
        """
        return (await self._call("domain", "verify", fqdn=fqdn, project=project, value=token))["valid"]

    async def certificate(self, fqdn, static=False):
        return (await self._call("acme", "get-static" if static else "get", fqdn=fqdn))["certificate"]

    async def setCertificate(self, fqdn, certificate, static=False):
        await self._call("acme", "set-static" if static else "set", fqdn=fqdn, certificate=certificate)

    async def cacheGet(self, key):
        return (await self._call("acme", "cache-get", key=key))["data"]

    async def cacheSet(self, key, data):
        await self._call("acme", "cache-set", key=key, data=data)

    async def cacheDelete(self, key):
        await self._call("acme", "cache-delete", key=key)
