"""
Tests for L{tau.protocols.multistream}.
"""

from hypothesis import given, strategies as st
from twisted.internet.error import ConnectionDone, ConnectionLost, TimeoutError
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tau.protocols.multistream import (
    MAX_MESSAGE_LENGTH,
    Dialer,
    Listener,
    MultistreamError,
    MultistreamNegotiator,
    NegotiationFailed,
    Selected,
    encodeLsResponse,
    encodeMessage,
)
from tau.protocols.varint import lpEncode
from tests.protocols.test_varint import chunked

H = bytes.fromhex("13 2f6d756c746973747265616d2f312e302e30 0a")
NA = bytes.fromhex("03 6e61 0a")
LS = bytes.fromhex("03 6c73 0a")
NOISE = bytes.fromhex("07 2f6e6f697365 0a")
TLS = bytes.fromhex("0b 2f746c732f312e302e30 0a")
YAMUX = bytes.fromhex("0d 2f79616d75782f312e302e30 0a")


class Recorder(Protocol):
    """
    Records everything a protocol is told.
    """

    def __init__(self) -> None:
        self.data = b""
        self.events: list[str] = []
        self.lostReason: Failure | None = None

    def connectionMade(self) -> None:
        self.events.append("made")

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        self.events.append("data")

    def connectionLost(self, reason: Failure) -> None:
        self.events.append("lost")
        self.lostReason = reason


@implementer(IHalfCloseableProtocol)
class HalfCloseRecorder(Recorder):
    def readConnectionLost(self) -> None:
        self.events.append("readLost")

    def writeConnectionLost(self) -> None:
        self.events.append("writeLost")


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class VectorTests(SynchronousTestCase):
    def test_messages(self) -> None:
        """
        The hex vectors of the spec.
        """
        self.assertEqual(encodeMessage("/multistream/1.0.0"), H)
        self.assertEqual(encodeMessage("na"), NA)
        self.assertEqual(encodeMessage("ls"), LS)
        self.assertEqual(encodeMessage("/noise"), NOISE)
        self.assertEqual(encodeMessage("/tls/1.0.0"), TLS)
        self.assertEqual(encodeMessage("/yamux/1.0.0"), YAMUX)

    def test_tooLong(self) -> None:
        encodeMessage("x" * (MAX_MESSAGE_LENGTH - 1))
        self.assertRaises(ValueError, encodeMessage, "x" * MAX_MESSAGE_LENGTH)

    def test_lsResponse(self) -> None:
        """
        js answers C{ls} with one length-prefixed message holding every
        protocol as a message, then a newline.
        """
        self.assertEqual(
            encodeLsResponse(["/noise", "/tls/1.0.0"]), lpEncode(NOISE + TLS + b"\n")
        )


class DialerTests(SynchronousTestCase):
    def test_initialBytes(self) -> None:
        """
        Header and first proposal go out together.
        """
        self.assertEqual(Dialer(["/tls/1.0.0", "/noise"]).initialBytes(), H + TLS)

    def test_selected(self) -> None:
        d = Dialer(["/tls/1.0.0"])
        self.assertEqual(d.receive(H + TLS + b"app"), (b"", Selected("/tls/1.0.0", b"app")))
        self.assertEqual(d.selected, Selected("/tls/1.0.0", b"app"))
        self.assertRaises(MultistreamError, d.receive, b"more")

    def test_byteByByte(self) -> None:
        d = Dialer(["/yamux/1.0.0"])
        wire = H + YAMUX
        for i in range(len(wire) - 1):
            self.assertEqual(d.receive(wire[i : i + 1]), (b"", None))
        self.assertEqual(d.receive(wire[-1:]), (b"", Selected("/yamux/1.0.0", b"")))

    def test_naProposesNext(self) -> None:
        d = Dialer(["/tls/1.0.0", "/noise"])
        self.assertEqual(d.receive(H + NA), (NOISE, None))
        self.assertEqual(d.receive(NOISE), (b"", Selected("/noise", b"")))

    def test_allRefused(self) -> None:
        d = Dialer(["/tls/1.0.0", "/noise"])
        d.receive(H + NA)
        self.assertRaises(NegotiationFailed, d.receive, NA)

    def test_badHeader(self) -> None:
        d = Dialer(["/tls/1.0.0"])
        self.assertRaises(MultistreamError, d.receive, encodeMessage("/multistream/2"))

    def test_unexpectedAnswer(self) -> None:
        d = Dialer(["/tls/1.0.0"])
        self.assertRaises(MultistreamError, d.receive, H + NOISE)

    def test_noNewline(self) -> None:
        d = Dialer(["/tls/1.0.0"])
        self.assertRaises(MultistreamError, d.receive, b"\x02na")

    def test_oversized(self) -> None:
        """
        A length over 1024 is rejected at once, without the payload.
        """
        d = Dialer(["/tls/1.0.0"])
        self.assertRaises(MultistreamError, d.receive, b"\x81\x08")

    def test_notUtf8(self) -> None:
        d = Dialer(["/tls/1.0.0"])
        self.assertRaises(MultistreamError, d.receive, b"\x02\xff\n")

    def test_needsProtocols(self) -> None:
        self.assertRaises(ValueError, Dialer, [])


