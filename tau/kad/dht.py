"""
The Kademlia DHT core: answers kad requests and runs queries, network-free.
This module holds L{KademliaCore}'s state, life cycle and timers; its
answers are L{tau.kad.handlers} and its queries L{tau.kad.queries}
(mixins of it).

L{KademliaCore} talks to the network only through an L{IKadTransport}, which
the host layer implements over C{/ipfs/kad/1.0.0} streams (see
L{tau.kad.wire} for the stream side: one request per outbound stream, a loop
of requests on every inbound stream).  The network layer also tells the core
which peers are around (L{KademliaCore.peerSeen}, after identify says whether
they serve kad) and hands every inbound request to L{KademliaCore.handle}.

Every query method returns a cancellable Deferred; cancelling it stops the
lookup's requests in flight.
"""

import random
from collections import Counter

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import Interface

from tau.kad.handlers import RequestHandlers
from tau.kad.queries import NotFound, Queries
from tau.kad.records import REPROVIDE_INTERVAL, InvalidRecord, defaultValidators, splitKey
from tau.kad.routing import RoutingTable
from tau.tokens import TokenBuckets

__all__ = ["IKadTransport", "KademliaCore", "NotFound"]

log = Logger()


class IKadTransport(Interface):
    """
    What L{KademliaCore} needs from the network layer.
    """

    def request(peerID, message, addrs=()):
        """
        Open a C{/ipfs/kad/1.0.0} stream to C{peerID} (dialling with C{addrs},
        multiaddr bytes learnt in the lookup, plus what the peer store knows),
        write C{message}, read one response (at most
        L{tau.kad.messages.MAX_MESSAGE_SIZE}, decoded with
        L{tau.kad.messages.decodeMessage}) and close the stream.

        @return: a Deferred (or coroutine) firing with the response
            C{Message}, failing on any error.  Cancelling it must abort the
            dial or reset the stream.  The core applies its own timeouts.
        """

    def send(peerID, message, addrs=()):
        """
        Write C{message} on a new stream to C{peerID} and close it without
        waiting for an answer (ADD_PROVIDER).  Errors are the network layer's
        to log; the return value is ignored.
        """

    def addrsOf(peerID):
        """
        The multiaddrs (bytes) the peer store knows for C{peerID}, possibly
        empty.  Used to put addresses in answers.
        """

    def selfAddrs():
        """
        This node's announced multiaddrs (bytes, without C{/p2p}), which go
        into our ADD_PROVIDER and into answers naming ourselves.
        """


class KademliaCore(RequestHandlers, Queries):
    """
    One node's DHT.

    @param selfID: our L{PeerID}.
    @param clock: an C{IReactorTime}.
    @param transport: an L{IKadTransport}.
    @param store: a L{tau.kad.records.RecordStore}.
    @param mode: C{"server"} answers requests (the network layer registers
        the protocol handler and lists it in identify); C{"client"} only
        queries and L{handle} refuses everything.
    @param validators: C{{namespace: Validator}}; defaults to
        L{tau.kad.records.defaultValidators}.
    @param rng: a L{random.Random} for refresh keys (seed it in tests).
    @param addProviderBurst: ADD_PROVIDER messages one peer may send at
        once; C{addProviderRate} more per second.
    @param addProviderSourceBurst: the same for all the peers at one
        source (see L{handle}), which a machine with many identities
        shares; C{addProviderSourceRate} more per second.

    @ivar table: the L{RoutingTable}.
    @ivar stats: a Counter of what happened (requests handled per type, RPCs,
        drops...).
    @ivar lastLookup: the L{tau.kad.lookup.LookupResult} of the latest lookup.
    """

    def __init__(
        self,
        selfID,
        clock,
        transport,
        store,
        mode="server",
        k=20,
        alpha=10,
        beta=3,
        validators=None,
        requestTimeout=10.0,
        queryTimeout=60.0,
        refreshInterval=600.0,
        reprovideInterval=REPROVIDE_INTERVAL,
        expireInterval=3600.0,
        maxFailures=2,
        staleAfter=3600.0,
        addProviderBurst=1000,
        addProviderRate=10.0,
        addProviderSourceBurst=5000,
        addProviderSourceRate=5.0,
        maxProvidersPerAnswer=100,
        rng=None,
    ):
        if mode not in ("server", "client"):
            raise ValueError(f"mode is 'server' or 'client', not {mode!r}")
        self.selfID = selfID
        self.selfKey = selfID.toBytes()
        self.clock = clock
        self.transport = transport
        self.store = store
        self.mode = mode
        self.k = k
        self.alpha = alpha
        self.beta = beta
        self.validators = defaultValidators() if validators is None else validators
        self.requestTimeout = requestTimeout
        self.queryTimeout = queryTimeout
        self.refreshInterval = refreshInterval
        self.reprovideInterval = reprovideInterval
        self.expireInterval = expireInterval
        self.maxProvidersPerAnswer = maxProvidersPerAnswer
        self.maxPeersPerAnswer = 2 * k
        self.rng = random.Random() if rng is None else rng
        self.table = RoutingTable(
            selfID, k=k, maxFailures=maxFailures, staleAfter=staleAfter, now=clock.seconds()
        )
        self.stats = Counter()
        self.lastLookup = None
        self._flood = TokenBuckets(addProviderBurst, addProviderRate)
        self._sourceFlood = TokenBuckets(addProviderSourceBurst, addProviderSourceRate)
        self._active = set()
        self._loops = []

    # Life cycle

    def start(self):
        """
        Start the timers: table refresh, provider republish, record expiry.
        The first refresh runs one interval from now; call L{bootstrap} first.
        """
        for interval, f in (
            (self.refreshInterval, self.refresh),
            (min(self.reprovideInterval, 3600.0), self.reprovide),
            (self.expireInterval, self._expire),
        ):
            loop = LoopingCall(self._guarded, f)
            loop.clock = self.clock
            loop.start(interval, now=False).addErrback(
                lambda f: log.failure("kad timer stopped", failure=f)
            )
            self._loops.append(loop)

    def stop(self):
        """
        Stop the timers and cancel every query in progress.
        """
        loops, self._loops = self._loops, []
        for loop in loops:
            if loop.running:
                loop.stop()
        for d in list(self._active):
            d.cancel()

    def _guarded(self, f):
        d = f()
        if isinstance(d, Deferred):
            d.addErrback(self._periodicFailed)
        # Never make the LoopingCall wait on a long query.
        return None

    def _periodicFailed(self, failure):
        if not failure.check(CancelledError):
            log.failure("kad periodic task failed", failure=failure)

    def _expire(self):
        n = self.store.expire(self.clock.seconds())
        if n:
            log.debug("kad expired {n} records", n=n)

    def _track(self, d):
        self._active.add(d)

        def untrack(result):
            self._active.discard(d)
            return result

        return d.addBoth(untrack)

    # What the network layer tells us

    def peerSeen(self, peerID, isServer):
        """
        A peer connected (or identified again): C{isServer} is whether its
        identify protocols list C{/ipfs/kad/1.0.0}.  Client-mode peers are
        never added to the routing table.
        """
        return self.table.add(peerID, isServer, self.clock.seconds())

    # Values

    def _validate(self, key, value):
        namespace, _ = splitKey(key)
        validator = self.validators.get(namespace)
        if validator is None:
            raise InvalidRecord(f"no validator for namespace /{namespace}/")
        if len(value) > validator.maxSize:
            raise InvalidRecord(f"value of {len(value)} bytes over the {validator.maxSize} limit of /{namespace}/")
        validator.validate(key, value)
        return validator
