"""
The inbound limits: upgrades in progress and connections per address, the
busiest address giving way when every upgrade slot is taken, silent
connections dropped; on a fake clock, then on a real host on loopback.
"""

from pathlib import Path

from twisted.internet import reactor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tau import loadConfig, makeNode
from tau.addrs import addressGroup
from tau.connection import RawConnection, UpgradeFailed
from tau.errors import ConfigError
from tau.host import Host
from tau.hostconns import RawFactory
from tau.identity import PrivateKey
from tau.inbound import InboundGate, InboundLimits
from tau.oneshot import OneShot
from tau.protocols.multistream import encodeMessage
from tests.hosts import startHost


class FakeConnection:
    def __init__(self):
        self._closed = OneShot()

    def whenClosed(self):
        return self._closed.whenFired()

    def close(self):
        self._closed.fire(None)


class FakeRaw:
    """
    What the gate sees of a L{RawConnection}.
    """

    def __init__(self):
        self.upgraded = OneShot()
        self.received = 0
        self.aborted = None

    def abort(self, reason):
        self.aborted = reason
        self.upgraded.fire(Failure(UpgradeFailed(reason)))

    def succeed(self):
        conn = FakeConnection()
        self.upgraded.fire(conn)
        return conn


class GateTests(SynchronousTestCase):
    def gate(self, **limits):
        self.clock = Clock()
        self.events = []
        gate = InboundGate(self.clock, InboundLimits(**limits))
        gate.log = Logger(observer=self.events.append)
        return gate

    def admitted(self, gate, group, n):
        raws = [FakeRaw() for _ in range(n)]
        self.assertEqual([gate.admit(raw, group) for raw in raws], [True] * n)
        return raws

    def warnings(self):
        return [e for e in self.events if e["log_level"].name == "warn"]

    def test_upgradesPerAddress(self):
        """
        An address may have 8 upgrades in progress: the 9th is refused and
        the refusal says why; another address is not affected; once one
        upgrade ends, the address may start another.
        """
        gate = self.gate()
        raws = self.admitted(gate, "10.0.0.1", 8)
        self.assertFalse(gate.admit(FakeRaw(), "10.0.0.1"))
        [warning] = self.warnings()
        self.assertEqual((warning["address"], warning["reason"]), ("10.0.0.1", "8 upgrades in progress"))
        self.assertTrue(gate.admit(FakeRaw(), "10.0.0.2"))
        raws[0].abort("gone")
        self.assertTrue(gate.admit(FakeRaw(), "10.0.0.1"))
        self.assertEqual(gate.count("10.0.0.1"), (8, 0))

    def test_connectionsPerAddress(self):
        """
        Upgraded connections count against the address until they close:
        with C{maxPerIP} 3, two upgraded and one upgrading leave no room.
        """
        gate = self.gate(maxPerIP=3, maxUpgradesPerIP=2)
        first, second = self.admitted(gate, "10.0.0.1", 2)
        conn = first.succeed()
        second.succeed()
        self.admitted(gate, "10.0.0.1", 1)
        self.assertEqual(gate.count("10.0.0.1"), (1, 2))
        self.assertFalse(gate.admit(FakeRaw(), "10.0.0.1"))
        self.assertEqual(self.warnings()[0]["reason"], "3 connections")
        conn.close()
        self.assertEqual(gate.count("10.0.0.1"), (1, 1))
        self.assertTrue(gate.admit(FakeRaw(), "10.0.0.1"))

    def test_busiestAddressGivesWay(self):
        """
        All upgrade slots taken: a newcomer from the busiest address is
        refused; one from another address gets in and the newest upgrade of
        the busiest address is aborted for it.
        """
        gate = self.gate(maxUpgrades=4, maxUpgradesPerIP=0, maxPerIP=0)
        a = self.admitted(gate, "10.0.0.1", 3)
        self.admitted(gate, "10.0.0.2", 1)
        self.assertFalse(gate.admit(FakeRaw(), "10.0.0.1"))
        self.assertEqual(self.warnings()[-1]["reason"], "3 upgrades in progress, all 4 upgrade slots taken")
        self.assertEqual([raw.aborted for raw in a], [None, None, None])
        self.assertTrue(gate.admit(FakeRaw(), "10.0.0.2"))
        self.assertEqual([raw.aborted is None for raw in a], [True, True, False])
        self.assertIn("10.0.0.1 held 3 upgrade slots", a[2].aborted)
        self.assertEqual((self.warnings()[-1]["address"], self.warnings()[-1]["other"]), ("10.0.0.1", "10.0.0.2"))
        self.assertEqual((gate.upgrading, gate.count("10.0.0.1"), gate.count("10.0.0.2")), (4, (2, 0), (2, 0)))
        # a tie: the newcomer from one of the busiest is refused
        self.assertFalse(gate.admit(FakeRaw(), "10.0.0.2"))
        self.assertTrue(gate.admit(FakeRaw(), "10.0.0.3"))
        self.assertEqual(gate.upgrading, 4)

    def test_firstBytes(self):
        """
        A connection that has received nothing 3 s after it was taken is
        dropped; one that has received a byte is not.
        """
        gate = self.gate()
        silent, talking, upgraded = self.admitted(gate, "10.0.0.1", 3)
        talking.received = 1
        upgraded.succeed()
        self.clock.advance(2.999)
        self.assertIsNone(silent.aborted)
        self.clock.advance(0.001)
        self.assertEqual(silent.aborted, "nothing received in 3.0s")
        self.assertIsNone(talking.aborted)
        self.assertIsNone(upgraded.aborted)
        self.assertEqual(gate.count("10.0.0.1"), (1, 1))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refusalsLoggedOnceAMinute(self):
        """
        Refusals from one address are a warning once a minute, debug lines
        in between; each address has its own minute.
        """
        gate = self.gate(maxUpgradesPerIP=1, firstBytes=3600)
        self.admitted(gate, "10.0.0.1", 1)
        self.admitted(gate, "10.0.0.2", 1)
        for _ in range(3):
            self.assertFalse(gate.admit(FakeRaw(), "10.0.0.1"))
        self.clock.advance(59)
        self.assertFalse(gate.admit(FakeRaw(), "10.0.0.1"))
        self.assertFalse(gate.admit(FakeRaw(), "10.0.0.2"))
        self.assertEqual([e["address"] for e in self.warnings()], ["10.0.0.1", "10.0.0.2"])
        self.assertEqual(len(self.events), 5)
        self.clock.advance(1)
        self.assertFalse(gate.admit(FakeRaw(), "10.0.0.1"))
        self.assertEqual([e["address"] for e in self.warnings()], ["10.0.0.1", "10.0.0.2", "10.0.0.1"])

    def test_ownLoopbackExempt(self):
        """
        127.0.0.1 and ::1 (a local cloud's nodes) are not limited per
        address, 127.0.0.2 is; the exempt ones still give way when every
        upgrade slot is taken.
        """
        gate = self.gate(maxUpgrades=12, maxUpgradesPerIP=2, maxPerIP=3)
        own = self.admitted(gate, "127.0.0.1", 9)
        self.admitted(gate, addressGroup("/ip6/::1/tcp/1"), 2)
        self.admitted(gate, "127.0.0.2", 1)
        self.assertEqual(gate.upgrading, 12)
        self.assertTrue(gate.admit(FakeRaw(), "127.0.0.2"))
        self.assertEqual([raw.aborted is None for raw in own], [True] * 8 + [False])
        self.assertFalse(gate.admit(FakeRaw(), "127.0.0.2"))
        self.assertEqual(self.warnings()[-1]["reason"], "2 upgrades in progress")

    def test_noLimits(self):
        gate = self.gate(maxUpgrades=0, maxUpgradesPerIP=0, maxPerIP=0)
        self.admitted(gate, "10.0.0.1", 500)
        self.assertEqual(self.events, [])

    def test_stopAbortsUpgrades(self):
        gate = self.gate()
        raws = self.admitted(gate, "10.0.0.1", 2) + self.admitted(gate, "10.0.0.2", 1)
        gate.stop()
        self.assertEqual([raw.aborted for raw in raws], ["the host is stopping"] * 3)
        self.assertEqual(gate.upgrading, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class HostWiringTests(SynchronousTestCase):
    def host(self, **connections):
        host = Host(PrivateKey.generate(), MemoryReactorClock(), connections=connections)
        host.startService()
        self.addCleanup(host.stopService)
        return host

    def test_tcpAddressGroups(self):
        """
        The host's listener counts a TCP connection by its IPv4 address or
        its IPv6 /64.
        """
        host = self.host(**{"max-upgrades-per-ip": 2})
        factory = RawFactory(host, isClient=False)

        def accepted(address):
            return factory.buildProtocol(address) is not None

        v6 = [IPv6Address("TCP", f"2001:db8:0:1::{i}", 4001) for i in (1, 2, 3)]
        self.assertEqual([accepted(a) for a in v6], [True, True, False])
        self.assertTrue(accepted(IPv6Address("TCP", "2001:db8:0:2::1", 4001)))
        v4 = [IPv4Address("TCP", "10.0.0.1", 4001 + i) for i in range(3)]
        self.assertEqual([accepted(a) for a in v4], [True, True, False])
        self.assertTrue(accepted(IPv4Address("TCP", "10.0.0.2", 4001)))
        self.assertEqual(host.inbound.count("2001:db8:0:1::/64"), (2, 0))

    def test_countedPerRelay(self):
        """
        Relayed inbound connections count as one address per relay.
        """
        host = self.host(**{"max-upgrades-per-ip": 1})
        relayA, relayB, peer = (PrivateKey.generate().peerID() for _ in range(3))
        self.assertTrue(host.adoptInbound(RawConnection(host, False, peer), relayA))
        self.assertFalse(host.adoptInbound(RawConnection(host, False, peer), relayA))
        self.assertTrue(host.adoptInbound(RawConnection(host, False, peer), relayB))
        self.assertEqual(host.inbound.count(f"relay {relayA}"), (1, 0))


class InboundConfigTests(SynchronousTestCase):
    def load(self, **fields):
        fields.setdefault("api-listen", "tcp:0:interface=127.0.0.1")
        return loadConfig(shape="full", root=Path(self.mktemp()), overrides=fields)

    def test_defaults(self):
        config = self.load()
        self.assertEqual(InboundLimits.fromConfig(config.connections), InboundLimits())
        node = makeNode(config, reactor=MemoryReactorClock())
        self.assertEqual(node.host.inbound.limits, InboundLimits())

    def test_toTheHost(self):
        """
        The keys given reach the host's gate; the others keep their
        defaults, and the connection manager still gets its own keys.
        """
        config = self.load(connections={"max-per-ip": 4, "first-bytes": 1.5, "high": 50})
        node = makeNode(config, reactor=MemoryReactorClock())
        self.assertEqual(node.host.inbound.limits, InboundLimits(maxPerIP=4, firstBytes=1.5))
        self.assertEqual(node.host.connmgr.high, 50)

    def test_refused(self):
        for bad, where, words in [
            ({"max-per-ip": -1}, "connections.max-per-ip", "whole number"),
            ({"max-upgrades": 1.5}, "connections.max-upgrades", "whole number"),
            ({"max-upgrades-per-ip": "8"}, "connections.max-upgrades-per-ip", "whole number"),
            ({"first-bytes": 0}, "connections.first-bytes", "positive number of seconds"),
            ({"max-per-address": 3}, "connections.max-per-address", "unknown field"),
        ]:
            with self.assertRaises(ConfigError, msg=bad) as e:
                self.load(connections=bad)
            self.assertEqual(e.exception.field, where)
            self.assertIn(words, str(e.exception))


class Client(Protocol):
    """
    A raw TCP client: what it received, and when it was dropped.
    """

    def __init__(self):
        self.received = b""
        self.lost = Deferred()
        self.gotData = Deferred()

    def dataReceived(self, data):
        self.received += data
        if not self.gotData.called:
            self.gotData.callback(data)

    def connectionLost(self, reason):
        self.lost.callback(None)


async def connectFrom(source, host):
    port = host.listeningPorts()[0]
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=(source, 0))
    client = await connectProtocol(endpoint, Client())
    return client


