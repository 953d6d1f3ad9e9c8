"""
What the gateway tests share: test substrates on real hosts (they answer
C{proxy-http} as a script says, then serve the HTTP tunnel), a gateway in
front of them, and curl.
"""

import hashlib

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.utils import getProcessOutputAndValue

from tau.protocols.identify import whenIdentified
from tau.services.commands import decodeCommand, encodeErrorResponse, encodeResponse
from tau.services.frames import FrameDecoder
from tau.services.framework import readFrame
from tau.services.gateway.config import GatewayConfig
from tau.services.gateway.service import makeGateway
from tau.services.substrate import NOT_SERVED, PROTOCOL
from tau.services.substrate.client import SubstrateClient
from tau.services.substrate.metrics import FunctionMetrics, WebsiteMetrics, encodeAnswer
from tau.services.substrate.tunnel import serveTunnel
from tests.hosts import addressOf, startHost


async def hello(request, body, response):
    """
    Answer C{hello from NAME} (set on the handler) with the request's
    method and path in headers.
    """
    while await body.read():
        pass
    response.head(200, {"Content-Type": ["text/plain"], "X-Path": [request.url], "X-Host": [request.host]})
    await response.write(b"hello\n")


async def digest(request, body, response):
    """
    Read the whole body, answer its sha256 in a header and C{X-Size}
    bytes of a known pattern.
    """
    h = hashlib.sha256()
    size = 0
    while data := await body.read():
        h.update(data)
        size += len(data)
    want = int(request.headers.get("X-Size", ["0"])[0])
    response.head(200, {"X-Sha256": [h.hexdigest()], "X-Received": [str(size)],
                        "Content-Length": [str(want)]})
    block = pattern(1 << 20)
    sent = 0
    while sent < want:
        part = block[: min(len(block), want - sent)]
        await response.write(part)
        sent += len(part)


def pattern(size):
    return (bytes(range(256)) * (size // 256 + 1))[:size]


class TestSubstrate:
    """
    A host answering C{proxy-http} with C{answer(body)}: a metrics object
    (then the tunnel to C{handler}), C{"not-served"}, C{"reset"} (the
    stream reset before answering), C{"silent"} (never answers), or
    C{"reset-tunnel"} (offers, then resets the stream once the tunnel
    request came).
    """

    def __init__(self, answer, handler=hello):
        self.answer = answer
        self.handler = handler
        self.asked = []
        self.served = 0
        self.streams = []
        self.resetTunnels = 0

    async def start(self, case):
        self.host = await startHost(case)
        self.host.setStreamHandler(PROTOCOL, self.serve, maxInbound=1000)
        return self

    async def serve(self, stream):
        self.streams.append(stream)
        frame = await readFrame(stream, FrameDecoder(1 << 16))
        name, body = decodeCommand(frame.payload)
        self.asked.append((name, body))
        what = self.answer(body) if callable(self.answer) else self.answer
        if what == "not-served":
            stream.write(encodeErrorResponse(f"{NOT_SERVED} {body['host']}{body['path']}"))
            stream.closeWrite()
            return
        if what == "reset":
            stream.reset()
            return
        if what == "silent":
            await Deferred()  # cancelled when the stream goes
            return
        if what == "reset-tunnel":
            stream.write(encodeResponse(encodeAnswer(FunctionMetrics(1.0))))
            await stream.readSome()
            self.resetTunnels += 1
            stream.reset()
            return
        stream.write(encodeResponse(encodeAnswer(what)))

        async def counted(request, body, response):
            self.served += 1
            await self.handler(request, body, response)

        await serveTunnel(stream, counted, reactor)


async def connect(client, *servers):
    for server in servers:
        conn = await client.connect(addressOf(server.host))
        await whenIdentified(client, conn)


async def cloud(case, *substrates, fetch=None, **config):
    """
    C{(gateway service, its host, base URL)}: a started gateway on
    127.0.0.1:0 connected to the started C{substrates}.
    """
    for s in substrates:
        await s.start(case)
    host = await startHost(case)
    await connect(host, *substrates)
    settings = {"substrate-timeout": 2, "idle-timeout": 5}
    settings.update(config)
    gatewayConfig = GatewayConfig.check("test", settings)
    service = makeGateway(host, None, reactor, gatewayConfig,
                          substrates=SubstrateClient(host, None, fanout=gatewayConfig.substrateFanout,
                                                     timeout=gatewayConfig.substrateTimeout,
                                                     grace=gatewayConfig.substrateGrace),
                          fetchCertificate=fetch)
    service.startService()
    case.addCleanup(lambda: service.stopService() if service.running else None)
    await service.whenReady()
    return service, host, f"http://127.0.0.1:{service.ports()['http'].getHost().port}"


async def curl(*args, stdin=None):
    """
    C{(status, headers {lower name: value}, body)} of one curl call
    (C{-s -i}).
    """
    out, err, code = await getProcessOutputAndValue("curl", ["-s", "-S", "-D", "-", "--max-time", "30", *args],
                                                    reactor=reactor)
    if code != 0:
        raise AssertionError(f"curl {args} failed ({code}): {err.decode(errors='replace')}")
    head, _, body = out.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100"):
        head, _, body = body.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


__all__ = ["FunctionMetrics", "WebsiteMetrics", "TestSubstrate", "cloud", "curl", "digest", "hello", "pattern"]
