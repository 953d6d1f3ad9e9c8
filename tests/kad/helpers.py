"""
Shared fakes for the kad tests.
"""

import random

from tau.identity import PeerID
from tau.kad.keys import commonPrefixLength, peerKadID


def randomPeer(rng):
    """
    A random sha2-256 peer ID (no key behind it: enough for routing).
    """
    return PeerID(b"\x12\x20" + rng.getrandbits(256).to_bytes(32, "big"))


def peers(n, seed=0):
    rng = random.Random(seed)
    return [randomPeer(rng) for _ in range(n)]


def peerWithCpl(selfID, cpl, rng, tries=1 << 16):
    """
    A random peer whose common prefix length with C{selfID} is C{cpl}.
    """
    me = peerKadID(selfID)
    for _ in range(tries):
        p = randomPeer(rng)
        if commonPrefixLength(me, peerKadID(p)) == cpl:
            return p
    raise AssertionError("no such peer")


class RecordingTransport:
    """
    An L{tau.kad.dht.IKadTransport} that knows an address for everyone and
    records what is sent; requests answer from C{answers} (a callable) or
    never.
    """

    def __init__(self, answer=None):
        self.answer = answer
        self.requests = []
        self.sent = []
        self.cancelled = 0

    def request(self, peerID, message, addrs=()):
        from twisted.internet.defer import Deferred, succeed

        self.requests.append((peerID, message))
        if self.answer is None:
            def cancel(d):
                self.cancelled += 1
            return Deferred(cancel)
        return succeed(self.answer(peerID, message))

    def send(self, peerID, message, addrs=()):
        self.sent.append((peerID, message))

    def addrsOf(self, peerID):
        return (b"/addr/" + peerID.toBytes()[-4:],)

    def selfAddrs(self):
        return (b"/me",)
