"""
L{AuthService}: auth on a node, and L{makeAuth}, its factory.
"""

from pathlib import Path

from twisted.application.service import MultiService
from twisted.internet.defer import DeferredList
from twisted.logger import Logger

from tau.githost.repos import Repositories
from tau.githost.resource import GitResource, GitSite
from tau.githost.webhook import WebhookSender
from tau.interfaces import IHost, IKVDB, IMembers, IRouting
from tau.listen import Listener
from tau.services import needs
from tau.services.base import StartedService
from tau.services.auth import PROTOCOL
from tau.services.auth.certificates import Certificates
from tau.services.auth.commands import Commands
from tau.services.auth.config import AuthConfig
from tau.services.auth.core import Auth, checkFQDN
from tau.services.auth.hosting import AuthGitAccess
from tau.services.auth.web import AuthResource, AuthSite
from tau.services.auth.providers import GitHubProvider, LocalProvider
from tau.services.auth.secrets import loadSecrets
from tau.services.auth.storage import MAX_LIST, Storage
from tau.services.discovery import Announcer
from tau.services.framework import CommandRouter

log = Logger()


class AuthService(StartedService, MultiService):
    """
    Serves auth's commands on the host and its HTTP API on
    C{config.httpListen} once started; L{whenReady} fires when both are up.

    @param host: has C{setStreamHandler}, C{removeHandler}.
    @param kvdb: the replicated key/value store (see
        L{tau.services.auth.storage.Storage}).
    @param reactor: IReactorTime, IReactorTCP, IReactorThreads.
    @param config: L{AuthConfig}.
    @param root: the folder auth keeps its master key in (C{ROOT/auth}).
    @param trusted: C{trusted(peer) -> bool}: peers that are services of
        this cloud (they reach everything over p2p).
    @param github: the GitHub provider (built from the config when None).
    @param routing: has C{provide(cid)}: the service is announced in the
        DHT; None: not announced.
    @param gitRoot: the folder of the hosted git repositories (served on
        C{config.gitListen} unless it is empty).
    """

    def __init__(self, host, kvdb, reactor, config, root, trusted, *, webhookURL, github=None, routing=None,
                 gitRoot=None):
        super().__init__()
        self.setName("auth")
        self.host = host
        self.reactor = reactor
        self.config = config
        self.root = Path(root)
        self.trusted = trusted
        self.webhookURL = webhookURL
        self.storage = Storage(kvdb)
        self.github = github or GitHubProvider(config.githubAPI, reactor, config.providerTimeout)
        self.local = LocalProvider(self.storage)
        self.router = CommandRouter(PROTOCOL, reactor)
        self.announcer = Announcer(routing, PROTOCOL, reactor) if routing is not None else None
        self.certificates = Certificates(self._storedCertificates, reactor)
        self.auth = None
        self.commands = None
        self.resource = None
        self.listener = None
        self.gitRoot = Path(gitRoot) if gitRoot is not None else self.root.parent / "git"
        self.git = None
        self.gitListener = None
        self.gitURL = None

    async def _start(self):
        secrets = await loadSecrets(self.root, self.reactor)
        await self.storage.open()
        if not self.running:
            return self
        providers = {"github": self.github, "oauth": self.github, "tau": self.local}
        self.auth = Auth(self.storage, secrets, providers, self.webhookURL)
        self.auth.onCertificate = self.certificates.stored
        self.commands = Commands(self.auth, self.trusted)
        self.commands.define(self.router)
        self.router.install(self.host)
        self.certificates.start()
        if self.announcer is not None:
            self.announcer.start()
        self.resource = AuthResource(self.auth, self.local)
        site = AuthSite(self.resource, self.config.maxBody)
        self.listener = Listener("auth-http", self.config.httpListen, site, self.reactor)
        self.listener.setServiceParent(self)
        await self.listener.whenListening()
        log.info("auth serving {protocol} and HTTP on {where}", protocol=PROTOCOL, where=str(self.listener.port.getHost()))
        if self.config.gitListen:
            await self._startGit()
        return self

    async def _startGit(self):
        """
        Serve the hosted repositories (L{tau.githost}) on C{git-listen}.
        """
        repos = Repositories(self.gitRoot, self.reactor)
        await repos.prepare()
        access = AuthGitAccess(self.auth, self.local, self.config.gitPublicRead)
        self.git = GitResource(access, repos, self.reactor, lambda: self.gitURL, WebhookSender(self.reactor),
                               maxBody=self.config.gitMaxBody, timeout=self.config.gitTimeout,
                               maxProcesses=self.config.gitMaxProcesses)
        site = GitSite(self.git, self.config.gitMaxBody, maxBodies=2 * self.config.gitMaxProcesses)
        self.gitListener = Listener("auth-git", self.config.gitListen, site, self.reactor)
        self.gitListener.setServiceParent(self)
        where = (await self.gitListener.whenListening()).getHost()
        if self.config.gitURL:
            self.gitURL = self.config.gitURL.rstrip("/") + "/"
        else:
            host = where.host if where.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
            self.gitURL = f"http://{host}:{where.port}/"
        self.local.cloneURL = lambda repoID: f"{self.gitURL}{repoID}.git"
        log.info("auth hosting git repositories of {root} on {url}", root=str(self.gitRoot), url=self.gitURL)

    async def _storedCertificates(self):
        entries = []
        for prefix, static in (("/acme-static/", True), ("/acme/", False)):
            for fqdn in await self.storage.names(prefix, MAX_LIST):
                sealed = await self.storage.getRaw(prefix + fqdn)
                if sealed is not None:
                    entries.append(((fqdn, static), self.auth.secrets.open(sealed, (prefix + fqdn).encode())))
        return entries

    def stopService(self):
        if self.auth is not None:
            self.router.uninstall(self.host)
        self.certificates.stop()
        if self.announcer is not None:
            self.announcer.stop()
        stopping = [super().stopService()]
        if self.git is not None:
            stopping.append(self.git.stop())
        return DeferredList([d for d in stopping if d is not None], consumeErrors=True)


def makeAuth(host, kvdb, reactor, config, root, trusted, *, networkFQDN, routing=None):
    """
    The auth service of a node.

    @param config: the L{AuthConfig} section (None: the defaults).
    @param root: the node's root folder; the master key goes in C{root/auth},
        the hosted git repositories in C{root/git} (unless C{git-root} says).
    @param networkFQDN: the cloud's domain, for the default webhook URL
        C{https://patrick.tau.<networkFQDN>/github/} (Taubyte's).
    """
    config = config or AuthConfig()
    webhookURL = config.webhookURL or f"https://patrick.tau.{checkFQDN(networkFQDN)}/github/"
    return AuthService(host, kvdb, reactor, config, Path(root) / "auth", trusted, webhookURL=webhookURL,
                       routing=routing, gitRoot=config.gitRoot or Path(root) / "git")




@needs(IHost, IKVDB, IRouting, IMembers)
def serviceFactory(capabilities, config, reactor):
    """
    The auth service of a node whose shape names it: its callers are
    trusted when they are nodes of this node's cloud; its master key lives
    in the node's data folder.
    """
    return makeAuth(capabilities[IHost], capabilities[IKVDB], reactor, config.auth, config.dataDir,
                    capabilities[IMembers].isMember, networkFQDN=config.networkFqdn or "tau.localhost",
                    routing=capabilities[IRouting])
