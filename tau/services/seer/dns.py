"""
seer's DNS: L{Zones} (which names seer answers, with which nodes) and the
twisted.names server on UDP and TCP endpoint strings.

Names, under the network fqdn C{F} and the generated-domain suffix C{G}
(C{domains.generated}, by default C{g.F}):

    F, tau.F                  -> every healthy node
    <service>.tau.F           -> the healthy nodes that announced <service>
    <anything>.G              -> healthy gateways with an address, else healthy
                                 substrates (generated project domains)
    a custom project domain   -> the same (see L{tau.services.seer.domains})

A node is healthy while its last heartbeat is less than the TTL old
(L{tau.services.seer.registry}).  Another name in the zone is NXDOMAIN; a
name outside it is REFUSED.  What is read at all, and what is answered
FORMERR, NOTIMP or dropped, is L{tau.services.seer.guard}'s: one source
address gets C{rate} queries a second (past it, UDP queries are dropped and
a TCP connection is closed); TCP connections are capped in all and per
source and closed after C{idle} seconds without a whole query, and one
whose answers are not read stops being read.
"""

import ipaddress

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.names import dns
from twisted.names.common import ResolverBase
from twisted.names.server import DNSServerFactory
from zope.interface import implementer

from tau.services.seer.guard import Limits, SourceLimit, formatError, readQuery

__all__ = ["Zones", "SeerDNSFactory", "formatError", "listen", "parseUDP"]

log = Logger()
#: the most (name kind, type) answers kept between two changes of the nodes
MAX_CACHED = 1024


class Zones(ResolverBase):
    """
    @param fqdn: the network fqdn, e.g. C{tau.example.com}.
    @param generated: the suffix of generated project domains.
    @param registry: L{tau.services.seer.registry.Registry}.
    @param ttl: the TTL of every answer, in seconds.
    @param maxAnswers: the most addresses one answer gives.
    @param domains: L{tau.services.seer.domains.ProjectDomains}: generated
        names are answered when it serves them, and so are custom names
        outside the zone; None: every generated name is answered, no
        custom one.
    """

    def __init__(self, fqdn, generated, registry, ttl, maxAnswers, domains=None):
        super().__init__()
        self.generated = "." + generated.strip(".").lower()
        self.domains = domains
        self.fqdn = fqdn.strip(".").lower()
        self.registry = registry
        self.ttl = ttl
        self.maxAnswers = maxAnswers
        self._cache = {}
        self._version = None

    def covers(self, name):
        """
        True when C{name} (text) is in seer's zone.
        """
        name = name.strip(".").lower()
        return name == self.fqdn or name.endswith("." + self.fqdn) or name.endswith(self.generated)

    def selectorOf(self, name):
        """
        What C{name} (text) stands for: C{""} every node, C{"g"} the
        gateways else substrates, C{"s:<service>"} a service's nodes; or
        None when it names nothing.
        """
        name = name.strip(".").lower()
        if name == self.fqdn or name == "tau." + self.fqdn:
            return ""
        label, _, parent = name.partition(".")
        if parent == "tau." + self.fqdn:
            return "s:" + label
        if name.endswith(self.generated) or (self.domains is not None and not self.covers(name)):
            return "g"
        return None

    def nodesFor(self, selector):
        """
        The healthy nodes of a L{selectorOf} selector: for C{"g"} the
        gateways that have an address, else the substrates.
        """
        if selector == "g":
            return [n for n in self.registry.healthy("gateway") if n.addresses] or self.registry.healthy("substrate")
        return self.registry.healthy(selector[2:] or None)

    def _payloads(self, selector, type):
        # the registry's expiry runs first: its version then says whether
        # the cached payloads still hold
        self.registry.expire()
        if self._version != self.registry.version or len(self._cache) >= MAX_CACHED:
            self._cache.clear()
            self._version = self.registry.version
        key = (selector, type)
        payloads = self._cache.get(key)
        if payloads is None:
            payloads = []
            for node in self.nodesFor(selector):
                for ip in node.addresses:
                    if ip.version == 4 and type in (dns.A, dns.ALL_RECORDS):
                        payloads.append(dns.Record_A(str(ip), self.ttl))
                    elif ip.version == 6 and type in (dns.AAAA, dns.ALL_RECORDS):
                        payloads.append(dns.Record_AAAA(str(ip), self.ttl))
            payloads = self._cache[key] = payloads[:self.maxAnswers]
        return payloads

    def _answers(self, name, selector, type):
        answers = [dns.RRHeader(name, p.TYPE, dns.IN, self.ttl, p, auth=True) for p in self._payloads(selector, type)]
        return answers, [], []

    async def _projectName(self, name, text, type):
        if not await self.domains.served(text):
            raise dns.AuthoritativeDomainError(text)
        return self._answers(name, "g", type)

    def _lookup(self, name, cls, type, timeout):
        text = name.decode("ascii", "replace").strip(".").lower()
        selector = self.selectorOf(text) if cls == dns.IN else None
        if selector is None:
            return fail(dns.AuthoritativeDomainError(text))
        if selector == "g" and self.domains is not None:
            return Deferred.fromCoroutine(self._projectName(name, text, type))
        return succeed(self._answers(name, selector, type))


