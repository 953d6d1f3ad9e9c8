"""
The host on real loopback TCP: upgrade, streams, identity checks, private
swarms, connection reuse, and peers that misbehave.
"""

import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, gatherResults, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase

from tau.host import DialError, Host
from tau.identity import PrivateKey
from tau.protocols.identify import whenIdentified
from tau.protocols.multistream import NegotiationFailed, encodeMessage
from tests.hosts import addressOf, blackHole, recordDials, roundTrip, startHost


def coroutine(f):
    def run(self):
        return Deferred.fromCoroutine(f(self))

    run.__name__ = f.__name__
    run.__doc__ = f.__doc__
    return run


class Raw(Protocol):
    """
    A raw TCP client that records what it receives and when it is dropped.
    """

    def __init__(self):
        self.received = b""
        self.lost = Deferred()

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost.callback(reason.value)


async def rawClient(host):
    port = host.listeningPorts()[0]
    return await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), Raw())


class StreamTests(TestCase):
    @coroutine
    async def test_echoBothWays(self):
        a = await startHost(self)
        b = await startHost(self)
        conn = await a.connect(addressOf(b))
        self.assertEqual(conn.remotePeer, b.peerID)
        self.assertEqual(b.connections()[0].remotePeer, a.peerID)
        payload = os.urandom(3 << 20)
        self.assertEqual(await roundTrip(a, b.peerID, payload), payload)
        self.assertEqual(await roundTrip(b, a.peerID, payload[:1000]), payload[:1000])
        self.assertEqual(len(a.connections()), 1)
        self.assertEqual(len(b.connections()), 1)

    @coroutine
    async def test_noDelay(self):
        """
        TCP connections run without Nagle on both ends (as go and js set
        them): small frames such as window updates are not held back.
        """
        a = await startHost(self)
        b = await startHost(self)
        conn = await a.connect(addressOf(b))
        [inbound] = b.connections(a.peerID)
        for c in (conn, inbound):
            tcp = c.session.transport.transport
            self.assertTrue(tcp.getTcpNoDelay())

    @coroutine
    async def test_unknownProtocolGetsNa(self):
        """
        A protocol nobody serves is refused with na; the connection and the
        host carry on.
        """
        a = await startHost(self)
        b = await startHost(self)
        await a.connect(addressOf(b))
        with self.assertRaises(NegotiationFailed):
            await a.newStream(b.peerID, ["/no/such/1.0.0"])
        self.assertEqual(await roundTrip(a, b.peerID, b"still fine"), b"still fine")

    @coroutine
    async def test_lazyStream(self):
        """
        C{lazy=True} to a peer known to speak the protocol: the stream comes
        before the peer accepted it and works both ways; one the peer
        refuses fails its first read with L{NegotiationFailed}.  A peer not
        known to speak it is negotiated first, as without C{lazy}.
        """
        a = await startHost(self)
        b = await startHost(self)
        conn = await a.connect(addressOf(b))
        await whenIdentified(a, conn)
        self.assertTrue(a.peerstore.supports(b.peerID, "/tau/echo/1.0.0"))
        # as if b spoke it when identify asked, and no more
        a.peerstore.addProtocols(b.peerID, ["/no/such/1.0.0"])
        stream = await a.newStream(b.peerID, ["/tau/echo/1.0.0"], lazy=True)
        self.assertEqual(stream.protocolID, "/tau/echo/1.0.0")
        stream.write(b"lazy")
        stream.closeWrite()
        self.assertEqual(await stream.readToEnd(100), b"lazy")

        stream = await a.newStream(b.peerID, ["/no/such/1.0.0"], lazy=True)
        stream.write(b"lost")
        with self.assertRaises(NegotiationFailed):
            await stream.readSome()
        with self.assertRaises(NegotiationFailed):
            await a.newStream(b.peerID, ["/no/such/2.0.0"], lazy=True)
        self.assertEqual(await roundTrip(a, b.peerID, b"still fine"), b"still fine")

    @coroutine
    async def test_oneThousandConcurrentStreams(self):
        a = await startHost(self)
        b = await startHost(self)
        await a.connect(addressOf(b))
        payloads = [os.urandom(200 + i) for i in range(1000)]
        streams = [await a.newStream(b.peerID, ["/tau/echo/1.0.0"]) for _ in payloads]
        self.assertEqual(a.connections()[0].streamCount, 1000)
        for stream, payload in zip(streams, payloads):
            stream.write(payload)
            stream.closeWrite()
        results = await gatherResults([Deferred.fromCoroutine(s.readToEnd(1 << 20)) for s in streams])
        self.assertEqual(results, payloads)


