"""
Auto-relay's choices and the reachability policy, with fakes on a
MemoryReactorClock.
"""

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tau.autonat.autorelay import HOP, AutoRelay
from tau.autonat.policy import ReachabilityPolicy
from tau.autonat.reachability import PRIVATE, PUBLIC, UNKNOWN
from tau.fakes import FakeHost
from tau.identity import PrivateKey
from tau.relay.messages import Reservation


def newPeer():
    return PrivateKey.generate().peerID()


class FakeRelayClient:
    """
    C{listen} answers from C{answers[relay]} (True: a reservation; an
    exception: refused; a Deferred: pending); the default is True.
    """

    def __init__(self):
        self.answers = {}
        self.held = {}
        self.asked = []
        self.released = []
        self.observers = []

    def addObserver(self, observer):
        self.observers.append(observer)

    def reservations(self):
        return dict(self.held)

    def listen(self, relay, addr=None):
        self.asked.append(relay)
        answer = self.answers.get(relay, True)
        if isinstance(answer, Deferred):
            return answer
        if isinstance(answer, Exception):
            return fail(answer)
        reservation = Reservation(relay, 2_000_000_000, (f"/ip4/1.2.3.4/tcp/1/p2p/{relay}",))
        self.held[relay] = reservation
        return succeed(reservation)

    def unlisten(self, relay):
        self.released.append(relay)
        self.held.pop(relay, None)

    def lose(self, relay):
        reservation = self.held.pop(relay)
        for observer in self.observers:
            observer("lost", relay, reservation)


class AutoRelayTests(SynchronousTestCase):
    def setUp(self):
        self.clock = MemoryReactorClock()
        self.host = FakeHost(self.clock, listen=["/ip4/0.0.0.0/tcp/4001"], announce=["/ip4/192.168.1.5/tcp/4001"])
        self.client = FakeRelayClient()
        self.autorelay = AutoRelay(self.host, self.client, self.clock, desired=2, backoff=300, interval=30)
        self.autorelay.startService()
        self.addCleanup(lambda: self.autorelay.running and self.autorelay.stopService())

    def relay(self, **kwargs):
        peer = newPeer()
        self.host.addConnection(peer, [HOP], **kwargs)
        return peer

    def test_inactiveDoesNothing(self):
        self.relay()
        self.clock.advance(100)
        self.assertEqual(self.client.asked, [])

    def test_reservesDesiredCount(self):
        relays = [self.relay() for _ in range(3)]
        self.host.addConnection(newPeer(), ["/ipfs/id/1.0.0"])  # not a relay
        self.relay(relay=newPeer())  # only reached through a relay
        self.autorelay.setActive(True)
        self.assertEqual(len(self.client.asked), 2)
        self.assertTrue(set(self.client.asked) <= set(relays))
        self.assertEqual(self.autorelay.relays, set(self.client.asked))
        self.clock.advance(100)
        self.assertEqual(len(self.client.asked), 2)

    def test_publicReleases(self):
        self.relay()
        self.autorelay.setActive(True)
        held = set(self.autorelay.relays)
        self.autorelay.setActive(False)
        self.assertEqual(set(self.client.released), held)
        self.assertEqual(self.autorelay.relays, set())
        self.assertEqual(self.client.held, {})

    def test_refusedRelayBacksOff(self):
        bad = self.relay()
        self.client.answers[bad] = ConnectionRefusedError("no")
        self.autorelay.setActive(True)
        self.assertEqual(self.client.asked, [bad])
        self.clock.advance(30)  # short of relays: looks again, but not at bad
        self.assertEqual(self.client.asked, [bad])
        good = self.relay()
        self.clock.advance(30)
        self.assertEqual(self.client.asked, [bad, good])
        self.clock.advance(300)
        self.assertEqual(self.client.asked, [bad, good, bad])

    def test_lostRelayReplaced(self):
        first = self.relay()
        self.autorelay.setActive(True)
        self.assertEqual(self.autorelay.relays, {first})
        second = self.relay()
        self.client.lose(first)
        self.assertEqual(self.autorelay.relays, {second})

    def test_newRelayPeerUsedWhenIdentified(self):
        from tau.protocols import identify

        self.autorelay.setActive(True)
        peer = newPeer()
        conn = self.host.addConnection(peer, [HOP])
        identify._state(self.host).identified[conn].fire(type("R", (), {"protocols": [HOP]})())
        self.assertEqual(self.client.asked, [peer])

    def test_failureOnIdentifiedPeerIsLogged(self):
        from tau.protocols import identify

        self.autorelay.setActive(True)
        self.autorelay._identified = lambda result: 1 / 0
        conn = self.host.addConnection(newPeer(), [HOP])
        identify._state(self.host).identified[conn].fire(type("R", (), {"protocols": [HOP]})())
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_becamePublicWhileReserving(self):
        pending = Deferred()
        peer = self.relay()
        self.client.answers[peer] = pending
        self.autorelay.setActive(True)
        self.autorelay.setActive(False)
        self.assertTrue(pending.called)  # cancelled
        self.assertEqual(self.autorelay.relays, set())

    def test_stopCancelsTimer(self):
        self.autorelay.setActive(True)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.autorelay.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class FakeDHT:
    def __init__(self, mode):
        self.mode = mode
        self.modes = []

    def setMode(self, mode):
        self.modes.append(mode)
        self.mode = mode


class FakeRelayService:
    autoDefault = True

    def __init__(self):
        self.reachable = []

    def setReachable(self, reachable):
        self.reachable.append(reachable)


class FakeAutoRelay:
    def __init__(self):
        self.active = []

    def setActive(self, active):
        self.active.append(active)


class PolicyTests(SynchronousTestCase):
    def test_verdicts(self):
        dht, relay, autorelay = FakeDHT("server"), FakeRelayService(), FakeAutoRelay()
        policy = ReachabilityPolicy(dht, relay, autorelay)
        for status in (PRIVATE, PUBLIC, UNKNOWN):
            policy(status)
        self.assertEqual(dht.modes, ["client", "server", "server"])
        self.assertEqual(relay.reachable, [False, True, True])
        self.assertEqual(autorelay.active, [True, False, False])

    def test_unknownRestoresConfiguredDefaults(self):
        dht, relay = FakeDHT("client"), FakeRelayService()
        relay.autoDefault = False
        policy = ReachabilityPolicy(dht, relay, None)
        policy(PUBLIC)
        policy(UNKNOWN)
        self.assertEqual(dht.modes, ["server", "client"])
        self.assertEqual(relay.reachable, [True, False])

    def test_nothingToDrive(self):
        ReachabilityPolicy()(PRIVATE)
