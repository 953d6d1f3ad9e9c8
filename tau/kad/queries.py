"""
The queries of the Kademlia DHT: finding the closest peers, a peer,
providers and values, providing and republishing, putting values,
bootstrapping and refreshing the routing table, each a
L{tau.kad.lookup.Lookup} over the network layer, as
L{tau.kad.dht.KademliaCore} runs them: a part of the core, kept in its own
module.  The answers it gives are L{tau.kad.handlers}.
"""

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from tau.kad.keys import InvalidKey, providerKey
from tau.kad.lookup import Lookup, _asDeferred
from tau.kad.messages import KadProtocolError, Message, PeerInfo, Record, TYPE_NAMES, parsePeers, peerEntry
from tau.kad.records import InvalidRecord, splitKey

__all__ = ["NotFound", "Queries"]

log = Logger()


class NotFound(LookupError):
    """
    A lookup ended without finding what it looked for.
    """


class Queries:
    """
    The core's queries (a mixin of L{tau.kad.dht.KademliaCore}, whose state
    it uses).  Every public method returns a cancellable Deferred;
    cancelling it stops the lookup's requests in flight.
    """

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
