"""
Finding a service and failing over: the DHT key, the announcer, and a
client calling real hosts on loopback.
"""

import hashlib

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from tau.fakes import FakeRouting
from tau.protocols.identify import whenIdentified
from tau.services.commands import RemoteError
from tau.services.discovery import ANNOUNCE_RETRY, Announcer, ServiceClient, serviceKey
from tau.services.framework import CommandRouter, ServiceError
from tests.hosts import addressOf, startHost

PROTOCOL = "/test/v1"


class KeyTests(TestCase):
    def test_serviceKey(self):
        # go: cid.NewCidV1(cid.Raw, multihash.Sum([]byte(protocol), SHA2_256))
        key = serviceKey("/tns/v1")
        self.assertEqual(key.version, 1)
        self.assertEqual(key.codec, "raw")
        self.assertEqual(bytes(key.multihash), b"\x12\x20" + hashlib.sha256(b"/tns/v1").digest())


class AnnouncerTests(TestCase):
    def test_retriedUntilSomeoneIsTold(self):
        clock = Clock()
        routing = FakeRouting([0, RuntimeError("lookup failed"), 3])
        announcer = Announcer(routing, PROTOCOL, clock)
        announcer.start()
        self.assertEqual(routing.provided, [serviceKey(PROTOCOL)])
        clock.advance(ANNOUNCE_RETRY - 1)
        self.assertEqual(len(routing.provided), 1)
        clock.advance(1)
        self.assertEqual(len(routing.provided), 2)
        clock.advance(ANNOUNCE_RETRY)
        self.assertEqual(len(routing.provided), 3)
        # three peers told: the DHT's republishing takes over
        clock.advance(ANNOUNCE_RETRY * 10)
        self.assertEqual(len(routing.provided), 3)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_stopCancelsTheRetry(self):
        clock = Clock()
        announcer = Announcer(FakeRouting([0]), PROTOCOL, clock)
        announcer.start()
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        announcer.stop()
        self.assertEqual(clock.getDelayedCalls(), [])


class ClientTests(TestCase):
    async def service(self, name):
        host = await startHost(self)
        router = CommandRouter(PROTOCOL, reactor)
        calls = []

        async def who(peer, body):
            calls.append(peer)
            return {"name": name}

        async def refuse(peer, body):
            calls.append(peer)
            raise ValueError("no")

        router.define("who", who)
        router.define("refuse", refuse)
        router.install(host)
        return host, calls

    async def connected(self, client, *servers):
        for server in servers:
            conn = await client.connect(addressOf(server))
            await whenIdentified(client, conn)

    async def test_knownPeersByTurns(self):
        (a, callsA), (b, callsB) = await self.service("a"), await self.service("b")
        me = await startHost(self)
        await self.connected(me, a, b)
        client = ServiceClient(me, None, PROTOCOL)
        names = [(await client.call("who"))["name"] for _ in range(4)]
        self.assertEqual(sorted(names), ["a", "a", "b", "b"])
        self.assertEqual(len(callsA), 2)

    async def test_failsOverToTheNextNode(self):
        (a, _), (b, _) = await self.service("a"), await self.service("b")
        me = await startHost(self)
        await self.connected(me, a, b)
        await a.stopService()
        client = ServiceClient(me, None, PROTOCOL, timeout=2)
        for _ in range(2):
            self.assertEqual(await client.call("who"), {"name": "b"})

    async def test_remoteErrorIsNotRetried(self):
        (a, callsA), (b, callsB) = await self.service("a"), await self.service("b")
        me = await startHost(self)
        await self.connected(me, a, b)
        client = ServiceClient(me, None, PROTOCOL)
        e = await self.assertFailure(Deferred.fromCoroutine(client.call("refuse")), RemoteError)
        self.assertIn('executing command "refuse" failed: no', str(e))
        # the service answered: no other node is asked
        self.assertEqual(len(callsA) + len(callsB), 1)

    async def test_noNode(self):
        me = await startHost(self)
        e = await self.assertFailure(Deferred.fromCoroutine(ServiceClient(me, None, PROTOCOL).call("who")), ServiceError)
        self.assertEqual(str(e), f"no node offers {PROTOCOL}")

    async def test_dhtWhenNoneKnown(self):
        a, calls = await self.service("a")
        me = await startHost(self)
        me.peerstore.addAddrs(a.peerID, [str(a.listenAddresses()[0])])
        routing = FakeRouting()
        routing.providers[serviceKey(PROTOCOL)] = [(a.peerID, [])]
        client = ServiceClient(me, routing, PROTOCOL)
        self.assertEqual(await client.call("who"), {"name": "a"})
        self.assertEqual(await client.call("who"), {"name": "a"})
        # once connected and identified, a is known: the DHT was asked once
        self.assertEqual(routing.asked, [serviceKey(PROTOCOL)])

    async def test_allNodesDown(self):
        (a, _), (b, _) = await self.service("a"), await self.service("b")
        me = await startHost(self)
        await self.connected(me, a, b)
        await a.stopService()
        await b.stopService()
        e = await self.assertFailure(Deferred.fromCoroutine(ServiceClient(me, None, PROTOCOL, timeout=2).call("who")), ServiceError)
        self.assertIn("no node answered", str(e))
        self.assertEqual(str(e).count(PROTOCOL + " who to"), 2)
