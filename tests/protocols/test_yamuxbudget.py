"""
Tests for what a yamux session lets a peer make us hold: the receive
budget of its streams, pongs, and references left after a close.
"""

import gc
import weakref

from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tau.protocols.yamux import MAX_PONGS_WHILE_PAUSED, YamuxConfig, YamuxSession
from tau.protocols.yamuxframe import (
    FLAG_ACK,
    FLAG_RST,
    FLAG_SYN,
    INITIAL_WINDOW,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    dataFrame,
    pingFrame,
    windowUpdateFrame,
)
from tau.resources import ReceiveBudget
from tests.protocols.test_yamux import NO_KEEPALIVE, Recorder, SessionTestsMixin

KiB = 1024
MiB = 1024 * KiB
#: the smallest budget there may be: one initial window
SMALL = YamuxConfig(keepAliveInterval=None, maxReceiveBuffer=INITIAL_WINDOW)


class ReceiveBudgetTests(SessionTestsMixin, SynchronousTestCase):
    def pausedStreams(self, *ids, config=SMALL):
        self.makeSession(config=config, onStream=lambda s: s.setProtocol(Recorder()))
        self.session.dataReceived(b"".join(windowUpdateFrame(FLAG_SYN, i, 0) for i in ids))
        for stream in self.accepted:
            stream.pauseProducing()
        self.written()
        return self.accepted

    def test_bufferedUpToTheBudget(self):
        """
        Paused streams may buffer exactly the connection's budget between
        them.
        """
        a, b = self.pausedStreams(2, 4)
        self.session.dataReceived(dataFrame(0, 2, b"a" * (200 * KiB)) + dataFrame(0, 4, b"b" * (56 * KiB)))
        self.clock.advance(0)
        self.assertEqual(self.session.budget.used, INITIAL_WINDOW)
        self.assertEqual(self.written(), [])
        self.assertEqual((a.protocol.events, b.protocol.events), (["made"], ["made"]))

    def test_onePastResetsTheLargest(self):
        """
        One byte past the budget resets the stream holding the most, in the
        next reactor turn; the other keeps its bytes; what still comes for
        the reset stream meanwhile is dropped, not a protocol error.
        """
        a, b = self.pausedStreams(2, 4)
        appA = a.protocol
        self.session.dataReceived(dataFrame(0, 2, b"a" * (200 * KiB)) + dataFrame(0, 4, b"b" * (56 * KiB)))
        self.session.dataReceived(dataFrame(0, 4, b"b") + dataFrame(0, 2, b"a" * KiB))
        self.assertEqual(self.session.budget.used, 56 * KiB + 1)
        self.assertEqual(appA.events, ["made"])
        self.clock.advance(0)
        self.assertEqual(self.written(), [(TYPE_WINDOW_UPDATE, FLAG_RST, 2, 0, b"")])
        self.assertIsInstance(appA.lostReason.value, ConnectionAborted)
        self.assertEqual(b.protocol.events, ["made"])
        b.resumeProducing()
        self.assertEqual(b.protocol.data, b"b" * (56 * KiB + 1))
        self.assertEqual(self.session.budget.used, 0)

    def test_protocolReservations(self):
        """
        What the protocol on top reserves counts with the stream: eight
        full-size (4 MiB) messages fit the default budget of 32 MiB; a
        ninth byte resets a stream holding one, and a closed stream
        reserves nothing.
        """
        config = YamuxConfig(keepAliveInterval=None)
        self.assertEqual(config.maxReceiveBuffer, 32 * MiB)
        streams = self.pausedStreams(*range(2, 20, 2), config=config)
        for stream in streams[:8]:
            self.assertTrue(stream.reserve(4 * MiB))
        self.assertEqual(self.session.budget.used, 32 * MiB)
        last = streams[8]
        self.assertTrue(last.reserve(1))
        self.clock.advance(0)
        [(_, flags, victim, _, _)] = self.written()
        self.assertEqual((flags, victim), (FLAG_RST, 2))
        self.assertEqual(self.session.budget.used, 28 * MiB + 1)
        streams[1].release(MiB)
        self.assertEqual(self.session.budget.used, 27 * MiB + 1)
        self.assertFalse(streams[0].reserve(1))

    def test_ourStreamsNotCounted(self):
        """
        What streams we opened hold is not counted: how many there are and
        how much their readers ask for is ours to choose.
        """
        self.makeSession(config=SMALL)
        stream = self.session.openStream()
        stream.setProtocol(Recorder())
        stream.pauseProducing()
        self.session.dataReceived(windowUpdateFrame(FLAG_ACK, 1, 0) + dataFrame(0, 1, b"a" * INITIAL_WINDOW))
        self.assertTrue(stream.reserve(64 * MiB))
        self.clock.advance(0)
        self.assertEqual(self.session.budget.used, 0)
        self.assertFalse(stream.disconnected)

    def test_budgetBelowAWindow(self):
        self.assertRaises(ValueError, YamuxConfig, maxReceiveBuffer=INITIAL_WINDOW - 1)

    def test_peerBudgetIsTheParent(self):
        peer = ReceiveBudget(MiB, name="peer")
        session = YamuxSession(False, Clock(), lambda s: None, NO_KEEPALIVE, peer)
        self.assertIs(session.budget.parent, peer)
        self.assertEqual(session.budget.limit, NO_KEEPALIVE.maxReceiveBuffer)


