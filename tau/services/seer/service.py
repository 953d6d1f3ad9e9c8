"""
L{SeerService}: seer on a node (its commands on C{/seer/v1} and its DNS
server on UDP and TCP), and L{serviceFactory}.
"""

from twisted.internet.defer import gatherResults, maybeDeferred
from twisted.logger import Logger
from twisted.names import client, dns
from twisted.names.error import DomainError

from tau.interfaces import IHost, IMembers, IPubSub, IRouting, ITNSClient
from tau.services import needs
from tau.services.base import StartedService
from tau.services.auth.client import AuthClient
from tau.services.discovery import Announcer
from tau.services.framework import CommandRouter
from tau.services.seer import PROTOCOL
from tau.services.seer.commands import Commands
from tau.services.seer.dns import SeerDNSFactory, Zones, listen
from tau.services.seer.domains import ProjectDomains
from tau.services.seer.oracle import Oracle
from tau.services.seer.registry import Registry

log = Logger()


class SeerService(StartedService):
    """
    @param host: has C{setStreamHandler}, C{removeHandler}.
    @param reactor: IReactorTime, IReactorUDP, IReactorTCP.
    @param config: L{tau.services.seer.config.SeerConfig}.
    @param isMember: C{async isMember(peer) -> bool}: the nodes heard.
    @param fqdn: the network fqdn (the zone).
    @param generated: the suffix of generated project domains.
    @param routing: has C{provide(cid)}, or None: not announced in the DHT.
    @param domains: L{ProjectDomains}, or None: no project's domain is
        checked (see L{Zones}).
    @param pubsub: L{tau.interfaces.IPubSub}, or None: no gossip with the
        other seers (L{tau.services.seer.oracle}); C{isMember} then takes
        C{(peer, service)}.
    """

    def __init__(self, host, reactor, config, isMember, fqdn, generated, *, routing=None, domains=None,
                 pubsub=None):
        self.setName("seer")
        self.host = host
        self.reactor = reactor
        self.config = config
        self.registry = Registry(reactor, config.ttl, config.maxNodes)
        self.oracle = Oracle(pubsub, self.registry, isMember, host.peerID) if pubsub is not None else None
        self.commands = Commands(self.registry, isMember, self.oracle.tell if self.oracle is not None else None)
        self.zones = Zones(fqdn, generated, self.registry, config.ttl, config.maxAnswers, domains)
        self.router = CommandRouter(PROTOCOL, reactor)
        self.announcer = Announcer(routing, PROTOCOL, reactor) if routing is not None else None
        self.ports = ()
        self._installed = False

    async def _start(self):
        self.ports = await listen(self.reactor, SeerDNSFactory(self.zones, self.reactor, self.config.limits()), self.config.dnsUDP,
                                  self.config.dnsTCP)
        if not self.running:
            await self._closePorts()
            return self
        if self.oracle is not None:
            self.oracle.start()
        self.commands.define(self.router)
        self.router.install(self.host)
        self._installed = True
        if self.announcer is not None:
            self.announcer.start()
        log.info("seer serving {protocol} and DNS for {fqdn} on {udp} and {tcp}", protocol=PROTOCOL,
                 fqdn=self.zones.fqdn, udp=self.ports[0].getHost(), tcp=self.ports[1].getHost())
        return self

    def _closePorts(self):
        ports, self.ports = self.ports, ()
        return gatherResults([maybeDeferred(port.stopListening) for port in ports])

    def stopService(self):
        if self._installed:
            self.router.uninstall(self.host)
            self._installed = False
        if self.announcer is not None:
            self.announcer.stop()
        if self.oracle is not None:
            self.oracle.stop()
        if self.zones.domains is not None:
            self.zones.domains.close()
        super().stopService()
        return self._closePorts()


def zoneOf(config):
    """
    C{(fqdn, generated)} of a node config: its C{network-fqdn}
    (C{localhost} when unset) and C{domains.generated} (C{g.<fqdn>} when
    unset).
    """
    fqdn = (config.networkFqdn or "localhost").lower()
    return fqdn, (config.domains.get("generated") or f"g.{fqdn}").strip(".").lower()


def systemTXT(reactor, makeResolver=client.createResolver):
    """
    C{async txt(name) -> [text]}: TXT records through the system's
    resolvers (C{makeResolver(reactor=)}, made on the first lookup).
    """
    resolvers = []

    async def txt(name):
        if not resolvers:
            resolvers.append(makeResolver(reactor=reactor))
        try:
            answers, _, _ = await resolvers[0].lookupText(name)
        except DomainError:
            return []
        return [b"".join(a.payload.data).decode("utf-8", "replace") for a in answers if a.type == dns.TXT]

    return txt


@needs(IHost, IMembers, IRouting, IPubSub, ITNSClient)
def serviceFactory(capabilities, config, reactor):
    """
    The seer service of a node whose shape names it: it hears the nodes of
    this node's cloud, gossips with the other seers, and checks projects'
    domains with tns and auth.
    """
    host, routing = capabilities[IHost], capabilities[IRouting]
    seer = config.seer
    fqdn, generated = zoneOf(config)
    domains = ProjectDomains(generated, capabilities[ITNSClient],
                             AuthClient(host, routing), systemTXT(reactor), reactor, seer.ttl)
    return SeerService(host, reactor, seer, capabilities[IMembers].isMember, fqdn, generated, routing=routing,
                       domains=domains, pubsub=capabilities[IPubSub])
