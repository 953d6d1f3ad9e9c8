"""
L{SubstrateService}: substrate on a node (C{proxy-http} on C{/substrate/v1}
followed by the HTTP tunnel on the same stream, and optionally its own
HTTP listener), and L{serviceFactory}.

A gateway sends C{proxy-http {host, path, method}}; the substrate looks the
request up in tns and answers C{{"functions": metrics}} or
C{{"websites": metrics}} (L{tau.services.substrate.metrics}), then serves
the tunnelled request on that stream (L{tau.services.substrate.tunnel.serveTunnel});
when nothing serves the host and path, the answer is an error whose text
begins with L{NOT_SERVED} and the stream ends.  How a request is answered:
L{tau.services.substrate.serving}.

Pubsub and p2p functions (L{tau.services.substrate.triggers}) run through
the same L{FunctionRunner} as HTTP ones (one module cache, one bound on
calls under way).  The C{substrate-p2p} router (C{/substrate/p2p/v1}, any
command name) is on the host while the service runs.  With the node's
pubsub, a channel is subscribed when a function asks
(C{setSubscriptionChannel}, as in Taubyte) and, with C{subscribe-all}
(the default), at start for every project with a messaging
(L{PubsubTriggers.subscribeAll}, in the background: at most
L{PubsubTriggers.maxTopics} topics, a failure logged), so pubsub
functions serve their channels before anything asked.
"""

from pathlib import Path

from twisted.internet.defer import CancelledError, Deferred, DeferredList, maybeDeferred
from twisted.logger import Logger

from tau.interfaces import IContent, IHost, IKVDB, IPubSub, IRouting, ITNSClient
from tau.listen import Listener
from tau.oneshot import OneShot
from tau.services import needs
from tau.services.base import StartedService
from tau.services.discovery import Announcer
from tau.services.framework import CommandRouter, Refused, Upgrade
from tau.services.substrate import NOT_SERVED, PROTOCOL
from tau.services.substrate.metrics import encodeAnswer
from tau.services.substrate.runner import FunctionRunner
from tau.services.substrate.serving import Serving
from tau.services.substrate.triggers import P2PTriggers, PubsubTriggers
from tau.services.substrate.wasm import FunctionServices, HttpClientPolicy, Runtime
from tau.services.substrate.web import SubstrateSite
from tau.services.substrate.tunnel import serveTunnel

#: the longest host, path or method a C{proxy-http} may name
MAX_FIELD = 8192
#: proxy-http exchanges under way at once from one peer (a gateway), and
#: tunnels open at once to one peer
MAX_ASKING = 64
MAX_TUNNELS = 256

log = Logger()


def _field(body, name, default=None):
    value = body.get(name, default) if isinstance(body, dict) else None
    if not isinstance(value, str) or len(value) > MAX_FIELD:
        raise ValueError(f"proxy-http wants text {name} of at most {MAX_FIELD} characters")
    return value