class IdentityTests(TestCase):
    @coroutine
    async def test_wrongPeerIDRefused(self):
        """
        Dialing an address with someone else's /p2p/ ID fails the TLS check,
        and the listener goes on serving.
        """
        a = await startHost(self)
        b = await startHost(self)
        impostor = PrivateKey.generate().peerID()
        with self.assertRaises(DialError) as e:
            await a.connect(f"{b.listenAddresses()[0]}/p2p/{impostor}")
        self.assertIn("peer", str(e.exception).lower())
        self.assertEqual(a.connections(), [])
        conn = await a.connect(addressOf(b))
        self.assertEqual(conn.remotePeer, b.peerID)

    @coroutine
    async def test_dialSelfRefused(self):
        a = await startHost(self)
        with self.assertRaises(DialError):
            await a.connect(addressOf(a))


class ReuseTests(TestCase):
    @coroutine
    async def test_connectionReused(self):
        a = await startHost(self)
        b = await startHost(self)
        first = await a.connect(addressOf(b))
        second = await a.connect(addressOf(b))
        self.assertIs(first, second)
        self.assertIs(await a.dial(b.peerID), first)

    @coroutine
    async def test_concurrentDialsShareOne(self):
        a = await startHost(self)
        b = await startHost(self)
        a.peerstore.addAddrs(b.peerID, b.listenAddresses())
        conns = await gatherResults([Deferred.fromCoroutine(a.dial(b.peerID)) for _ in range(10)])
        self.assertEqual(len({id(c) for c in conns}), 1)
        self.assertEqual(len(b.connections()), 1)

    @coroutine
    async def test_simultaneousDialsSettleOnOne(self):
        """
        Two peers dialing each other at once end with one connection each
        way that both agree on, and it works.
        """
        a = await startHost(self)
        b = await startHost(self)
        await DeferredList(
            [Deferred.fromCoroutine(a.connect(addressOf(b))), Deferred.fromCoroutine(b.connect(addressOf(a)))],
            consumeErrors=True,
        )
        keptA, keptB = a.connectionTo(b.peerID), b.connectionTo(a.peerID)
        self.assertEqual(keptA.direction == "outbound", keptB.direction == "inbound")
        for conn in a.connections() + b.connections():
            if conn not in (keptA, keptB):
                await conn.whenClosed()
        self.assertEqual([keptA], a.connections())
        self.assertEqual([keptB], b.connections())
        self.assertEqual(await roundTrip(a, b.peerID, b"one"), b"one")


class FakeConnection:
    relay = None
    closing = False
    limited = False

    def __init__(self, peer):
        self.remotePeer = peer


class DialRankingTests(TestCase):
    """
    A peer's addresses are dialed ranked and staggered (tau.dialer): one
    that never answers does not cost the old 10 s per address.
    """

    def test_blackHoleOnAClock(self):
        """
        The host dials a silent private address, then the public one 30 ms
        later; that one connects and the silent attempt is cancelled, long
        before the 10 s timeout.
        """
        clock = MemoryReactorClock()
        a = Host(PrivateKey.generate(), clock)
        peer = PrivateKey.generate().peerID()
        hole, good = "/ip4/192.168.77.7/tcp/4001", "/ip4/1.2.3.4/tcp/4001"
        a.peerstore.addAddrs(peer, [good, hole])
        attempts, cancelled = {}, []

        async def dialAddr(addr, peerID, timeout):
            self.assertEqual((peerID, timeout), (peer, 10.0))
            attempts[addr] = (clock.seconds(), Deferred(lambda d: cancelled.append(addr)))
            return await attempts[addr][1]

        a._dialAddr = dialAddr
        results = []
        Deferred.fromCoroutine(a.dial(peer)).addBoth(results.append)
        self.assertEqual(list(attempts), [hole])
        clock.advance(0.03)
        self.assertEqual(list(attempts), [hole, good])
        clock.advance(0.1)
        conn = FakeConnection(peer)
        attempts[good][1].callback(conn)
        self.assertEqual(results, [conn])
        self.assertEqual(cancelled, [hole])
        self.assertLess(clock.seconds(), 1)
        self.assertNotIn(peer, a._dialing)

    def test_allFailThenRouting(self):
        """
        When every address fails the errors of all are reported, and peer
        routing (the DHT) is asked.
        """
        clock = MemoryReactorClock()
        a = Host(PrivateKey.generate(), clock)
        peer = PrivateKey.generate().peerID()
        a.peerstore.addAddrs(peer, ["/ip4/1.2.3.4/tcp/1", "/ip4/10.0.0.1/tcp/1"])

        async def dialAddr(addr, peerID, timeout):
            raise DialError(f"{addr}: refused")

        class Routing:
            asked = []

            def findPeer(self, peerID):
                self.asked.append(peerID)
                return succeed(["/ip4/1.2.3.4/tcp/1", "/ip4/5.6.7.8/tcp/2"])

        routing = Routing()
        a.startService()
        self.addCleanup(a.stopService)
        a._dialAddr = dialAddr
        a.setPeerRouting(routing)
        results = []
        Deferred.fromCoroutine(a.dial(peer)).addBoth(results.append)
        self.assertEqual(routing.asked, [peer])
        [failure] = results
        self.assertIsInstance(failure.value, DialError)
        # ranked: private first; what routing found is dialed unless tried
        self.assertIn(
            "/ip4/10.0.0.1/tcp/1: refused; /ip4/1.2.3.4/tcp/1: refused; /ip4/5.6.7.8/tcp/2: refused",
            str(failure.value),
        )

    @coroutine
    async def test_blackHoleOnLoopback(self):
        """
        A real silent listener listed first: the dial still succeeds
        through the good address, and the black hole's connection is
        abandoned (closed), not left half-open.
        """
        a = await startHost(self)
        a.upgradeTimeout = 300  # only the cancellation may end the hole's attempt
        b = await startHost(self)
        hole, accepted = blackHole(self)
        good = b.listenAddresses()[0]
        a.peerstore.addAddrs(b.peerID, [hole, good])
        dialed = recordDials(a)
        conn = await a.dial(b.peerID)
        self.assertEqual(conn.remotePeer, b.peerID)
        self.assertEqual(dialed, [hole, good])
        self.assertEqual(a.connections(b.peerID), [conn])
        silent = await accepted
        await silent.lost
        self.assertEqual(await roundTrip(a, b.peerID, b"after the hole"), b"after the hole")


