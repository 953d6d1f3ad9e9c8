"""
Which patrick nodes are alive, and which one decides for a job.

Every patrick node publishes a heartbeat on L{TOPIC} every C{heartbeat}
seconds (CBOR C{{"incarnation": its start time}}); a node not heard from
for L{DEAD_AFTER} heartbeats is dead.  Only heartbeats signed by a node of
this cloud count (the pubsub message's C{source}, checked with
C{trusted}).

The owner of a job is the live node whose rendezvous score
(sha2-256 of C{jid NUL peer id}) is highest: every node computes the same
owner from the same view, and a node joining or leaving moves only the
jobs it wins or held.  A node decides nothing for its first L{DEAD_AFTER}
heartbeats (L{Members.settled}): by then it has heard the live nodes, so a
node that starts never believes it owns the jobs a live node owns.
"""

import hashlib

import cbor2
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

TOPIC = "/patrick/v1/members"
#: heartbeats a node may miss before it is dead
DEAD_AFTER = 5
#: the largest heartbeat read
MAX_HEARTBEAT = 256

log = Logger()


def score(jid, peer):
    """
    The rendezvous score of C{peer} for job C{jid}.
    """
    return hashlib.sha256(f"{jid}\0{peer}".encode("utf-8")).digest()


def ownerOf(jid, peers):
    """
    The peer of C{peers} that decides for C{jid} (highest score; ties, which
    sha2-256 makes theoretical, to the lower id).
    """
    return max(peers, key=lambda p: (score(jid, p), str(p)))


class Members:
    """
    @param pubsub: has C{subscribe}, C{publish}; None: this node alone.
    @param peerID: this node's id.
    @param clock: IReactorTime.
    @param trusted: C{trusted(peer)} -> bool (or a Deferred or coroutine of
        one): whether C{peer} is a patrick node of this cloud.
    @param heartbeat: seconds between heartbeats.
    """

    def __init__(self, pubsub, peerID, clock, trusted, heartbeat=1.0):
        self.pubsub = pubsub
        self.peerID = peerID
        self.clock = clock
        self.trusted = trusted
        self.heartbeat = heartbeat
        #: peer -> when it was last heard
        self.heard = {}
        self.started = None
        self._loop = None
        self._subscription = None
        self._reading = None

    def start(self):
        self.started = self.clock.seconds()
        if self.pubsub is None:
            return
        self._subscription = self.pubsub.subscribe(TOPIC)
        self._reading = Deferred.fromCoroutine(self._read(self._subscription))
        self._reading.addErrback(lambda f: None)
        self._loop = LoopingCall(self._beat)
        self._loop.clock = self.clock
        self._loop.start(self.heartbeat, now=True).addErrback(
            lambda f: log.failure("patrick heartbeats stopped", f))

    def stop(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None
        if self._reading is not None:
            self._reading.cancel()
            self._reading = None

    def _beat(self):
        d = Deferred.fromCoroutine(self.pubsub.publish(TOPIC, cbor2.dumps({"incarnation": int(self.started)})))
        d.addErrback(lambda f: log.info("patrick heartbeat not sent: {why}", why=f.getErrorMessage()))

    async def _read(self, subscription):
        while True:
            message = await subscription.next()
            source = getattr(message, "source", None)
            if source is None or source == self.peerID or len(message.data) > MAX_HEARTBEAT:
                continue
            try:
                if not await maybeDeferred(self.trusted, source):
                    log.info("patrick heartbeat from {peer} ignored: not a patrick node of this cloud", peer=source)
                    continue
            except Exception as e:
                log.info("patrick heartbeat from {peer} ignored: {why}", peer=source, why=str(e))
                continue
            if source not in self.heard:
                log.info("patrick node {peer} joined", peer=source)
            self.heard[source] = self.clock.seconds()

    def live(self):
        """
        The live patrick nodes, this one included.
        """
        limit = self.clock.seconds() - DEAD_AFTER * self.heartbeat
        for peer, when in list(self.heard.items()):
            if when < limit:
                del self.heard[peer]
                log.info("patrick node {peer} left (silent)", peer=peer)
        return [self.peerID, *self.heard]

    def isLive(self, peer):
        return peer == self.peerID or peer in self.live()

    @property
    def settled(self):
        """
        Whether this node has run long enough to have heard every live node.
        """
        return self.started is not None and (
            self.pubsub is None or self.clock.seconds() - self.started >= DEAD_AFTER * self.heartbeat)

    def owner(self, jid):
        """
        The live node that decides for C{jid}.
        """
        return ownerOf(jid, self.live())

    def owns(self, jid):
        return self.settled and self.owner(jid) == self.peerID
