"""
The relay's bookkeeping (reservations, rates) and its circuits, without a
network: a fake clock and fake streams.
"""

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tau.fakes import FakeHost
from tau.identity import PrivateKey
from tau.relay import messages as m
from tau.relay.server import Circuit, RelayLimits, RelayService, ReservationStore


def peers(n):
    return [PrivateKey.generate().peerID() for _ in range(n)]


class ReservationStoreTests(SynchronousTestCase):
    def test_totalLimit(self):
        store = ReservationStore(RelayLimits(maxReservations=3, maxReservationsPerIP=0))
        ps = peers(4)
        for i, p in enumerate(ps[:3]):
            self.assertEqual(store.reserve(p, f"10.0.0.{i}", 0.0)[0], m.OK)
        self.assertEqual(store.reserve(ps[3], "10.0.0.9", 0.0), (m.RESERVATION_REFUSED, 0.0))
        # a refresh of a held one is still fine at the limit
        self.assertEqual(store.reserve(ps[0], "10.0.0.0", 10.0), (m.OK, 3610.0))
        self.assertEqual(len(store), 3)

    def test_perIPLimit(self):
        store = ReservationStore(RelayLimits(maxReservationsPerIP=2))
        ps = peers(4)
        self.assertEqual(store.reserve(ps[0], "1.2.3.4", 0.0)[0], m.OK)
        self.assertEqual(store.reserve(ps[1], "1.2.3.4", 0.0)[0], m.OK)
        self.assertEqual(store.reserve(ps[2], "1.2.3.4", 0.0)[0], m.RESERVATION_REFUSED)
        self.assertEqual(store.reserve(ps[3], "5.6.7.8", 0.0)[0], m.OK)

    def test_expiry(self):
        store = ReservationStore(RelayLimits(maxReservations=1, reservationTTL=100))
        a, b = peers(2)
        self.assertEqual(store.reserve(a, None, 0.0), (m.OK, 100.0))
        self.assertIsNotNone(store.get(a, 99.0))
        self.assertEqual(store.reserve(b, None, 50.0)[0], m.RESERVATION_REFUSED)
        self.assertIsNone(store.get(a, 100.0))
        self.assertEqual(store.reserve(b, None, 100.0)[0], m.OK)

    def test_expireSweep(self):
        store = ReservationStore(RelayLimits(reservationTTL=10))
        for p in peers(3):
            store.reserve(p, None, 0.0)
        self.assertEqual(store.expire(9.0), 0)
        self.assertEqual(store.expire(10.0), 3)
        self.assertEqual(len(store), 0)

    def test_rate(self):
        """
        C{reserveRate} requests at once, then one more every 60/rate
        seconds; the refusals in a row are counted.
        """
        store = ReservationStore(RelayLimits(reserveRate=6))
        [p] = peers(1)
        self.assertEqual([store.allow(p, 0.0) for _ in range(8)], [True] * 6 + [False] * 2)
        self.assertEqual(store.strikes(p), 2)
        self.assertFalse(store.allow(p, 9.0))
        self.assertTrue(store.allow(p, 10.5))
        self.assertEqual(store.strikes(p), 0)
        self.assertFalse(store.allow(p, 10.6))
        # others are not affected
        [q] = peers(1)
        self.assertTrue(store.allow(q, 10.6))

    def test_noLimits(self):
        store = ReservationStore(RelayLimits(maxReservations=0, maxReservationsPerIP=0, reserveRate=0))
        ps = peers(300)
        self.assertTrue(all(store.allow(p, 0.0) for p in ps for _ in range(3)))
        self.assertTrue(all(store.reserve(p, "1.1.1.1", 0.0)[0] == m.OK for p in ps))


class LimitsConfigTests(SynchronousTestCase):
    def test_fromConfig(self):
        limits = RelayLimits.fromConfig(
            {"service": "on", "reservation-ttl": 60, "max-reservations": 5, "max-reservations-per-ip": 2,
             "reserve-rate": 3, "max-circuits": 4, "max-circuits-total": 9, "duration": 0, "data": 0}
        )
        self.assertEqual(
            limits,
            RelayLimits(reservationTTL=60, maxReservations=5, maxReservationsPerIP=2, reserveRate=3,
                        maxCircuits=4, maxCircuitsTotal=9, duration=0, data=0),
        )
        self.assertIsNone(limits.limit)
        self.assertEqual(RelayLimits().limit, m.Limit(120, 1 << 17))


