"""
The DCUtR exchange between tau hosts on loopback, through a real relay:
who starts, what each side is told, the roles and ports of the dials, the
retries, and what is refused.  The dials themselves are replaced (loopback
has no NAT to punch); tests/test_holepunch.py punches real ones.
"""

from types import SimpleNamespace

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tau.dcutr import messages as m
from tau.dcutr.punch import PunchFailed, localPortOf
from tau.dcutr.service import HolePunchService, relayOf
from tau.pb import holepunch_pb2
from tau.protocols import identify
from tau.relay import RelayLimits
from tau.streams import StreamClosed
from tests.hosts import addressOf, roundTrip
from tests.relay.helpers import startRelayHost

MiB = 1 << 20
A_PUBLIC = "/ip4/11.0.1.2/tcp/4001"
B_PUBLIC = "/ip4/11.0.2.2/tcp/4002"


class Dials:
    """
    A stand-in for L{tau.dcutr.punch.punchAny}: records each call, fails
    (or returns C{result}), and fires C{reached} on the C{n}-th call.
    """

    def __init__(self, result=None, n=3):
        self.calls = []
        self.result = result
        self.n = n
        self.reached = Deferred()

    async def __call__(self, host, addrs, peerID, *, isClient, localPort, timeout):
        self.calls.append(SimpleNamespace(addrs=list(addrs), peer=peerID, isClient=isClient, localPort=localPort))
        if len(self.calls) == self.n:
            self.reached.callback(None)
        if self.result is None:
            raise PunchFailed(f"{addrs[0]}: dropped (test)")
        return self.result


