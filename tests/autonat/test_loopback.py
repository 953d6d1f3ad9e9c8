"""
AutoNAT, auto-relay and dialing by PeerId over real hosts on loopback.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tau.autonat.autorelay import AutoRelay
from tau.autonat.messages import PROTOCOL_ID
from tau.autonat.policy import ReachabilityPolicy
from tau.autonat.reachability import PRIVATE, PUBLIC
from tau.autonat.service import AutoNATService
from tau.host import DialError
from tau.kad.messages import PROTOCOL_ID as KAD
from tau.kad.network import DHTService
from tau.relay import RelayClient, RelayLimits, RelayService
from tau.host import Host
from tau.identity import PrivateKey
from tau.protocols import installProtocols
from tests.hosts import addressOf, echo, roundTrip, startHost


async def startUnlistening(case, announce=()):
    """
    A started host with no listener (as behind a NAT: it can only dial).
    """
    host = Host(PrivateKey.generate(), reactor, announce=list(announce))
    installProtocols(host)
    host.setStreamHandler("/tau/echo/1.0.0", echo, allowLimited=True)
    host.startService()
    case.addCleanup(lambda: host.stopService() if host.running else None)
    await host.whenReady()
    return host


async def until(predicate, what, limit=30.0):
    """
    Poll C{predicate} every 20 ms until it is true.
    """
    deadline = reactor.seconds() + limit
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.02, lambda: None)


def started(case, service):
    service.startService()
    case.addCleanup(lambda: service.stopService() if service.running else None)
    return service


def autonat(case, host, **kwargs):
    kwargs.setdefault("allowPrivate", True)
    kwargs.setdefault("bootDelay", 3600.0)
    kwargs.setdefault("serverOptions", {"dialTimeout": 2.0})
    return started(case, AutoNATService(host, reactor, **kwargs))


def reachabilityChange(service):
    d = Deferred()
    service.subscribe(lambda status: d.called or d.callback(status))
    return d


class AutoNATTests(TestCase):
    timeout = 60

    async def test_public(self):
        """
        A peer that can dial us back makes us public; the dial-back comes
        from another identity than the server's.
        """
        server = await startHost(self)
        autonat(self, server)
        client = await startHost(self)
        service = autonat(self, client)
        change = reachabilityChange(service)
        inbound = []
        client.addConnectionObserver(lambda conn: inbound.append(conn.remotePeer) if conn.direction == "inbound" else None)
        await client.connect(addressOf(server))
        self.assertEqual(await change, PUBLIC)
        self.assertEqual(server.peerstore.supports(client.peerID, PROTOCOL_ID), True)
        self.assertEqual(len(inbound), 1)
        self.assertNotEqual(inbound[0], server.peerID)
        self.assertIn(addressOf(client).rsplit("/p2p/", 1)[0], [str(a) for a in client.announcedAddresses()])

    async def test_private(self):
        """
        When nothing answers at the addresses we announce, the dial-back
        fails (though we are connected to the server, and it sees us at
        127.0.0.1): private.
        """
        server = await startHost(self)
        autonat(self, server)
        closed = await startHost(self)
        port = closed.listeningPorts()[0]
        await closed.stopService()
        client = await startUnlistening(self, announce=[f"/ip4/127.0.0.1/tcp/{port}"])
        service = autonat(self, client, serve=False)
        change = reachabilityChange(service)
        await client.connect(addressOf(server))
        self.assertEqual(await change, PRIVATE)

    async def test_serverRefusesLoopbackByDefault(self):
        server = await startHost(self)
        autonat(self, server, allowPrivate=False)
        client = await startHost(self)
        service = autonat(self, client, serve=False)
        await client.connect(addressOf(server))
        await until(lambda: service.probes >= 1 and service._probing is None, "a probe")
        self.assertEqual(service.status, "unknown")
        self.assertEqual(server.peerstore.get(client.peerID) is not None, True)


class PeerIDDialTests(TestCase):
    timeout = 60

    async def test_dialByPeerIDThroughTheDHT(self):
        """
        A host that knows only a PeerId finds the peer's addresses through
        the DHT and connects.
        """
        relay = await startHost(self)
        started(self, DHTService(relay, reactor))
        b = await startHost(self)
        started(self, DHTService(b, reactor, peers=[addressOf(relay)], mode="client"))
        a = await startHost(self)
        dhtA = started(self, DHTService(a, reactor, peers=[addressOf(relay)], mode="client"))
        await dhtA._bootstrapping
        await until(lambda: relay.connectionTo(b.peerID) is not None, "b connected to the relay")
        self.assertEqual(a.peerstore.addrs(b.peerID), [])
        conn = await a.connect(f"/p2p/{b.peerID}")
        self.assertEqual(conn.remotePeer, b.peerID)
        self.assertEqual(await roundTrip(a, b.peerID, b"hello"), b"hello")

    async def test_unknownPeer(self):
        relay = await startHost(self)
        started(self, DHTService(relay, reactor))
        a = await startHost(self)
        dhtA = started(self, DHTService(a, reactor, peers=[addressOf(relay)], mode="client"))
        await dhtA._bootstrapping
        nobody = PrivateKey.generate().peerID()
        with self.assertRaises(DialError) as caught:
            await a.dial(nobody)
        self.assertIn("peer routing", str(caught.exception))

    async def test_noRouting(self):
        a = await startHost(self)
        with self.assertRaises(DialError) as caught:
            await a.dial(PrivateKey.generate().peerID())
        self.assertIn("no known addresses", str(caught.exception))


class AutoRelayTests(TestCase):
    timeout = 60

    async def test_privatePeerReachedThroughRelayByPeerID(self):
        """
        B (no listener, so private) reserves a slot on R and announces its
        circuit address; R learns it by identify push; A, knowing only B's
        PeerId, finds it through R's DHT and connects through R.
        """
        r = await startHost(self)
        started(self, DHTService(r, reactor))
        started(self, RelayService(r, reactor, RelayLimits(), mode="on"))
        autonat(self, r)

        b = await startUnlistening(self)
        dhtB = DHTService(b, reactor, peers=[addressOf(r)], mode="server")
        clientB = RelayClient(b, reactor)
        clientB.install()
        started(self, clientB)
        autorelay = AutoRelay(b, clientB, reactor, desired=2)
        natB = AutoNATService(b, reactor, serve=False, reachability="private")
        natB.subscribe(ReachabilityPolicy(dhtB, None, autorelay))
        started(self, dhtB)
        started(self, natB)
        started(self, autorelay)
        self.assertEqual(dhtB.mode, "client")
        self.assertNotIn(KAD, b.protocols())

        await b.connect(addressOf(r))
        await until(lambda: r.peerID in autorelay.relays, "a reservation on r")
        circuit = f"{addressOf(r)}/p2p-circuit"
        self.assertIn(circuit, [str(x) for x in b.announcedAddresses()])
        await until(lambda: circuit in r.peerstore.addrs(b.peerID), "r to learn b's circuit address")

        a = await startHost(self)
        clientA = RelayClient(a, reactor)
        clientA.install()
        started(self, clientA)
        dhtA = started(self, DHTService(a, reactor, peers=[addressOf(r)], mode="client"))
        await dhtA._bootstrapping
        conn = await a.dial(b.peerID)
        self.assertEqual(conn.relay, r.peerID)
        self.assertEqual(await roundTrip(a, b.peerID, b"through the relay"), b"through the relay")

        # public again: the reservation is released and the address withdrawn
        natB.record(PUBLIC)
        self.assertEqual(autorelay.relays, set())
        self.assertNotIn(circuit, [str(x) for x in b.announcedAddresses()])
        self.assertEqual(dhtB.mode, "server")

    async def test_relayGoneAnotherTaken(self):
        """
        When the relay holding our reservation goes away, auto-relay moves
        to another one.
        """
        relays = []
        for _ in range(2):
            r = await startHost(self)
            started(self, RelayService(r, reactor, RelayLimits(), mode="on"))
            relays.append(r)
        b = await startUnlistening(self)
        clientB = RelayClient(b, reactor)
        clientB.install()
        started(self, clientB)
        autorelay = AutoRelay(b, clientB, reactor, desired=1, interval=0.2)
        started(self, autorelay)
        autorelay.setActive(True)
        for r in relays:
            await b.connect(addressOf(r))
        await until(lambda: len(autorelay.relays) == 1, "one reservation")
        first = next(iter(autorelay.relays))
        other = [r for r in relays if r.peerID != first][0]
        gone = [r for r in relays if r.peerID == first][0]
        await gone.stopService()
        await until(lambda: autorelay.relays == {other.peerID}, "a reservation on the other relay")
        self.assertEqual(clientB.circuitAddrs(), [f"{addressOf(other)}/p2p-circuit"])
        self.assertEqual([str(a) for a in b.announcedAddresses()], clientB.circuitAddrs())
