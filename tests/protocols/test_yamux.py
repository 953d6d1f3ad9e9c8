"""
Tests for L{tau.protocols.yamux} and L{tau.protocols.yamuxframe}.
"""

from io import BytesIO

from hypothesis import given, strategies as st
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost, TimeoutError
from twisted.internet.interfaces import (
    IConsumer,
    IHalfCloseableProtocol,
    IPushProducer,
    ITransport,
)
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tau.protocols import multistream
from tau.protocols.yamux import (
    SessionClosed,
    SessionGoingAway,
    StreamLimitExceeded,
    StreamReset,
    YamuxConfig,
    YamuxSession,
)
from tau.protocols.yamuxframe import (
    FLAG_ACK,
    FLAG_FIN,
    FLAG_RST,
    FLAG_SYN,
    INITIAL_WINDOW,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    FrameDecoder,
    YamuxProtocolError,
    dataFrame,
    encodeHeader,
    goAwayFrame,
    pingFrame,
    windowUpdateFrame,
)
from tests.protocols.test_varint import chunked

KiB = 1024
NO_KEEPALIVE = YamuxConfig(keepAliveInterval=None)


class FrameRecorder:
    """
    An L{IFrameHandler} collecting whole frames as tuples
    C{(type, flags, streamID, length, payload)}.
    """

    def __init__(self) -> None:
        self.frames: list[tuple] = []
        self._payload: list[bytes] = []

    def frameReceived(self, type, flags, streamID, length):
        if type == TYPE_DATA:
            self._current = (type, flags, streamID, length)
            self._payload = []
        else:
            self.frames.append((type, flags, streamID, length, b""))

    def payloadReceived(self, streamID, data):
        assert data
        self._payload.append(data)

    def payloadFinished(self, flags, streamID):
        self.frames.append(self._current + (b"".join(self._payload),))


def parseFrames(data: bytes) -> list[tuple]:
    recorder = FrameRecorder()
    FrameDecoder(recorder, 2**32).feed(data)
    return recorder.frames


class Recorder(Protocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.events: list[str] = []
        self.lostReason: Failure | None = None

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    def connectionMade(self) -> None:
        self.events.append("made")

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Failure) -> None:
        self.events.append("lost")
        self.lostReason = reason


@implementer(IHalfCloseableProtocol)
class HalfCloseRecorder(Recorder):
    def readConnectionLost(self) -> None:
        self.events.append("readLost")

    def writeConnectionLost(self) -> None:
        self.events.append("writeLost")


@implementer(IHalfCloseableProtocol)
class EchoUntilEOF(Protocol):
    """
    Echoes everything, and half-closes once the peer did.
    """

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass


@implementer(IPushProducer)
class Producer:
    def __init__(self) -> None:
        self.state = "producing"

    def pauseProducing(self) -> None:
        self.state = "paused"

    def resumeProducing(self) -> None:
        self.state = "producing"

    def stopProducing(self) -> None:
        self.state = "stopped"


# -- frame codec -------------------------------------------------------------


class FrameCodecTests(SynchronousTestCase):
    def test_synVector(self) -> None:
        """
        go and js open streams with C{WindowUpdate SYN len=0}.
        """
        self.assertEqual(
            windowUpdateFrame(FLAG_SYN, 1, 0).hex(), "000100010000000100000000"
        )

    def test_encodings(self) -> None:
        self.assertEqual(dataFrame(FLAG_FIN, 3, b"hi").hex(), "000000040000000300000002" + "6869")
        self.assertEqual(pingFrame(FLAG_ACK, 7).hex(), "000200020000000000000007")
        self.assertEqual(goAwayFrame(1).hex(), "000300000000000000000001")
        self.assertEqual(encodeHeader(TYPE_WINDOW_UPDATE, FLAG_RST, 2, 5).hex(),
                         "000100080000000200000005")

    def test_decode(self) -> None:
        wire = (windowUpdateFrame(FLAG_SYN, 1, 0) + dataFrame(0, 1, b"abc")
                + dataFrame(FLAG_FIN, 1, b"") + pingFrame(FLAG_SYN, 9) + goAwayFrame(2))
        self.assertEqual(parseFrames(wire), [
            (TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0, b""),
            (TYPE_DATA, 0, 1, 3, b"abc"),
            (TYPE_DATA, FLAG_FIN, 1, 0, b""),
            (TYPE_PING, FLAG_SYN, 0, 9, b""),
            (TYPE_GO_AWAY, 0, 0, 2, b""),
        ])

    def test_payloadNotReassembled(self) -> None:
        """
        A Data payload is handed over in the chunks it arrived in, and a
        chunk holding only payload is passed on as is (no copy).
        """
        recorder = FrameRecorder()
        decoder = FrameDecoder(recorder, 2**20)
        decoder.feed(encodeHeader(TYPE_DATA, 0, 1, 200000))
        chunk = b"x" * 100000
        decoder.feed(chunk)
        self.assertIs(recorder._payload[0], chunk)
        decoder.feed(chunk)
        self.assertEqual(recorder.frames, [(TYPE_DATA, 0, 1, 200000, chunk * 2)])

    def test_badVersion(self) -> None:
        self.assertRaises(YamuxProtocolError, parseFrames, b"\x01" + b"\x00" * 11)

    def test_badType(self) -> None:
        self.assertRaises(YamuxProtocolError, parseFrames, encodeHeader(4, 0, 0, 0))

    def test_oversizedData(self) -> None:
        decoder = FrameDecoder(FrameRecorder(), 1000)
        self.assertRaises(YamuxProtocolError, decoder.feed, encodeHeader(TYPE_DATA, 0, 1, 1001))
        self.assertRaises(YamuxProtocolError, decoder.feed, b"")

    def test_stop(self) -> None:
        recorder = FrameRecorder()
        decoder = FrameDecoder(recorder, 100)
        decoder.stop()
        decoder.feed(pingFrame(FLAG_SYN, 1))
        self.assertEqual(recorder.frames, [])

    @given(
        st.lists(
            st.tuples(
                st.sampled_from([TYPE_DATA, TYPE_WINDOW_UPDATE, TYPE_PING, TYPE_GO_AWAY]),
                st.integers(0, 15),
                st.integers(0, 2**32 - 1),
                st.binary(max_size=100),
                st.integers(0, 2**32 - 1),
            ),
            max_size=8,
        ),
        st.lists(st.integers(0, 2000), max_size=6),
    )
    def test_anyChunking(self, frames, cuts) -> None:
        """
        However the bytes are cut, the same frames come out.
        """
        expected, wire = [], b""
        for type, flags, sid, payload, length in frames:
            if type == TYPE_DATA:
                wire += dataFrame(flags, sid, payload)
                expected.append((type, flags, sid, len(payload), payload))
            else:
                wire += encodeHeader(type, flags, sid, length)
                expected.append((type, flags, sid, length, b""))
        recorder = FrameRecorder()
        decoder = FrameDecoder(recorder, 100)
        for piece in chunked(wire, cuts):
            decoder.feed(piece)
        self.assertEqual(recorder.frames, expected)

    @given(st.lists(st.binary(max_size=64), max_size=8))
    def test_garbage(self, pieces) -> None:
        decoder = FrameDecoder(FrameRecorder(), 64)
        try:
            for piece in pieces:
                decoder.feed(piece)
        except YamuxProtocolError:
            pass


