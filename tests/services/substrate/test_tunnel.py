"""
Taubyte's HTTP tunnel codec (tau.services.substrate.tunnel), sans-IO.
"""

import io
import struct

import cbor2
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from tau.services.frames import HEADER_SIZE
from tau.services.substrate.tunnel import (
    BODY,
    HEAD,
    MAX_HEADERS,
    REQUEST,
    TunnelDecoder,
    TunnelError,
    TunnelRequest,
    decodeHead,
    encodeChunk,
    encodeEnd,
    encodeHead,
    encodeRequest,
    forward,
    serveTunnel,
)
from tau.streams import StreamProtocol


def rawFrame(payload, channel, type=0, length=None):
    length = len(payload) if length is None else length
    return struct.pack("<2sHBqB", b"\x02\xfc", 1, type, length, channel) + payload


def requestPayload(headers=None, **extra):
    value = {1: "GET", 2: "/", 6: headers or {}}
    value.update(extra)
    return cbor2.dumps(value)


class VectorTests(SynchronousTestCase):
    """
    The spec sheet's hex vectors (specs/taubyte-streams.md section 7).
    """

    def test_bodyEnd(self):
        self.assertEqual(encodeEnd().hex(), "02fc010001000000000000000010")

    def test_head(self):
        self.assertEqual(
            encodeHead(200, {"Content-Type": ["text/plain"]}).hex(),
            "02fc0100001f0000000000000001"
            "a201a16c436f6e74656e742d54797065816a746578742f706c61696e0218c8",
        )

    def test_headDecoded(self):
        payload = bytes.fromhex("a201a16c436f6e74656e742d54797065816a746578742f706c61696e0218c8")
        self.assertEqual(decodeHead(payload), (200, {"Content-Type": ["text/plain"]}))

    def test_requestHasGoKeys(self):
        """
        The request frame carries all 15 keys go's backend reads.
        """
        frame = encodeRequest(TunnelRequest("POST", "/a?b=1", {"X-A": ["1", "2"]}, "h.example", 5))
        self.assertEqual(frame[:2], b"\x02\xfc")
        self.assertEqual(frame[13], REQUEST)
        value = cbor2.loads(frame[HEADER_SIZE:])
        self.assertEqual(sorted(value), list(range(1, 16)))
        self.assertEqual((value[1], value[2], value[6], value[7], value[10]), ("POST", "/a?b=1", {"X-A": ["1", "2"]}, 5, "h.example"))


