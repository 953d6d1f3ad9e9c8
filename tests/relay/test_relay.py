"""
Circuit relay v2 between tau hosts on loopback: reservations, relayed
connections both ways, limits, abuse, and the relay switched on and off.
"""

import os

from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.trial.unittest import TestCase

from tau.host import DialError
from tau.identity import PrivateKey
from tau.protocols import identify
from tau.relay import RelayError, RelayLimits
from tau.relay import messages as m
from tau.streams import StreamClosed
from tests.hosts import addressOf, blackHole, recordDials, roundTrip, startHost
from tests.relay.helpers import startRelayHost

MiB = 1 << 20
BIG = RelayLimits(data=64 * MiB, duration=120, maxReservationsPerIP=0)


def events(client):
    """
    A list the client's reservation events are appended to, and a function
    returning a Deferred for the next one.
    """
    seen = []
    waiting = []

    def observer(event, relay, reservation):
        seen.append((event, relay, reservation))
        while waiting:
            waiting.pop(0).callback((event, relay, reservation))

    client.addObserver(observer)

    def next():
        d = Deferred()
        waiting.append(d)
        return d

    return seen, next


async def reserveRaw(host, relay):
    """
    One RESERVE on a new hop stream (over a limited connection too); the
    status code (None: stream reset).
    """
    stream = await host.newStream(relay, [m.HOP], allowLimited=True)
    stream.writeLP(m.encodeReserve())
    try:
        reply = m.decodeHop(await stream.readLP(m.MAX_MESSAGE_SIZE))
    except (StreamClosed, ConnectionError, Exception):
        return None
    stream.closeWrite()
    return reply.status


