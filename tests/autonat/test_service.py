"""
The AutoNAT service's schedule and verdicts, on a MemoryReactorClock with a
fake host and fake dial-back answers.
"""

import random

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tau.autonat.messages import E_DIAL_ERROR, E_DIAL_REFUSED, E_INTERNAL_ERROR, OK, PROTOCOL_ID, DialResponse
from tau.autonat.reachability import MAX_CONFIDENCE, PRIVATE, PUBLIC, UNKNOWN
from tau.autonat.server import AutoNATServer
from tau.autonat.service import AutoNATService
from tau.fakes import FakeHost
from tau.identity import PrivateKey
from tau.protocols import identify
from tests.autonat.test_server import FakeDialer


def newPeer():
    return PrivateKey.generate().peerID()


class Answers:
    """
    A fake C{dialBack}: answers from a list (a status, an exception, or a
    Deferred left pending), recording who was asked for what.
    """

    def __init__(self, *answers):
        self.answers = list(answers)
        self.asked = []

    def __call__(self, host, peer, addrs, timeout):
        self.asked.append((peer, list(addrs)))
        answer = self.answers.pop(0)
        if isinstance(answer, Deferred):
            return answer
        if isinstance(answer, Exception):
            return fail(answer)
        status, addr = answer if isinstance(answer, tuple) else (answer, None)
        return succeed(DialResponse(status, "", addr))


class ServiceTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.host = FakeHost(self.reactor, listen=["/ip4/0.0.0.0/tcp/4001"], announce=["/ip4/192.168.1.5/tcp/4001"])
        self.server = AutoNATServer(self.reactor, FakeDialer(), hideTiming=False)
        self.changes = []

    def service(self, *answers, **kwargs):
        self.answers = Answers(*answers)
        service = AutoNATService(
            self.host, self.reactor, dialBack=self.answers, server=self.server, rng=random.Random(1), **kwargs
        )
        service.subscribe(self.changes.append)
        service.startService()
        self.addCleanup(lambda: service.running and service.stopService())
        return service

    def test_servesWhileNotPrivate(self):
        service = self.service(E_DIAL_ERROR)
        self.assertIn(PROTOCOL_ID, self.host.handlers)
        self.host.addConnection(newPeer(), [PROTOCOL_ID])
        self.reactor.advance(service.bootDelay)
        self.assertEqual(service.status, PRIVATE)
        self.assertNotIn(PROTOCOL_ID, self.host.handlers)
        self.assertGreater(self.host.changes, 0)
        service.stopService()
        self.assertNotIn(PROTOCOL_ID, self.host.handlers)

    def test_noServe(self):
        self.service(serve=False)
        self.assertNotIn(PROTOCOL_ID, self.host.handlers)

    def test_bootDelay(self):
        service = self.service(OK)
        self.host.addConnection(newPeer(), [PROTOCOL_ID])
        self.reactor.advance(service.bootDelay - 1)
        self.assertEqual(self.answers.asked, [])
        self.reactor.advance(1)
        self.assertEqual(len(self.answers.asked), 1)
        self.assertEqual(service.status, PUBLIC)
        self.assertEqual(self.changes, [PUBLIC])

    def test_onlyPeersThatSpeakAutoNAT(self):
        service = self.service(OK)
        self.host.addConnection(newPeer(), ["/ipfs/id/1.0.0"])
        relayed = newPeer()
        self.host.addConnection(relayed, [PROTOCOL_ID], relay=newPeer())
        self.reactor.advance(service.bootDelay)
        self.assertEqual(self.answers.asked, [])
        self.assertEqual(service.status, UNKNOWN)
        good = newPeer()
        self.host.addConnection(good, [PROTOCOL_ID])
        self.reactor.advance(service.retryInterval)
        self.assertEqual([p for p, _ in self.answers.asked], [good])

    def test_identifiedPeerTriggersProbe(self):
        """
        While unknown, a newly identified peer that speaks AutoNAT is asked
        at once, before the boot delay.
        """
        service = self.service(OK)
        peer = newPeer()
        conn = self.host.addConnection(peer, [PROTOCOL_ID])
        identify._state(self.host).identified[conn].fire(_Result([PROTOCOL_ID]))
        self.reactor.advance(0)
        self.assertEqual([p for p, _ in self.answers.asked], [peer])
        self.assertEqual(service.status, PUBLIC)

    def test_failureOnIdentifiedPeerIsLogged(self):
        """
        An error while handling an identified peer is logged, not
        swallowed with the identify failures that mean nothing.
        """
        service = self.service(OK)
        service._identified = lambda connection, result: 1 / 0
        conn = self.host.addConnection(newPeer(), [PROTOCOL_ID])
        identify._state(self.host).identified[conn].fire(_Result([PROTOCOL_ID]))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        other = self.host.addConnection(newPeer(), [PROTOCOL_ID])
        identify._state(self.host).identified[other].fire(Failure(ConnectionDone()))
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_addressesSent(self):
        """
        Announced TCP addresses (not circuit ones), then each observed IP
        with each listening port.
        """
        self.host.extra.append(f"/ip4/5.5.5.5/tcp/1/p2p/{newPeer()}/p2p-circuit")
        service = self.service(OK)
        self.host.addConnection(newPeer(), [PROTOCOL_ID], observed="/ip4/7.7.7.7/tcp/50123")
        self.host.addConnection(newPeer(), [], observed="/ip4/7.7.7.7/tcp/50999")
        self.host.addConnection(newPeer(), [], observed="/ip4/8.8.8.8/tcp/50999")
        self.reactor.advance(service.bootDelay)
        self.assertEqual(
            self.answers.asked[0][1],
            ["/ip4/192.168.1.5/tcp/4001", "/ip4/7.7.7.7/tcp/4001", "/ip4/8.8.8.8/tcp/4001"],
        )

    def test_privateThenSchedule(self):
        service = self.service(E_DIAL_ERROR, E_DIAL_ERROR, E_DIAL_ERROR, E_DIAL_ERROR, E_DIAL_ERROR)
        for _ in range(3):
            self.host.addConnection(newPeer(), [PROTOCOL_ID])
        self.reactor.advance(service.bootDelay)
        self.assertEqual((service.status, service.confidence), (PRIVATE, 0))
        # not confident yet: again after retryInterval (another peer)
        for _ in range(MAX_CONFIDENCE):
            self.reactor.advance(service.retryInterval)
        self.assertEqual(service.confidence, MAX_CONFIDENCE)
        asked = len(self.answers.asked)
        self.assertEqual(asked, 1 + MAX_CONFIDENCE)
        # confident: the next probe waits refreshInterval
        self.reactor.advance(service.retryInterval)
        self.assertEqual(len(self.answers.asked), asked)
        self.reactor.advance(service.refreshInterval - service.retryInterval)
        self.assertEqual(len(self.answers.asked), asked + 1)
        self.assertEqual(self.changes, [PRIVATE])

    def test_peerNotAskedAgainSoon(self):
        service = self.service(E_DIAL_ERROR, E_DIAL_ERROR)
        peer = newPeer()
        self.host.addConnection(peer, [PROTOCOL_ID])
        self.reactor.advance(service.bootDelay)
        self.reactor.advance(service.throttlePeerPeriod - 1)
        self.assertEqual(len(self.answers.asked), 1)
        self.reactor.advance(service.retryInterval)
        self.assertEqual(len(self.answers.asked), 2)

    def test_refusedRetriesSoonWithAnotherPeer(self):
        service = self.service(E_DIAL_REFUSED, OK)
        a, b = newPeer(), newPeer()
        self.host.addConnection(a, [PROTOCOL_ID])
        self.host.addConnection(b, [PROTOCOL_ID])
        self.reactor.advance(service.bootDelay)
        self.assertEqual(service.status, UNKNOWN)
        self.reactor.advance(service.forcedRetry)
        self.assertEqual(service.status, PUBLIC)
        self.assertEqual(len({p for p, _ in self.answers.asked}), 2)

    def test_errorsAreUnknown(self):
        service = self.service(OK, OK, ConnectionRefusedError(), E_INTERNAL_ERROR, ConnectionRefusedError())
        for _ in range(5):
            self.host.addConnection(newPeer(), [PROTOCOL_ID])
        self.reactor.advance(service.bootDelay)
        self.reactor.advance(service.retryInterval)
        self.assertEqual((service.status, service.confidence), (PUBLIC, 1))
        self.reactor.advance(service.retryInterval)
        self.assertEqual((service.status, service.confidence), (PUBLIC, 0))
        self.reactor.advance(service.retryInterval)
        self.assertEqual(service.status, UNKNOWN)
        self.assertEqual(self.changes, [PUBLIC, UNKNOWN])

    def test_confirmedAddressAnnouncedWhilePublic(self):
        service = self.service((OK, "/ip4/7.7.7.7/tcp/4001"), E_DIAL_ERROR)
        self.host.addConnection(newPeer(), [PROTOCOL_ID], observed="/ip4/7.7.7.7/tcp/5555")
        self.host.addConnection(newPeer(), [PROTOCOL_ID], observed="/ip4/7.7.7.7/tcp/5556")
        self.reactor.advance(service.bootDelay)
        self.assertIn("/ip4/7.7.7.7/tcp/4001", self.answers.asked[0][1])
        self.assertIn("/ip4/7.7.7.7/tcp/4001", self.host.announcedAddresses())
        self.reactor.advance(service.retryInterval)
        self.assertEqual(service.status, PRIVATE)
        self.assertNotIn("/ip4/7.7.7.7/tcp/4001", self.host.announcedAddresses())

    def test_addressNotAskedForIsNotAnnounced(self):
        """
        A peer answering OK with an address we did not ask to be dialed at
        (another node's, say) counts as an OK, but the address is not
        announced: one peer's word cannot point others at a victim.
        """
        service = self.service((OK, "/ip4/6.6.6.6/tcp/80"))
        self.host.addConnection(newPeer(), [PROTOCOL_ID], observed="/ip4/7.7.7.7/tcp/5555")
        self.reactor.advance(service.bootDelay)
        self.assertEqual(service.status, PUBLIC)
        self.assertNotIn("/ip4/6.6.6.6/tcp/80", self.host.announcedAddresses())
        self.assertEqual(service.confirmedAddrs, [])

    def test_forced(self):
        service = self.service(reachability=PRIVATE)
        self.assertEqual(service.status, PRIVATE)
        self.assertEqual(self.changes, [PRIVATE])
        self.host.addConnection(newPeer(), [PROTOCOL_ID])
        self.reactor.advance(3600)
        self.assertEqual(self.answers.asked, [])

    def test_stopCancelsProbe(self):
        pending = Deferred()
        service = self.service(pending)
        self.host.addConnection(newPeer(), [PROTOCOL_ID])
        self.reactor.advance(service.bootDelay)
        service.stopService()
        self.assertTrue(pending.called)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(service.status, UNKNOWN)


class _Result:
    def __init__(self, protocols):
        self.protocols = protocols
