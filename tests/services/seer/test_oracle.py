"""
The seers' gossip on C{/seer/oracle/v1}: Taubyte's C{nodeData} bytes both
ways, every part checked as the commands check it, the size bounded; the
validator takes only a seer of this cloud; what others tell is stored,
our own messages are not stored twice.
"""

from types import SimpleNamespace

import cbor2
from hypothesis import given, settings, strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tau.fakes import FakePubSub
from tau.identity import PrivateKey
from tau.interfaces import IPubSub
from tau.services.seer.commands import Commands, Invalid, signatureOf
from tau.services.seer.oracle import MAX_GOSSIP, TOPIC, Oracle, decodeNodeData, encodeNodeData
from tau.services.seer.registry import Registry
from tau.services.seer.usage import parseUsage

NODE = PrivateKey.generate()
SEER, OTHER, STRANGER = (PrivateKey.generate().peerID() for _ in range(3))
USAGE = parseUsage(cbor2.dumps({3: {11: 1, 12: 2, 13: 3}, 9: {"load": 0.5}}))


def result(coroutine):
    out = []
    Deferred.fromCoroutine(coroutine).addBoth(out.append)
    [value] = out
    return value


class CodecTests(SynchronousTestCase):
    def test_goShape(self):
        """
        A message as Taubyte's seer writes it (keys 1, 2, and 8, 9 or 10;
        a float32 place) is read; ours has those keys.
        """
        peer = str(NODE.peerID())
        go = cbor2.dumps({1: peer, 2: "", 8: [{"Type": "gateway", "Meta": {"IP": "1.2.3.4"}}, {"Type": "tns", "Meta": None}]})
        self.assertEqual(decodeNodeData(go).services, {"gateway": {"IP": "1.2.3.4"}, "tns": {}})
        go = bytes.fromhex("a2") + cbor2.dumps(1)[:1] + cbor2.dumps(peer) + b"\x0a" + \
            bytes.fromhex("a2011a6553f100" "04a201fa42480000" "02fa40200000")
        news = decodeNodeData(go)
        self.assertEqual(news.location, (50.0, 2.5, 1700000000))
        self.assertEqual((news.services, news.usage, news.hostname), (None, None, ""))
        ours = cbor2.loads(encodeNodeData(peer, "h", usage=USAGE))
        self.assertEqual(sorted(ours, key=str), [1, 2, 9])
        self.assertEqual(ours[9][9], {"load": 0.5})

    @settings(max_examples=100, deadline=None)
    @given(st.text(max_size=20), st.none() | st.dictionaries(st.text(max_size=8), st.dictionaries(
        st.text(max_size=4), st.text(max_size=4), max_size=3), max_size=4),
        st.booleans(), st.none() | st.tuples(st.floats(-90, 90), st.floats(-180, 180), st.integers(0, 2**40)))
    def test_roundTrip(self, hostname, services, withUsage, place):
        """
        What is encoded is decoded the same.
        """
        peer = str(NODE.peerID())
        news = decodeNodeData(encodeNodeData(peer, hostname, services, USAGE if withUsage else None, place))
        self.assertEqual((news.peer, news.hostname, news.services, news.usage, news.location),
                         (peer, hostname, services, USAGE if withUsage else None, place))

    def test_refused(self):
        """
        A message past MAX_GOSSIP bytes (exactly it is read), not a map,
        a bad id, or a part the commands would refuse.
        """
        peer = str(NODE.peerID())
        with self.assertRaises(Invalid) as e:
            decodeNodeData(b"\x00" * MAX_GOSSIP)
        self.assertNotIn("at most", str(e.exception))
        for data, why in [
            (b"\x00" * (MAX_GOSSIP + 1), f"at most {MAX_GOSSIP}"),
            (cbor2.dumps([1]), "not a map"),
            (cbor2.dumps({1: "nobody"}), "1: bad peer ID"),
            (cbor2.dumps({2: "h"}), "1: the node's id"),
            (cbor2.dumps({1: peer, 2: 5}), "2: a hostname"),
            (cbor2.dumps({1: peer, 8: [{"Type": f"s{i}"} for i in range(33)]}), "services: a list of at most 32"),
            (cbor2.dumps({1: peer, 9: {3: {11: -1}}}), "3.11 is not a whole number"),
            (cbor2.dumps({1: peer, 10: {1: 1, 4: {1: 91, 2: 0}}}), "latitude within -90..90"),
            (cbor2.dumps({1: peer, 10: {1: -1, 4: {1: 0, 2: 0}}}), "10: a time"),
        ]:
            with self.assertRaises(Invalid) as e:
                decodeNodeData(data)
            self.assertIn(why, str(e.exception))


class OracleTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.registry = Registry(self.clock, 60, 10)
        self.pubsub = FakePubSub(source=SEER)
        verifyObject(IPubSub, self.pubsub)

        async def isMember(peer, service=None):
            return peer in (SEER, OTHER) and service == "seer"

        self.oracle = Oracle(self.pubsub, self.registry, isMember, SEER)
        self.oracle.start()
        self.addCleanup(self.oracle.stop)

    def message(self, data, source=OTHER):
        return SimpleNamespace(topic=TOPIC, data=data, source=source)

    def test_validator(self):
        """
        True for a valid message from a seer of this cloud; False from
        anyone else, from nobody, or for bad bytes.
        """
        good = encodeNodeData(str(NODE.peerID()), "h", usage=USAGE)
        self.assertIs(result(self.oracle.validate(self.message(good))), True)
        self.assertIs(result(self.oracle.validate(self.message(good, STRANGER))), False)
        self.assertIs(result(self.oracle.validate(self.message(good, None))), False)
        self.assertIs(result(self.oracle.validate(self.message(b"\xff"))), False)
        self.assertEqual(self.oracle.rejected, 3)

    def test_heardByOneSeerStoredByAll(self):
        """
        What this seer's commands accept is published; a message from
        another seer is stored as if the node had told us, ours is not
        stored twice.
        """
        async def member(peer):
            return True

        commands = Commands(self.registry, member, self.oracle.tell)
        peer = NODE.peerID()
        body = {"usage": cbor2.dumps({3: {11: 5}}), "hostname": "n1", "id": str(peer), "client": "c",
                "signature": signatureOf(NODE, peer, "c")}
        result(commands.heartbeat(peer, body))
        result(commands.announce(peer, dict(body, services=[{"Type": "gateway", "Meta": {"IP": "127.0.0.9"}}])))
        result(commands.geo(peer, {"action": "set", "location": {1: 1.5, 2: 2.5}}))
        told = [decodeNodeData(data) for topic, data in self.pubsub.published]
        self.assertEqual([(n.hostname, n.usage is not None, n.services, n.location) for n in told], [
            ("n1", True, None, None), ("", False, {"gateway": {"IP": "127.0.0.9"}}, None),
            ("", False, None, (1.5, 2.5, 0))])
        # another seer's registry, fed by the messages from this one
        other = Registry(self.clock, 60, 10)
        oracle = Oracle(None, other, None, OTHER)
        for news in told:
            oracle.store(news)
        node = other.node(str(peer))
        self.assertEqual((node.hostname, node.usage[3][11], node.services, node.location, node.healthy),
                         ("n1", 5, {"gateway": {"IP": "127.0.0.9"}}, (1.5, 2.5, 0), True))

    def test_readsOthersOnly(self):
        """
        A message from another seer on the topic is stored; this seer's
        own is not stored again; one the registry has no room for is
        dropped and the reading carries on.
        """
        self.pubsub.source = OTHER
        result(self.pubsub.publish(TOPIC, encodeNodeData(str(NODE.peerID()), "n", usage=USAGE)))
        self.assertEqual(self.registry.node(str(NODE.peerID())).hostname, "n")
        self.pubsub.source = SEER
        other = str(PrivateKey.generate().peerID())
        result(self.pubsub.publish(TOPIC, encodeNodeData(other, "n", usage=USAGE)))
        self.assertIsNone(self.registry.node(other))
        self.registry.maxNodes = 1
        self.pubsub.source = OTHER
        result(self.pubsub.publish(TOPIC, encodeNodeData(other, "n", usage=USAGE)))
        self.assertIsNone(self.registry.node(other))
        self.registry.maxNodes = 2
        result(self.pubsub.publish(TOPIC, encodeNodeData(other, "n", usage=USAGE)))
        self.assertEqual(self.registry.node(other).hostname, "n")
