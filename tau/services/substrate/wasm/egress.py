"""
Where a function's outbound HTTP may go, and the requests themselves:
L{HttpClientPolicy} (which addresses a function may connect to) and
L{HttpFetcher} (Twisted's C{Agent} over L{CheckedEndpoint}s, on the
reactor).

A name is resolved first, every address is checked, and the connection
goes to a checked address (so a name that resolves again to another
address later changes nothing).  Loopback, private (RFC 1918, ULA),
link-local (cloud metadata at 169.254.169.254 included), unspecified,
multicast, CGNAT, documentation and other reserved addresses are refused,
also when an IPv6 address embeds one (IPv4-mapped, NAT64, 6to4, Teredo),
unless the operator allows a network that holds them (substrate config
C{http-client-allow: [CIDR...]}).  Redirects (at most C{maxRedirects}) go
through the same check; HTTPS is checked against the name.
"""

import ipaddress
from dataclasses import dataclass

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError, DNSLookupError
from twisted.internet.interfaces import IResolutionReceiver, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool, RedirectAgent, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from tau.services.substrate.wasm.http import canonicalKey

MIB = 1 << 20
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Refused(ConnectError):
    """
    The policy refuses every address of the host.
    """


class ResponseTooLarge(Exception):
    pass


def _embedded(ip):
    """
    The IPv4 address an IPv6 address stands for, or None.
    """
    if ip.version != 6:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


class HttpClientPolicy:
    """
    @param allow: networks (CIDR strings or C{ip_network}s) a function may
        reach although they are not public.

    @ivar maxClients: clients one instance holds; C{maxRequests}: requests
        one client holds.
    @ivar maxRequestBody: bytes of one request body; C{maxResponseBody} of
        one response body; C{maxBuffered}: bodies one instance holds.
    @ivar maxRedirects: redirects followed.
    @ivar timeout: seconds one request takes at most (and never past its
        call's deadline); C{connectTimeout}: one connection attempt.
    """

    maxClients = 8
    maxRequests = 32
    maxRequestBody = 4 * MIB
    maxResponseBody = 4 * MIB
    maxBuffered = 16 * MIB
    maxRedirects = 10
    timeout = 30.0
    connectTimeout = 10.0

    def __init__(self, allow=()):
        self.allow = tuple(ipaddress.ip_network(n, strict=False) if isinstance(n, str) else n for n in allow)

    @classmethod
    def fromConfig(cls, cidrs, where="substrate.http-client-allow"):
        """
        The policy of a config list of CIDRs.

        @raise ValueError: naming C{where} and the bad entry.
        """
        if not isinstance(cidrs, (list, tuple)):
            raise ValueError(f"{where}: expected a list of CIDRs (like 10.1.0.0/16)")
        networks = []
        for n in cidrs:
            try:
                networks.append(ipaddress.ip_network(str(n), strict=True))
            except ValueError as e:
                raise ValueError(f"{where}: {n!r} is not a CIDR: {e}") from None
        return cls(networks)

    def _allowed(self, ip):
        return any(ip.version == n.version and ip in n for n in self.allow)

    def permits(self, address):
        """
        Whether a function may connect to C{address} (text or an
        C{ip_address}).
        """
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if self._allowed(ip):
            return True
        inner = _embedded(ip)
        if inner is not None:
            return self._allowed(inner) or (inner.is_global and not inner.is_multicast)
        return ip.is_global and not ip.is_multicast


@implementer(IResolutionReceiver)
class _Addresses:
    def __init__(self):
        self.addresses = []
        self.done = Deferred()

    def resolutionBegan(self, resolution):
        pass

    def addressResolved(self, address):
        self.addresses.append(address.host)

    def resolutionComplete(self):
        self.done.callback(self.addresses)