class HolePunchServiceTests(TestCase):
    timeout = 30

    async def setUpHosts(self, bReach="private", aDials=None, bDials=None):
        self.r, _, _ = await startRelayHost(self, service="on", limits=RelayLimits(data=64 * MiB, duration=120, maxReservationsPerIP=0))
        self.a, _, _ = await startRelayHost(self)
        self.b, bClient, _ = await startRelayHost(self)
        await bClient.listen(self.r.peerID, addressOf(self.r))
        await self.a.connect(addressOf(self.r))
        for host in (self.a, self.b):
            await identify.whenIdentified(host, host.connectionTo(self.r.peerID))
        # what identify would have told them behind NATs
        self.a.peerstore.record(self.r.peerID).observedAddr = A_PUBLIC
        self.b.peerstore.record(self.r.peerID).observedAddr = B_PUBLIC
        self.aDials = aDials or Dials()
        self.bDials = bDials or Dials()
        self.aService = HolePunchService(self.a, reactor, reachability=lambda: "private", punch=self.aDials, timeout=2)
        self.bService = HolePunchService(self.b, reactor, reachability=lambda: bReach, punch=self.bDials, timeout=2)
        for service in (self.aService, self.bService):
            service.startService()
            self.addCleanup(service.stopService)
        self.started = Deferred()
        upgrade = self.bService.upgrade

        def recordUpgrade(connection):
            d = upgrade(connection)
            self.started.callback(d)
            return d

        self.bService.upgrade = recordUpgrade

    async def dialThroughRelay(self):
        conn = await self.a.connect(f"{addressOf(self.r)}/p2p-circuit/p2p/{self.b.peerID}")
        self.assertEqual(conn.relay, self.r.peerID)
        return conn

    async def test_failedThriceStaysRelayed(self):
        """
        B, private, starts on the inbound relayed connection: each side
        dials the other's public address from its relay connection's port,
        A as client and B as server; after three failures B reports
        C{relayed} and the connection stays.
        """
        await self.setUpHosts()
        relayed = await self.dialThroughRelay()
        result = await (await self.started)
        self.assertIsNone(result)
        await self.aDials.reached
        outcome = self.bService.outcome(self.a.peerID)
        self.assertEqual((outcome.state, outcome.role, outcome.attempts), ("relayed", "initiator", 3))
        self.assertEqual(outcome.relay, str(self.r.peerID))
        self.assertIn("dropped (test)", outcome.reason)
        self.assertEqual(outcome.asDict()["State"], "relayed")
        self.assertEqual(len(self.bDials.calls), 3)
        self.assertEqual(len(self.aDials.calls), 3)
        aPort = localPortOf(self.a.connectionTo(self.r.peerID))
        bPort = localPortOf(self.b.connectionTo(self.r.peerID))
        for call in self.bDials.calls:
            self.assertEqual((call.addrs, call.isClient, call.localPort, call.peer), ([A_PUBLIC], False, bPort, self.a.peerID))
        for call in self.aDials.calls:
            self.assertEqual((call.addrs, call.isClient, call.localPort, call.peer), ([B_PUBLIC], True, aPort, self.b.peerID))
        self.assertEqual(self.aService.outcome(self.b.peerID).role, "responder")
        self.assertFalse(relayed.closing)
        self.assertEqual(await roundTrip(self.a, self.b.peerID, b"still relayed"), b"still relayed")

    async def test_firstAttemptWins(self):
        """
        When the dial gives a connection, B stops and reports C{direct}.
        """
        direct = SimpleNamespace(remoteAddr=A_PUBLIC)
        await self.setUpHosts(bDials=Dials(result=direct, n=1))
        await self.dialThroughRelay()
        self.assertIs(await (await self.started), direct)
        outcome = self.bService.outcome(self.a.peerID)
        self.assertEqual((outcome.state, outcome.attempts, outcome.addr), ("direct", 1, A_PUBLIC))
        self.assertIsNotNone(outcome.rtt)

    async def test_publicDoesNotStart(self):
        """
        A node that is not private does not start a hole punch.
        """
        await self.setUpHosts(bReach="public")
        await self.dialThroughRelay()
        self.assertEqual(await roundTrip(self.a, self.b.peerID, b"x"), b"x")
        self.assertFalse(self.started.called)
        self.assertEqual(self.bService.outcomes, {})
        self.assertEqual(self.aDials.calls, [])

    async def test_noPublicAddressNoDial(self):
        """
        When the peer has no public address to give, nothing is dialed and
        B says why.
        """
        await self.setUpHosts()
        self.a.peerstore.record(self.r.peerID).observedAddr = "/ip4/10.1.0.2/tcp/4001"
        await self.dialThroughRelay()
        self.assertIsNone(await (await self.started))
        outcome = self.bService.outcome(self.a.peerID)
        self.assertEqual((outcome.state, outcome.attempts), ("relayed", 1))
        self.assertEqual(outcome.reason, "the peer sent no public address")
        self.assertEqual(self.bDials.calls, [])

    async def rawStream(self):
        stream = await self.a.newStream(self.b.peerID, [m.PROTOCOL_ID], allowLimited=True)
        return stream

    async def test_messageSizeEdge(self):
        """
        A CONNECT of exactly 4096 bytes is answered; one of 4097 bytes gets
        the stream reset, and the host carries on.
        """
        await self.setUpHosts(bReach="public")
        await self.dialThroughRelay()
        base = holepunch_pb2.HolePunch(type=m.CONNECT, ObsAddrs=[bytes.fromhex("04") + bytes([11, 0, 1, 2]) + bytes.fromhex("0606") + (4001).to_bytes(2, "big")]).SerializeToString()
        for size, answered in ((m.MAX_MESSAGE_SIZE, True), (m.MAX_MESSAGE_SIZE + 1, False)):
            padding = size - len(base) - 3
            data = base + b"\x7a" + bytes([0x80 | (padding & 0x7F), padding >> 7]) + b"\0" * padding
            self.assertEqual(len(data), size)
            stream = await self.rawStream()
            stream.writeLP(data)
            if answered:
                reply = m.decodeMessage(await stream.readLP(m.MAX_MESSAGE_SIZE))
                self.assertEqual((reply.type, reply.addrs), (m.CONNECT, (B_PUBLIC,)))
                stream.reset()
            else:
                with self.assertRaises((StreamClosed, ConnectionError, Exception)):
                    await stream.readLP(m.MAX_MESSAGE_SIZE)
        self.assertEqual(await roundTrip(self.a, self.b.peerID, b"alive"), b"alive")

    async def test_refusedOverDirect(self):
        """
        A DCUtR stream over a direct connection is reset: there is nothing
        to punch.
        """
        await self.setUpHosts(bReach="public")
        conn = await self.a.connect(addressOf(self.b))
        self.assertIsNone(relayOf(conn))
        stream = await self.rawStream()
        stream.writeLP(m.encodeConnect([A_PUBLIC]))
        with self.assertRaises(Exception):
            await stream.readLP(m.MAX_MESSAGE_SIZE)
        self.assertEqual(self.bService.outcomes, {})


    async def test_peersDialWins(self):
        """
        When B's own dial fails but A's made the direct connection, B
        reports C{direct} and does not try again.
        """
        arrived = Deferred()

        async def aDial(host, addrs, peerID, *, isClient, localPort, timeout):
            return await host.connect(addressOf(self.b))

        async def bDial(host, addrs, peerID, *, isClient, localPort, timeout):
            await arrived
            raise PunchFailed("dropped (test)")

        await self.setUpHosts(aDials=aDial, bDials=bDial)
        self.b.addConnectionObserver(
            lambda c: arrived.callback(None) if c.relay is None and c.remotePeer == self.a.peerID and not arrived.called else None
        )
        await self.dialThroughRelay()
        direct = await (await self.started)
        self.assertIsNone(direct.relay)
        outcome = self.bService.outcome(self.a.peerID)
        self.assertEqual((outcome.state, outcome.attempts), ("direct", 1))


