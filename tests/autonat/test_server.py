"""
The AutoNAT server: which addresses it dials, what it refuses, its rate
limits, and a request/answer over a real stream (fake hosts over iosim).
"""

import ipaddress

from hypothesis import given, strategies as st
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tau.autonat.client import dialBack
from tau.autonat.messages import (
    E_BAD_REQUEST,
    E_DIAL_ERROR,
    E_DIAL_REFUSED,
    OK,
    PROTOCOL_ID,
    DialRequest,
)
from tau.autonat.server import AutoNATServer, Refused, dialBackAddresses
from tau.identity import PrivateKey
from tests.protocols.fakehost import Pair

PEER = PrivateKey.generate().peerID()
OTHER = PrivateKey.generate().peerID()


class FakeDialer:
    """
    Records every dial; C{reachable} addresses answer, the others fail
    (after C{delay} seconds on C{clock} when given).
    """

    def __init__(self, reachable=(), clock=None, delay=0.0):
        self.reachable = set(reachable)
        self.dialed = []
        self.clock = clock
        self.delay = delay

    def probe(self, addr, peerID, timeout):
        self.dialed.append((addr, peerID, timeout))
        if addr in self.reachable:
            return succeed(addr)
        if self.clock is not None and self.delay:
            d = Deferred()
            self.clock.callLater(min(self.delay, timeout), d.errback, ConnectionRefusedError("no"))
            return d
        return fail(ConnectionRefusedError("refused"))


class FakeConnection:
    def __init__(self, remoteAddr, relay=None):
        self.remoteAddr = remoteAddr
        self.relay = relay


class PolicyTests(SynchronousTestCase):
    """
    L{dialBackAddresses} only ever yields the observed IP.
    """

    def test_observedIPReplacesOthers(self):
        addrs = dialBackAddresses(
            "/ip4/1.2.3.4/tcp/50000",
            ["/ip4/9.9.9.9/tcp/4001", "/ip4/1.2.3.4/tcp/4002", "/ip6/2001:db8::1/tcp/4003"],
        )
        self.assertEqual(addrs, ["/ip4/1.2.3.4/tcp/4001", "/ip4/1.2.3.4/tcp/4002", "/ip4/1.2.3.4/tcp/4003"])

    def test_neverAnotherIP(self):
        """
        Whatever is asked, every address has the observed IP.
        """
        asked = [f"/ip4/8.8.{i}.{i}/tcp/{1000 + i}" for i in range(40)] + ["/dns4/example.com/tcp/80"]
        addrs = dialBackAddresses("/ip4/5.6.7.8/tcp/1", asked, maxAddrs=100)
        self.assertEqual(len(addrs), 40)
        for addr in addrs:
            self.assertTrue(addr.startswith("/ip4/5.6.7.8/tcp/"), addr)

    def test_skipsOtherTransports(self):
        self.assertRaises(
            Refused,
            dialBackAddresses,
            "/ip4/1.2.3.4/tcp/5",
            ["/dns4/example.com/tcp/4001", "/ip4/1.2.3.4/udp/4001/quic-v1", "/ip4/9.9.9.9/tcp/1/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N/p2p-circuit"],
        )

    def test_p2pSuffix(self):
        addrs = dialBackAddresses(
            "/ip4/1.2.3.4/tcp/5",
            [f"/ip4/1.2.3.4/tcp/4001/p2p/{PEER}", f"/ip4/1.2.3.4/tcp/4002/p2p/{OTHER}"],
            peerID=PEER,
        )
        self.assertEqual(addrs, ["/ip4/1.2.3.4/tcp/4001"])

    def test_relayedRefused(self):
        self.assertRaises(
            Refused, dialBackAddresses, f"/ip4/1.2.3.4/tcp/5/p2p/{OTHER}/p2p-circuit", ["/ip4/1.2.3.4/tcp/4001"]
        )

    def test_privateRefusedUnlessAllowed(self):
        for observed in ("/ip4/10.0.0.1/tcp/5", "/ip4/127.0.0.1/tcp/5", "/ip4/192.168.1.2/tcp/5", "/ip6/fe80::1/tcp/5"):
            self.assertRaises(Refused, dialBackAddresses, observed, ["/ip4/10.0.0.1/tcp/4001"])
        self.assertEqual(
            dialBackAddresses("/ip4/10.0.0.1/tcp/5", ["/ip4/0.0.0.0/tcp/4001"], allowPrivate=True),
            ["/ip4/10.0.0.1/tcp/4001"],
        )

    def test_maxAddrs(self):
        asked = [f"/ip4/1.2.3.4/tcp/{p}" for p in range(1, 50)]
        self.assertEqual(len(dialBackAddresses("/ip4/1.2.3.4/tcp/5", asked, maxAddrs=16)), 16)

    def test_nothingToDial(self):
        self.assertRaises(Refused, dialBackAddresses, "/ip4/1.2.3.4/tcp/5", [])


