"""
The connection manager on a fake clock: watermarks, grace, protection, idle.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tau.connmgr import ConnectionManager
from tau.identity import PrivateKey


class FakeConnection:
    def __init__(self, clock, streams=0):
        self.remotePeer = PrivateKey.generate().peerID()
        self.opened = clock.seconds()
        self.lastActivity = clock.seconds()
        self.streamCount = streams
        self.closing = False

    def close(self):
        self.closing = True


class FakeHost:
    def __init__(self):
        self.conns = []

    def connections(self):
        return [c for c in self.conns if not c.closing]


class WatermarkTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.host = FakeHost()
        self.manager = ConnectionManager(self.host, self.clock, low=3, high=5, grace=10, idle=None)

    def add(self, n, streams=0):
        new = [FakeConnection(self.clock, streams) for _ in range(n)]
        self.host.conns.extend(new)
        return new

    def test_belowHighNothingCloses(self):
        self.add(5)
        self.assertEqual(self.manager.trim(), [])

    def test_trimToLowLeastRecentlyUsedFirst(self):
        conns = self.add(7)
        self.clock.advance(11)
        for i, conn in enumerate(conns):
            conn.lastActivity = 100 - i
        closed = self.manager.trim()
        self.assertEqual(len(closed), 4)
        self.assertEqual(set(closed), set(conns[3:]))
        self.assertEqual(len(self.host.connections()), 3)

    def test_graceProtectsNewConnections(self):
        self.add(4)
        self.clock.advance(11)
        self.add(4)
        closed = self.manager.trim()
        self.assertEqual(len(closed), 4)
        self.assertTrue(all(c.opened == 0 for c in closed))

    def test_protectedPeersKept(self):
        conns = self.add(7)
        self.clock.advance(11)
        for conn in conns:
            self.manager.protect(conn.remotePeer, "bootstrap")
        self.assertEqual(self.manager.trim(), [])
        self.manager.unprotect(conns[0].remotePeer, "bootstrap")
        self.assertEqual(self.manager.trim(), [conns[0]])

    def test_busyConnectionsLast(self):
        idle = self.add(3)
        busy = self.add(4, streams=2)
        self.clock.advance(11)
        closed = self.manager.trim()
        self.assertEqual(closed[:3], idle)
        self.assertEqual(len(closed), 4)
        self.assertIn(closed[3], busy)

    def test_addingOverHighTrimsSoon(self):
        self.add(7)
        self.clock.advance(11)
        self.manager.connectionAdded()
        self.assertEqual(len(self.host.connections()), 7)
        self.clock.advance(0)
        self.assertEqual(len(self.host.connections()), 3)

    def test_periodicTick(self):
        self.manager.start()
        self.add(7)
        self.clock.advance(9)
        self.assertEqual(len(self.host.connections()), 7)
        self.clock.advance(1)
        self.assertEqual(len(self.host.connections()), 3)
        self.manager.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_lowAboveHighRefused(self):
        self.assertRaises(ValueError, ConnectionManager, self.host, self.clock, low=10, high=5)


class IdleTests(SynchronousTestCase):
    def test_idleConnectionsClosed(self):
        clock = Clock()
        host = FakeHost()
        manager = ConnectionManager(host, clock, low=3, high=5, grace=10, idle=60)
        quiet = FakeConnection(clock)
        busy = FakeConnection(clock, streams=1)
        host.conns.extend([quiet, busy])
        clock.advance(59)
        self.assertEqual(manager.closeIdle(), [])
        clock.advance(1)
        self.assertEqual(manager.closeIdle(), [quiet])
        self.assertFalse(busy.closing)
