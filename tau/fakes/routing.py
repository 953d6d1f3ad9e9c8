"""
A fake of DHT routing (L{tau.interfaces.IRouting}): a DHT in a dict.
"""

from twisted.internet.defer import fail, succeed
from zope.interface import implementer

from tau.interfaces import IRouting


@implementer(IRouting)
class FakeRouting:
    """
    A DHT in a dict.  C{provide} answers from C{answers} while there are
    some (a number of peers told, or an exception to fail with), else 1;
    C{findProviders} answers from C{providers} (key -> [(PeerID, [addr])])
    and C{findPeer} from C{peers} (PeerID -> [addr]).

    @ivar provided: the keys provided, in order.
    @ivar asked: the keys whose providers were asked for, in order.
    """

    def __init__(self, answers=()):
        self.answers = list(answers)
        self.provided = []
        self.asked = []
        self.providers = {}
        self.peers = {}

    def provide(self, key):
        self.provided.append(key)
        answer = self.answers.pop(0) if self.answers else 1
        return fail(answer) if isinstance(answer, Exception) else succeed(answer)

    def findProviders(self, key, count=20):
        self.asked.append(key)
        return succeed(list(self.providers.get(key, ()))[:count])

    def findPeer(self, peerID):
        if peerID not in self.peers:
            return fail(LookupError(f"{peerID} not found"))
        return succeed(list(self.peers[peerID]))