def swarmKey():
    return os.urandom(32)


class PrivateSwarmTests(TestCase):
    @coroutine
    async def test_sameKeyConnects(self):
        key = swarmKey()
        a = await startHost(self, swarmKey=key)
        b = await startHost(self, swarmKey=key)
        await a.connect(addressOf(b))
        self.assertEqual(await roundTrip(a, b.peerID, b"members only"), b"members only")

    @coroutine
    async def test_otherKeyOrNoKeyCannotConnect(self):
        a = await startHost(self, swarmKey=swarmKey())
        b = await startHost(self, swarmKey=swarmKey())
        c = await startHost(self)
        for dialer, target in [(a, b), (b, a), (c, a), (a, c)]:
            with self.assertRaises(DialError):
                await dialer.connect(addressOf(target), timeout=3)
        for h in (a, b, c):
            self.assertEqual(h.connections(), [])

    @coroutine
    async def test_refusalIsLogged(self):
        events = []
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        a = await startHost(self, swarmKey=swarmKey())
        b = await startHost(self, swarmKey=swarmKey())
        with self.assertRaises(DialError):
            await b.connect(addressOf(a), timeout=3)
        texts = [e.get("log_format", "") for e in events]
        self.assertTrue(any("failed during the upgrade" in t for t in texts), texts)


class BadPeerTests(TestCase):
    """
    Peers that break the protocol are dropped, and everyone else is served.
    """

    @coroutine
    async def test_garbage(self):
        a = await startHost(self)
        raw = await rawClient(a)
        raw.transport.write(os.urandom(4096))
        await raw.lost
        self.assertEqual(a.connections(), [])
        b = await startHost(self)
        await b.connect(addressOf(a))

    @coroutine
    async def test_oversizedMultistreamMessage(self):
        a = await startHost(self)
        raw = await rawClient(a)
        raw.transport.write(encodeMessage("/multistream/1.0.0") + b"\xff\x7f" + b"x" * 20000)
        await raw.lost

    @coroutine
    async def test_garbageInsideTLS(self):
        a = await startHost(self)
        raw = await rawClient(a)
        raw.transport.write(encodeMessage("/multistream/1.0.0") + encodeMessage("/tls/1.0.0") + b"\x16\x03\x01" + os.urandom(2000))
        await raw.lost

    @coroutine
    async def test_silentPeerDroppedAtTimeout(self):
        a = await startHost(self)
        a.upgradeTimeout = 0.5
        raw = await rawClient(a)
        started = reactor.seconds()
        await raw.lost
        self.assertLess(reactor.seconds() - started, 5)
        self.assertEqual(a.inbound.upgrading, 0)

    @coroutine
    async def test_yamuxViolationDropsConnection(self):
        """
        Garbage frames after a good upgrade: the peer is dropped and can
        connect again.
        """
        a = await startHost(self)
        b = await startHost(self)
        conn = await b.connect(addressOf(a))
        closed = a.connections()[0].whenClosed()
        conn.session.transport.write(b"\x07" * 12 + os.urandom(100))
        await closed
        self.assertEqual(a.connections(), [])
        await conn.whenClosed()
        await b.connect(addressOf(a))
        self.assertEqual(await roundTrip(b, a.peerID, b"again"), b"again")

    @coroutine
    async def test_twoHundredConnections(self):
        server = await startHost(self, connections={"low": 250, "high": 300})
        clients = [await startHost(self, install=False) for _ in range(200)]
        # in waves: a node upgrades at most max-upgrades connections at once
        for wave in range(0, 200, 50):
            await gatherResults([Deferred.fromCoroutine(c.connect(addressOf(server))) for c in clients[wave : wave + 50]])
        self.assertEqual(len(server.connections()), 200)
        answers = await gatherResults([Deferred.fromCoroutine(roundTrip(c, server.peerID, b"%d" % i)) for i, c in enumerate(clients)])
        self.assertEqual(answers, [b"%d" % i for i in range(200)])
