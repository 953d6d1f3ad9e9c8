"""
The go-sdk C{http/client} host functions: C{newHttpClient},
C{newHttpRequest}, C{setHttpRequest{URL,Method,Body,Header}},
C{addHttpRequestHeader}, C{deleteHttpRequestHeader},
C{getHttpRequest{Header,HeaderKeys,Method}}, C{doHttpRequest},
C{readHttpResponseBody}, C{closeHttpResponseBody},
C{getHttpResponse{Header,HeaderKeys}{Size}} (the SDK has no status
getter).  The requests are made by L{tau.services.substrate.wasm.egress.HttpFetcher}
under the substrate's C{HttpClientPolicy}.

Bounds per instance: C{maxClients} clients, C{maxRequests} requests per
client, C{maxRequestBody} bytes of request body, C{maxResponseBody} bytes
of one response body and C{maxBuffered} bytes of bodies held at once
(what a call made is let go at the instance's next call); a request takes
at most C{timeout} seconds and never outlives its call.
"""

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from twisted.logger import Logger

from tau.services.substrate.wasm import errno
from tau.services.substrate.wasm.egress import Answer
from tau.services.substrate.wasm.http import canonicalKey
from tau.services.substrate.wasm.nodeabi import (
    Errno, Handles, SizedValue, answering, decodeStrings, encodeStrings, readBounded, readText, services)

log = Logger()

#: the go-sdk's method numbers (utils/convert)
METHODS = ("", "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "CONNECT")
MAX_URL = 8192
MAX_HEADER_BYTES = 64 << 10
MAX_HEADERS = 100


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
