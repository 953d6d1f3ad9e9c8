"""
Heartbeats: their decoding at its limits, who is taken as a member, when a
member is dead (5 s of silence, on the clock), and the cap on members
tracked.
"""

from types import SimpleNamespace

import cbor2
from hypothesis import given, strategies as st
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase

from tau.identity import PrivateKey
from tau.services.hoarder import MEMBERS_TOPIC
from tau.services.hoarder.membership import (MAX_HEARTBEAT, MAX_ZONE, Heartbeat, InvalidHeartbeat, Membership,
                                             decodeHeartbeat)
from tests.services.hoarder.helpers import BusPubSub


def beat(**fields):
    value = {"PeerID": "12D3KooWx", "Incarnation": 1, "Seq": 1, "Zone": "", "Capacity": 0}
    value.update(fields)
    return cbor2.dumps(value)


class DecodeTests(TestCase):
    def test_roundTrip(self):
        hb = Heartbeat("12D3KooWx", 10**18, 3, "eu", 1 << 40)
        self.assertEqual(decodeHeartbeat(hb.encode()), hb)
        self.assertEqual(set(cbor2.loads(hb.encode())), {"PeerID", "Incarnation", "Seq", "Zone", "Capacity"})

    def test_sizeAtLimit(self):
        pad = next(n for n in range(MAX_HEARTBEAT) if len(beat(Pad=b"x" * n)) == MAX_HEARTBEAT)
        decodeHeartbeat(beat(Pad=b"x" * pad))
        over = beat(Pad=b"x" * (pad + 1))
        self.assertEqual(len(over), MAX_HEARTBEAT + 1)
        e = self.assertRaises(InvalidHeartbeat, decodeHeartbeat, over)
        self.assertIn(f"{MAX_HEARTBEAT + 1} bytes (limit {MAX_HEARTBEAT})", str(e))

    def test_zoneAtLimit(self):
        self.assertEqual(decodeHeartbeat(beat(Zone="z" * MAX_ZONE)).zone, "z" * MAX_ZONE)
        self.assertIn("Zone", str(self.assertRaises(InvalidHeartbeat, decodeHeartbeat, beat(Zone="z" * (MAX_ZONE + 1)))))

    def test_badFields(self):
        for data, named in [(beat(Seq=-1), "Seq"), (beat(Seq=True), "Seq"), (beat(Incarnation=1.5), "Incarnation"),
                            (beat(Capacity=1 << 64), "Capacity"), (beat(PeerID=""), "PeerID"),
                            (beat(PeerID=b"x"), "PeerID"), (cbor2.dumps([1]), "map"), (b"\xff\x00", "CBOR")]:
            self.assertIn(named, str(self.assertRaises(InvalidHeartbeat, decodeHeartbeat, data)))

    @given(st.binary(max_size=600))
    def test_anyBytes(self, data):
        try:
            self.assertIsInstance(decodeHeartbeat(data), Heartbeat)
        except InvalidHeartbeat:
            pass


class LivenessTests(TestCase):
    def setUp(self):
        self.clock = MemoryReactorClock()
        self.bus = []
        self.members = set()
        self.changes = []

    async def isMember(self, peer, service=None):
        return peer in self.members and service == "hoarder"

    def node(self, member=True, **kw):
        peer = PrivateKey.generate().peerID()
        if member:
            self.members.add(peer)
        m = Membership(peer, BusPubSub(self.bus, peer), self.clock, self.isMember,
                       onChange=lambda joined, left: self.changes.append((peer, joined, left)), **kw)
        m.start()
        self.addCleanup(lambda: m.stop() if m._beat is not None else None)
        return m

    def test_seeEachOther(self):
        a, b = self.node(), self.node()
        self.clock.advance(1)
        self.assertEqual(a.live(), sorted([a.me, b.me]))
        self.assertEqual(b.live(), a.live())
        self.assertIn((a.peerID, {b.me}, set()), self.changes)

    def test_deadAfterFiveSeconds(self):
        a, b = self.node(), self.node()
        self.clock.advance(1)
        b.stop()
        b.pubsub.down = True
        self.clock.advance(4.9)   # heard at 1.0: silent 4.9 s
        self.assertTrue(a.isLive(b.me))
        self.clock.advance(0.1)
        self.assertFalse(a.isLive(b.me))
        self.assertEqual(a.live(), [a.me])
        self.clock.advance(1)   # the sweep tells
        self.assertIn((a.peerID, set(), {b.me}), self.changes)

    def test_keptAliveByBeats(self):
        a, b = self.node(), self.node()
        for _ in range(30):
            self.clock.advance(1)
        self.assertTrue(a.isLive(b.me))
        self.assertEqual([c for c in self.changes if c[2]], [])

    def test_outsiderIgnored(self):
        a = self.node()
        outsider = self.node(member=False)
        self.clock.advance(1)
        self.assertEqual(a.live(), [a.me])
        self.assertEqual(outsider.live(), sorted([a.me, outsider.me]))

    async def test_impostorRefused(self):
        """
        A heartbeat naming another peer than its signed source is refused.
        """
        a, b = self.node(), self.node()
        message = SimpleNamespace(topic=MEMBERS_TOPIC, data=Heartbeat(a.me, 1, 1).encode(), source=b.peerID)
        self.assertFalse(await a._validate(message))
        message.data = Heartbeat(b.me, 1, 1).encode()
        self.assertTrue(await a._validate(message))

    def test_staleBeatDoesNotRefresh(self):
        a = self.node()
        a.heard(Heartbeat("other", 5, 10))
        self.clock.advance(3)
        a.heard(Heartbeat("other", 5, 9))     # a replay
        self.clock.advance(2)
        self.assertFalse(a.isLive("other"))
        a.heard(Heartbeat("other", 6, 1))     # restarted: a new incarnation
        self.assertTrue(a.isLive("other"))

    def test_membersCapped(self):
        a = self.node(maxMembers=2)
        for name in ("m1", "m2", "m3"):
            a.heard(Heartbeat(name, 1, 1))
        self.assertEqual(a.live(), sorted([a.me, "m1", "m2"]))