class SeerDNSFactory(DNSServerFactory):
    """
    Answers from L{Zones}, REFUSED outside them, within L{Limits}.

    @param clock: IReactorTime (rates and idle connections).
    """

    def __init__(self, zones, clock, limits=Limits()):
        super().__init__(authorities=[zones])
        self.protocol = SeerStreamProtocol
        self.zones = zones
        self.clock = clock
        self.limits = limits
        self.sources = SourceLimit(clock, limits.rate, limits.burst, limits.maxSources)
        #: source host -> its open TCP connections
        self.tcpSources = {}
        #: TCP connections refused or closed for a limit
        self.tcpRefused = 0

    def allowQuery(self, message, protocol, address):
        # an empty question is FORMERR (L{handleQuery}), not REFUSED
        return True

    def messageReceived(self, message, proto, address=None):
        # an answer is never answered: no loops between servers
        if not message.answer:
            super().messageReceived(message, proto, address)

    def gotResolverError(self, failure, protocol, message, address):
        # NXDOMAIN in seer's zone is authoritative
        if not failure.check(dns.AuthoritativeDomainError):
            return super().gotResolverError(failure, protocol, message, address)
        response = self._responseFromMessage(message=message, rCode=dns.ENAME)
        response.auth = 1
        self.sendReply(protocol, response, address)

    def handleQuery(self, message, protocol, address):
        if not message.queries:
            self.sendReply(protocol, self._responseFromMessage(message=message, rCode=dns.EFORMAT), address)
            return
        name = message.queries[0].name.name.decode("ascii", "replace").strip(".").lower()
        if self.zones.covers(name):
            super().handleQuery(message, protocol, address)
        elif self.zones.domains is None:
            self._refuse(message, protocol, address)
        else:
            # a custom project domain, or REFUSED
            d = Deferred.fromCoroutine(self.zones.domains.served(name))
            d.addCallback(lambda served: super(SeerDNSFactory, self).handleQuery(message, protocol, address)
                          if served else self._refuse(message, protocol, address))
            d.addErrback(lambda f: log.failure("seer: answering {name} failed", f, name=name))

    def _refuse(self, message, protocol, address):
        self.sendReply(protocol, self._responseFromMessage(message=message, rCode=dns.EREFUSED), address)


class SeerDatagramProtocol(dns.DNSDatagramProtocol):
    """
    The UDP side: within the source's rate, a query is read as
    L{readQuery} says.
    """

    def datagramReceived(self, data, addr):
        factory = self.controller
        if not factory.sources.allow(addr[0]):
            return
        message, reply = readQuery(data, factory.limits.maxQuery)
        if reply is not None:
            self.transport.write(reply, addr)
        elif message is not None:
            factory.messageReceived(message, self, addr)


@implementer(IPushProducer)
class SeerStreamProtocol(dns.DNSProtocol):
    """
    The TCP side: L{Limits} on connections, idle time and rate; a query
    read as L{readQuery} says; reading stops while answers are not read.
    """

    _idle = None
    _counted = False

    def connectionMade(self):
        factory, limits = self.controller, self.controller.limits
        self.source = self.transport.getPeer().host
        if len(factory.connections) >= limits.maxTCP or factory.tcpSources.get(self.source, 0) >= limits.maxTCPPerSource:
            factory.tcpRefused += 1
            self.transport.abortConnection()
            return
        self._counted = True
        factory.tcpSources[self.source] = factory.tcpSources.get(self.source, 0) + 1
        super().connectionMade()
        self.transport.registerProducer(self, True)
        self._idle = factory.clock.callLater(limits.idle, self._timedOut)

    def _timedOut(self):
        self._idle = None
        self.controller.tcpRefused += 1
        self.transport.abortConnection()

    def stringReceived(self, data):
        factory = self.controller
        if not factory.sources.allow(self.source):
            factory.tcpRefused += 1
            self.transport.abortConnection()
            return
        if self._idle is not None and self._idle.active():
            self._idle.reset(factory.limits.idle)
        message, reply = readQuery(data, factory.limits.maxQuery)
        if reply is not None:
            self.sendString(reply)
        elif message is not None:
            factory.messageReceived(message, self)

    def connectionLost(self, reason):
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        if not self._counted:
            return
        self._counted = False
        factory = self.controller
        left = factory.tcpSources[self.source] - 1
        if left:
            factory.tcpSources[self.source] = left
        else:
            del factory.tcpSources[self.source]
        super().connectionLost(reason)

    # a transport whose answers pile up stops reading queries

    def pauseProducing(self):
        self.transport.pauseProducing()

    def resumeProducing(self):
        self.transport.resumeProducing()

    def stopProducing(self):
        pass


def parseUDP(text):
    """
    C{(port, interface)} of a C{udp:PORT[:interface=IP]} endpoint string.

    @raise ValueError: saying what is expected.
    """
    parts = text.split(":", 2) if isinstance(text, str) else []
    if len(parts) not in (2, 3) or parts[0] != "udp" or not parts[1].isdigit() or int(parts[1]) > 65535:
        raise ValueError(f"expected udp:PORT or udp:PORT:interface=IP, found {text!r}")
    interface = ""
    if len(parts) == 3:
        key, _, interface = parts[2].partition("=")
        try:
            ipaddress.ip_address(interface)
        except ValueError:
            key = None
        if key != "interface":
            raise ValueError(f"expected udp:PORT:interface=IP, found {text!r}")
    return int(parts[1]), interface


async def listen(reactor, factory, udp, tcp):
    """
    Listen on the endpoint strings C{udp} (C{udp:PORT:interface=IP}) and
    C{tcp}; the ports, UDP first.
    """
    port, interface = parseUDP(udp)
    udpPort = reactor.listenUDP(port, SeerDatagramProtocol(factory), interface=interface)
    try:
        tcpPort = await serverFromString(reactor, tcp).listen(factory)
    except BaseException:
        await udpPort.stopListening()
        raise
    return udpPort, tcpPort
