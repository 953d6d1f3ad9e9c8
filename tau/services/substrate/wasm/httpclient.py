"""
Outbound HTTP for functions: the go-sdk C{http/client} host functions
(C{newHttpClient}, C{newHttpRequest}, C{setHttpRequest{URL,Method,Body,
Header}}, C{addHttpRequestHeader}, C{deleteHttpRequestHeader},
C{getHttpRequest{Header,HeaderKeys,Method}}, C{doHttpRequest},
C{readHttpResponseBody}, C{closeHttpResponseBody},
C{getHttpResponse{Header,HeaderKeys}{Size}}; the SDK has no status getter),
and L{HttpFetcher}, which makes the requests with Twisted's C{Agent}.

Where a function may connect is L{HttpClientPolicy}'s call: a name is
resolved first, every address is checked, and the connection goes to a
checked address (so a name that resolves again to another address later
changes nothing).  Loopback, private (RFC 1918, ULA), link-local (cloud
metadata at 169.254.169.254 included), unspecified, multicast, CGNAT,
documentation and other reserved addresses are refused, also when an IPv6
address embeds one (IPv4-mapped, NAT64, 6to4), unless the operator allows
a network that holds them (substrate config C{http-client-allow: [CIDR...]}).
Redirects (at most C{maxRedirects}) go through the same check.

Bounds per instance: C{maxClients} clients, C{maxRequests} requests per
client, C{maxRequestBody} bytes of request body, C{maxResponseBody} bytes
of one response body and C{maxBuffered} bytes of bodies held at once; a
request takes at most C{timeout} seconds and never outlives its call.
"""

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError, DNSLookupError
from twisted.internet.interfaces import IResolutionReceiver, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool, RedirectAgent, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from tau.services.substrate.wasm import errno
from tau.services.substrate.wasm.http import canonicalKey
from tau.services.substrate.wasm.nodeabi import (
    Errno, Handles, SizedValue, answering, decodeStrings, encodeStrings, readBounded, readText, services)

log = Logger()