# -- one session on a StringTransport ----------------------------------------


class SessionTestsMixin:
    def makeSession(self, isClient=True, config=NO_KEEPALIVE, onStream=None):
        self.clock = Clock()
        self.accepted = []

        def accept(stream):
            self.accepted.append(stream)
            if onStream is not None:
                onStream(stream)

        self.session = YamuxSession(isClient, self.clock, accept, config)
        self.transport = StringTransport()
        self.session.makeConnection(self.transport)
        return self.session

    def written(self) -> list[tuple]:
        frames = parseFrames(self.transport.value())
        self.transport.clear()
        return frames

    def assertProtocolError(self, wire: bytes, reason: str) -> None:
        stream = self.session.openStream()
        app = Recorder()
        stream.setProtocol(app)
        self.transport.clear()
        with capturedLogs() as events:
            self.session.dataReceived(wire)
        self.assertEqual(self.written(), [(TYPE_GO_AWAY, 0, 0, 1, b"")])
        self.assertTrue(self.transport.disconnecting)
        self.assertIsInstance(app.lostReason.value, ConnectionLost)
        self.assertTrue(
            any(reason in str(e.get("reason", "")) for e in events),
            [e.get("reason") for e in events],
        )
        self.assertRaises(SessionClosed, self.session.openStream)
        # Nothing more is processed.
        self.session.dataReceived(pingFrame(FLAG_SYN, 1))
        self.assertEqual(self.written(), [])