class RelayedConnectionTests(TestCase):
    timeout = 60

    async def threeHosts(self, limits=BIG):
        r, _, service = await startRelayHost(self, service="on", limits=limits)
        a, aClient, _ = await startRelayHost(self)
        b, bClient, _ = await startRelayHost(self)
        return r, service, a, aClient, b, bClient

    async def test_bothWaysByteExact(self):
        """
        A reserves on R and announces R's circuit address; B dials it; the
        connection is a host connection on both sides (relay, limit,
        identify), and streams work both ways byte-exact.
        """
        r, service, a, aClient, b, _ = await self.threeHosts()
        reservation = await aClient.listen(r.peerID, addressOf(r))
        circuit = f"{addressOf(r)}/p2p-circuit"
        self.assertEqual(reservation.circuitAddrs(), [circuit])
        self.assertEqual(reservation.limit, m.Limit(120, 64 * MiB))
        self.assertEqual(m.openVoucher(reservation.voucher), m.Voucher(r.peerID, a.peerID, reservation.expire))
        self.assertIn(circuit, a.announcedAddresses())
        self.assertIn(a.peerID, service.store)

        conn = await b.connect(f"{circuit}/p2p/{a.peerID}")
        self.assertEqual((conn.remotePeer, conn.relay, conn.limited), (a.peerID, r.peerID, True))
        self.assertEqual(conn.limit, m.Limit(120, 64 * MiB))
        self.assertEqual(conn.remoteAddr, circuit)
        result = await identify.whenIdentified(b, conn)
        self.assertIn(circuit, result.addrs)  # A's signed record lists it
        self.assertIn(m.STOP, result.protocols)

        payload = os.urandom(3 * MiB)
        self.assertEqual(await roundTrip(b, a.peerID, payload), payload)
        [inbound] = a.connections(b.peerID)
        self.assertEqual((inbound.direction, inbound.relay, inbound.limited), ("inbound", r.peerID, True))
        back = os.urandom(MiB)
        self.assertEqual(await roundTrip(a, b.peerID, back), back)
        [circuitObj] = service.circuits
        self.assertGreaterEqual(min(circuitObj.counts), 4 * MiB)

    async def test_dialByPeerIDAndPreferDirect(self):
        """
        A circuit address in the peer store is dialed when needed, after
        direct ones; once a direct connection exists, it wins.
        """
        r, _, a, aClient, b, _ = await self.threeHosts()
        reservation = await aClient.listen(r.peerID, addressOf(r))
        b.peerstore.addAddrs(a.peerID, reservation.circuitAddrs())
        b.peerstore.addAddrs(r.peerID, [r.listenAddresses()[0]])
        self.assertEqual(await roundTrip(b, a.peerID, b"via the relay"), b"via the relay")
        relayed = b.connectionTo(a.peerID)
        self.assertIsNotNone(relayed.relay)
        direct = await b.connect(addressOf(a))
        self.assertIsNone(direct.relay)
        self.assertIs(b.connectionTo(a.peerID), direct)
        await relayed.whenClosed()
        self.assertEqual(await roundTrip(b, a.peerID, b"direct"), b"direct")

    async def test_blackHoleDirectThenRelay(self):
        """
        A NATed peer announcing a direct address that never answers and a
        circuit address: the direct one is tried first, the relay soon
        after (not after the 10 s timeout), the relayed connection wins and
        the direct attempt is abandoned.
        """
        r, _, a, aClient, b, _ = await self.threeHosts()
        reservation = await aClient.listen(r.peerID, addressOf(r))
        b.upgradeTimeout = 300  # only the cancellation may end the hole's attempt
        hole, accepted = blackHole(self)
        [circuit] = reservation.circuitAddrs()
        b.peerstore.addAddrs(a.peerID, [circuit, hole])
        dialed = recordDials(b)
        self.assertEqual(await roundTrip(b, a.peerID, b"around the hole"), b"around the hole")
        self.assertEqual(dialed[:2], [hole, circuit])
        self.assertIsNotNone(b.connectionTo(a.peerID).relay)
        silent = await accepted
        await silent.lost

    async def test_cancelledCircuitDialLeavesNothing(self):
        """
        A circuit dial cancelled (another address of the target won) while
        the end-to-end upgrade runs over the relayed stream: that stream is
        reset at once, not left half-open until the upgrade timeout.
        """
        r = await startHost(self)
        b, bClient, _ = await startRelayHost(self)
        b.upgradeTimeout = 300  # only the cancellation may end it
        target = PrivateKey.generate().peerID()
        upgrading, ended = Deferred(), Deferred()

        async def silentRelay(stream):
            # says OK to CONNECT, then neither forwards nor closes
            request = m.decodeHop(await stream.readLP(m.MAX_MESSAGE_SIZE))
            stream.writeLP(m.encodeHopStatus(m.OK))
            first = await stream.readSome()  # the dialer's upgrade begins
            upgrading.callback((request, first))
            try:
                await stream.readToEnd(1 << 20)
            except Exception as e:
                ended.callback(e)
            else:
                ended.callback(None)

        r.setStreamHandler(m.HOP, silentRelay, allowLimited=True)
        d = Deferred.fromCoroutine(bClient.dial(f"{addressOf(r)}/p2p-circuit", target, 10))
        request, first = await upgrading
        self.assertEqual(request.peer, target)
        self.assertIn(b"/multistream/1.0.0", first)
        d.cancel()
        with self.assertRaises(CancelledError):
            await d
        await ended
        self.assertEqual(b.connections(target), [])

    async def test_noReservation(self):
        r, _, a, _, b, _ = await self.threeHosts()
        await a.connect(addressOf(r))
        with self.assertRaises(DialError) as e:
            await b.connect(f"{addressOf(r)}/p2p-circuit/p2p/{a.peerID}")
        self.assertIn("NO_RESERVATION", str(e.exception))

    async def test_circuitToSelfRefused(self):
        r, _, a, _, _, _ = await self.threeHosts()
        with self.assertRaises(DialError):
            await a.connect(f"{addressOf(r)}/p2p-circuit/p2p/{r.peerID}")

    async def test_noReservationOverRelayedConnection(self):
        """
        A relay refuses reservations (and circuits) asked for over a
        relayed connection.
        """
        r, _, a, aClient, b, bClient = await self.threeHosts()
        a2, a2Client, a2Service = await startRelayHost(self, service="on")
        await a2Client.listen(r.peerID, addressOf(r))
        await b.connect(f"{addressOf(r)}/p2p-circuit/p2p/{a2.peerID}")
        with self.assertRaises(RelayError):
            await bClient.reserve(a2.peerID)
        self.assertEqual(await reserveRaw(b, a2.peerID), m.PERMISSION_DENIED)
        self.assertEqual(len(a2Service.store), 0)