class FakeStream:
    """
    Just enough of a yamux stream for a circuit.
    """

    def __init__(self):
        self.protocol = None
        self.producer = None
        self.written = []
        self.finSent = False
        self.finReceived = False
        self.disconnected = False
        self.aborted = False
        self.paused = False

    def setProtocol(self, protocol):
        self.protocol = protocol
        protocol.makeConnection(self)

    def write(self, data):
        assert not self.finSent and not self.disconnected
        self.written.append(data)

    def loseConnection(self):
        self.finSent = True
        self._maybeDone()

    def abortConnection(self):
        if not self.disconnected:
            self.aborted = True
            self._end(Failure(ConnectionAborted()))

    def registerProducer(self, producer, streaming):
        assert streaming and self.producer is None
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False

    # the remote side
    def receive(self, data):
        self.protocol.dataReceived(data)

    def receiveFin(self):
        self.finReceived = True
        self.protocol.readConnectionLost()
        self._maybeDone()

    def receiveReset(self):
        self._end(Failure(ConnectionAborted("reset by peer")))

    def _maybeDone(self):
        if self.finSent and self.finReceived:
            self._end(Failure(ConnectionDone()))

    def _end(self, reason):
        if self.disconnected:
            return
        self.disconnected = True
        producer, self.producer = self.producer, None
        if producer is not None:
            producer.stopProducing()
        self.protocol.connectionLost(reason)

    def stopProducing(self):
        self.abortConnection()

    @property
    def data(self):
        return b"".join(self.written)


class CircuitTests(SynchronousTestCase):
    def circuit(self, limit=None, initial=((b"", False), (b"", False))):
        self.clock = Clock()
        self.a, self.b = FakeStream(), FakeStream()
        circuit = Circuit((self.a, self.b), limit, self.clock, names=("A", "B"))
        self.done = []
        circuit.whenDone().addCallback(self.done.append)
        return circuit.start(initial)

    def test_pipesBothWaysWithBackPressure(self):
        circuit = self.circuit()
        # each stream produces what the other one sends
        self.b.producer.pauseProducing()
        self.assertTrue(self.a.paused)
        self.b.producer.resumeProducing()
        self.assertFalse(self.a.paused)
        self.a.producer.pauseProducing()
        self.assertTrue(self.b.paused)
        self.a.producer.resumeProducing()
        self.a.receive(b"hello ")
        self.a.receive(b"there")
        self.b.receive(b"back")
        self.assertEqual(self.b.data, b"hello there")
        self.assertEqual(self.a.data, b"back")
        self.assertEqual(circuit.counts, [11, 4])

    def test_initialBytesAndEnd(self):
        self.circuit(initial=((b"early", True), (b"", False)))
        self.assertEqual(self.b.data, b"early")
        self.assertTrue(self.b.finSent)
        self.assertIsNone(self.b.producer)

    def test_finPassedOnThenDone(self):
        circuit = self.circuit()
        self.a.receive(b"x")
        self.a.receiveFin()
        self.assertTrue(self.b.finSent)
        self.assertFalse(self.a.finSent)
        self.b.receive(b"y")
        self.b.receiveFin()
        self.assertTrue(self.a.finSent)
        self.assertEqual(self.done, [None])
        self.assertFalse(self.a.aborted or self.b.aborted)
        self.assertIsNone(circuit.reason)

    def test_resetPassedOn(self):
        circuit = self.circuit()
        self.b.receiveReset()
        self.assertTrue(self.a.aborted)
        self.assertEqual(self.done, [None])
        self.assertIn("B reset", circuit.reason)

    def test_dataLimitPerDirection(self):
        """
        Exactly C{data} bytes go each way; the byte past it resets both.
        """
        circuit = self.circuit(m.Limit(0, 10))
        self.a.receive(b"123456")
        self.b.receive(b"abcdefghij")  # exactly the limit the other way
        self.assertFalse(self.a.aborted)
        self.a.receive(b"7890XYZ")
        self.assertEqual(self.b.data, b"1234567890")
        self.assertEqual(self.a.data, b"abcdefghij")
        self.assertTrue(self.a.aborted and self.b.aborted)
        self.assertIn("data limit of 10 bytes", circuit.reason)
        self.assertEqual(self.done, [None])

    def test_durationLimit(self):
        circuit = self.circuit(m.Limit(30, 0))
        self.clock.advance(29)
        self.a.receive(b"still fine")
        self.assertFalse(self.a.aborted)
        self.clock.advance(1)
        self.assertTrue(self.a.aborted and self.b.aborted)
        self.assertIn("duration limit of 30 s", circuit.reason)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timerCancelledWhenClosed(self):
        self.circuit(m.Limit(30, 0))
        self.a.receiveFin()
        self.b.receiveFin()
        self.assertEqual(self.done, [None])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class _Conn:
    def __init__(self, remoteAddr):
        self.remoteAddr = remoteAddr