_ip4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
_ip6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
_ip = st.one_of(_ip4, _ip6)
_addr = st.one_of(
    st.tuples(_ip, st.integers(0, 65535)).map(lambda t: f"/{'ip6' if ':' in t[0] else 'ip4'}/{t[0]}/tcp/{t[1]}"),
    st.tuples(_ip, st.integers(0, 65535)).map(lambda t: f"/{'ip6' if ':' in t[0] else 'ip4'}/{t[0]}/udp/{t[1]}"),
    st.just("/dns4/example.com/tcp/80"),
    st.text(max_size=30),
)


class PolicyPropertyTests(SynchronousTestCase):
    @given(_ip, st.integers(1, 65535), st.lists(_addr, max_size=30), st.booleans())
    def test_onlyTheObservedIP(self, ip, port, requested, allowPrivate):
        """
        Whatever the request holds, every address to dial has the
        observed IP, a TCP port, and there are at most 16; a refusal is the
        only other outcome.
        """
        family = "ip6" if ":" in ip else "ip4"
        try:
            addrs = dialBackAddresses(f"/{family}/{ip}/tcp/{port}", requested, allowPrivate=allowPrivate)
        except Refused:
            return
        self.assertTrue(0 < len(addrs) <= 16)
        if not allowPrivate:
            self.assertTrue(ipaddress.ip_address(ip).is_global)
        for addr in addrs:
            _, proto, host, tcp, dialPort = addr.split("/")
            self.assertEqual((proto, tcp), (family, "tcp"))
            self.assertEqual(ipaddress.ip_address(host), ipaddress.ip_address(ip))
            self.assertTrue(0 < int(dialPort) < 65536)


class AnswerTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.dialer = FakeDialer(reachable={"/ip4/1.2.3.4/tcp/4001"})
        self.server = AutoNATServer(self.clock, self.dialer, hideTiming=False)
        self.server.start()
        self.addCleanup(self.server.stop)
        self.conn = FakeConnection("/ip4/1.2.3.4/tcp/50000")

    def answer(self, request, peer=PEER, conn=None):
        return self.successResultOf(Deferred.fromCoroutine(self.server.answer(peer, conn or self.conn, request)))

    def test_ok(self):
        status, _, addr = self.answer(DialRequest(PEER, ("/ip4/192.168.1.5/tcp/4001",)))
        self.assertEqual((status, addr), (OK, "/ip4/1.2.3.4/tcp/4001"))
        self.assertEqual([d[0] for d in self.dialer.dialed], ["/ip4/1.2.3.4/tcp/4001"])
        self.assertEqual(self.dialer.dialed[0][1], PEER)

    def test_dialError(self):
        status, text, addr = self.answer(DialRequest(PEER, ("/ip4/1.2.3.4/tcp/4002", "/ip4/1.2.3.4/tcp/4003")))
        self.assertEqual((status, addr), (E_DIAL_ERROR, None))
        self.assertEqual([d[0] for d in self.dialer.dialed], ["/ip4/1.2.3.4/tcp/4002", "/ip4/1.2.3.4/tcp/4003"])

    def test_refusesToDialAnotherIP(self):
        """
        A request for a victim's address dials the requester's IP, never
        the victim's.
        """
        self.answer(DialRequest(PEER, ("/ip4/9.9.9.9/tcp/80", "/ip6/2001:4860::8888/tcp/443")))
        self.assertEqual([d[0] for d in self.dialer.dialed], ["/ip4/1.2.3.4/tcp/80", "/ip4/1.2.3.4/tcp/443"])

    def test_peerMismatch(self):
        status, text, _ = self.answer(DialRequest(OTHER, ("/ip4/1.2.3.4/tcp/4001",)))
        self.assertEqual((status, text), (E_BAD_REQUEST, "peer id mismatch"))
        self.assertEqual(self.dialer.dialed, [])

    def test_relayedConnection(self):
        conn = FakeConnection("/ip4/1.2.3.4/tcp/50000", relay=OTHER)
        status, _, _ = self.answer(DialRequest(PEER, ("/ip4/1.2.3.4/tcp/4001",)), conn=conn)
        self.assertEqual(status, E_DIAL_REFUSED)
        self.assertEqual(self.dialer.dialed, [])

    def test_privateObserved(self):
        conn = FakeConnection("/ip4/10.1.0.2/tcp/50000")
        status, _, _ = self.answer(DialRequest(PEER, ("/ip4/10.1.0.2/tcp/4001",)), conn=conn)
        self.assertEqual(status, E_DIAL_REFUSED)
        self.assertEqual(self.dialer.dialed, [])

    def test_peerRateLimit(self):
        request = DialRequest(PEER, ("/ip4/1.2.3.4/tcp/4001",))
        statuses = [self.answer(request)[0] for _ in range(4)]
        self.assertEqual(statuses, [OK, OK, OK, E_DIAL_REFUSED])
        self.assertEqual(len(self.dialer.dialed), 3)
        # another peer from elsewhere is still served
        other = FakeConnection("/ip4/1.2.3.4/tcp/50001")
        self.assertEqual(self.answer(DialRequest(OTHER, ("/ip4/1.2.3.4/tcp/4001",)), peer=OTHER, conn=other)[0], OK)
        # after the period (plus jitter), the counts start again
        self.clock.advance(self.server.resetPeriod + self.server.resetJitter)
        self.assertEqual(self.answer(request)[0], OK)

    def test_globalRateLimit(self):
        self.server.globalMax = 5
        statuses = []
        for i in range(7):
            peer = PrivateKey.generate().peerID()
            statuses.append(self.answer(DialRequest(peer, ("/ip4/1.2.3.4/tcp/4001",)), peer=peer)[0])
        self.assertEqual(statuses, [OK] * 5 + [E_DIAL_REFUSED] * 2)

    def test_refusedRequestsAreNotCounted(self):
        for _ in range(5):
            self.answer(DialRequest(OTHER, ("/ip4/1.2.3.4/tcp/4001",)))
        self.assertEqual(self.answer(DialRequest(PEER, ("/ip4/1.2.3.4/tcp/4001",)))[0], OK)

    def test_failureWaitsOutTheTimeout(self):
        """
        With hideTiming, a failed dial-back is answered only when the dial
        timeout has passed, however fast the dial failed.
        """
        self.server.hideTiming = True
        d = Deferred.fromCoroutine(self.server.answer(PEER, self.conn, DialRequest(PEER, ("/ip4/1.2.3.4/tcp/9",))))
        self.assertNoResult(d)
        self.clock.advance(self.server.dialTimeout - 0.5)
        self.assertNoResult(d)
        self.clock.advance(0.5)
        self.assertEqual(self.successResultOf(d)[0], E_DIAL_ERROR)

    def test_dialTimeoutSharedByAddresses(self):
        dialer = FakeDialer(clock=self.clock, delay=10.0)
        server = AutoNATServer(self.clock, dialer, hideTiming=False)
        d = Deferred.fromCoroutine(
            server.answer(PEER, self.conn, DialRequest(PEER, tuple(f"/ip4/1.2.3.4/tcp/{p}" for p in (1, 2, 3))))
        )
        self.clock.advance(10)
        self.clock.advance(10)
        self.assertEqual(self.successResultOf(d)[0], E_DIAL_ERROR)
        self.assertEqual([round(t, 3) for _, _, t in dialer.dialed], [15.0, 5.0])

    def test_stopCancelsTimer(self):
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.server.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class StreamTests(SynchronousTestCase):
    """
    The client and the server over a yamux stream between fake hosts.
    """

    def setUp(self):
        self.pair = Pair()
        self.pair.connB.remoteAddr = "/ip4/1.2.3.4/tcp/50000"
        self.dialer = FakeDialer(reachable={"/ip4/1.2.3.4/tcp/1111"})
        self.server = AutoNATServer(self.pair.clock, self.dialer, hideTiming=False)
        self.pair.b.setStreamHandler(PROTOCOL_ID, self.server.handle)

    def test_dialBackOK(self):
        d = self.pair.run(dialBack(self.pair.a, self.pair.b.peerID, ["/ip4/10.0.0.1/tcp/1111"]))
        response = self.successResultOf(d)
        self.assertEqual((response.status, response.addr), (OK, "/ip4/1.2.3.4/tcp/1111"))
        self.assertEqual(self.dialer.dialed[0][:2], ("/ip4/1.2.3.4/tcp/1111", self.pair.a.peerID))

    def test_dialBackError(self):
        d = self.pair.run(dialBack(self.pair.a, self.pair.b.peerID, ["/ip4/10.0.0.1/tcp/2222"]))
        self.assertEqual(self.successResultOf(d).status, E_DIAL_ERROR)

    def test_stopCancelsPending(self):
        """
        Stopping the server cancels a request waiting on its dial-back; the
        requester's stream is reset.
        """
        self.server.hideTiming = True
        d = self.pair.run(dialBack(self.pair.a, self.pair.b.peerID, ["/ip4/10.0.0.1/tcp/2222"]))
        self.assertNoResult(d)
        self.server.stop()
        self.pair.run()
        self.failureResultOf(d)
        self.assertEqual(len(self.pair.b.failures), 1)

    def test_garbageResetsStream(self):
        async def garbage():
            stream = await self.pair.a.newStream(self.pair.b.peerID, [PROTOCOL_ID])
            stream.writeLP(b"\xff\xff")
            return await stream.readLP(4096, allowEOF=True)

        d = self.pair.run(garbage())
        self.assertIsNone(self.successResultOf(d))  # no answer, the stream reset
        self.assertEqual(len(self.pair.b.failures), 1)
        self.assertEqual(self.dialer.dialed, [])

    def test_oversizedRequest(self):
        async def big():
            stream = await self.pair.a.newStream(self.pair.b.peerID, [PROTOCOL_ID])
            stream.writeLP(b"\x00" * 5000)
            return await stream.readLP(4096, allowEOF=True)

        d = self.pair.run(big())
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(self.pair.b.failures), 1)