class LimitTests(TestCase):
    timeout = 60

    async def test_dataLimitCutsThenRelayCarriesOn(self):
        """
        Past the data limit the relay resets the circuit: the stream fails,
        the relayed connection closes on both ends.  The relay serves the
        next circuit.
        """
        r, _, service = await startRelayHost(self, service="on", limits=RelayLimits(data=256 * 1024, maxReservationsPerIP=0))
        a, aClient, _ = await startRelayHost(self)
        b, _, _ = await startRelayHost(self)
        await aClient.listen(r.peerID, addressOf(r))
        circuit = f"{addressOf(r)}/p2p-circuit/p2p/{a.peerID}"
        conn = await b.connect(circuit)
        self.assertEqual(conn.limit, m.Limit(120, 256 * 1024))
        [relayed] = service.circuits
        with self.assertRaises(Exception):
            await roundTrip(b, a.peerID, os.urandom(2 * MiB))
        await conn.whenClosed()
        await relayed.whenDone()
        self.assertIn("data limit of 262144 bytes", relayed.reason)
        self.assertLessEqual(max(relayed.counts), 256 * 1024)
        self.assertEqual(service.circuits, set())
        for other in a.connections(b.peerID):
            await other.whenClosed()
        # the relay, and A's reservation, carry on
        again = await b.connect(circuit)
        self.assertIsNot(again, conn)
        self.assertEqual(await roundTrip(b, a.peerID, b"small"), b"small")

    async def test_circuitsPerPeer(self):
        """
        Past C{maxCircuits} circuits for a peer, CONNECT gets
        RESOURCE_LIMIT_EXCEEDED.
        """
        r, _, service = await startRelayHost(self, service="on", limits=RelayLimits(maxCircuits=1, maxReservationsPerIP=0))
        a, aClient, _ = await startRelayHost(self)
        b, _, _ = await startRelayHost(self)
        c, _, _ = await startRelayHost(self)
        await aClient.listen(r.peerID, addressOf(r))
        circuit = f"{addressOf(r)}/p2p-circuit/p2p/{a.peerID}"
        await b.connect(circuit)
        with self.assertRaises(DialError) as e:
            await c.connect(circuit)
        self.assertIn("RESOURCE_LIMIT_EXCEEDED", str(e.exception))


class AbuseTests(TestCase):
    timeout = 120

    async def test_thousandReservationsFromOnePeer(self):
        """
        One peer asks for a reservation a thousand times: the relay grants
        the first C{reserveRate}, refuses the next, and past MAX_STRIKES
        refusals drops the peer.  Meanwhile another peer reserves and is
        reached through the relay.
        """
        from tau.relay.server import MAX_STRIKES

        limits = RelayLimits(reserveRate=8, maxReservationsPerIP=0)
        r, _, service = await startRelayHost(self, service="on", limits=limits)
        x, _, _ = await startRelayHost(self)
        y, yClient, _ = await startRelayHost(self)
        b, _, _ = await startRelayHost(self)
        first = await x.connect(addressOf(r))
        statuses = []
        for _ in range(1000):
            if x.connectionTo(r.peerID) is not first:
                break
            try:
                statuses.append(await reserveRaw(x, r.peerID))
            except Exception:
                break
        await first.whenClosed()
        self.assertEqual(statuses[:8], [m.OK] * 8)
        self.assertEqual(statuses[8 : 8 + MAX_STRIKES], [m.RESERVATION_REFUSED] * MAX_STRIKES)
        self.assertLess(len(statuses), 1000)
        self.assertNotIn(x.peerID, service.store)
        # the relay keeps serving others
        await yClient.listen(r.peerID, addressOf(r))
        await b.connect(f"{addressOf(r)}/p2p-circuit/p2p/{y.peerID}")
        self.assertEqual(await roundTrip(b, y.peerID, b"still relaying"), b"still relaying")

    async def test_floodOfHopStreams(self):
        """
        500 hop streams opened at once by one peer: no more than
        C{maxHopStreams} are served at a time, at most C{reserveRate}
        reservations are granted, and another peer is still served.
        """
        limits = RelayLimits(reserveRate=8, maxReservationsPerIP=0, maxHopStreams=16)
        r, _, service = await startRelayHost(self, service="on", limits=limits)
        x, _, _ = await startRelayHost(self)
        y, yClient, _ = await startRelayHost(self)
        await x.connect(addressOf(r))
        results = await DeferredList(
            [Deferred.fromCoroutine(reserveRaw(x, r.peerID)) for _ in range(500)], consumeErrors=True
        )
        statuses = [value if ok else None for ok, value in results]
        self.assertLessEqual(statuses.count(m.OK), 8)
        self.assertGreater(statuses.count(None), 0)  # reset or cut off
        self.assertEqual(service._hopStreams, {})
        reservation = await yClient.reserve(r.peerID, addressOf(r))
        self.assertEqual(reservation.relay, r.peerID)