class ReservationAddrsTests(SynchronousTestCase):
    def test_loopbackOnlyForLoopbackPeers(self):
        """
        A reservation names the relay's loopback addresses only to a peer
        that reached it over loopback: nobody else can dial them, and the
        peer would announce them behind /p2p-circuit.
        """
        host = FakeHost(Clock(), announce=["/ip4/127.0.0.1/tcp/4001", "/ip4/10.0.0.5/tcp/4001", "/ip6/::1/tcp/4001",
                                           "/ip4/10.0.0.5/tcp/4001/p2p/X/p2p-circuit"])
        relay = RelayService(host, Clock(), RelayLimits())
        remote = relay._relayAddrs(_Conn("/ip4/10.0.0.9/tcp/5555"))
        self.assertEqual(remote, [f"/ip4/10.0.0.5/tcp/4001/p2p/{host.peerID}"])
        local = relay._relayAddrs(_Conn("/ip4/127.0.0.1/tcp/5555"))
        self.assertEqual(local, [f"/ip4/127.0.0.1/tcp/4001/p2p/{host.peerID}",
                                 f"/ip4/10.0.0.5/tcp/4001/p2p/{host.peerID}",
                                 f"/ip6/::1/tcp/4001/p2p/{host.peerID}"])


class _ReserveConn:
    relay = None

    def __init__(self, remoteAddr):
        self.remoteAddr = remoteAddr

    def whenClosed(self):
        return Deferred()


class _ReserveStream:
    def __init__(self, remoteAddr):
        self.remotePeer = PrivateKey.generate().peerID()
        self.connection = _ReserveConn(remoteAddr)
        self.replies = []

    def writeLP(self, data):
        self.replies.append(m.decodeHop(data).status)

    def closeWrite(self):
        pass


class ReservationGroupTests(SynchronousTestCase):
    def test_ipv6GroupedBySlashSixtyFour(self):
        """
        C{max-reservations-per-ip} counts an IPv6 /64 as one address (one
        host holds a whole /64), an IPv4 address as itself.
        """
        host = FakeHost(Clock(), announce=["/ip4/10.0.0.5/tcp/4001"])
        host.key = PrivateKey.generate()
        relay = RelayService(host, Clock(), RelayLimits(maxReservationsPerIP=2))

        def reserve(addr):
            stream = _ReserveStream(addr)
            relay._reserve(stream)
            return stream.replies

        self.assertEqual(reserve("/ip6/2001:db8:0:1::a/tcp/1"), [m.OK])
        self.assertEqual(reserve("/ip6/2001:db8:0:1::b/tcp/1"), [m.OK])
        self.assertEqual(reserve("/ip6/2001:db8:0:1:1:2:3:4/tcp/1"), [m.RESERVATION_REFUSED])
        self.assertEqual(reserve("/ip6/2001:db8:0:2::a/tcp/1"), [m.OK])
        self.assertEqual(reserve("/ip4/10.0.0.9/tcp/1"), [m.OK])
        self.assertEqual(reserve("/ip4/10.0.0.10/tcp/1"), [m.OK])
