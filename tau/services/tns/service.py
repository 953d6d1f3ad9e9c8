"""
L{TNSService}: tns on a node, L{makeTNS}, its factory, and local calls
(the node's own calls to the tns it runs).
"""

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from tau.interfaces import IHost, IKVDB, IMembers, IPubSub, IRouting
from tau.services import needs
from tau.services.base import StartedService
from tau.services.auth.client import PROTOCOL as AUTH_PROTOCOL, AuthClient
from tau.services.commands import RemoteError
from tau.services.discovery import Announcer, ServiceClient
from tau.services.framework import CommandRouter, LocalCalls
from tau.services.tns import PROTOCOL
from tau.services.tns.commands import Commands
from tau.services.tns.config import TNSConfig
from tau.services.tns.paths import CHANGED_TOPIC
from tau.services.tns.storage import Storage
from tau.services.tns.tenancy import Tenancy

#: seconds the changes of the replica are gathered into one announcement
ANNOUNCE_DELAY = 0.05

log = Logger()


class TNSService(StartedService):
    """
    Serves tns's commands on the host once started; L{whenReady} fires
    when it does.

    @param host: has C{peerID}, C{setStreamHandler}, C{removeHandler}.
    @param kvdb: the replicated key/value store (see
        L{tau.services.tns.storage.Storage}).
    @param pubsub: has C{publish(topic, data)} (pushes are announced on
        C{/tns/updates/...}), or None.
    @param reactor: IReactorTime, IReactorThreads.
    @param config: L{TNSConfig}.
    @param trusted: C{trusted(peer) -> bool}: peers that are services of
        this cloud (they reach every key); this node is always trusted.
    @param projectsOf: C{async projectsOf(token) -> [project id]}: the
        projects a credential reaches (auth's answer), or None.
    @param routing: has C{provide(cid)}: the service is announced in the
        DHT; None: not announced.
    """

    def __init__(self, host, kvdb, pubsub, reactor, config, trusted, *, projectsOf=None, routing=None):
        self.setName("tns")
        self.host = host
        self.reactor = reactor
        self.config = config
        self.storage = Storage(kvdb, replicas=config.replicas, timeout=config.writeTimeout)
        self.tenancy = Tenancy(lambda peer: peer == host.peerID or trusted(peer), projectsOf, reactor)
        self.commands = Commands(self.storage, self.tenancy, pubsub.publish if pubsub is not None else None,
                                 reactor, config.maxKeys)
        self.router = CommandRouter(PROTOCOL, reactor, maxMessage=config.maxMessage)
        self.announcer = Announcer(routing, PROTOCOL, reactor) if routing is not None else None
        self.pubsub = pubsub
        self._installed = False
        self._stopWatching = None
        self._announce = None

    async def _start(self):
        await self.storage.open()
        if not self.running:
            return self
        if self.pubsub is not None:
            self._stopWatching = await self.storage.onChange(self._changed)
        self.commands.define(self.router)
        self.router.install(self.host)
        self._installed = True
        if self.announcer is not None:
            self.announcer.start()
        log.info("tns serving {protocol}", protocol=PROTOCOL)
        return self

    def _changed(self):
        """
        The replica changed: announce it on L{CHANGED_TOPIC} (once for the
        changes of L{ANNOUNCE_DELAY} seconds), so clients drop what they
        cached, whichever node they read from.
        """
        if self._announce is None or not self._announce.active():
            self._announce = self.reactor.callLater(ANNOUNCE_DELAY, self._announceChange)

    def _announceChange(self):
        self._announce = None
        d = Deferred.fromCoroutine(self.pubsub.publish(CHANGED_TOPIC, b""))
        d.addErrback(lambda f: log.info("tns: announcing a change failed: {why}", why=f.getErrorMessage()))

    def stopService(self):
        if self._installed:
            self.router.uninstall(self.host)
            self._installed = False
        if self.announcer is not None:
            self.announcer.stop()
        if self._stopWatching is not None:
            self._stopWatching()
            self._stopWatching = None
        if self._announce is not None and self._announce.active():
            self._announce.cancel()
        self._announce = None
        return super().stopService()

    def local(self):
        """
        L{LocalCalls} to this service, as this node.
        """
        return LocalCalls(self.commands.handlers, self.host.peerID, ready=self.whenReady)


class CredentialRefused(Exception):
    """
    auth refused a caller's credential.
    """


def makeTNS(host, kvdb, pubsub, reactor, config, trusted, *, routing=None):
    """
    The tns service of a node.

    @param config: the L{TNSConfig} section (None: the defaults).
    @param trusted: C{trusted(peer) -> bool} (see L{TNSService}).
    @param routing: DHT routing (C{provide}, C{findProviders}): tns is
        announced, and auth found, through it; None: known peers only.
    """
    authCalls = ServiceClient(host, routing, AUTH_PROTOCOL)

    async def projectsOf(token):
        try:
            return await AuthClient(host, routing, token=token, client=authCalls).projects()
        except RemoteError as e:
            # auth's reason, without its router's prefix
            raise CredentialRefused(str(e).partition('" failed: ')[2] or str(e)) from None

    return TNSService(host, kvdb, pubsub, reactor, config or TNSConfig(), trusted, projectsOf=projectsOf,
                      routing=routing)


@needs(IHost, IKVDB, IPubSub, IRouting, IMembers)
def serviceFactory(capabilities, config, reactor):
    """
    The tns service of a node whose shape names it: its callers are
    trusted when they are nodes of this node's cloud.
    """
    members = capabilities[IMembers]
    return makeTNS(capabilities[IHost], capabilities[IKVDB], capabilities[IPubSub], reactor, config.tns,
                   members.isMember, routing=capabilities[IRouting])