@implementer(IStreamClientEndpoint)
class CheckedEndpoint:
    """
    Connects to the first address of C{host} the policy permits; none is
    L{Refused} without any connection attempt.
    """

    def __init__(self, fetcher, scheme, host, port):
        self._fetcher = fetcher
        self._scheme = scheme
        self._host = host
        self._port = port

    def connect(self, factory):
        return Deferred.fromCoroutine(self._connect(factory))

    async def _connect(self, factory):
        fetcher = self._fetcher
        addresses = await fetcher.addresses(self._host)
        permitted = [a for a in addresses if fetcher.policy.permits(a)]
        if not permitted:
            raise Refused(string=f"{self._host}: no address a function may connect to ({', '.join(addresses) or 'none'})")
        error = None
        for address in permitted[:4]:
            ip = ipaddress.ip_address(address)
            kind = TCP4ClientEndpoint if ip.version == 4 else TCP6ClientEndpoint
            endpoint = kind(fetcher.reactor, address, self._port, timeout=fetcher.policy.connectTimeout)
            if self._scheme == b"https":
                creator = fetcher.tlsPolicy.creatorForNetloc(self._host.encode("idna"), self._port)
                endpoint = wrapClientTLS(creator, endpoint)
            try:
                return await endpoint.connect(factory)
            except ConnectError as e:
                error = e
        raise error


@implementer(IAgentEndpointFactory)
class _Endpoints:
    def __init__(self, fetcher):
        self._fetcher = fetcher

    def endpointForURI(self, uri):
        if uri.scheme not in (b"http", b"https"):
            raise ConnectError(f"scheme {uri.scheme!r} is not http or https")
        return CheckedEndpoint(self._fetcher, uri.scheme, uri.host.decode("ascii"), uri.port)


@implementer(IBodyProducer)
class _Bytes:
    def __init__(self, data):
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer):
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


class _Collect(Protocol):
    """
    A response body, at most C{limit} bytes (more aborts the connection).
    """

    def __init__(self, limit):
        self._limit = limit
        self._parts = []
        self._size = 0
        self.done = Deferred(lambda d: self.transport.stopProducing())

    def dataReceived(self, data):
        if self.done.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            self.transport.stopProducing()
            self.done.errback(ResponseTooLarge(f"a response body over {self._limit} bytes"))
            return
        self._parts.append(data)

    def connectionLost(self, reason):
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self._parts))
        else:
            self.done.errback(reason)


class _Discard(Protocol):
    def connectionMade(self):
        self.transport.stopProducing()


@dataclass
class Answer:
    status: int
    headers: list
    body: bytes


class HttpFetcher:
    """
    Makes a function's requests on the reactor, under a policy.
    """

    def __init__(self, reactor, policy, *, resolver=None, tlsPolicy=None):
        self.reactor = reactor
        self.policy = policy
        self._resolver = resolver
        self.tlsPolicy = tlsPolicy if tlsPolicy is not None else BrowserLikePolicyForHTTPS()

    async def addresses(self, host):
        """
        The addresses of C{host} (an address is its own).
        """
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        resolver = self._resolver if self._resolver is not None else self.reactor.nameResolver
        receiver = _Addresses()
        resolver.resolveHostName(receiver, host, 0)
        found = await receiver.done
        if not found:
            raise DNSLookupError(host)
        return list(dict.fromkeys(found))

    async def fetch(self, method, url, headers, body, limit):
        """
        C{method url} with C{headers} (C{[(name, value)]}) and C{body}; its
        L{Answer}, the body at most C{limit} bytes.
        """
        pool = HTTPConnectionPool(self.reactor, persistent=False)
        agent = RedirectAgent(Agent.usingEndpointFactory(self.reactor, _Endpoints(self), pool=pool),
                              redirectLimit=self.policy.maxRedirects)
        raw = Headers()
        for name, value in headers:
            raw.addRawHeader(name.encode("utf-8", "surrogateescape"), value.encode("utf-8", "surrogateescape"))
        response = await agent.request(method.encode("ascii"), url.encode("utf-8", "surrogateescape"), raw,
                                       _Bytes(body) if body is not None else None)
        if response.length is not UNKNOWN_LENGTH and response.length > limit:
            response.deliverBody(_Discard())
            raise ResponseTooLarge(f"a response body of {response.length} bytes, over {limit}")
        collect = _Collect(limit)
        response.deliverBody(collect)
        data = await collect.done
        answered = []
        for name, values in response.headers.getAllRawHeaders():
            key = canonicalKey(name.decode("latin-1"))
            answered += [(key, v.decode("latin-1")) for v in values]
        return Answer(response.code, answered, data)
