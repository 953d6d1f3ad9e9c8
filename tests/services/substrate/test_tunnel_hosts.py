"""
The HTTP tunnel between two real hosts on loopback: a twisted.web request
at the gateway forwarded over a libp2p stream to a handler and back.
"""

import hashlib
import io

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import serverFromString
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from tau.protocols.yamuxframe import StreamReset
from tau.services.frames import TUNNEL_MAGIC
from tau.services.substrate.tunnel import encodeChunk, encodeRequest, TunnelRequest, forward, serveTunnel
from tests.hosts import addressOf, startHost

PROTOCOL = "/tau/test-tunnel/1.0.0"
MiB = 1 << 20


async def echoHandler(request, body, response):
    """
    Answer with the request's method, path and body, as it comes.
    """
    response.head(200, {"X-Method": [request.method], "X-Url": [request.url], "Content-Type": ["application/octet-stream"]})
    while True:
        data = await body.read()
        if not data:
            break
        await response.write(data)


async def bigHandler(request, body, response):
    """
    Read the whole body, answer its sha256 and 10 MiB of its own.
    """
    digest = hashlib.sha256()
    while data := await body.read():
        digest.update(data)
    response.head(200, {"X-Sha256": [digest.hexdigest()]})
    block = bytes(range(256)) * 4096  # 1 MiB
    for _ in range(10):
        await response.write(block)


class Forwarder(Resource):
    isLeaf = True

    def __init__(self, gateway, peerID):
        super().__init__()
        self.gateway = gateway
        self.peerID = peerID

    def render(self, request):
        async def go():
            stream = await self.gateway.newStream(self.peerID, [PROTOCOL])
            await forward(request, stream, reactor)

        ensureDeferred(go()).addErrback(lambda f: (request.setResponseCode(599), request.finish()))
        return NOT_DONE_YET


class TunnelHostTests(TestCase):
    timeout = 120

    async def setUpHosts(self, handler):
        self.substrate = await startHost(self)
        self.gateway = await startHost(self)
        self.served = []

        async def serve(stream):
            d = Deferred.fromCoroutine(serveTunnel(stream, handler, reactor))
            self.served.append(d)
            await d

        self.substrate.setStreamHandler(PROTOCOL, serve)
        await self.gateway.connect(addressOf(self.substrate))
        port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
            Site(Forwarder(self.gateway, self.substrate.peerID)))
        self.addCleanup(port.stopListening)
        self.url = f"http://127.0.0.1:{port.getHost().port}".encode()

    async def request(self, method, path, body=None):
        agent = Agent(reactor)
        producer = FileBodyProducer(io.BytesIO(body)) if body is not None else None
        response = await agent.request(method, self.url + path, Headers(), producer)
        return response, await readBody(response)

    async def test_echo(self):
        await self.setUpHosts(echoHandler)
        response, body = await self.request(b"POST", b"/a/b?c=1", b"hello")
        self.assertEqual(response.code, 200)
        self.assertEqual(body, b"hello")
        self.assertEqual(response.headers.getRawHeaders(b"x-url"), [b"/a/b?c=1"])
        self.assertEqual(response.headers.getRawHeaders(b"x-method"), [b"POST"])

    async def test_tenMiBEachWay(self):
        """
        10 MiB up and 10 MiB down through the tunnel, intact.
        """
        await self.setUpHosts(bigHandler)
        upload = hashlib.sha256(b"seed").digest() * (10 * MiB // 32)
        response, body = await self.request(b"PUT", b"/big", upload)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"x-sha256"), [hashlib.sha256(upload).hexdigest().encode()])
        self.assertEqual(len(body), 10 * MiB)
        self.assertEqual(body, (bytes(range(256)) * 4096) * 10)

    async def test_handlerFailsBeforeHead(self):
        async def failing(request, body, response):
            raise RuntimeError("boom")

        await self.setUpHosts(failing)
        response, body = await self.request(b"GET", b"/")
        self.assertEqual(response.code, 500)
        self.assertNotIn(b"boom", body)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    async def test_substrateStopsMidBody(self):
        """
        A substrate that resets the stream after part of its answer: the
        gateway's client sees a truncated response, not a complete one.
        """
        async def stopping(request, body, response):
            response.head(200, {"Content-Length": ["1000000"]})
            await response.write(b"x" * 1000)
            response.stream.reset()

        await self.setUpHosts(stopping)
        agent = Agent(reactor)
        response = await agent.request(b"GET", self.url + b"/")
        self.assertEqual(response.code, 200)
        failure = None
        try:
            await readBody(response)
        except Exception as e:
            failure = e
        self.assertIsNotNone(failure)

    async def test_gatewayStopsMidBody(self):
        """
        A gateway that stops in the middle of the request body: the handler's
        read raises, the substrate answers 400, and carries on serving.
        """
        seen = []

        async def reading(request, body, response):
            try:
                while await body.read():
                    pass
            except Exception as e:
                seen.append(e)
                raise

        await self.setUpHosts(reading)
        stream = await self.gateway.newStream(self.substrate.peerID, [PROTOCOL])
        stream.write(encodeRequest(TunnelRequest("POST", "/")) + encodeChunk(b"x" * 100))
        stream.closeWrite()
        answer = await stream.readToEnd(10000)
        self.assertEqual(answer[:2], TUNNEL_MAGIC)
        self.assertIn(b"\x02\x19\x01\x90", answer)  # status 400 in the CBOR head
        self.assertIn("before the end of the body", str(seen[0]))
        response, body = await self.request(b"POST", b"/", b"again")
        self.assertEqual(response.code, 200)
        self.assertEqual(len(seen), 1)

    async def test_negativeLengthAnswered400(self):
        await self.setUpHosts(echoHandler)
        stream = await self.gateway.newStream(self.substrate.peerID, [PROTOCOL])
        stream.write(TUNNEL_MAGIC + b"\x01\x00\x00" + (-5).to_bytes(8, "little", signed=True) + b"\x08")
        answer = await stream.readToEnd(10000)
        self.assertIn(b"\x02\x19\x01\x90", answer)
        self.assertIn(b"negative frame length", answer)

    async def test_hugeBodyFrameAnswered413(self):
        """
        A body frame announcing more than the limit: 413, read from its
        header alone.
        """
        async def reading(request, body, response):
            while await body.read():
                pass

        await self.setUpHosts(reading)
        stream = await self.gateway.newStream(self.substrate.peerID, [PROTOCOL])
        stream.write(encodeRequest(TunnelRequest("POST", "/")))
        stream.write(TUNNEL_MAGIC + b"\x01\x00\x00" + (1 << 40).to_bytes(8, "little") + b"\x10")
        answer = await stream.readToEnd(10000)
        self.assertIn(b"\x02\x19\x01\x9d", answer)  # status 413 in the CBOR head
        self.assertIn(b"data frame of 1099511627776 bytes, limit 1048576", answer)

    async def test_handlerHeadThenBadFrame(self):
        """
        A malformed frame after the handler answered its head: the stream is
        reset (a status can no longer be sent).
        """
        await self.setUpHosts(echoHandler)
        stream = await self.gateway.newStream(self.substrate.peerID, [PROTOCOL])
        stream.write(encodeRequest(TunnelRequest("POST", "/")))
        await stream.readSome()  # the head
        stream.write(TUNNEL_MAGIC + b"\x01\x00\x00" + (1 << 40).to_bytes(8, "little") + b"\x10")
        with self.assertRaises(StreamReset):
            await stream.readToEnd(10000)