class DecoderTests(SynchronousTestCase):
    def test_roundTrip(self):
        request = TunnelRequest("PUT", "/x", {"A": ["b"]}, "host", 3, "1.2.3.4:5")
        data = encodeRequest(request) + encodeChunk(b"abc") + encodeEnd()
        decoder = TunnelDecoder(REQUEST)
        events = [e for i in range(len(data)) for e in decoder.feed(data[i:i + 1])]
        self.assertEqual(events, [("request", request), ("chunk", b"abc"), ("end", None)])

    def test_responseRoundTrip(self):
        data = encodeHead(404, {"A": ["1"]}) + encodeChunk(b"no") + encodeEnd()
        self.assertEqual(TunnelDecoder(HEAD).feed(data), [("head", (404, {"A": ["1"]})), ("chunk", b"no"), ("end", None)])

    def assertRefused(self, decoder, data, status, words):
        e = self.assertRaises(TunnelError, decoder.feed, data)
        self.assertEqual(e.status, status)
        self.assertIn(words, str(e))

    def test_negativeLength(self):
        self.assertRefused(TunnelDecoder(REQUEST), rawFrame(b"", REQUEST, length=-1), 400, "negative")

    def test_hugeLength(self):
        """
        A body frame announcing more than the limit is refused on its
        header, before anything is buffered: 413.
        """
        decoder = TunnelDecoder(REQUEST)
        decoder.feed(encodeRequest(TunnelRequest("POST", "/")))
        self.assertRefused(decoder, rawFrame(b"", BODY, length=1 << 62), 413, "limit")

    def test_hugeLengthWithTheHead(self):
        """
        A body frame over the limit in the same bytes as the request head
        is 413 too (not 431: the head was within its limit).
        """
        decoder = TunnelDecoder(REQUEST)
        data = encodeRequest(TunnelRequest("POST", "/")) + rawFrame(b"", BODY, length=1 << 40)
        self.assertRefused(decoder, data, 413, f"data frame of {1 << 40} bytes, limit")

    def test_chunkAtLimit(self):
        decoder = TunnelDecoder(REQUEST, maxChunk=10)
        decoder.feed(encodeRequest(TunnelRequest("POST", "/")))
        self.assertEqual(decoder.feed(encodeChunk(b"x" * 10)), [("chunk", b"x" * 10)])
        self.assertRefused(decoder, encodeChunk(b"x" * 11), 413, "11 bytes, limit 10")

    def test_headAtLimit(self):
        payload = requestPayload()
        self.assertEqual(len(TunnelDecoder(REQUEST, maxHead=len(payload)).feed(rawFrame(payload, REQUEST))), 1)
        self.assertRefused(TunnelDecoder(REQUEST, maxHead=len(payload) - 1), rawFrame(payload, REQUEST), 431, "limit")

    def test_headerCountAtLimit(self):
        headers = {f"H{i}": ["v"] for i in range(MAX_HEADERS)}
        self.assertEqual(len(TunnelDecoder(REQUEST).feed(rawFrame(requestPayload(headers), REQUEST))), 1)
        headers["H0"] = ["v", "w"]
        self.assertRefused(TunnelDecoder(REQUEST), rawFrame(requestPayload(headers), REQUEST), 431, "more than 100 header values")

    def test_headerInjection(self):
        self.assertRefused(TunnelDecoder(HEAD), encodeHead(200, {"A": ["x\r\nSet-Cookie: y"]}), 400, "line break")
        self.assertRefused(TunnelDecoder(HEAD), encodeHead(200, {"A B": ["x"]}), 400, "not a token")

    def test_statusRange(self):
        self.assertEqual(TunnelDecoder(HEAD).feed(encodeHead(999, {}))[0], ("head", (999, {})))
        self.assertRefused(TunnelDecoder(HEAD), encodeHead(1000, {}), 400, "outside 100-999")
        self.assertRefused(TunnelDecoder(HEAD), encodeHead(99, {}), 400, "outside 100-999")

    def test_bodyBeforeHead(self):
        self.assertRefused(TunnelDecoder(HEAD), encodeChunk(b"x"), 400, "channel 16")

    def test_unknownChannel(self):
        decoder = TunnelDecoder(HEAD)
        decoder.feed(encodeHead(200, {}))
        self.assertRefused(decoder, rawFrame(b"x", 3), 400, "channel 3")

    def test_closeWithText(self):
        decoder = TunnelDecoder(HEAD)
        decoder.feed(encodeHead(200, {}))
        self.assertRefused(decoder, rawFrame(b"boom", BODY, type=1), 400, "boom")

    def test_frameAfterEnd(self):
        decoder = TunnelDecoder(HEAD)
        decoder.feed(encodeHead(200, {}) + encodeEnd())
        self.assertRefused(decoder, encodeChunk(b"x"), 400, "after the end")

    def test_badMagic(self):
        self.assertRefused(TunnelDecoder(HEAD), b"Status: 500\n" + b"x" * 20, 400, "bad magic")

    def test_badURL(self):
        self.assertRefused(TunnelDecoder(REQUEST), rawFrame(cbor2.dumps({1: "GET", 2: "http://x/"}), REQUEST), 400, "not a path")

    @given(st.binary(max_size=300), st.integers(1, 50))
    def test_fuzz(self, data, step):
        """
        Any bytes either decode to events or raise TunnelError with a 4xx
        status; nothing else escapes and nothing grows past the limits.
        """
        for incoming in (REQUEST, HEAD):
            decoder = TunnelDecoder(incoming, maxHead=128, maxChunk=64)
            try:
                for i in range(0, len(data), step):
                    decoder.feed(data[i:i + step])
            except TunnelError as e:
                self.assertIn(e.status, (400, 413, 431))
            self.assertLessEqual(decoder._frames.pending, 128)

    @given(st.lists(st.tuples(st.sampled_from([1, 8, 16, 3]), st.integers(0, 2), st.integers(-2, 300), st.binary(max_size=200)), max_size=6))
    def test_fuzzFrames(self, frames):
        """
        Well-formed frame headers with any channel, type, length and
        payload (random CBOR heads included): events or TunnelError only.
        """
        data = b"".join(rawFrame(payload, channel, type, length) for channel, type, length, payload in frames)
        for incoming in (REQUEST, HEAD):
            decoder = TunnelDecoder(incoming, maxHead=128, maxChunk=64)
            try:
                decoder.feed(data)
            except TunnelError as e:
                self.assertIn(e.status, (400, 413, 431))

    @given(st.lists(st.binary(max_size=40), max_size=5), st.dictionaries(st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,10}", fullmatch=True), st.lists(st.text(alphabet=st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",)), max_size=10), max_size=3), max_size=5))
    def test_fuzzRoundTrip(self, chunks, headers):
        data = encodeHead(201, headers) + b"".join(encodeChunk(c) for c in chunks) + encodeEnd()
        events = TunnelDecoder(HEAD).feed(data)
        self.assertEqual(events, [("head", (201, headers))] + [("chunk", c) for c in chunks] + [("end", None)])


