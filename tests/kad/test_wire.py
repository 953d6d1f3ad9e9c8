"""
Tests for L{tau.kad.wire}: serving and sending kad messages on a
L{tau.streams.StreamProtocol} over a L{StringTransport}.
"""

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tau.kad.dht import KademliaCore
from tau.kad.messages import KadProtocolError, Message, decodeMessage, encodeMessage, peerEntry
from tau.kad.records import RecordStore
from tau.kad.simulation import SIM_ADDR
from tau.kad.wire import IDLE_TIMEOUT, MESSAGE_TIMEOUT, requestOverStream, serveStream
from tau.protocols import varint
from tau.streams import StreamProtocol
from tests.kad.helpers import RecordingTransport, peers


class FakeTransport(StringTransport):
    def __init__(self):
        super().__init__()
        self.aborted = False

    def abortConnection(self):
        self.aborted = True


def stream():
    s = StreamProtocol()
    s.makeConnection(FakeTransport())
    return s


def frames(data):
    return [decodeMessage(m) for m in varint.LPDecoder(1 << 20).feed(data)]


class ServeTests(SynchronousTestCase):
    def setUp(self):
        self.me, self.asker = peers(2, seed=40)
        self.core = KademliaCore(self.me, Clock(), RecordingTransport(), RecordStore())
        for p in peers(10, seed=41):
            self.core.peerSeen(p, True)

    def test_loopsUntilEOF(self):
        """
        Several requests on one inbound stream (as go sends them) are all
        answered, ADD_PROVIDER without an answer; EOF closes our side.
        """
        s = stream()
        d = Deferred.fromCoroutine(serveStream(s, self.core, self.asker))
        mh = b"\x12\x20" + b"m" * 32
        for m in (
            Message(type=Message.FIND_NODE, key=b"a"),
            Message(type=Message.ADD_PROVIDER, key=mh, providerPeers=[peerEntry(self.asker, [SIM_ADDR])]),
            Message(type=Message.GET_PROVIDERS, key=mh),
        ):
            s.dataReceived(varint.lpEncode(encodeMessage(m)))
        s.readConnectionLost()
        self.assertEqual(self.successResultOf(d), 3)
        out = frames(s.transport.value())
        self.assertEqual([m.type for m in out], [Message.FIND_NODE, Message.GET_PROVIDERS])
        self.assertEqual(len(out[1].providerPeers), 1)
        self.assertTrue(s.transport.disconnecting)

    def test_garbageResets(self):
        s = stream()
        d = Deferred.fromCoroutine(serveStream(s, self.core, self.asker))
        s.dataReceived(varint.lpEncode(b"\x08\x63"))
        self.assertEqual(self.successResultOf(d), 0)
        self.assertTrue(s.transport.aborted)

    def test_oversizedResets(self):
        s = stream()
        d = Deferred.fromCoroutine(serveStream(s, self.core, self.asker, maxMessageSize=100))
        s.dataReceived(varint.encode(101))
        self.successResultOf(d)
        self.assertTrue(s.transport.aborted)


class RequestTests(SynchronousTestCase):
    def test_request(self):
        s = stream()
        d = Deferred.fromCoroutine(requestOverStream(s, Message(type=Message.FIND_NODE, key=b"k")))
        self.assertEqual(frames(s.transport.value())[0].key, b"k")
        s.dataReceived(varint.lpEncode(encodeMessage(Message(type=Message.FIND_NODE))))
        self.assertEqual(self.successResultOf(d).type, Message.FIND_NODE)
        self.assertTrue(s.transport.disconnecting)

    def test_noResponse(self):
        s = stream()
        d = Deferred.fromCoroutine(requestOverStream(s, Message(type=Message.ADD_PROVIDER), expectResponse=False))
        self.assertIsNone(self.successResultOf(d))
        self.assertTrue(s.transport.disconnecting)

    def test_badResponse(self):
        s = stream()
        d = Deferred.fromCoroutine(requestOverStream(s, Message(type=Message.FIND_NODE, key=b"k")))
        s.dataReceived(varint.lpEncode(b"\xff\xff"))
        self.failureResultOf(d, KadProtocolError)
        self.assertTrue(s.transport.aborted)


class DrainingTransport(FakeTransport):
    """
    A transport whose writes wait for the peer's window until C{drain()}.
    """

    def __init__(self):
        super().__init__()
        self.waiting = []

    def whenDrained(self):
        d = Deferred()
        self.waiting.append(d)
        return d

    def drain(self):
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(None)


class DeadlineTests(SynchronousTestCase):
    def setUp(self):
        self.me, self.asker = peers(2, seed=40)
        self.clock = Clock()
        self.core = KademliaCore(self.me, self.clock, RecordingTransport(), RecordStore())

    def serve(self, transport=None):
        s = StreamProtocol()
        s.makeConnection(transport or FakeTransport())
        return s, Deferred.fromCoroutine(serveStream(s, self.core, self.asker))

    def test_idle(self):
        """
        A stream whose next request does not start within L{IDLE_TIMEOUT}
        seconds is reset; just before, it is still served.
        """
        s, d = self.serve()
        self.clock.advance(IDLE_TIMEOUT - 0.001)
        s.dataReceived(varint.lpEncode(encodeMessage(Message(type=Message.FIND_NODE, key=b"a"))))
        self.assertEqual(len(frames(s.transport.value())), 1)
        self.clock.advance(IDLE_TIMEOUT - 0.001)
        self.assertNoResult(d)
        self.assertFalse(s.transport.aborted)
        self.clock.advance(0.001)
        self.assertEqual(self.successResultOf(d), 1)
        self.assertTrue(s.transport.aborted)

    def test_unfinishedMessage(self):
        """
        A request whose length arrived must end within L{MESSAGE_TIMEOUT}
        seconds, or the stream is reset (a peer cannot pin a stream and its
        buffer with a message it never finishes).
        """
        s, d = self.serve()
        data = varint.lpEncode(encodeMessage(Message(type=Message.FIND_NODE, key=b"a")))
        s.dataReceived(data[:-1])
        self.clock.advance(MESSAGE_TIMEOUT - 0.001)
        self.assertNoResult(d)
        self.clock.advance(0.001)
        self.assertEqual(self.successResultOf(d), 0)
        self.assertTrue(s.transport.aborted)

    def test_unreadAnswers(self):
        """
        The next request is read only once the answer to the last one left;
        a peer that does not read its answers is reset after
        L{IDLE_TIMEOUT} with one answer queued.
        """
        transport = DrainingTransport()
        s, d = self.serve(transport)
        request = varint.lpEncode(encodeMessage(Message(type=Message.FIND_NODE, key=b"a")))
        s.dataReceived(request * 3)
        self.assertEqual(len(frames(transport.value())), 1)
        transport.drain()
        self.assertEqual(len(frames(transport.value())), 2)
        self.clock.advance(IDLE_TIMEOUT)
        self.assertEqual(self.successResultOf(d), 2)
        self.assertTrue(transport.aborted)