MIB = 1 << 20
#: the go-sdk's method numbers (utils/convert)
METHODS = ("", "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "CONNECT")
MAX_URL = 8192
MAX_HEADER_BYTES = 64 << 10
MAX_HEADERS = 100
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
            raise Refused(f"{self._host}: no address a function may connect to ({', '.join(addresses) or 'none'})")
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


@dataclass
class Request:
    method: str = "GET"
    url: str = ""
    headers: list = field(default_factory=list)
    body: bytes = None
    answer: Answer = None
    offset: int = 0

    def values(self, key):
        key = canonicalKey(key)
        return [v for k, v in self.headers if k == key]

    def buffered(self):
        return len(self.body or b"") + (len(self.answer.body) if self.answer is not None else 0)


def _values(headers, key):
    key = canonicalKey(key)
    return [v for k, v in headers if k == key]


def _keys(headers):
    return list(dict.fromkeys(k for k, _ in headers))


class HttpClientAbi:
    """
    The HTTP-client host functions of one instance.
    """

    def __init__(self, instance):
        self._instance = instance
        self._clients = None
        self._sized = SizedValue(instance)

    def _policy(self):
        node = services(self._instance, errno.HTTP_REQUEST_FAILED)
        return node.httpPolicy

    def _table(self):
        if self._clients is None:
            self._clients = Handles(self._policy().maxClients, self._instance)
        return self._clients

    def _request(self, clientId, requestId):
        if self._clients is None:
            raise Errno(errno.CLIENT_NOT_FOUND)
        client = self._clients.get(clientId, errno.CLIENT_NOT_FOUND)
        return client.get(requestId, errno.ADDRESS_OUT_OF_MEMORY)

    def _answer(self, clientId, requestId):
        answer = self._request(clientId, requestId).answer
        if answer is None:
            raise Errno(errno.NIL_ADDRESS)
        return answer

    def _buffered(self):
        return sum(r.buffered() for c in (self._clients.values() if self._clients else ()) for r in c.values())

    @answering
    def newHttpClient(self, mem, clientIdPtr):
        table = self._table()
        return table.giveId(mem, clientIdPtr, Handles(self._policy().maxRequests, self._instance), errno.HTTP_REQUEST_FAILED)

    @answering
    def newHttpRequest(self, mem, clientId, requestIdPtr):
        if self._clients is None:
            raise Errno(errno.CLIENT_NOT_FOUND)
        client = self._clients.get(clientId, errno.CLIENT_NOT_FOUND)
        return client.giveId(mem, requestIdPtr, Request(), errno.NEW_REQUEST_FAILED)

    @answering
    def setHttpRequestURL(self, mem, clientId, requestId, urlPtr, urlLen):
        request = self._request(clientId, requestId)
        url = readText(mem, urlPtr, urlLen, MAX_URL, errno.PARSE_URL_FAILED)
        try:
            urlsplit(url)
        except ValueError:
            return errno.PARSE_URL_FAILED
        request.url = url
        return errno.NONE

    @answering
    def setHttpRequestMethod(self, mem, clientId, requestId, method):
        request = self._request(clientId, requestId)
        if not 0 < method < len(METHODS):
            return errno.INVALID_METHOD
        request.method = METHODS[method]
        return errno.NONE

    @answering
    def getHttpRequestMethod(self, mem, clientId, requestId, methodPtr):
        request = self._request(clientId, requestId)
        mem.writeU32(methodPtr, METHODS.index(request.method))
        return errno.NONE

    @answering
    def setHttpRequestBody(self, mem, clientId, requestId, bodyPtr, bodySize):
        request = self._request(clientId, requestId)
        policy = self._policy()
        limit = min(policy.maxRequestBody, policy.maxBuffered - self._buffered() + len(request.body or b""))
        request.body = readBounded(mem, bodyPtr, bodySize, max(0, limit), errno.HTTP_WRITE_BODY_FAILED)
        return errno.NONE

    def _headerArgs(self, mem, keyPtr, keyLen, valPtr, valLen):
        key = readText(mem, keyPtr, keyLen, MAX_HEADER_BYTES, errno.ADDRESS_OUT_OF_MEMORY)
        values = decodeStrings(readBounded(mem, valPtr, valLen, MAX_HEADER_BYTES, errno.ADDRESS_OUT_OF_MEMORY))
        return canonicalKey(key), values

    def _checkHeaders(self, headers):
        if len(headers) > MAX_HEADERS or sum(len(k) + len(v) for k, v in headers) > MAX_HEADER_BYTES:
            raise Errno(errno.NEW_REQUEST_FAILED)
        for k, v in headers:
            if any(c in k + v for c in "\r\n\0") or not k:
                raise Errno(errno.NEW_REQUEST_FAILED)
        return headers

    @answering
    def setHttpRequestHeader(self, mem, clientId, requestId, keyPtr, keyLen, valPtr, valLen):
        request = self._request(clientId, requestId)
        key, values = self._headerArgs(mem, keyPtr, keyLen, valPtr, valLen)
        kept = [(k, v) for k, v in request.headers if k != key]
        request.headers = self._checkHeaders(kept + [(key, v) for v in values])
        return errno.NONE

    @answering
    def addHttpRequestHeader(self, mem, clientId, requestId, keyPtr, keyLen, valPtr, valLen):
        request = self._request(clientId, requestId)
        key, values = self._headerArgs(mem, keyPtr, keyLen, valPtr, valLen)
        request.headers = self._checkHeaders(request.headers + [(key, v) for v in values])
        return errno.NONE

    @answering
    def deleteHttpRequestHeader(self, mem, clientId, requestId, keyPtr, keyLen):
        request = self._request(clientId, requestId)
        key = canonicalKey(readText(mem, keyPtr, keyLen, MAX_HEADER_BYTES, errno.ADDRESS_OUT_OF_MEMORY))
        request.headers = [(k, v) for k, v in request.headers if k != key]
        return errno.NONE

    def _headerValue(self, mem, which, clientId, requestId, keyPtr, keyLen):
        key = readText(mem, keyPtr, keyLen, MAX_HEADER_BYTES, errno.ADDRESS_OUT_OF_MEMORY)
        return (which, clientId, requestId, key), lambda: encodeStrings(_values(self._headers(which, clientId, requestId), key))

    def _headers(self, which, clientId, requestId):
        if which == "request":
            return self._request(clientId, requestId).headers
        return self._answer(clientId, requestId).headers

    def _headerFns(self, which):
        def size(mem, clientId, requestId, keyPtr, keyLen, sizePtr):
            key, compute = self._headerValue(mem, which, clientId, requestId, keyPtr, keyLen)
            return self._sized.size(mem, sizePtr, key, compute)

        def value(mem, clientId, requestId, keyPtr, keyLen, bufPtr):
            key, compute = self._headerValue(mem, which, clientId, requestId, keyPtr, keyLen)
            return self._sized.write(mem, bufPtr, key, compute)

        def keysSize(mem, clientId, requestId, sizePtr):
            return self._sized.size(mem, sizePtr, (which, "keys", clientId, requestId),
                                    lambda: encodeStrings(_keys(self._headers(which, clientId, requestId))))

        def keys(mem, clientId, requestId, bufPtr, bufSize):
            return self._sized.write(mem, bufPtr, (which, "keys", clientId, requestId),
                                     lambda: encodeStrings(_keys(self._headers(which, clientId, requestId))))

        name = "Request" if which == "request" else "Response"
        return [
            (f"getHttp{name}HeaderSize", 5, True, answering(size)),
            (f"getHttp{name}Header", 5, True, answering(value)),
            (f"getHttp{name}HeaderKeysSize", 3, True, answering(keysSize)),
            (f"getHttp{name}HeaderKeys", 4, True, answering(keys)),
        ]

    @answering
    def doHttpRequest(self, mem, clientId, requestId):
        request = self._request(clientId, requestId)
        node = services(self._instance, errno.HTTP_REQUEST_FAILED)
        policy = node.httpPolicy
        request.answer = None
        limit = min(policy.maxResponseBody, policy.maxBuffered - self._buffered())
        if limit < 0 or not request.url:
            return errno.HTTP_REQUEST_FAILED
        try:
            request.answer = node.wait(self._instance, node.http.fetch, request.method, request.url,
                                       request.headers, request.body, limit, timeout=policy.timeout)
        except Exception as e:
            log.info("a function's HTTP request to {url} failed: {error}", url=request.url[:200], error=repr(e))
            return errno.HTTP_REQUEST_FAILED
        request.offset = 0
        return errno.NONE

    @answering
    def readHttpResponseBody(self, mem, clientId, requestId, bufPtr, bufSize, countPtr):
        request = self._request(clientId, requestId)
        answer = self._answer(clientId, requestId)
        mem.check(bufPtr, bufSize)
        data = answer.body[request.offset:request.offset + bufSize]
        if not data:
            mem.writeU32(countPtr, 0)
            return errno.END_OF_BODY
        mem.write(bufPtr, data)
        request.offset += len(data)
        mem.writeU32(countPtr, len(data))
        return errno.NONE

    @answering
    def closeHttpResponseBody(self, mem, clientId, requestId):
        request = self._request(clientId, requestId)
        self._answer(clientId, requestId)
        # the body is dropped (it no longer counts as held), the headers stay
        request.answer = Answer(request.answer.status, request.answer.headers, b"")
        request.offset = 0
        return errno.NONE

    def functions(self):
        return [
            ("newHttpClient", 1, True, self.newHttpClient),
            ("newHttpRequest", 2, True, self.newHttpRequest),
            ("setHttpRequestURL", 4, True, self.setHttpRequestURL),
            ("setHttpRequestMethod", 3, True, self.setHttpRequestMethod),
            ("getHttpRequestMethod", 3, True, self.getHttpRequestMethod),
            ("setHttpRequestBody", 4, True, self.setHttpRequestBody),
            ("setHttpRequestHeader", 6, True, self.setHttpRequestHeader),
            ("addHttpRequestHeader", 6, True, self.addHttpRequestHeader),
            ("deleteHttpRequestHeader", 4, True, self.deleteHttpRequestHeader),
            ("doHttpRequest", 2, True, self.doHttpRequest),
            ("readHttpResponseBody", 5, True, self.readHttpResponseBody),
            ("closeHttpResponseBody", 2, True, self.closeHttpResponseBody),
        ] + self._headerFns("request") + self._headerFns("response")


def httpClientFunctions(instance):
    return HttpClientAbi(instance).functions()