class LoopbackTests(TestCase):
    """
    A real host: addresses are exact IPv4 addresses (127.0.0.1 and
    127.0.0.2 are two), the limits hold at their edge.
    """

    async def test_upgradesPerAddress(self):
        host = await startHost(self, connections={"max-upgrades-per-ip": 2})
        held = [await connectFrom("127.0.0.2", host) for _ in range(2)]
        refused = await connectFrom("127.0.0.2", host)
        await refused.lost
        self.assertEqual(refused.received, b"")
        self.assertFalse(any(c.lost.called for c in held))
        # another loopback address is another address: it gets an answer
        other = await connectFrom("127.0.0.1", host)
        other.transport.write(encodeMessage("/multistream/1.0.0"))
        await other.gotData
        self.assertTrue(other.received.startswith(encodeMessage("/multistream/1.0.0")))
        self.assertEqual(host.inbound.count("127.0.0.2"), (2, 0))
        for c in held + [other]:
            c.transport.abortConnection()
            await c.lost

    async def test_silentDroppedBeforeTheUpgradeTimeout(self):
        """
        A connection that sends nothing is dropped after C{first-bytes}
        seconds; one that has spoken keeps the whole upgrade timeout.
        """
        host = await startHost(self, connections={"first-bytes": 0.5})
        host.upgradeTimeout = 30
        talking = await connectFrom("127.0.0.1", host)
        talking.transport.write(encodeMessage("/multistream/1.0.0"))
        silent = await connectFrom("127.0.0.1", host)
        await silent.lost
        self.assertFalse(talking.lost.called)
        self.assertEqual(host.inbound.count("127.0.0.1"), (1, 0))
        talking.transport.abortConnection()
        await talking.lost