def streamOn():
    """
    A L{StreamProtocol} on a StringTransport (no window: drain returns at
    once).
    """
    stream = StreamProtocol()
    stream.makeConnection(StringTransport())
    return stream


def answerOf(stream):
    """
    The events the substrate wrote on C{stream}.
    """
    return TunnelDecoder(HEAD).feed(stream.transport.value())


class ServeTimeoutTests(SynchronousTestCase):
    def test_silentGatewayAt408(self):
        """
        A gateway that sends no request for the idle timeout: 408, not one
        tick before.
        """
        clock = Clock()
        stream = streamOn()
        called = []
        d = Deferred.fromCoroutine(serveTunnel(stream, lambda *a: called.append(a), clock, idle=10))
        clock.advance(9.999)
        self.assertEqual(stream.transport.value(), b"")
        clock.advance(0.001)
        self.successResultOf(d)
        events = answerOf(stream)
        self.assertEqual(events[0][1][0], 408)
        self.assertEqual(events[-1], ("end", None))
        self.assertTrue(stream.transport.disconnecting)
        self.assertEqual(called, [])

    def test_gatewayIdleMidBody(self):
        """
        The idle timeout counts from the last bytes: a body that stops
        coming is answered 408.
        """
        clock = Clock()
        stream = streamOn()

        async def reading(request, body, response):
            while await body.read():
                pass
            response.head(200)

        d = Deferred.fromCoroutine(serveTunnel(stream, reading, clock, idle=10))
        stream.dataReceived(encodeRequest(TunnelRequest("POST", "/")))
        clock.advance(9)
        stream.dataReceived(encodeChunk(b"x"))
        clock.advance(9)
        self.assertEqual(stream.transport.value(), b"")
        clock.advance(1)
        self.successResultOf(d)
        self.assertEqual(answerOf(stream)[0][1][0], 408)


def dummyRequest(method=b"GET", uri=b"/a", body=b""):
    """
    A twisted.web DummyRequest with a body, whose producer registration
    records (DummyRequest's own loops on a pull producer).
    """
    request = DummyRequest([b"a"])
    request.method, request.uri, request.content = method, uri, io.BytesIO(body)
    request.producers = []
    request.registerProducer = lambda producer, streaming: request.producers.append(producer)
    request.unregisterProducer = lambda: request.producers.pop()
    request.lost = []
    request.loseConnection = lambda: request.lost.append(True)
    return request


