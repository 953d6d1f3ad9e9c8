"""
L{GatewayService}: the gateway on a node (its HTTP and HTTPS listeners),
L{makeGateway} and its factory.
"""

from pathlib import Path

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from tau.interfaces import IHost, IRouting
from tau.listen import Listener
from tau.services import needs
from tau.services.base import StartedService
from tau.tlspem import contextFromPEM
from tau.services.auth.client import AuthClient
from tau.services.gateway.config import GatewayConfig
from tau.services.gateway.http import GatewaySite
from tau.services.gateway.proxy import Proxy
from tau.services.gateway.tls import Certificates, SNIFactory
from tau.services.substrate.client import SubstrateClient

log = Logger()


def _readPEM(path):
    return contextFromPEM(Path(path).read_bytes())


class GatewayService(StartedService, MultiService):
    """
    Serves HTTP on C{config.http} and HTTPS on C{config.https} (each
    skipped when ""), every request tunnelled to a substrate.  L{whenReady}
    fires when both listen; L{ports} tells where.

    @param substrates: a L{SubstrateClient}.
    @param fetchCertificate: C{async fetch(fqdn, static) -> PEM} (auth's
        C{acme get}/C{get-static}), for HTTPS.
    @param reactor: IReactorTime, IReactorTCP, IReactorThreads.
    @param config: L{GatewayConfig}.
    """

    def __init__(self, substrates, fetchCertificate, reactor, config):
        super().__init__()
        self.setName("gateway")
        self.substrates = substrates
        self.fetchCertificate = fetchCertificate
        self.reactor = reactor
        self.config = config
        self.proxy = Proxy(substrates, reactor, config.idleTimeout)
        self.site = None
        self.certificates = None
        self.listeners = {}

    async def _start(self):
        config = self.config
        self.site = GatewaySite(self.proxy.handle, config, self.reactor)
        if config.https:
            default = None
            if config.tlsCertificate:
                default = await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), _readPEM,
                                                  config.tlsCertificate)
            self.certificates = Certificates(self.fetchCertificate, self.reactor, ttl=config.certificateTTL,
                                             missTTL=config.certificateMissTTL, default=default)
        if not self.running:
            return self
        if config.http:
            self.listeners["http"] = Listener("gateway-http", config.http, self.site, self.reactor)
        if config.https:
            factory = SNIFactory(self.site, self.certificates, self.reactor, config.headerTimeout)
            self.listeners["https"] = Listener("gateway-https", config.https, factory, self.reactor)
        for listener in self.listeners.values():
            listener.setServiceParent(self)
        await gatherResults([listener.whenListening() for listener in self.listeners.values()], consumeErrors=True)
        log.info("gateway serving {where}", where=", ".join(f"{name} on {port.getHost()}" for name, port in
                                                            self.ports().items()))
        return self

    def ports(self):
        """
        C{{"http": IListeningPort, "https": ...}}: the bound listeners.
        """
        return {name: listener.port for name, listener in self.listeners.items() if listener.port is not None}

    async def _stop(self):
        await super().stopService()
        if self.site is not None:
            for d in list(self.site.pending):
                d.cancel()
        for listener in list(self.listeners.values()):
            listener.disownServiceParent()
        self.listeners = {}

    def stopService(self):
        return Deferred.fromCoroutine(self._stop())


def makeGateway(host, routing, reactor, config=None, *, substrates=None, fetchCertificate=None):
    """
    The gateway of a node.

    @param routing: DHT routing (C{findProviders}): substrates and auth are
        found through it; None: known peers only.
    @param config: the L{GatewayConfig} section (None: the defaults).
    @param substrates: a L{SubstrateClient} (one is built on C{host} when
        None).
    @param fetchCertificate: C{async fetch(fqdn, static) -> PEM}
        (L{AuthClient.certificate} when None).
    """
    config = config or GatewayConfig()
    if substrates is None:
        substrates = SubstrateClient(host, routing, fanout=config.substrateFanout, timeout=config.substrateTimeout,
                                     grace=config.substrateGrace)
    if fetchCertificate is None:
        fetchCertificate = AuthClient(host, routing).certificate
    return GatewayService(substrates, fetchCertificate, reactor, config)


@needs(IHost, IRouting)
def serviceFactory(capabilities, config, reactor):
    """
    The gateway of a node whose shape names it.
    """
    return makeGateway(capabilities[IHost], capabilities[IRouting], reactor, config.gateway)