class ListenerTests(SynchronousTestCase):
    def test_jsOrdering(self) -> None:
        """
        By default the listener sends its header only after the dialer's,
        together with the answer, in one write.
        """
        listener = Listener(["/tls/1.0.0"])
        self.assertEqual(listener.initialBytes(), b"")
        self.assertEqual(listener.receive(H + TLS), (H + TLS, Selected("/tls/1.0.0", b"")))

    def test_goOrdering(self) -> None:
        listener = Listener(["/tls/1.0.0"], eagerHeader=True)
        self.assertEqual(listener.initialBytes(), H)
        self.assertEqual(listener.initialBytes(), b"")
        self.assertEqual(listener.receive(H), (b"", None))
        self.assertEqual(listener.receive(TLS), (TLS, Selected("/tls/1.0.0", b"")))

    def test_lazyApplicationData(self) -> None:
        """
        Application data in the same segment as the proposal is handed over.
        """
        listener = Listener(["/ipfs/bitswap/1.2.0"])
        proposal = encodeMessage("/ipfs/bitswap/1.2.0")
        out, selected = listener.receive(H + proposal + b"\x05hello")
        self.assertEqual(out, H + proposal)
        self.assertEqual(selected, Selected("/ipfs/bitswap/1.2.0", b"\x05hello"))

    def test_unknownThenKnown(self) -> None:
        listener = Listener(["/noise"])
        self.assertEqual(listener.receive(H + TLS), (H + NA, None))
        self.assertEqual(listener.receive(NOISE), (NOISE, Selected("/noise", b"")))

    def test_ls(self) -> None:
        listener = Listener(["/noise", "/tls/1.0.0"])
        out, selected = listener.receive(H + LS)
        self.assertIsNone(selected)
        self.assertEqual(out, H + lpEncode(NOISE + TLS + b"\n"))

    def test_lsAnsweredOnce(self) -> None:
        """
        Only the first C{ls} gets the list; later ones get C{na} (a dialer
        that does not read must not make us queue the list again and
        again).
        """
        listener = Listener(["/noise", "/tls/1.0.0"])
        listener.receive(H + LS)
        self.assertEqual(listener.receive(LS * 3), (NA * 3, None))

    def test_naIsNotAProtocol(self) -> None:
        """
        A dialer proposing C{na} gets C{na}, even if the match function
        accepts anything.
        """
        listener = Listener([], match=lambda p: True)
        self.assertEqual(listener.receive(H + NA), (H + NA, None))

    def test_match(self) -> None:
        listener = Listener(["/x/1"], match=lambda p: p.startswith("/x/"))
        out, selected = listener.receive(H + encodeMessage("/x/2"))
        self.assertEqual(selected, Selected("/x/2", b""))

    def test_maxNa(self) -> None:
        listener = Listener(["/noise"], maxNa=3)
        listener.receive(H + TLS * 3)
        self.assertRaises(NegotiationFailed, listener.receive, TLS)

    def test_headerRequired(self) -> None:
        listener = Listener(["/noise"])
        self.assertRaises(MultistreamError, listener.receive, NOISE)

    def test_oversized(self) -> None:
        listener = Listener(["/noise"])
        body = b"x" * 1024 + b"\n"
        self.assertRaises(MultistreamError, listener.receive, H + lpEncode(body))


def run(dialer: Dialer, listener: Listener, cuts: list[int]) -> tuple:
    """
    Drive a dialer and a listener against each other, cutting every
    transmission at C{cuts}.
    """
    toListener = dialer.initialBytes()
    toDialer = listener.initialBytes()
    dialed = listened = None
    for _ in range(1000):
        if not toListener and not toDialer:
            break
        if toListener and listened is None:
            pieces, toListener = chunked(toListener, cuts), b""
            for piece in pieces:
                if listened is None:
                    out, listened = listener.receive(piece)
                    toDialer += out
        else:
            toListener = b""
        if toDialer and dialed is None:
            pieces, toDialer = chunked(toDialer, cuts), b""
            for piece in pieces:
                if dialed is None:
                    out, dialed = dialer.receive(piece)
                    toListener += out
        else:
            toDialer = b""
    return dialed, listened


