"""
L{SubstrateClient}: the ranking rule, and asking real substrates on
loopback (offers, NOT_SERVED, failures, timeouts, the grace, streams
reset).
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tau.services.substrate.client import NoSubstrate, NotServed, Offer, SubstrateClient, rank
from tau.services.substrate.metrics import FunctionMetrics, WebsiteMetrics
from tests.hosts import startHost
from tests.services.gateway.helpers import TestSubstrate, connect


def offers(*metrics):
    return [Offer(f"p{i}", None, m, i) for i, m in enumerate(metrics)]


def peers(ranked):
    return [o.peer for o in ranked]


class RankTests(TestCase):
    def test_cachedFirst(self):
        self.assertEqual(peers(rank(offers(FunctionMetrics(0.0), FunctionMetrics(1.0)))), ["p1", "p0"])

    def test_thenColdStartThenRunTime(self):
        ranked = rank(offers(FunctionMetrics(0.0, coldStart=9, avgRunTime=1),
                             FunctionMetrics(0.0, coldStart=3, avgRunTime=9),
                             FunctionMetrics(0.0, coldStart=3, avgRunTime=2)))
        self.assertEqual(peers(ranked), ["p2", "p1", "p0"])

    def test_thenMemoryThenFirstAnswer(self):
        ranked = rank(offers(FunctionMetrics(1.0, memory=5.0), FunctionMetrics(1.0, memory=2.0),
                             FunctionMetrics(1.0, memory=2.0)))
        self.assertEqual(peers(ranked), ["p1", "p2", "p0"])

    def test_websites(self):
        ranked = rank(offers(WebsiteMetrics(0.0), WebsiteMetrics(1.0), WebsiteMetrics(1.0)))
        self.assertEqual(peers(ranked), ["p1", "p2", "p0"])

    def test_kindWithMoreOffersFirst(self):
        """
        Go's rule: functions unless more substrates offered a website.
        """
        ranked = rank(offers(WebsiteMetrics(1.0), FunctionMetrics(0.0), WebsiteMetrics(1.0)))
        self.assertEqual(peers(ranked), ["p0", "p2", "p1"])
        ranked = rank(offers(WebsiteMetrics(1.0), FunctionMetrics(0.0)))
        self.assertEqual(peers(ranked), ["p1", "p0"])


class ClientTests(TestCase):
    timeout = 30

    async def client(self, *substrates, **kwargs):
        for s in substrates:
            await s.start(self)
        me = await startHost(self)
        await connect(me, *substrates)
        return SubstrateClient(me, None, **kwargs)

    async def test_bestOfThree(self):
        slow = TestSubstrate(FunctionMetrics(0.0, coldStart=100))
        warm = TestSubstrate(FunctionMetrics(1.0))
        cold = TestSubstrate(FunctionMetrics(0.0, coldStart=5))
        client = await self.client(slow, warm, cold, grace=2.0)
        choice = await client.proxyHTTP("a.example.com", "/f", "POST")
        self.assertEqual([o.peer for o in choice.offers], [warm.host.peerID, cold.host.peerID, slow.host.peerID])
        for s in (slow, warm, cold):
            self.assertEqual(s.asked, [("proxy-http", {"host": "a.example.com", "path": "/f", "method": "POST"})])
        best = choice.take()
        self.assertEqual(best.metrics, FunctionMetrics(1.0))
        choice.close()
        best.stream.reset()
        # the substrates see their streams reset, their tunnels end quietly
        for s in (slow, warm, cold):
            await s.streams[0].whenClosed()

    async def test_fanout(self):
        subs = [TestSubstrate(WebsiteMetrics(1.0)) for _ in range(4)]
        client = await self.client(*subs, fanout=2)
        choice = await client.proxyHTTP("a.example.com", "/", "GET")
        self.assertEqual(len(choice.offers), 2)
        self.assertEqual(sum(len(s.asked) for s in subs), 2)
        choice.close()
        # by turns: the next request asks others first
        choice = await client.proxyHTTP("a.example.com", "/", "GET")
        choice.close()
        self.assertEqual(sorted(len(s.asked) for s in subs), [1, 1, 1, 1])

    async def test_notServed(self):
        client = await self.client(TestSubstrate("not-served"), TestSubstrate("not-served"))
        with self.assertRaises(NotServed):
            await client.proxyHTTP("a.example.com", "/", "GET")

    async def test_notServedAndAFailure(self):
        """
        One substrate says nothing serves it, another fails: not found (all
        substrates answer from the same registry).
        """
        client = await self.client(TestSubstrate("not-served"), TestSubstrate("reset"))
        with self.assertRaises(NotServed):
            await client.proxyHTTP("a.example.com", "/", "GET")

    async def test_offerWinsOverFailures(self):
        good = TestSubstrate(FunctionMetrics(0.0))
        client = await self.client(TestSubstrate("reset"), TestSubstrate("not-served"), good)
        choice = await client.proxyHTTP("a.example.com", "/", "GET")
        self.assertEqual([o.peer for o in choice.offers], [good.host.peerID])
        choice.close()

    async def test_allFail(self):
        client = await self.client(TestSubstrate("reset"), TestSubstrate(lambda body: "garbage"))
        e = await self.assertFailure(Deferred.fromCoroutine(client.proxyHTTP("a.example.com", "/", "GET")),
                                     NoSubstrate)
        self.assertFalse(e.timedOut)
        self.assertIn("no substrate answered for a.example.com/", str(e))

    async def test_timeout(self):
        silent = TestSubstrate("silent")
        client = await self.client(silent, TestSubstrate("reset"), timeout=0.3)
        started = reactor.seconds()
        e = await self.assertFailure(Deferred.fromCoroutine(client.proxyHTTP("a.example.com", "/", "GET")),
                                     NoSubstrate)
        self.assertTrue(e.timedOut)
        self.assertGreaterEqual(reactor.seconds() - started, 0.3)
        await silent.streams[0].whenClosed()

    async def test_grace(self):
        """
        Once one substrate offered, a silent one is given the grace, not
        the whole timeout, and its stream is reset.
        """
        silent = TestSubstrate("silent")
        client = await self.client(silent, TestSubstrate(WebsiteMetrics(1.0)), timeout=10, grace=0.05)
        started = reactor.seconds()
        choice = await client.proxyHTTP("a.example.com", "/", "GET")
        self.assertLess(reactor.seconds() - started, 5)
        self.assertEqual(len(choice.offers), 1)
        choice.close()
        await silent.streams[0].whenClosed()

    async def test_noSubstrate(self):
        client = await self.client()
        e = await self.assertFailure(Deferred.fromCoroutine(client.proxyHTTP("a.example.com", "/", "GET")),
                                     NoSubstrate)
        self.assertIn("no node offers /substrate/v1", str(e))

    async def test_failedAskedLast(self):
        """
        A substrate that failed is asked after the others for BACKOFF
        seconds.
        """
        bad = TestSubstrate("reset")
        subs = [bad] + [TestSubstrate(WebsiteMetrics(1.0)) for _ in range(3)]
        client = await self.client(*subs, fanout=1)
        for _ in range(8):
            try:
                choice = await client.proxyHTTP("a.example.com", "/", "GET")
            except NoSubstrate:
                continue
            choice.close()
        self.assertEqual(len(bad.asked), 1)
        self.assertEqual(sum(len(s.asked) for s in subs), 8)