class SubstrateService(StartedService):
    """
    @param host: has C{setStreamHandler}, C{removeHandler}.
    @param content: L{tau.interfaces.IContent} (the builds).
    @param tns: an L{tau.interfaces.ITNSClient} (the node's: not closed
        here).
    @param reactor: IReactorTime, IReactorThreads, IReactorTCP.
    @param config: L{SubstrateConfig}.
    @param moduleCache: the compiled-module cache folder.
    @param routing: has C{provide(cid)}: the service is announced in the
        DHT (gateways find substrates so); None: not announced.
    @param kvdb: an L{tau.interfaces.IKVDB}: the functions' databases and
        storages live there; None: their host calls answer their errno (as
        do the HTTP-client calls).
    @param pubsub: an L{tau.interfaces.IPubSub}: pubsub functions run for
        their channels' messages, and functions may subscribe and
        publish; None: no pubsub triggers (those host calls answer their
        errno).
    """

    def __init__(self, host, content, tns, reactor, config, moduleCache, *, routing=None, kvdb=None, pubsub=None):
        self.setName("substrate")
        self.host = host
        self.content = content
        self.tns = tns
        self.reactor = reactor
        self.config = config
        self.moduleCache = moduleCache
        self.kvdb = kvdb
        self.pubsub = pubsub
        # a gateway is one peer carrying all its clients' requests
        self.router = CommandRouter(PROTOCOL, reactor, maxPerPeer=MAX_ASKING, maxUpgradedPerPeer=MAX_TUNNELS,
                                    maxInbound=MAX_ASKING + MAX_TUNNELS)
        self.announcer = Announcer(routing, PROTOCOL, reactor) if routing is not None else None
        self.runtime = None
        self.runner = None
        self.serving = None
        self.pubsubTriggers = None
        self.p2pTriggers = None
        self.p2pRouter = None
        self._subscribing = None
        self._subscribedShot = OneShot()
        self.listener = None
        self._installed = False
        self._tunnels = {}

    def _functionServices(self):
        """
        The node-backed services of the functions' database, storage and
        HTTP-client host calls (L{tau.services.substrate.wasm.context.FunctionContext.services}),
        or None: those calls answer their errno.
        """
        if self.kvdb is None:
            return None
        return FunctionServices(self.reactor, self.content, self.kvdb, self.tns,
                                HttpClientPolicy.fromConfig(self.config.httpClientAllow))

    def startService(self):
        if self._subscribedShot.fired:
            self._subscribedShot = OneShot()
        super().startService()

    async def _start(self):
        runtime = Runtime(self.reactor, str(self.moduleCache))
        runtime.workers = self.config.workers
        runtime.poolSize = self.config.poolSize
        runtime.poolTotal = self.config.poolTotal
        runtime.start()
        self.runtime = runtime
        services = self._functionServices()
        self.runner = FunctionRunner(self.tns, self.content, runtime, self.reactor, maxModule=self.config.maxModule,
                                     services=services)
        self.serving = Serving(self.tns, self.content, runtime, self.reactor,
                               maxRequestBody=self.config.maxRequestBody, runner=self.runner)
        if self.pubsub is not None:
            self.pubsubTriggers = PubsubTriggers(self.pubsub, self.tns.fetch, self.runner.runPubsub, self.tns.lookup)
            if services is not None:
                services.pubsub = self.pubsubTriggers
        self.p2pTriggers = P2PTriggers(self.tns.fetch, self.runner.runP2P, self.host.peerID)
        self.p2pRouter = self.p2pTriggers.router(self.reactor)
        if self.config.httpListen is not None:
            self.listener = Listener("substrate-http", self.config.httpListen,
                                     SubstrateSite(self.serving.handle, self.config.maxRequestBody), self.reactor)
            self.listener.startService()
            await self.listener.whenListening()
        if not self.running:
            self._subscribedShot.fire([])
            return self
        self.router.define("proxy-http", self.proxyHTTP)
        self.router.install(self.host)
        self.p2pRouter.install(self.host)
        self._installed = True
        if self.pubsubTriggers is None or not self.config.subscribeAll:
            self._subscribedShot.fire([])
        else:
            self._subscribing = Deferred.fromCoroutine(self.pubsubTriggers.subscribeAll())
            self._subscribing.addCallbacks(self._subscribed, self._notSubscribed)
        if self.announcer is not None:
            self.announcer.start()
        log.info("substrate serving {protocol}{http}", protocol=PROTOCOL,
                 http=f" and HTTP on {self.listener.port.getHost()}" if self.listener is not None else "")
        return self

    def _subscribed(self, topics):
        log.info("substrate: {count} pubsub topics subscribed at start", count=len(topics))
        self._subscribedShot.fire(topics)

    def _notSubscribed(self, f):
        if not f.check(CancelledError):
            log.info("substrate: subscribing the pubsub functions at start failed: {why}", why=f.getErrorMessage())
        self._subscribedShot.fire([])

    def whenSubscribed(self):
        """
        Fires with the topics subscribed at start (C{subscribe-all}) once
        that is done (an empty list when it failed or was not asked).
        """
        return self._subscribedShot.whenFired()

    def httpPort(self):
        """
        The bound port of the direct HTTP listener, or None.
        """
        port = self.listener.port if self.listener is not None else None
        return port.getHost().port if port is not None else None

    async def proxyHTTP(self, peer, body):
        """
        C{proxy-http {host, path, method}}: the metrics of what serves it,
        then the tunnel on the same stream.

        @raise Refused: with L{NOT_SERVED} text when nothing does.
        """
        host, path = _field(body, "host"), _field(body, "path")
        method = _field(body, "method", "GET") or "GET"
        found = await self.serving.find(host, path, method)
        if found is None:
            raise Refused(f"{NOT_SERVED} {host}{path}")
        return Upgrade(encodeAnswer(await self.serving.metrics(found)), self._tunnel)

    async def _tunnel(self, stream):
        running = Deferred.fromCoroutine(serveTunnel(stream, self.serving.handle, self.reactor))
        self._tunnels[running] = stream
        try:
            await running
        finally:
            self._tunnels.pop(running, None)

    async def _stop(self):
        if self._installed:
            self.router.uninstall(self.host)
            self.p2pRouter.uninstall(self.host)
            self._installed = False
        if self._subscribing is not None:
            subscribing, self._subscribing = self._subscribing, None
            subscribing.cancel()
        if self.pubsubTriggers is not None:
            triggers, self.pubsubTriggers = self.pubsubTriggers, None
            if self.runner.services is not None:
                self.runner.services.pubsub = None
            await triggers.stop()
        if self.announcer is not None:
            self.announcer.stop()
        tunnels = list(self._tunnels.items())
        for _, stream in tunnels:
            stream.reset()
        if tunnels:
            await DeferredList([d for d, _ in tunnels], consumeErrors=True)
        if self.listener is not None:
            listener, self.listener = self.listener, None
            await maybeDeferred(listener.stopService)
        if self.runtime is not None:
            runtime, self.runtime = self.runtime, None
            await runtime.stop()

    def stopService(self):
        super().stopService()
        return Deferred.fromCoroutine(self._stop())


def moduleCacheOf(config):
    """
    The compiled-module cache folder of a node config: C{substrate.module-cache}
    (relative to the node's root), else C{<data folder>/substrate-modules}.
    """
    folder = config.substrate.moduleCache
    if folder is None:
        return config.dataDir / "substrate-modules"
    return config.root / Path(folder).expanduser()


@needs(IHost, IRouting, IContent, IKVDB, ITNSClient, IPubSub)
def serviceFactory(capabilities, config, reactor):
    """
    The substrate service of a node whose shape names it: it reads projects
    through the node's tns client, builds through the node's content,
    keeps the functions' databases and storages in the node's kvdb, and
    runs pubsub functions for the node's pubsub.
    """
    return SubstrateService(capabilities[IHost], capabilities[IContent], capabilities[ITNSClient], reactor,
                            config.substrate, moduleCacheOf(config), routing=capabilities[IRouting],
                            kvdb=capabilities[IKVDB], pubsub=capabilities[IPubSub])
