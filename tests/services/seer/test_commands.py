"""
seer's command bodies: whatever a caller sends is answered or refused
with L{Invalid}, never another error, and nothing refused is stored.
"""

from hypothesis import given, settings, strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tau.identity import PrivateKey
from tau.services.seer.commands import Commands, Invalid, signatureOf
from tau.services.seer.registry import Registry

KEY = PrivateKey.generate()
PEER = KEY.peerID()

leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.binary(max_size=20)
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                      max_leaves=12)
bodies = values | st.fixed_dictionaries(
    {"id": st.just(str(PEER)) | st.text(max_size=60), "client": st.text(max_size=10),
     "signature": st.just(signatureOf(KEY, PEER, "")) | st.binary(max_size=70)},
    optional={"services": values, "usage": values, "hostname": values, "name": values,
              "action": values | st.sampled_from(["set", "query", "query-all", "list", "listService", "info"]),
              "location": values, "from": values, "distance": values})


class BodyTests(SynchronousTestCase):
    def run_(self, handler, body):
        d = Deferred.fromCoroutine(handler(PEER, body))
        results = []
        d.addBoth(results.append)
        [result] = results
        return result

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from(["heartbeat", "announce", "geo"]), bodies)
    def test_anyBody(self, name, body):
        async def isMember(peer):
            return True

        registry = Registry(Clock(), 60, 10)
        commands = Commands(registry, isMember)
        result = self.run_(commands.handlers[name], body)
        if hasattr(result, "check"):
            self.assertTrue(result.check(Invalid), result)
            self.assertEqual(registry.nodes(), [])
        elif name == "geo" and isinstance(body, dict) and body.get("action") == "set":
            self.assertEqual(len(registry.nodes()), 1)
        elif name != "geo" and isinstance(body, dict) and body.get("action") is None:
            self.assertEqual([n.peer for n in registry.nodes()], [str(PEER)])