PROTOCOLS = st.lists(
    st.text(st.characters(codec="utf-8", exclude_characters="\n"), min_size=1, max_size=30),
    min_size=1,
    max_size=5,
    unique=True,
)


class InteropPropertyTests(SynchronousTestCase):
    @given(PROTOCOLS, PROTOCOLS, st.booleans(), st.lists(st.integers(0, 500), max_size=4))
    def test_agreement(self, offered, supported, eager, cuts) -> None:
        """
        A dialer and a listener agree on the first offered protocol the
        listener supports, or both fail.
        """
        offered = [p for p in offered if p not in ("na", "ls")] or ["/x"]
        dialer = Dialer(offered)
        listener = Listener(supported, eagerHeader=eager)
        expected = next((p for p in offered if p in supported), None)
        if expected is None:
            self.assertRaises(NegotiationFailed, run, dialer, listener, cuts)
        else:
            dialed, listened = run(dialer, listener, cuts)
            self.assertEqual(dialed, Selected(expected, b""))
            self.assertEqual(listened, Selected(expected, b""))

    @given(st.lists(st.binary(max_size=64), max_size=6), st.booleans())
    def test_garbage(self, pieces: list[bytes], asDialer: bool) -> None:
        """
        Garbage only ever raises L{MultistreamError}.
        """
        machine = Dialer(["/a", "/b"]) if asDialer else Listener(["/a"], maxNa=5)
        try:
            for piece in pieces:
                machine.receive(piece)
        except MultistreamError:
            pass