class ForwardTests(SynchronousTestCase):
    def test_silentSubstrateAt504(self):
        clock = Clock()
        stream = streamOn()
        request = dummyRequest()
        d = Deferred.fromCoroutine(forward(request, stream, clock, idle=10))
        clock.advance(9.999)
        self.assertEqual(request.finished, 0)
        clock.advance(0.001)
        self.successResultOf(d)
        self.assertEqual((request.responseCode, request.finished), (504, 1))
        self.assertEqual(b"".join(request.written), b"gateway timeout\n")

    def test_malformedAnswerIs502(self):
        clock = Clock()
        stream = streamOn()
        request = dummyRequest()
        d = Deferred.fromCoroutine(forward(request, stream, clock))
        stream.dataReceived(b"Status: 500\n" + b"x" * 20)  # go's unframed error
        self.successResultOf(d)
        self.assertEqual((request.responseCode, request.finished), (502, 1))

    def test_answerForwarded(self):
        clock = Clock()
        stream = streamOn()
        request = dummyRequest(b"POST", b"/a?b", b"up")
        d = Deferred.fromCoroutine(forward(request, stream, clock))
        sent = TunnelDecoder(REQUEST).feed(stream.transport.value())
        self.assertEqual([e[0] for e in sent], ["request", "chunk", "end"])
        self.assertEqual((sent[0][1].method, sent[0][1].url, sent[1][1]), ("POST", "/a?b", b"up"))
        # half-closed with the end of the body: once the substrate closes
        # too the stream is over, and no reset frame follows the answer
        self.assertTrue(stream.transport.disconnecting)
        stream.dataReceived(encodeHead(201, {"X-A": ["1"]}) + encodeChunk(b"down") + encodeEnd())
        self.successResultOf(d)
        self.assertEqual((request.responseCode, b"".join(request.written), request.finished), (201, b"down", 1))
        self.assertEqual(request.responseHeaders.getRawHeaders(b"x-a"), [b"1"])

    def test_resetAfterTheTurn(self):
        """
        After a complete answer the stream is reset at the end of the
        reactor turn, not at once: the substrate's close read with the end
        of its answer ends the stream first, so no reset frame goes out.  A
        failed answer resets at once.
        """
        aborted = []

        def stream():
            s = streamOn()
            s.transport.abortConnection = lambda: aborted.append(s)
            return s

        clock = Clock()
        ok = stream()
        d = Deferred.fromCoroutine(forward(dummyRequest(), ok, clock))
        ok.dataReceived(encodeHead(200, {}) + encodeChunk(b"ok") + encodeEnd())
        self.successResultOf(d)
        self.assertEqual(aborted, [])
        clock.advance(0)
        self.assertEqual(aborted, [ok])

        bad = stream()
        d = Deferred.fromCoroutine(forward(dummyRequest(), bad, clock))
        bad.dataReceived(b"Status: 500\n" + b"x" * 20)
        self.successResultOf(d)
        self.assertEqual(aborted, [ok, bad])

    def test_clientBackPressure(self):
        """
        While the HTTP client does not read (the request pauses its
        producer), nothing more is written to it nor read from the stream.
        """
        clock = Clock()
        stream = streamOn()
        request = dummyRequest()
        d = Deferred.fromCoroutine(forward(request, stream, clock))
        stream.dataReceived(encodeHead(200, {}))
        request.producers[0].pauseProducing()
        stream.dataReceived(encodeChunk(b"a") + encodeChunk(b"b") + encodeEnd())
        self.assertEqual(request.written, [b"a"])
        self.assertNoResult(d)
        request.producers[0].resumeProducing()
        self.successResultOf(d)
        self.assertEqual((request.written, request.finished), ([b"a", b"b"], 1))

    def test_contentLengthKept(self):
        """
        A body longer than its Content-Length is cut and the client's
        connection dropped (the excess would read as the next response);
        exactly the announced length is forwarded.
        """
        for body, finished in [(b"abcd", 1), (b"abcde", 0)]:
            stream = streamOn()
            request = dummyRequest()
            d = Deferred.fromCoroutine(forward(request, stream, Clock()))
            stream.dataReceived(encodeHead(200, {"Content-Length": ["4"]}) + encodeChunk(body) + encodeEnd())
            self.successResultOf(d)
            self.assertEqual((request.finished, request.lost), (finished, [] if finished else [True]))
            self.assertEqual(b"".join(request.written), body if finished else b"")

    def test_hopByHopDropped(self):
        stream = streamOn()
        request = dummyRequest()
        request.requestHeaders.setRawHeaders(b"connection", [b"x-secret"])
        request.requestHeaders.setRawHeaders(b"x-kept", [b"1"])
        d = Deferred.fromCoroutine(forward(request, stream, Clock()))
        sent = TunnelDecoder(REQUEST).feed(stream.transport.value())[0][1]
        self.assertEqual(sent.headers, {"X-Kept": ["1"]})
        stream.dataReceived(encodeHead(200, {"Transfer-Encoding": ["chunked"], "X-B": ["2"]}) + encodeEnd())
        self.successResultOf(d)
        self.assertIsNone(request.responseHeaders.getRawHeaders(b"transfer-encoding"))
        self.assertEqual(request.responseHeaders.getRawHeaders(b"x-b"), [b"2"])