class StreamEventsTests(SessionTestsMixin, SynchronousTestCase):
    def test_whenFinished(self):
        """
        L{YamuxStream.whenFinished} fires once the stream is over, after its
        protocol heard; at once for a finished stream.
        """
        self.makeSession()
        stream = self.session.openStream()
        app = Recorder()
        stream.setProtocol(app)
        seen = []
        stream.whenFinished().addCallback(lambda _: seen.append(list(app.events)))
        self.assertEqual(seen, [])
        stream.abortConnection()
        self.assertEqual(seen, [["made", "lost"]])
        self.assertIsNone(self.successResultOf(stream.whenFinished()))

    def test_whenDrained(self):
        """
        L{YamuxStream.whenDrained} fires once nothing waits for the peer's
        window: at once when nothing does, else when a window update lets
        the rest out, or when the stream ends.
        """
        self.makeSession()
        stream = self.session.openStream()
        self.successResultOf(stream.whenDrained())
        stream.write(b"x" * (INITIAL_WINDOW + 10))
        drained = stream.whenDrained()
        self.assertNoResult(drained)
        self.session.dataReceived(windowUpdateFrame(FLAG_ACK, 1, 9))
        self.assertNoResult(drained)
        self.session.dataReceived(windowUpdateFrame(0, 1, 1))
        self.successResultOf(drained)
        stream.write(b"y" * 100)
        again = stream.whenDrained()
        stream.abortConnection()
        self.successResultOf(again)


class PongTests(SessionTestsMixin, SynchronousTestCase):
    def test_fewPongsWhileTheTransportPushesBack(self):
        """
        A peer that does not read (our transport pushes back) gets
        MAX_PONGS_WHILE_PAUSED pongs (a peer behind on a bulk transfer keeps
        its keep-alive), then none, which would pile up; once it reads
        again, pings are answered.
        """
        self.makeSession()
        self.session.pauseProducing()
        self.session.dataReceived(pingFrame(FLAG_SYN, 1) * 100)
        self.assertEqual(self.written(), [(TYPE_PING, FLAG_ACK, 0, 1, b"")] * MAX_PONGS_WHILE_PAUSED)
        self.session.resumeProducing()
        self.session.dataReceived(pingFrame(FLAG_SYN, 2))
        self.assertEqual(self.written()[-1:], [(TYPE_PING, FLAG_ACK, 0, 2, b"")])


class ReferenceTests(SessionTestsMixin, SynchronousTestCase):
    def setUp(self):
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)

    def test_closedStreamFreedByRefcount(self):
        """
        Once a stream is reset, the stream and its protocol (and what it
        buffered) go without a garbage collection.
        """
        self.makeSession(onStream=lambda s: s.setProtocol(Recorder()))
        self.session.dataReceived(windowUpdateFrame(FLAG_SYN, 2, 0) + dataFrame(0, 2, b"held"))
        stream = self.accepted.pop()
        refs = weakref.ref(stream), weakref.ref(stream.protocol)
        stream.abortConnection()
        del stream
        self.assertEqual([r() for r in refs], [None, None])

    def test_sessionFreedByRefcount(self):
        """
        Once the connection is lost, the session lets go of its owner's
        callback (the host's connection refers to the session) and of its
        streams.
        """

        class Owner:
            pass

        owner = Owner()
        self.makeSession(onStream=lambda s: (owner, s.setProtocol(Recorder())))
        owner.session = self.session
        self.session.dataReceived(windowUpdateFrame(FLAG_SYN, 2, 0) + dataFrame(0, 2, b"held"))
        stream = self.accepted.pop()
        refs = weakref.ref(owner), weakref.ref(stream), weakref.ref(stream.protocol)
        self.session.connectionLost(Failure(ConnectionDone()))
        del owner, stream, self.session
        self.assertEqual([r() for r in refs], [None, None, None])
