"""
L{PatrickService}: patrick on a node, L{makePatrick}, and its factory.
"""

from twisted.application.service import MultiService
from twisted.internet.defer import DeferredList
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from tau.interfaces import IContent, IHost, IKVDB, IMembers, IPubSub, IRouting, ITNSClient
from tau.listen import Listener
from tau.services import needs
from tau.services.auth.client import AuthClient
from tau.services.discovery import Announcer
from tau.services.framework import CommandRouter, LocalCalls
from tau.services.base import StartedService
from tau.services.patrick import PROTOCOL
from tau.services.patrick.client import PatrickClient
from tau.services.patrick.commands import Commands
from tau.services.patrick.config import PatrickConfig
from tau.services.patrick.lifecycle import Jobs
from tau.services.patrick.members import Members
from tau.services.patrick.storage import Storage
from tau.services.patrick.web import PatrickResource, PatrickSite

log = Logger()


class AuthCalls:
    """
    What patrick asks auth (L{tau.services.auth.client.AuthClient}): a
    hook's secret, a repository's project, the projects a credential
    reaches.
    """

    def __init__(self, host, routing):
        self.host = host
        self.routing = routing
        self.client = AuthClient(host, routing)

    async def hook(self, hookID):
        return await self.client.hook(hookID)

    async def repository(self, repoID, provider):
        return await self.client.repository(repoID, provider)

    async def projectsOf(self, credential):
        return await AuthClient(self.host, self.routing, token=credential, client=self.client.client).projects()


class PatrickService(StartedService, MultiService):
    """
    Serves patrick's command on the host and its HTTP API on
    C{config.httpListen} once started; checks expired leases every
    C{config.checkInterval} seconds.

    @param host: has C{peerID}, C{setStreamHandler}, C{removeHandler},
        C{newStream}.
    @param kvdb: L{tau.interfaces.IKVDB}.
    @param pubsub: L{tau.interfaces.IPubSub} (heartbeats), or None (a
        patrick alone).
    @param reactor: IReactorTime, IReactorTCP.
    @param config: L{PatrickConfig}.
    @param trusted: C{trusted(peer)}: a node of this cloud (may answer a
        Deferred or coroutine).
    @param auth: see L{PatrickResource} (an L{AuthCalls}).
    @param content: L{tau.interfaces.IContent} (logs, assets, patrick's
        own logs), or None.
    @param routing: DHT routing: the service is announced; None: not.
    @param isPatrick: C{isPatrick(peer)}: a patrick node of this cloud
        (heartbeats); C{trusted} when None.
    @param tns: an L{tau.interfaces.ITNSClient} (the project of a website
        or library repository), or None.
    """

    def __init__(self, host, kvdb, pubsub, reactor, config, trusted, auth, *, content=None, routing=None,
                 isPatrick=None, tns=None):
        super().__init__()
        self.setName("patrick")
        self.host = host
        self.reactor = reactor
        self.config = config
        self.storage = Storage(kvdb, replicas=config.replicas)
        self.members = Members(pubsub, host.peerID, reactor, isPatrick or trusted, config.heartbeat)
        self.jobs = Jobs(self.storage, self.members, reactor, config, note=self._note if content else None)
        self.commands = Commands(self.jobs, self.members, host, trusted)
        self.router = CommandRouter(PROTOCOL, reactor)
        self.announcer = Announcer(routing, PROTOCOL, reactor) if routing is not None else None
        self.content = content
        self.resource = PatrickResource(self.jobs, PatrickClient(None, None, client=self.local()), auth, content,
                                        config, reactor, tns=tns)
        self.listener = None
        self._installed = False
        self._checks = None
        self._checksDone = None

    async def _note(self, text):
        from tau.store.unixfs import cidText

        entry = await self.content.add(text.encode("utf-8"), pin=True)
        return cidText(entry.cid)

    async def _start(self):
        await self.storage.open()
        if not self.running:
            return self
        self.members.start()
        self.commands.define(self.router)
        self.router.install(self.host)
        self._installed = True
        if self.announcer is not None:
            self.announcer.start()
        self._checks = LoopingCall(self._check)
        self._checks.clock = self.reactor
        self._checksDone = self._checks.start(self.config.checkInterval, now=False)
        self.listener = Listener("patrick-http", self.config.httpListen,
                                 PatrickSite(self.resource, self.config.maxBody), self.reactor)
        self.listener.setServiceParent(self)
        await self.listener.whenListening()
        log.info("patrick serving {protocol} and HTTP on {where}", protocol=PROTOCOL,
                 where=str(self.listener.port.getHost()))
        return self

    async def _check(self):
        try:
            await self.jobs.check()
        except Exception:
            log.failure("patrick: checking leases failed")

    def stopService(self):
        if self._installed:
            self.router.uninstall(self.host)
            self._installed = False
        if self.announcer is not None:
            self.announcer.stop()
        if self._checks is not None and self._checks.running:
            # a check under way finishes first
            self._checks.stop()
        self.members.stop()
        stopping = [super().stopService()]
        if self._checksDone is not None:
            stopping.append(self._checksDone)
            self._checksDone = None
        return DeferredList([d for d in stopping if d is not None], consumeErrors=True)

    def local(self):
        """
        L{LocalCalls} to this service, as this node.
        """
        return LocalCalls(self.commands.handlers, self.host.peerID, ready=self.whenReady)

    @property
    def url(self):
        """
        The base URL of the HTTP API (once listening).
        """
        where = self.listener.port.getHost()
        host = where.host if where.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"http://{host}:{where.port}"


def makePatrick(host, kvdb, pubsub, reactor, config, trusted, *, content=None, routing=None, auth=None,
                isPatrick=None, tns=None):
    """
    The patrick service of a node.

    @param config: the L{PatrickConfig} section (None: the defaults).
    @param auth: what patrick asks auth (None: an L{AuthCalls} that finds
        auth through C{routing}).
    """
    return PatrickService(host, kvdb, pubsub, reactor, config or PatrickConfig(), trusted,
                          auth or AuthCalls(host, routing), content=content, routing=routing, isPatrick=isPatrick,
                          tns=tns)


@needs(IHost, IKVDB, IPubSub, IRouting, IMembers, IContent, ITNSClient)
def serviceFactory(capabilities, config, reactor):
    """
    The patrick service of a node whose shape names it: its callers are
    trusted when they are nodes of this node's cloud; its peers are the
    nodes admitted for patrick.
    """
    members = capabilities[IMembers]
    return makePatrick(capabilities[IHost], capabilities[IKVDB], capabilities[IPubSub], reactor, config.patrick,
                       members.isMember, content=capabilities[IContent], routing=capabilities[IRouting],
                       isPatrick=lambda peer: members.isMember(peer, "patrick"), tns=capabilities[ITNSClient])