class NegotiatorTests(SynchronousTestCase):
    def connect(self, negotiator: MultistreamNegotiator) -> StringTransport:
        transport = StringTransport()
        negotiator.makeConnection(transport)
        return transport

    def test_dialerWritesOnConnect(self) -> None:
        transport = self.connect(MultistreamNegotiator.dialer(["/tls/1.0.0"]))
        self.assertEqual(transport.value(), H + TLS)

    def test_resultAndSwitch(self) -> None:
        negotiator = MultistreamNegotiator.dialer(["/tls/1.0.0"])
        transport = self.connect(negotiator)
        results = []
        negotiator.whenNegotiated().addCallback(results.append)
        negotiator.dataReceived(H + TLS + b"early")
        self.assertEqual(results, [("/tls/1.0.0", b"early")])
        negotiator.dataReceived(b" later")
        app = Recorder()
        negotiator.switchProtocol(app, b"early")
        self.assertIs(app.transport, transport)
        self.assertEqual(app.data, b"early later")
        negotiator.dataReceived(b"!")
        self.assertEqual(app.data, b"early later!")
        negotiator.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(app.events, ["made", "data", "data", "lost"])

    def test_switchInCallback(self) -> None:
        """
        Switching from the callback hands over the data of the same segment.
        """
        negotiator = MultistreamNegotiator.listener(["/echo"])
        transport = self.connect(negotiator)
        negotiator.whenNegotiated().addCallback(
            lambda r: negotiator.switchProtocol(Echo(), r[1])
        )
        negotiator.dataReceived(H + encodeMessage("/echo") + b"ping")
        self.assertEqual(transport.value(), H + encodeMessage("/echo") + b"ping")

    def test_switchWhenNegotiated(self) -> None:
        negotiator = MultistreamNegotiator.listener(["/a", "/b"])
        transport = self.connect(negotiator)
        chosen = []

        def make(protocolId):
            chosen.append(protocolId)
            return Recorder()

        d = negotiator.switchWhenNegotiated(make)
        negotiator.dataReceived(H + encodeMessage("/b") + b"data")
        app = self.successResultOf(d)
        self.assertEqual(chosen, ["/b"])
        self.assertIs(app.transport, transport)
        self.assertEqual(app.data, b"data")

    def test_switchWhenNegotiatedFactoryFails(self) -> None:
        negotiator = MultistreamNegotiator.listener(["/a"])
        transport = self.connect(negotiator)

        def make(protocolId):
            raise KeyError(protocolId)

        d = negotiator.switchWhenNegotiated(make)
        negotiator.dataReceived(H + encodeMessage("/a"))
        self.failureResultOf(d, KeyError)
        self.assertTrue(transport.disconnected)

    def test_remoteClosesRightAfterWriting(self) -> None:
        """
        A peer that writes its answer and data and closes at once: the next
        protocol still gets the data, then the close.
        """
        negotiator = MultistreamNegotiator.dialer(["/p"])
        self.connect(negotiator)
        results = []
        negotiator.whenNegotiated().addCallback(results.append)
        negotiator.dataReceived(H + encodeMessage("/p") + b"bye")
        negotiator.connectionLost(Failure(ConnectionDone()))
        app = Recorder()
        negotiator.switchProtocol(app, results[0][1])
        self.assertEqual(app.data, b"bye")
        self.assertEqual(app.events, ["made", "data", "lost"])

    def test_halfCloseReplayed(self) -> None:
        negotiator = MultistreamNegotiator.listener(["/p"])
        self.connect(negotiator)
        results = []
        negotiator.whenNegotiated().addCallback(results.append)
        negotiator.dataReceived(H + encodeMessage("/p") + b"request")
        negotiator.readConnectionLost()
        app = HalfCloseRecorder()
        negotiator.switchProtocol(app, results[0][1])
        self.assertEqual(app.events, ["made", "data", "readLost"])
        negotiator.readConnectionLost()  # forwarded again once switched
        self.assertEqual(app.events[-1], "readLost")

    def test_halfCloseNotSupported(self) -> None:
        """
        A next protocol without half-close gets the connection closed, as a
        TCP transport would do.
        """
        negotiator = MultistreamNegotiator.listener(["/p"])
        transport = self.connect(negotiator)
        negotiator.dataReceived(H + encodeMessage("/p"))
        negotiator.switchProtocol(Recorder())
        negotiator.readConnectionLost()
        self.assertTrue(transport.disconnecting)

    def test_failureAborts(self) -> None:
        negotiator = MultistreamNegotiator.dialer(["/p"])
        transport = self.connect(negotiator)
        d = negotiator.whenNegotiated()
        negotiator.dataReceived(H + NA)
        self.failureResultOf(d, NegotiationFailed)
        self.assertTrue(transport.disconnected)
        self.failureResultOf(negotiator.whenNegotiated(), NegotiationFailed)
        negotiator.dataReceived(b"ignored")

    def test_lostDuringNegotiation(self) -> None:
        negotiator = MultistreamNegotiator.dialer(["/p"])
        self.connect(negotiator)
        d = negotiator.whenNegotiated()
        negotiator.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(d, ConnectionDone)

    def test_readLostDuringNegotiation(self) -> None:
        negotiator = MultistreamNegotiator.listener(["/p"])
        self.connect(negotiator)
        d = negotiator.whenNegotiated()
        negotiator.dataReceived(H)
        negotiator.readConnectionLost()
        self.failureResultOf(d, ConnectionDone)

    def test_timeout(self) -> None:
        clock = Clock()
        negotiator = MultistreamNegotiator.listener(["/p"], clock=clock, timeout=10)
        transport = self.connect(negotiator)
        d = negotiator.whenNegotiated()
        clock.advance(9)
        self.assertNoResult(d)
        clock.advance(1)
        self.failureResultOf(d, TimeoutError)
        self.assertTrue(transport.disconnected)

    def test_timeoutCancelled(self) -> None:
        clock = Clock()
        negotiator = MultistreamNegotiator.listener(["/p"], clock=clock, timeout=10)
        self.connect(negotiator)
        negotiator.dataReceived(H + encodeMessage("/p"))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_switchBeforeNegotiated(self) -> None:
        negotiator = MultistreamNegotiator.listener(["/p"])
        self.connect(negotiator)
        self.assertRaises(RuntimeError, negotiator.switchProtocol, Recorder())


class TwoPeerTests(SynchronousTestCase):
    def test_negotiateThenEcho(self) -> None:
        """
        Through iosim: the dialer proposes two protocols, the listener
        supports the second; then both sides switch and talk.
        """
        client = MultistreamNegotiator.dialer(["/tls/1.0.0", "/noise"])
        server = MultistreamNegotiator.listener(["/noise"], eagerHeader=True)
        server.whenNegotiated().addCallback(lambda r: server.switchProtocol(Echo(), r[1]))
        app = Recorder()

        def switched(result):
            client.switchProtocol(app, result[1])
            app.transport.write(b"hello")
            return result

        d = client.whenNegotiated().addCallback(switched)
        pump = iosim.connect(server, iosim.makeFakeServer(server), client,
                             iosim.makeFakeClient(client))
        pump.flush()
        self.assertEqual(self.successResultOf(d), ("/noise", b""))
        self.assertEqual(app.data, b"hello")
        app.transport.loseConnection()
        pump.flush()
        self.assertIsInstance(app.lostReason.value, (ConnectionDone, ConnectionLost))
