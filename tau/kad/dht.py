"""
The Kademlia DHT core: answers kad requests and runs queries, network-free.

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

from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import Interface

from tau.diskfull import isFull
from tau.identity import InvalidKey as InvalidPeerID
from tau.kad.keys import MAX_PROVIDER_KEY, InvalidKey, isMultihash, providerKey
from tau.kad.lookup import Lookup, _asDeferred
from tau.kad.messages import (
    MAX_KEY_SIZE,
    KadProtocolError,
    Message,
    PeerInfo,
    Record,
    TYPE_NAMES,
    _peerID,
    parsePeers,
    peerEntry,
    providerAddrs,
)
from tau.kad.records import (
    REPROVIDE_INTERVAL,
    InvalidRecord,
    LimitExceeded,
    defaultValidators,
    rfc3339,
    splitKey,
)
from tau.kad.routing import RoutingTable
from tau.ratelog import PeerLog
from tau.tokens import TokenBuckets

__all__ = ["IKadTransport", "KademliaCore", "NotFound"]

log = Logger()
peerLog = PeerLog(log)


class NotFound(LookupError):
    """
    A lookup ended without finding what it looked for.
    """


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


class KademliaCore:
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

    # Answering

    def handle(self, fromPeer, message, source=None):
        """
        Answer one request from C{fromPeer}.

        @param message: a C{Message} decoded with
            L{tau.kad.messages.decodeMessage}.
        @param source: where C{fromPeer}'s traffic comes from, shared by
            every identity one machine may use (L{tau.addrs.sourceOf} of
            its IP address), or L{None}: ADD_PROVIDER is rate-limited per
            peer and per source.
        @return: the response C{Message}, or L{None} when there is none
            (ADD_PROVIDER): the network layer then just reads the next
            request.
        @raise KadProtocolError: on a request we refuse; the network layer
            resets the stream and logs the reason.
        """
        if self.mode != "server":
            raise KadProtocolError("kad client mode: not answering requests")
        name = TYPE_NAMES.get(message.type)
        if name is None:
            raise KadProtocolError(f"unknown kad message type {message.type}")
        self.stats["handled " + name] += 1
        if message.type == Message.ADD_PROVIDER:
            return self._handle_ADD_PROVIDER(fromPeer, message, source)
        return getattr(self, "_handle_" + name)(fromPeer, message)

    def _entries(self, peers):
        entries = []
        for peer in peers:
            addrs = self.transport.selfAddrs() if peer == self.selfID else self.transport.addrsOf(peer)
            if addrs:
                entries.append(peerEntry(peer, addrs))
        return entries

    def _closer(self, key, fromPeer):
        return self.table.closest(key, self.k, now=self.clock.seconds(), exclude={fromPeer})

    def _needKey(self, message, maxSize=MAX_KEY_SIZE):
        if not message.key:
            raise KadProtocolError(f"{TYPE_NAMES[message.type]} without a key")
        if len(message.key) > maxSize:
            raise KadProtocolError(f"{TYPE_NAMES[message.type]} key longer than {maxSize}")
        return message.key

    def _needProviderKey(self, message):
        key = self._needKey(message, MAX_PROVIDER_KEY)
        if not isMultihash(key):
            raise KadProtocolError(f"{TYPE_NAMES[message.type]} key is not a multihash")
        return key

    def _handle_FIND_NODE(self, fromPeer, message):
        key = self._needKey(message)
        peers = self._closer(key, fromPeer)
        if key == self.selfKey:
            peers = [self.selfID]
        else:
            try:
                target = _peerID(key)
            except InvalidPeerID:
                target = None
            if target is not None and target != fromPeer and target not in peers:
                # Connected or known, even in client mode: how they are found.
                peers.insert(0, target)
        return Message(type=Message.FIND_NODE, closerPeers=self._entries(peers))

    def _handle_GET_PROVIDERS(self, fromPeer, message):
        key = self._needProviderKey(message)
        now = self.clock.seconds()
        providers = []
        for peer, addrs in self.store.getProviders(key, now, limit=self.maxProvidersPerAnswer):
            if peer == self.selfID:
                addrs = self.transport.selfAddrs()
            elif not addrs:
                addrs = self.transport.addrsOf(peer)
            providers.append(peerEntry(peer, addrs))
        return Message(
            type=Message.GET_PROVIDERS,
            key=key,
            providerPeers=providers,
            closerPeers=self._entries(self._closer(key, fromPeer)),
        )

    def _allowAddProvider(self, fromPeer, source, now):
        if source is not None and not self._sourceFlood.take(source, now):
            peerLog.info(
                self.clock,
                "floods",
                "kad: peers at {source} flood ADD_PROVIDER, dropping their records ({peer} now)",
                peer=fromPeer,
                limitBy=source,
                source=source,
            )
            return False
        if not self._flood.take(fromPeer, now):
            peerLog.info(self.clock, "floods", "kad: {peer} floods ADD_PROVIDER, dropping its records", peer=fromPeer)
            return False
        return True

    def _handle_ADD_PROVIDER(self, fromPeer, message, source=None):
        key = self._needProviderKey(message)
        now = self.clock.seconds()
        if not self._allowAddProvider(fromPeer, source, now):
            self.stats["ADD_PROVIDER rate-limited"] += 1
            return None
        stored = False
        for entry in message.providerPeers[: self.maxPeersPerAnswer]:
            # Only the sender may announce itself, and only with an address
            # (what go and js do).
            if entry.id != fromPeer.toBytes() or not entry.addrs or stored:
                self.stats["ADD_PROVIDER entries ignored"] += 1
                continue
            addrs = providerAddrs(entry.addrs, self.store.maxAddrsPerProvider)
            if not addrs:
                self.stats["ADD_PROVIDER entries ignored"] += 1
                continue
            try:
                evicted = self.store.addProvider(key, fromPeer, addrs, now)
            except LimitExceeded as e:
                self.stats["ADD_PROVIDER over limit"] += 1
                peerLog.debug(self.clock, "provider refused", "kad: provider record from {peer} refused: {why}", peer=fromPeer, why=str(e))
            except Exception as e:
                if not isFull(e):
                    raise
                self.stats["ADD_PROVIDER disk full"] += 1
                peerLog.info(self.clock, "disk full", "kad: provider record from {peer} dropped: the disk is full", peer=fromPeer)
            else:
                stored = True
                self.stats["provider records stored"] += 1
                self.stats["provider records evicted"] += evicted
        return None

    def _localRecord(self, key, now):
        stored = self.store.getValue(key, now)
        if stored is None:
            return None
        value, received = stored
        try:
            self._validate(key, value)
        except InvalidRecord:
            return None
        return Record(key=key, value=value, timeReceived=rfc3339(received).encode())

    def _handle_GET_VALUE(self, fromPeer, message):
        key = self._needKey(message)
        response = Message(
            type=Message.GET_VALUE, key=key, closerPeers=self._entries(self._closer(key, fromPeer))
        )
        record = self._localRecord(key, self.clock.seconds())
        if record is not None:
            response.record.CopyFrom(record)
        return response

    def _handle_PUT_VALUE(self, fromPeer, message):
        key = self._needKey(message)
        if not message.HasField("record"):
            raise KadProtocolError("PUT_VALUE without a record")
        if message.record.key != key:
            raise KadProtocolError("PUT_VALUE record key differs from the message key")
        value = message.record.value
        try:
            validator = self._validate(key, value)
        except InvalidRecord as e:
            raise KadProtocolError(f"PUT_VALUE refused: {e}") from None
        now = self.clock.seconds()
        existing = self.store.getValue(key, now)
        if existing is not None and existing[0] != value:
            try:
                self._validate(key, existing[0])
                better = validator.select(key, [existing[0], value]) == 0
            except InvalidRecord:
                better = False
            if better:
                raise KadProtocolError("PUT_VALUE refused: we hold a better record")
        try:
            self.store.putValue(key, value, now)
        except LimitExceeded as e:
            raise KadProtocolError(f"PUT_VALUE refused: {e}") from None
        except Exception as e:
            if not isFull(e):
                raise
            raise KadProtocolError("PUT_VALUE refused: the disk is full") from None
        self.stats["values stored"] += 1
        return Message(type=Message.PUT_VALUE, key=key, record=Record(key=key, value=value))

    def _handle_PING(self, fromPeer, message):
        return Message(type=Message.PING)

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

    # Querying

    async def _request(self, info, message):
        self.stats["rpcs " + TYPE_NAMES[message.type]] += 1
        response = await _asDeferred(
            lambda m: self.transport.request(info.peerID, m, info.addrs), message
        )
        if response.type != message.type:
            raise KadProtocolError(
                f"{info.peerID} answered {TYPE_NAMES.get(response.type)} to {TYPE_NAMES[message.type]}"
            )
        return response

    def _closerFrom(self, response):
        peers, skipped = parsePeers(response.closerPeers, self.maxPeersPerAnswer, exclude=(self.selfID,))
        if skipped:
            self.stats["answer entries ignored"] += skipped
        return peers

    def _peerAnswered(self, info):
        self.table.add(info.peerID, True, self.clock.seconds())

    def _peerFailed(self, info, failure):
        self.stats["requests failed"] += 1
        if self.table.markFailed(info.peerID, self.clock.seconds()):
            self.stats["peers evicted"] += 1

    def _seeds(self, key):
        return [
            PeerInfo(p, tuple(self.transport.addrsOf(p)))
            for p in self.table.closest(key, self.k, freshOnly=False)
        ]

    async def _lookup(self, key, query, stop=None):
        self.table.markRefreshed(key, self.clock.seconds())
        lookup = Lookup(
            self.clock,
            key,
            self._seeds(key),
            query,
            self.selfID,
            k=self.k,
            alpha=self.alpha,
            beta=self.beta,
            requestTimeout=self.requestTimeout,
            queryTimeout=self.queryTimeout,
            maxPeersPerAnswer=self.maxPeersPerAnswer,
            stop=stop,
            onSuccess=self._peerAnswered,
            onFailure=self._peerFailed,
        )
        result = await lookup.run()
        self.lastLookup = result
        self.stats["lookups"] += 1
        return result

    def _public(self, coro):
        return self._track(Deferred.fromCoroutine(coro))

    def findClosestPeers(self, key):
        """
        The C{k} peers closest to C{key} (bytes) that answered us.

        @return: a Deferred firing with a list of L{PeerInfo}, closest first.
        """
        return self._public(self._findClosestPeers(key))

    async def _findClosestPeers(self, key):
        async def query(info):
            response = await self._request(info, Message(type=Message.FIND_NODE, key=key))
            return self._closerFrom(response)

        result = await self._lookup(key, query)
        return result.peers

    def findPeer(self, peerID):
        """
        Find the addresses of C{peerID}.

        @return: a Deferred firing with a L{PeerInfo}, failing with
            L{NotFound}.
        """
        return self._public(self._findPeer(peerID))

    async def _findPeer(self, peerID):
        if peerID in self.table:
            addrs = tuple(self.transport.addrsOf(peerID))
            if addrs:
                return PeerInfo(peerID, addrs)
        key = peerID.toBytes()
        found = {}

        async def query(info):
            response = await self._request(info, Message(type=Message.FIND_NODE, key=key))
            peers = self._closerFrom(response)
            for p in peers:
                if p.peerID == peerID and p.addrs:
                    found[peerID] = p
            return peers

        def stop():
            return bool(found)

        await self._lookup(key, query, stop)
        if not found:
            raise NotFound(f"peer {peerID} not found")
        return found[peerID]

    def provide(self, key):
        """
        Announce that this node provides C{key} (a CID, its text, or a
        multihash): store our own record, find the C{k} peers closest to the
        multihash and send each an ADD_PROVIDER; republished every
        C{reprovideInterval} by the timer of L{start}.

        @return: a Deferred firing with the number of peers told.
        """
        try:
            mh = providerKey(key)
        except InvalidKey as e:
            return self._public(_raise(e))
        return self._public(self._provide(mh))

    async def _provide(self, mh):
        now = self.clock.seconds()
        self.store.addProvider(mh, self.selfID, (), now, limited=False)
        self.store.addProvided(mh, now)
        addrs = list(self.transport.selfAddrs())
        if not addrs:
            log.warn("kad: providing {key} without any address to announce: peers will ignore it", key=mh.hex())
        peers = await self._findClosestPeers(mh)
        message = Message(
            type=Message.ADD_PROVIDER, key=mh, providerPeers=[peerEntry(self.selfID, addrs)]
        )
        for info in peers:
            self.stats["rpcs ADD_PROVIDER"] += 1
            try:
                self.transport.send(info.peerID, message, info.addrs)
            except Exception:
                log.failure("kad: ADD_PROVIDER to {peer} failed", peer=info.peerID)
        return len(peers)

    def reprovide(self):
        """
        Provide again every key last provided more than C{reprovideInterval}
        ago (run by the timer; one key at a time).

        @return: a Deferred firing with the number of keys provided.
        """
        return self._public(self._reprovide())

    async def _reprovide(self):
        due = self.store.providedDue(self.clock.seconds() - self.reprovideInterval)
        for mh in due:
            await self._provide(mh)
        return len(due)

    def findProviders(self, key, count=20):
        """
        Up to C{count} providers of C{key} (a CID, its text, or a multihash),
        ours first, then what the lookup finds; the lookup stops once it has
        C{count}.

        @return: a Deferred firing with a list of L{PeerInfo} (possibly
            empty).
        """
        try:
            mh = providerKey(key)
        except InvalidKey as e:
            return self._public(_raise(e))
        return self._public(self._findProviders(mh, count))

    async def _findProviders(self, mh, count):
        found = {}
        for peer, addrs in self.store.getProviders(mh, self.clock.seconds(), limit=count):
            if peer == self.selfID:
                addrs = tuple(self.transport.selfAddrs())
            found[peer] = PeerInfo(peer, tuple(addrs))
        if len(found) >= count:
            return list(found.values())[:count]

        async def query(info):
            response = await self._request(info, Message(type=Message.GET_PROVIDERS, key=mh))
            providers, skipped = parsePeers(response.providerPeers, self.maxProvidersPerAnswer)
            self.stats["answer entries ignored"] += skipped
            for p in providers:
                if p.peerID not in found and len(found) < count:
                    found[p.peerID] = p
            return self._closerFrom(response)

        def stop():
            return len(found) >= count

        await self._lookup(mh, query, stop)
        return list(found.values())

    def getValue(self, key, quorum=1):
        """
        The best valid value stored under C{key} (bytes, C{/namespace/...}).
        The lookup stops after C{quorum} valid answers (ours counts); peers
        among the closest that returned another value are sent the best one.

        @return: a Deferred firing with the value bytes, failing with
            L{NotFound} or L{tau.kad.records.InvalidRecord} (unknown
            namespace).
        """
        return self._public(self._getValue(key, quorum))

    async def _getValue(self, key, quorum):
        namespace, _ = splitKey(key)
        validator = self.validators.get(namespace)
        if validator is None:
            raise InvalidRecord(f"no validator for namespace /{namespace}/")
        values = []  # (PeerInfo or None for ourselves, value)
        local = self._localRecord(key, self.clock.seconds())
        if local is not None:
            values.append((None, local.value))
            if quorum <= 1:
                return local.value

        async def query(info):
            response = await self._request(info, Message(type=Message.GET_VALUE, key=key))
            if response.HasField("record"):
                record = response.record
                try:
                    if record.key and record.key != key:
                        raise InvalidRecord("record for another key")
                    self._validate(key, record.value)
                except InvalidRecord as e:
                    self.stats["invalid records received"] += 1
                    log.debug("kad: invalid record from {peer}: {why}", peer=info.peerID, why=str(e))
                else:
                    values.append((info, record.value))
            return self._closerFrom(response)

        def stop():
            return len(values) >= quorum

        await self._lookup(key, query, stop)
        if not values:
            raise NotFound(f"no value for {key!r}")
        best = values[validator.select(key, [v for _, v in values])][1]
        stale = [info for info, v in values if info is not None and v != best]
        if stale:
            message = Message(type=Message.PUT_VALUE, key=key, record=Record(key=key, value=best))
            await self._putTo(stale, message)
        return best

    def putValue(self, key, value):
        """
        Validate and store C{value} under C{key} here and on the C{k} closest
        peers.

        @return: a Deferred firing with the number of peers that stored it,
            failing with L{tau.kad.records.InvalidRecord} before any network
            use if the record is invalid.
        """
        return self._public(self._putValue(key, value))

    async def _putValue(self, key, value):
        self._validate(key, value)
        self.store.putValue(key, value, self.clock.seconds())
        peers = await self._findClosestPeers(key)
        message = Message(type=Message.PUT_VALUE, key=key, record=Record(key=key, value=value))
        return await self._putTo(peers, message)

    async def _putTo(self, peers, message):
        results = await self._requestAll([(info, message) for info in peers])
        return sum(1 for ok, _ in results if ok)

    async def _requestAll(self, requests):
        ds = []
        for info, message in requests:
            d = Deferred.fromCoroutine(self._request(info, message))
            d.addTimeout(self.requestTimeout, self.clock)
            ds.append(d)
        return await DeferredList(ds, consumeErrors=True)

    # Keeping the table fresh

    def bootstrap(self, peers):
        """
        Join the network through C{peers} (L{PeerInfo}s, e.g. the config's
        C{peers}): ask each for the peers closest to us, then look ourselves
        up and refresh the buckets.

        @return: a Deferred firing with the routing table size.
        """
        return self._public(self._bootstrap(list(peers)))

    async def _bootstrap(self, peers):
        message = Message(type=Message.FIND_NODE, key=self.selfKey)
        results = await self._requestAll([(info, message) for info in peers])
        for info, (ok, result) in zip(peers, results):
            if ok:
                self._peerAnswered(info)
            else:
                log.info(
                    "kad: bootstrap peer {peer} failed: {why}", peer=info.peerID, why=result.getErrorMessage()
                )
        await self._refresh()
        return len(self.table)

    def refresh(self):
        """
        Look ourselves up, look up a random key in every bucket not refreshed
        for C{refreshInterval}, and ask every stale peer for our neighbours
        (a ping: PING is deprecated), evicting those that fail.

        @return: a Deferred firing with C{{"buckets": n, "stale": n}}.
        """
        return self._public(self._refresh())

    async def _refresh(self):
        await self._findClosestPeers(self.selfKey)
        now = self.clock.seconds()
        due = self.table.bucketsNeedingRefresh(now, self.refreshInterval)
        for cpl in due:
            await self._findClosestPeers(self.table.randomKey(cpl, self.rng))
        stale = self.table.stalePeers(self.clock.seconds())
        if stale:
            message = Message(type=Message.FIND_NODE, key=self.selfKey)
            infos = [PeerInfo(p, tuple(self.transport.addrsOf(p))) for p in stale]
            results = await self._requestAll([(info, message) for info in infos])
            for info, (ok, result) in zip(infos, results):
                if ok:
                    self._peerAnswered(info)
                else:
                    self._peerFailed(info, result)
        return {"buckets": len(due), "stale": len(stale)}


async def _raise(e):
    raise e