class SessionTests(SessionTestsMixin, SynchronousTestCase):
    def test_constructorDoesNothing(self) -> None:
        clock = Clock()
        YamuxSession(True, clock, lambda s: None)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_registersAsProducer(self) -> None:
        self.makeSession()
        self.assertIs(self.transport.producer, self.session)
        self.assertTrue(self.transport.streaming)

    def test_openStreamClient(self) -> None:
        self.makeSession(isClient=True)
        s1 = self.session.openStream()
        s2 = self.session.openStream()
        self.assertEqual((s1.streamID, s2.streamID), (1, 3))
        self.assertEqual(self.transport.value(),
                         windowUpdateFrame(FLAG_SYN, 1, 0) + windowUpdateFrame(FLAG_SYN, 3, 0))

    def test_openStreamServer(self) -> None:
        self.makeSession(isClient=False)
        self.assertEqual(self.session.openStream().streamID, 2)

    def test_largerInitialWindowAnnounced(self) -> None:
        self.makeSession(config=YamuxConfig(keepAliveInterval=None, initialWindow=1024 * KiB))
        self.session.openStream()
        self.assertEqual(self.written(), [(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 768 * KiB, b"")])

    def test_streamInterfaces(self) -> None:
        self.makeSession()
        stream = self.session.openStream()
        for iface in (ITransport, IPushProducer, IConsumer):
            self.assertTrue(verifyObject(iface, stream))
        self.assertEqual(stream.getPeer(), self.transport.getPeer())
        self.assertEqual(stream.getHost(), self.transport.getHost())

    def test_writeFraming(self) -> None:
        """
        Writes become Data frames of at most 64 KiB, within the 256 KiB
        window; the rest waits for a WindowUpdate.
        """
        self.makeSession()
        stream = self.session.openStream()
        self.transport.clear()
        stream.write(b"hello")
        self.assertEqual(self.written(), [(TYPE_DATA, 0, 1, 5, b"hello")])
        payload = bytes(range(256)) * 1200  # 300 KiB
        stream.write(payload)
        frames = self.written()
        self.assertEqual([f[3] for f in frames], [65536] * 3 + [65536 - 5])
        self.assertEqual(b"".join(f[4] for f in frames), payload[: 256 * KiB - 5])
        self.session.dataReceived(windowUpdateFrame(FLAG_ACK, 1, 10000))
        frames = self.written()
        self.assertEqual([f[3] for f in frames], [10000])
        self.session.dataReceived(windowUpdateFrame(0, 1, 10**6))
        frames = self.written()
        self.assertEqual(b"".join(f[4] for f in frames), payload[256 * KiB - 5 + 10000 :])

    def test_writeAfterCloseIgnored(self) -> None:
        self.makeSession()
        stream = self.session.openStream()
        stream.loseConnection()
        self.transport.clear()
        stream.write(b"late")
        self.assertEqual(self.written(), [])

    def test_writeStrRejected(self) -> None:
        self.makeSession()
        self.assertRaises(TypeError, self.session.openStream().write, "text")

    def test_inboundStream(self) -> None:
        self.makeSession(onStream=lambda s: s.setProtocol(Recorder()))
        self.session.dataReceived(windowUpdateFrame(FLAG_SYN, 2, 0) + dataFrame(0, 2, b"abc"))
        [stream] = self.accepted
        self.assertEqual(stream.streamID, 2)
        self.assertFalse(stream.outbound)
        self.assertEqual(stream.protocol.data, b"abc")
        self.assertEqual(self.written(), [(TYPE_WINDOW_UPDATE, FLAG_ACK, 2, 0, b"")])

    def test_inboundDataSyn(self) -> None:
        """
        A stream may also be opened by a Data frame carrying SYN.
        """
        self.makeSession(onStream=lambda s: s.setProtocol(Recorder()))
        self.session.dataReceived(dataFrame(FLAG_SYN, 2, b"xyz"))
        self.assertEqual(self.accepted[0].protocol.data, b"xyz")

    def test_dataBeforeProtocolBuffered(self) -> None:
        self.makeSession()
        self.session.dataReceived(windowUpdateFrame(FLAG_SYN, 2, 0) + dataFrame(FLAG_FIN, 2, b"early"))
        [stream] = self.accepted
        app = HalfCloseRecorder()
        stream.setProtocol(app)
        self.assertEqual(app.data, b"early")
        self.assertEqual(app.events, ["made", "readLost"])

    def test_onStreamFailureResets(self) -> None:
        def boom(stream):
            raise ValueError("boom")

        self.makeSession(onStream=boom)
        self.session.dataReceived(windowUpdateFrame(FLAG_SYN, 2, 0) + dataFrame(0, 2, b"x"))
        self.assertEqual(self.written(), [(TYPE_WINDOW_UPDATE, FLAG_ACK, 2, 0, b""),
                                          (TYPE_WINDOW_UPDATE, FLAG_RST, 2, 0, b"")])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(self.session.streamCount, 0)

    def test_pingAnswered(self) -> None:
        self.makeSession()
        self.session.dataReceived(pingFrame(FLAG_SYN, 12345))
        self.assertEqual(self.transport.value(), pingFrame(FLAG_ACK, 12345))

    def test_pingRTT(self) -> None:
        self.makeSession()
        d = self.session.ping()
        [(type, flags, sid, opaque, _)] = self.written()
        self.assertEqual((type, flags, sid), (TYPE_PING, FLAG_SYN, 0))
        self.clock.advance(0.25)
        self.session.dataReceived(pingFrame(FLAG_ACK, opaque + 1))  # unknown id
        self.assertNoResult(d)
        self.session.dataReceived(pingFrame(FLAG_ACK, opaque))
        self.assertEqual(self.successResultOf(d), 0.25)
        self.assertEqual(self.session.rtt, 0.25)

    def test_pingTimeout(self) -> None:
        self.makeSession()
        d = self.session.ping()
        self.clock.advance(NO_KEEPALIVE.pingTimeout)
        self.failureResultOf(d, TimeoutError)

    def test_keepAlive(self) -> None:
        """
        A ping goes out at start (for the RTT) and every interval after an
        answer; an unanswered one closes the session.
        """
        config = YamuxConfig(keepAliveInterval=30, pingTimeout=10)
        self.makeSession(config=config)
        [(_, flags, _, opaque, _)] = self.written()
        self.assertEqual(flags, FLAG_SYN)
        self.clock.advance(1)
        self.session.dataReceived(pingFrame(FLAG_ACK, opaque))
        self.assertEqual(self.session.rtt, 1)
        self.clock.advance(29)
        self.assertEqual(self.written(), [])
        self.clock.advance(1)
        [(type, _, _, _, _)] = self.written()
        self.assertEqual(type, TYPE_PING)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(10)
        self.assertTrue(self.transport.disconnected)  # aborted

    def test_keepAliveLatePongBehindData(self) -> None:
        """
        A keepalive ping unanswered after the ping timeout does not close a
        session that received bytes within that time (the pong is queued
        behind the peer's data): another ping goes out, and the session
        closes only after a whole ping timeout with nothing received.
        """
        config = YamuxConfig(keepAliveInterval=30, pingTimeout=10)
        self.makeSession(config=config)
        [(_, _, _, opaque, _)] = self.written()
        self.session.dataReceived(pingFrame(FLAG_ACK, opaque))
        self.clock.advance(30)
        [(type, _, _, _, _)] = self.written()
        self.assertEqual(type, TYPE_PING)
        self.clock.advance(9.5)
        self.session.dataReceived(pingFrame(FLAG_SYN, 7))  # the peer is busy but alive
        self.written()
        self.clock.advance(0.5)
        self.assertFalse(self.transport.disconnected)
        [(type, flags, _, _, _)] = self.written()
        self.assertEqual((type, flags), (TYPE_PING, FLAG_SYN))
        # 9.5 s since the last byte: still alive; at 10 s of silence, gone
        self.clock.advance(9)
        self.assertFalse(self.transport.disconnected)
        self.clock.advance(1)
        self.assertTrue(self.transport.disconnected)

    def test_closeFailsPendingPings(self) -> None:
        self.makeSession()
        d = self.session.ping()
        self.session.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(d, ConnectionLost)
        self.failureResultOf(self.session.ping(), SessionClosed)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unknownStreamIgnored(self) -> None:
        """
        Frames for unknown streams without SYN are ignored, including the
        payload of Data frames.
        """
        self.makeSession()
        self.session.dataReceived(
            windowUpdateFrame(0, 99, 1000) + dataFrame(0, 99, b"x" * 1000)
            + dataFrame(FLAG_FIN, 99, b"") + windowUpdateFrame(FLAG_RST, 99, 0)
            + pingFrame(FLAG_SYN, 5)
        )
        self.assertEqual(self.written(), [(TYPE_PING, FLAG_ACK, 0, 5, b"")])
        self.assertFalse(self.transport.disconnecting)

    def test_rstDeltaIgnored(self) -> None:
        """
        go puts an error code in the length of RST frames; it is not a delta.
        """
        self.makeSession()
        stream = self.session.openStream()
        app = Recorder()
        stream.setProtocol(app)
        self.session.dataReceived(windowUpdateFrame(FLAG_RST, 1, 2**32 - 1))
        self.assertIsInstance(app.lostReason.value, StreamReset)
        self.assertFalse(self.transport.disconnecting)

    def test_errorDuplicateSyn(self) -> None:
        self.makeSession()
        self.session.dataReceived(windowUpdateFrame(FLAG_SYN, 2, 0))
        self.assertProtocolError(windowUpdateFrame(FLAG_SYN, 2, 0), "duplicate SYN")

    def test_errorWrongParity(self) -> None:
        self.makeSession(isClient=True)
        self.assertProtocolError(windowUpdateFrame(FLAG_SYN, 5, 0), "parity")

    def test_errorStreamZero(self) -> None:
        self.makeSession(isClient=True)
        self.assertProtocolError(windowUpdateFrame(FLAG_SYN, 0, 0), "parity")

    def test_errorWindowExceeded(self) -> None:
        self.makeSession()
        self.assertProtocolError(dataFrame(0, 1, b"x" * (INITIAL_WINDOW + 1)), "window")

    def test_errorSendWindowOverflow(self) -> None:
        self.makeSession()
        self.assertProtocolError(windowUpdateFrame(0, 1, 2**32 - 1), "overflows")

    def test_errorBadVersion(self) -> None:
        self.makeSession()
        self.assertProtocolError(b"\x01" + pingFrame(FLAG_SYN, 1)[1:], "version")

    def test_errorBadType(self) -> None:
        self.makeSession()
        self.assertProtocolError(encodeHeader(9, 0, 0, 0), "type")

    def test_errorOversizedPayload(self) -> None:
        self.makeSession()
        self.assertProtocolError(encodeHeader(TYPE_DATA, 0, 99, 2**31), "exceeds")

    def test_inboundStreamCap(self) -> None:
        self.makeSession(config=YamuxConfig(keepAliveInterval=None, maxInboundStreams=2))
        self.session.dataReceived(b"".join(windowUpdateFrame(FLAG_SYN, i, 0) for i in (2, 4, 6)))
        self.assertEqual([s.streamID for s in self.accepted], [2, 4])
        self.assertEqual(self.written()[-1], (TYPE_WINDOW_UPDATE, FLAG_RST, 6, 0, b""))
        self.accepted[0].abortConnection()
        self.session.dataReceived(windowUpdateFrame(FLAG_SYN, 8, 0))
        self.assertEqual(self.accepted[-1].streamID, 8)

    def test_outboundStreamCap(self) -> None:
        self.makeSession(config=YamuxConfig(keepAliveInterval=None, maxOutboundStreams=2))
        first = self.session.openStream()
        self.session.openStream()
        self.assertRaises(StreamLimitExceeded, self.session.openStream)
        first.abortConnection()
        self.assertEqual(self.session.openStream().streamID, 5)

    def test_acceptBacklog(self) -> None:
        """
        Past the backlog of unacknowledged streams, SYNs (and data) wait
        for an ACK.
        """
        self.makeSession(config=YamuxConfig(keepAliveInterval=None, acceptBacklog=2))
        self.session.openStream()
        self.session.openStream()
        third = self.session.openStream()
        third.write(b"queued")
        third.loseConnection()
        self.assertEqual([f[2] for f in self.written()], [1, 3])
        self.session.dataReceived(windowUpdateFrame(FLAG_ACK, 1, 0))
        self.assertEqual(self.written(), [(TYPE_WINDOW_UPDATE, FLAG_SYN, 5, 0, b""),
                                          (TYPE_DATA, 0, 5, 6, b"queued"),
                                          (TYPE_WINDOW_UPDATE, FLAG_FIN, 5, 0, b"")])

    def test_openTimeout(self) -> None:
        self.makeSession(config=YamuxConfig(keepAliveInterval=None, streamOpenTimeout=5))
        stream = self.session.openStream()
        app = Recorder()
        stream.setProtocol(app)
        self.written()
        self.clock.advance(5)
        self.assertEqual(self.written(), [(TYPE_WINDOW_UPDATE, FLAG_RST, 1, 0, b"")])
        self.assertIsInstance(app.lostReason.value, TimeoutError)

    def test_closeTimeout(self) -> None:
        self.makeSession(config=YamuxConfig(keepAliveInterval=None, streamCloseTimeout=7))
        stream = self.session.openStream()
        app = Recorder()
        stream.setProtocol(app)
        self.session.dataReceived(windowUpdateFrame(FLAG_ACK, 1, 0))
        stream.loseConnection()
        self.clock.advance(6)
        self.assertEqual(app.lostReason, None)
        self.clock.advance(1)
        self.assertIsInstance(app.lostReason.value, TimeoutError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_remoteGoAway(self) -> None:
        self.makeSession()
        stream = self.session.openStream()
        self.session.dataReceived(goAwayFrame(0))
        self.assertRaises(SessionGoingAway, self.session.openStream)
        stream.write(b"still works")
        self.assertEqual(self.written()[-1][4], b"still works")

    def test_localGoAway(self) -> None:
        self.makeSession()
        self.session.goAway()
        self.session.goAway()
        self.assertEqual(self.written(), [(TYPE_GO_AWAY, 0, 0, 0, b"")])
        self.assertRaises(SessionGoingAway, self.session.openStream)
        self.session.dataReceived(windowUpdateFrame(FLAG_SYN, 2, 0) + dataFrame(0, 2, b"x"))
        self.assertEqual(self.written(), [(TYPE_WINDOW_UPDATE, FLAG_RST, 2, 0, b"")])
        self.assertEqual(self.accepted, [])

    def test_close(self) -> None:
        self.makeSession()
        stream = self.session.openStream()
        app = Recorder()
        stream.setProtocol(app)
        self.written()
        closed = self.session.whenClosed()
        self.session.close()
        self.assertEqual(self.written(), [(TYPE_GO_AWAY, 0, 0, 0, b"")])
        self.assertTrue(self.transport.disconnecting)
        self.assertIsInstance(app.lostReason.value, ConnectionLost)
        self.assertRaises(SessionClosed, self.session.openStream)
        self.assertNoResult(closed)
        self.session.connectionLost(Failure(ConnectionDone()))
        self.assertIsNone(self.successResultOf(closed))
        self.assertIsNone(self.successResultOf(self.session.whenClosed()))

    def test_transportPushBack(self) -> None:
        """
        When the transport pauses the session, every stream's producer is
        paused, and resumed with it.
        """
        self.makeSession()
        producers = []
        for _ in range(3):
            stream = self.session.openStream()
            producer = Producer()
            stream.registerProducer(producer, True)
            producers.append(producer)
        self.session.pauseProducing()
        self.assertEqual({p.state for p in producers}, {"paused"})
        late = Producer()
        self.session.openStream().registerProducer(late, True)
        self.assertEqual(late.state, "paused")
        self.session.resumeProducing()
        self.assertEqual({p.state for p in producers + [late]}, {"producing"})

    def test_transportPushBackHoldsData(self) -> None:
        """
        While the transport pushes back, written data stays in the stream
        and goes out when it resumes.
        """
        self.makeSession()
        stream = self.session.openStream()
        self.written()
        self.session.pauseProducing()
        stream.write(b"a" * 100)
        self.assertEqual(self.written(), [])
        self.session.resumeProducing()
        self.assertEqual(self.written(), [(TYPE_DATA, 0, 1, 100, b"a" * 100)])

    def test_transportPushBackBursts(self) -> None:
        """
        Large buffered data goes out in bursts; a transport that pushes back
        after each write gets one burst per resume, streams taking turns.
        """

        class PushingTransport(StringTransport):
            def write(self, data):
                StringTransport.write(self, data)
                if len(data) > 12:  # push back after data, not control frames
                    self.producer.pauseProducing()

        self.clock = Clock()
        self.session = YamuxSession(True, self.clock, lambda s: None, NO_KEEPALIVE)
        self.transport = PushingTransport()
        self.session.makeConnection(self.transport)
        one, two = self.session.openStream(), self.session.openStream()
        self.session.dataReceived(windowUpdateFrame(0, 1, 10**6) + windowUpdateFrame(0, 3, 10**6))
        self.written()
        one.write(b"1" * (600 * KiB))
        two.write(b"2" * (600 * KiB))
        sent = [(f[2], f[3]) for f in self.written()]
        self.assertEqual(sent, [(1, 65536)] * 4)
        for expected, size in [(1, 256), (3, 256), (1, 88), (3, 256), (3, 88)]:
            self.session.resumeProducing()
            frames = self.written()
            self.assertEqual({f[2] for f in frames}, {expected})
            self.assertEqual(sum(f[3] for f in frames), size * KiB)
        self.assertEqual((one._sendBuffered, two._sendBuffered), (0, 0))

    def test_drainWaiterWritesAndCloses(self) -> None:
        """
        A drain waiter that writes and half-closes from its callback while
        the transport pushes back: its data goes out before the FIN (the FIN
        used to go first and the data was lost).
        """
        self.makeSession()
        stream = self.session.openStream()
        self.written()
        self.session.pauseProducing()
        stream.write(b"a" * 100)

        def last(_):
            self.session.pauseProducing()  # the transport pushed back again
            stream.write(b"end")
            stream.loseConnection()

        stream.whenDrained().addCallback(last)
        self.session.resumeProducing()
        self.assertEqual(self.written(), [(TYPE_DATA, 0, 1, 100, b"a" * 100)])
        self.session.resumeProducing()
        self.assertEqual(self.written(), [(TYPE_DATA, 0, 1, 3, b"end"), (TYPE_WINDOW_UPDATE, FLAG_FIN, 1, 0, b"")])

    def test_sendWindowPausesProducer(self) -> None:
        self.makeSession()
        stream = self.session.openStream()
        producer = Producer()
        stream.registerProducer(producer, True)
        stream.write(b"x" * INITIAL_WINDOW)
        self.assertEqual(producer.state, "producing")
        stream.write(b"y")
        self.assertEqual(producer.state, "paused")
        self.session.dataReceived(windowUpdateFrame(0, 1, 1))
        self.assertEqual(producer.state, "producing")
        self.assertRaises(RuntimeError, stream.registerProducer, Producer(), True)
        stream.unregisterProducer()
        stream.abortConnection()
        self.assertEqual(producer.state, "producing")

    def test_producerStoppedOnClose(self) -> None:
        self.makeSession()
        stream = self.session.openStream()
        producer = Producer()
        stream.registerProducer(producer, True)
        self.session.dataReceived(windowUpdateFrame(FLAG_RST, 1, 0))
        self.assertEqual(producer.state, "stopped")

    def test_readerPause(self) -> None:
        """
        A paused stream buffers and grants no window; resuming delivers and
        grants it.
        """
        self.makeSession(onStream=lambda s: s.setProtocol(Recorder()))
        self.session.dataReceived(windowUpdateFrame(FLAG_SYN, 2, 0))
        [stream] = self.accepted
        self.written()
        stream.pauseProducing()
        self.session.dataReceived(dataFrame(0, 2, b"a" * (200 * KiB)))
        self.assertEqual(self.written(), [])
        self.assertEqual(stream.protocol.data, b"")
        stream.resumeProducing()
        self.assertEqual(len(stream.protocol.data), 200 * KiB)
        self.assertEqual(self.written(), [(TYPE_WINDOW_UPDATE, 0, 2, 200 * KiB, b"")])

    def test_windowUpdateAtHalf(self) -> None:
        self.makeSession(onStream=lambda s: s.setProtocol(Recorder()))
        self.session.dataReceived(windowUpdateFrame(FLAG_SYN, 2, 0))
        self.written()
        self.session.dataReceived(dataFrame(0, 2, b"a" * (128 * KiB - 1)))
        self.assertEqual(self.written(), [])
        self.session.dataReceived(dataFrame(0, 2, b"a"))
        self.assertEqual(self.written(), [(TYPE_WINDOW_UPDATE, 0, 2, 128 * KiB, b"")])

    def test_streamProtocolFailureResets(self) -> None:
        class Broken(Protocol):
            def dataReceived(self, data):
                raise ZeroDivisionError()

        self.makeSession(onStream=lambda s: s.setProtocol(Broken()))
        self.session.dataReceived(windowUpdateFrame(FLAG_SYN, 2, 0) + dataFrame(0, 2, b"x")
                                  + pingFrame(FLAG_SYN, 3))
        self.assertEqual([f[:2] for f in self.written()],
                         [(TYPE_WINDOW_UPDATE, FLAG_ACK), (TYPE_WINDOW_UPDATE, FLAG_RST),
                          (TYPE_PING, FLAG_ACK)])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_outputCorked(self) -> None:
        """
        Frames produced while handling one chunk go out in one write.
        """
        self.makeSession()
        writes = []
        self.transport.write = writes.append
        self.transport.writeSequence = lambda seq: writes.append(b"".join(seq))
        self.session.dataReceived(pingFrame(FLAG_SYN, 1) + pingFrame(FLAG_SYN, 2))
        self.assertEqual(writes, [pingFrame(FLAG_ACK, 1) + pingFrame(FLAG_ACK, 2)])

    def test_corkedBurstMeetsPushBack(self) -> None:
        """
        Frames gathered while handling a chunk go out once they pass 64 KiB,
        so a window update that lets a megabyte go lets only what the
        transport takes before it pushes back; the rest waits for it.
        """

        class PushingTransport(StringTransport):
            def write(self, data):
                StringTransport.write(self, data)
                if len(data) > 12:
                    self.producer.pauseProducing()

        self.clock = Clock()
        self.session = YamuxSession(True, self.clock, lambda s: None, NO_KEEPALIVE)
        self.transport = PushingTransport()
        self.session.makeConnection(self.transport)
        stream = self.session.openStream()
        stream.write(b"z" * (INITIAL_WINDOW + 1024 * KiB))
        self.assertEqual(sum(f[3] for f in self.written() if f[0] == TYPE_DATA), INITIAL_WINDOW)
        self.session.resumeProducing()
        self.session.dataReceived(windowUpdateFrame(0, 1, 1024 * KiB))
        sent = sum(f[3] for f in self.written() if f[0] == TYPE_DATA)
        self.assertEqual(sent, 256 * KiB)
        self.assertEqual(stream._sendBuffered, 768 * KiB)
        while stream._sendBuffered:
            self.session.resumeProducing()
        self.assertEqual(sum(f[3] for f in self.written() if f[0] == TYPE_DATA), 768 * KiB)

    @given(
        st.lists(
            st.tuples(
                st.sampled_from([TYPE_DATA, TYPE_WINDOW_UPDATE, TYPE_PING, TYPE_GO_AWAY]),
                st.integers(0, 15),
                st.integers(0, 6),
                st.integers(0, 300000),
            ),
            max_size=20,
        ),
        st.lists(st.integers(0, 3000), max_size=4),
        st.booleans(),
    )
    def test_frameFuzz(self, frames, cuts, pause) -> None:
        """
        Well-formed frames with any flags, IDs and lengths drive the state
        machine without an exception escaping or being logged; the stream
        accounting stays consistent.
        """
        def onStream(stream):
            stream.setProtocol(EchoUntilEOF())
            if pause:
                stream.pauseProducing()

        self.makeSession(onStream=onStream)
        self.session.openStream().write(b"x" * 1000)
        wire = b""
        for type, flags, sid, length in frames:
            if type == TYPE_DATA:
                wire += dataFrame(flags, sid, b"d" * min(length, 2000))
            else:
                wire += encodeHeader(type, flags, sid, length)
        with capturedLogs():
            for piece in chunked(wire, cuts):
                self.session.dataReceived(piece)
        streams = self.session._streams.values()
        self.assertEqual(self.session._inbound, sum(not s.outbound for s in streams))
        self.assertEqual(self.session._outbound, sum(s.outbound for s in streams))
        for stream in streams:
            self.assertGreaterEqual(stream._recvCredit, 0)
            self.assertLessEqual(stream._recvBuffered, stream._recvWindow)

    @given(st.lists(st.binary(max_size=80), max_size=10))
    def test_garbage(self, pieces) -> None:
        """
        Garbage never raises out of the session: it is a protocol error at
        worst, and closes the connection.
        """
        self.makeSession(onStream=lambda s: s.setProtocol(Recorder()))
        with capturedLogs():
            for piece in pieces:
                self.session.dataReceived(piece)


# -- two peers through iosim -------------------------------------------------


class TwoPeers:
    """
    A client and a server session connected through iosim.
    """

    def __init__(self, serverProtocol=EchoUntilEOF, clientConfig=NO_KEEPALIVE,
                 serverConfig=NO_KEEPALIVE) -> None:
        self.clock = Clock()
        self.accepted = []

        def accept(stream):
            self.accepted.append(stream)
            if serverProtocol is not None:
                stream.setProtocol(serverProtocol())

        self.client, self.server, self.pump = iosim.connectedServerAndClient(
            lambda: YamuxSession(False, self.clock, accept, serverConfig),
            lambda: YamuxSession(True, self.clock, lambda s: None, clientConfig),
            clock=self.clock,
        )

    def open(self, protocol=None):
        stream = self.client.openStream()
        protocol = protocol if protocol is not None else HalfCloseRecorder()
        stream.setProtocol(protocol)
        return stream, protocol

    def run(self) -> None:
        while self.pump.pump():
            pass


class TwoPeerTests(SynchronousTestCase):
    def test_echoManyStreams(self) -> None:
        peers = TwoPeers()
        streams = []
        for i in range(50):
            stream, app = peers.open()
            payload = bytes([i]) * (i * 20011)
            stream.write(payload)
            stream.loseConnection()
            streams.append((app, payload))
        peers.run()
        for app, payload in streams:
            self.assertEqual(app.data, payload)
            self.assertEqual(app.events, ["made", "readLost", "lost"])
            app.lostReason.trap(ConnectionDone)
        self.assertEqual((peers.client.streamCount, peers.server.streamCount), (0, 0))

    def test_thousandConcurrentStreams(self) -> None:
        peers = TwoPeers()
        apps = []
        for i in range(1000):
            stream, app = peers.open()
            stream.write(b"%d" % i)
            apps.append(app)
        peers.run()
        self.assertEqual(peers.server.streamCount, 1000)
        self.assertEqual([a.data for a in apps], [b"%d" % i for i in range(1000)])
        self.assertRaises(StreamLimitExceeded, peers.client.openStream)
        for app in apps:
            app.transport.loseConnection()
        peers.run()
        self.assertEqual((peers.client.streamCount, peers.server.streamCount), (0, 0))

    def test_halfCloseClientFirst(self) -> None:
        """
        The client closes its side after the request; the server still
        answers, then closes.
        """
        serverApps = []

        def server():
            app = HalfCloseRecorder()
            serverApps.append(app)
            return app

        peers = TwoPeers(serverProtocol=server)
        stream, app = peers.open()
        stream.write(b"request")
        stream.loseConnection()
        peers.run()
        [serverApp] = serverApps
        self.assertEqual(serverApp.data, b"request")
        self.assertEqual(serverApp.events, ["made", "readLost"])
        serverApp.transport.write(b"response")
        serverApp.transport.loseConnection()
        peers.run()
        self.assertEqual(app.data, b"response")
        self.assertEqual(app.events, ["made", "readLost", "lost"])
        self.assertEqual(serverApp.events, ["made", "readLost", "lost"])

    def test_halfCloseServerFirst(self) -> None:
        serverApps = []

        def server():
            app = HalfCloseRecorder()
            serverApps.append(app)
            return app

        peers = TwoPeers(serverProtocol=server)
        stream, app = peers.open()
        stream.write(b"hi")
        peers.run()
        serverApps[0].transport.write(b"greeting")
        serverApps[0].transport.loseConnection()
        peers.run()
        self.assertEqual(app.events, ["made", "readLost"])
        stream.write(b"more")
        stream.loseConnection()
        peers.run()
        self.assertEqual(serverApps[0].data, b"himore")
        self.assertEqual(app.events[-1], "lost")
        self.assertEqual(serverApps[0].events[-1], "lost")

    def test_nonHalfCloseableProtocol(self) -> None:
        """
        A protocol without half-close sees no FIN, only the final close.
        """
        peers = TwoPeers()
        stream, app = peers.open(Recorder())
        stream.write(b"x")
        stream.loseConnection()
        peers.run()
        self.assertEqual(app.events, ["made", "lost"])
        self.assertEqual(app.data, b"x")

    def test_reset(self) -> None:
        serverApps = []

        def server():
            app = HalfCloseRecorder()
            serverApps.append(app)
            return app

        peers = TwoPeers(serverProtocol=server)
        stream, app = peers.open()
        stream.write(b"x")
        peers.run()
        stream.abortConnection()
        self.assertIsInstance(app.lostReason.value, ConnectionAborted)
        peers.run()
        self.assertIsInstance(serverApps[0].lostReason.value, StreamReset)
        self.assertEqual((peers.client.streamCount, peers.server.streamCount), (0, 0))

    def test_slowReaderStallsSender(self) -> None:
        """
        A paused reader stops granting window: the receiver buffers at most
        one window, the sender buffers the rest and pauses its producer.
        """
        serverApps = []

        def server():
            app = Recorder()
            serverApps.append(app)
            return app

        peers = TwoPeers(serverProtocol=server)
        stream, app = peers.open()
        producer = Producer()
        stream.registerProducer(producer, True)
        stream.write(b"s")
        peers.run()
        remote = peers.accepted[0]
        remote.pauseProducing()
        payload = bytes(range(256)) * (4 * 4096)  # 4 MiB
        stream.write(payload)
        peers.run()
        self.assertEqual(producer.state, "paused")
        self.assertLessEqual(remote._recvBuffered, INITIAL_WINDOW)
        self.assertEqual(len(serverApps[0].data), 1)
        self.assertEqual(stream._sendBuffered, len(payload) + 1 - INITIAL_WINDOW)
        remote.resumeProducing()
        peers.run()
        self.assertEqual(serverApps[0].data, b"s" + payload)
        self.assertEqual(producer.state, "producing")

    def test_windowAutoTune(self) -> None:
        """
        With a measured RTT and updates coming fast, the receive window
        doubles, up to the maximum.
        """
        serverApps = []

        def server():
            app = Recorder()
            serverApps.append(app)
            return app

        config = YamuxConfig(keepAliveInterval=None, maxWindow=2 * 1024 * KiB)
        peers = TwoPeers(serverProtocol=server, serverConfig=config)
        d = peers.server.ping()
        peers.clock.advance(0.01)
        peers.run()
        self.assertEqual(self.successResultOf(d), 0.01)
        stream, app = peers.open()
        stream.write(b"z" * (8 * 1024 * KiB))
        peers.run()
        self.assertEqual(len(serverApps[0].data), 8 * 1024 * KiB)
        self.assertEqual(peers.accepted[0]._recvWindow, 2 * 1024 * KiB)

    def test_noAutoTuneWhenSlow(self) -> None:
        peers = TwoPeers(serverProtocol=Recorder)
        stream, app = peers.open()
        stream.write(b"z" * (4 * 1024 * KiB))
        peers.run()
        self.assertEqual(peers.accepted[0]._recvWindow, INITIAL_WINDOW)

    def test_goAway(self) -> None:
        peers = TwoPeers()
        stream, app = peers.open()
        peers.run()
        peers.server.goAway()
        late, lateApp = peers.open()  # crosses the GoAway: reset
        peers.run()
        self.assertIsInstance(lateApp.lostReason.value, StreamReset)
        self.assertRaises(SessionGoingAway, peers.client.openStream)
        stream.write(b"still")
        peers.run()
        self.assertEqual(app.data, b"still")

    def test_pingRTT(self) -> None:
        peers = TwoPeers()
        d = peers.client.ping()
        peers.clock.advance(0.125)
        peers.run()
        self.assertEqual(self.successResultOf(d), 0.125)

    def test_keepAliveBothSides(self) -> None:
        config = YamuxConfig(keepAliveInterval=30)
        peers = TwoPeers(clientConfig=config, serverConfig=config)
        peers.run()
        for _ in range(5):
            peers.clock.advance(30)
            peers.run()
        self.assertFalse(peers.pump.clientIO.disconnecting)
        self.assertFalse(peers.pump.serverIO.disconnecting)

    def test_inboundStreamCap(self) -> None:
        config = YamuxConfig(keepAliveInterval=None, maxInboundStreams=3)
        peers = TwoPeers(serverConfig=config)
        opened = [peers.open() for _ in range(4)]
        peers.run()
        self.assertEqual(len(peers.accepted), 3)
        self.assertIsInstance(opened[3][1].lostReason.value, StreamReset)
        self.assertEqual([app.lostReason for _, app in opened[:3]], [None] * 3)

    def test_close(self) -> None:
        peers = TwoPeers()
        stream, app = peers.open()
        peers.run()
        serverClosed = peers.server.whenClosed()
        peers.client.close()
        peers.run()
        self.assertIsNone(self.successResultOf(serverClosed))
        self.assertIsNone(self.successResultOf(peers.client.whenClosed()))
        self.assertIsInstance(app.lostReason.value, ConnectionLost)

    def test_pullProducer(self) -> None:
        """
        A pull producer (FileSender) is driven through the window.
        """
        peers = TwoPeers(serverProtocol=Recorder)
        stream, app = peers.open()
        payload = bytes(range(256)) * 4096  # 1 MiB
        d = FileSender().beginFileTransfer(BytesIO(payload), stream)
        for _ in range(10000):
            if not peers.pump.pump() and d.called:
                break
        self.successResultOf(d)
        stream.loseConnection()
        peers.run()
        self.assertEqual(b"".join(peers.accepted[0].protocol.chunks), payload)

    def test_multistreamPerStream(self) -> None:
        """
        The stack the host builds: every stream negotiates its protocol
        with multistream-select, then the application runs on it.
        """
        def serverNegotiate():
            negotiator = multistream.MultistreamNegotiator.listener(["/echo/1.0.0"])
            negotiator.whenNegotiated().addCallback(
                lambda r: negotiator.switchProtocol(EchoUntilEOF(), r[1])
            )
            return negotiator

        peers = TwoPeers(serverProtocol=serverNegotiate)
        results = []
        for i in range(20):
            negotiator = multistream.MultistreamNegotiator.dialer(["/nope", "/echo/1.0.0"])
            stream, _ = peers.open(negotiator)
            app = HalfCloseRecorder()

            def switched(result, negotiator=negotiator, app=app, i=i):
                negotiator.switchProtocol(app, result[1])
                app.transport.write(b"msg %d" % i)
                app.transport.loseConnection()
                return result[0]

            results.append((negotiator.whenNegotiated().addCallback(switched), app))
        peers.run()
        for i, (d, app) in enumerate(results):
            self.assertEqual(self.successResultOf(d), "/echo/1.0.0")
            self.assertEqual(app.data, b"msg %d" % i)
            self.assertEqual(app.events, ["made", "readLost", "lost"])