class ReservationLifeTests(TestCase):
    timeout = 60

    async def test_lostWhenRelayConnectionCloses(self):
        r, _, service = await startRelayHost(self, service="on", limits=BIG)
        a, aClient, _ = await startRelayHost(self)
        seen, nextEvent = events(aClient)
        reservation = await aClient.listen(r.peerID, addressOf(r))
        self.assertEqual(seen[0][0], "reserved")
        self.assertTrue(a.connmgr.isProtected(r.peerID))
        lost = nextEvent()
        [conn] = a.connections(r.peerID)
        conn.close()
        event, relay, _ = await lost
        self.assertEqual((event, relay), ("lost", r.peerID))
        self.assertFalse(set(reservation.circuitAddrs()) & set(a.announcedAddresses()))
        self.assertFalse(a.connmgr.isProtected(r.peerID))
        self.assertEqual(aClient.reservations(), {})
        for c in r.connections(a.peerID):
            await c.whenClosed()
        self.assertNotIn(a.peerID, service.store)

    async def test_refreshedBeforeExpiry(self):
        r, _, service = await startRelayHost(self, service="on", limits=RelayLimits(reservationTTL=2, maxReservationsPerIP=0))
        a, aClient, _ = await startRelayHost(self)
        seen, nextEvent = events(aClient)
        first = await aClient.listen(r.peerID, addressOf(r))
        event, _, second = await nextEvent()
        self.assertEqual(event, "refreshed")
        self.assertGreaterEqual(second.expire, first.expire)
        self.assertIn(a.peerID, service.store)
        aClient.unlisten(r.peerID)
        self.assertEqual(seen[-1][0], "released")
        self.assertEqual(aClient.circuitAddrs(), [])

    async def test_identifyPushTellsPeers(self):
        """
        Taking a reservation adds the circuit address, and connected peers
        hear of it by identify push.
        """
        r, _, _ = await startRelayHost(self, service="on", limits=BIG)
        a, aClient, _ = await startRelayHost(self)
        c, _, _ = await startRelayHost(self)
        pushed = Deferred()

        async def handlePush(stream):
            await identify.handlePush(c, stream)
            if not pushed.called:
                pushed.callback(None)

        c.setStreamHandler(identify.PUSH, handlePush)
        conn = await c.connect(addressOf(a))
        await identify.whenIdentified(c, conn)
        reservation = await aClient.listen(r.peerID, addressOf(r))
        [circuit] = reservation.circuitAddrs()
        self.assertNotIn(circuit, c.peerstore.addrs(a.peerID))
        await pushed
        self.assertIn(circuit, c.peerstore.addrs(a.peerID))


class SwitchTests(TestCase):
    timeout = 30

    async def test_offThenReachable(self):
        """
        In C{auto} mode the relay follows L{RelayService.setReachable};
        in C{off} mode the hop protocol is not served at all.
        """
        r, _, service = await startRelayHost(self, service="off")
        self.assertNotIn(m.HOP, r.protocols())
        service.setReachable(True)  # ignored: off is off
        self.assertNotIn(m.HOP, r.protocols())
        a, aClient, _ = await startRelayHost(self)
        with self.assertRaises(RelayError):
            await aClient.reserve(r.peerID, addressOf(r))

        r2, _, auto = await startRelayHost(self, service="auto")
        self.assertTrue(auto.enabled)  # auto starts on for a host that listens
        auto.setReachable(False)
        self.assertFalse(auto.enabled)
        self.assertNotIn(m.HOP, r2.protocols())
        auto.setReachable(True)
        self.assertIn(m.HOP, r2.protocols())
        reservation = await aClient.reserve(r2.peerID, addressOf(r2))
        self.assertEqual(reservation.relay, r2.peerID)
        auto.setReachable(False)
        self.assertEqual(len(auto.store), 0)