class RelayOfTests(TestCase):
    def test_fromAddress(self):
        """
        A connection not marked yet is known relayed by its address.
        """
        relay = "12D3KooWSAbmEtgz9gg6bpNZ7m31aQHWEMEa26GXjCx3Cg5vYgBm"
        conn = SimpleNamespace(relay=None, remoteAddr=f"/ip4/11.0.1.1/tcp/1/p2p/{relay}/p2p-circuit")
        self.assertEqual(str(relayOf(conn)), relay)
        self.assertIsNone(relayOf(SimpleNamespace(relay=None, remoteAddr="/ip4/11.0.1.1/tcp/1")))
        self.assertIsNone(relayOf(SimpleNamespace(relay=None, remoteAddr="/ip4/1.1.1.1/tcp/1/p2p/bad/p2p-circuit")))
        self.assertIsNone(relayOf(None))


class NoDCUtRTests(TestCase):
    timeout = 30

    async def test_peerWithoutDCUtR(self):
        """
        A peer whose identify does not list /libp2p/dcutr is not asked.
        """
        r, _, _ = await startRelayHost(self, service="on", limits=RelayLimits(data=64 * MiB, duration=120, maxReservationsPerIP=0))
        a, _, _ = await startRelayHost(self)
        b, bClient, _ = await startRelayHost(self)
        await bClient.listen(r.peerID, addressOf(r))
        dials = Dials()
        service = HolePunchService(b, reactor, reachability=lambda: "private", punch=dials, timeout=2)
        service.startService()
        self.addCleanup(service.stopService)
        started = Deferred()
        upgrade = service.upgrade
        service.upgrade = lambda c: (lambda d: (started.callback(d), d)[1])(upgrade(c))
        conn = await a.connect(f"{addressOf(r)}/p2p-circuit/p2p/{b.peerID}")
        self.assertIsNone(await (await started))
        self.assertEqual(service.outcomes, {})
        self.assertEqual(dials.calls, [])
        self.assertFalse(conn.closing)

