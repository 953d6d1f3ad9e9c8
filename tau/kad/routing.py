"""
The Kademlia routing table: k-buckets indexed by common prefix length.

Buckets.  go-libp2p-kbucket and js-libp2p keep a list of buckets and split the
last one (the one holding every peer whose common prefix length (cpl) with us
is at least its index) when it overflows.  Since the last bucket is split
whenever it is full, that scheme ends up holding exactly what one bucket per
cpl holds, k peers per cpl, except that the last bucket may mix cpls.  So tau
indexes buckets by cpl directly (0..255, created on first use, a dict): the
same peers are kept, there is no split logic to get wrong, and the bucket of a
peer is one C{bit_length()} away.  Only about log2(N/k) + 2 buckets are ever
populated.

Liveness.  Every entry records when the peer last answered us (C{lastSeen})
and how many of our requests it failed in a row.  Peers are added only on
evidence they serve kad: they answered one of our requests, or identify told
the network layer they speak C{/ipfs/kad/1.0.0} (C{isServer}); a client-mode
peer is never added (go-libp2p-kad-dht#162).  A peer failing C{maxFailures}
requests in a row is evicted and the most recently seen peer of that bucket's
replacement cache takes its place.  A full bucket makes room for a newcomer
only by dropping a peer that failed or went stale; otherwise the newcomer
waits in the replacement cache.

Usefulness.  L{RoutingTable.closest} hands out, by default, only peers seen
within C{staleAfter} seconds: answers to other peers never carry peers we
have no recent evidence for.  Our own lookups may ask for stale peers too.

Time is always passed in (C{now}, from the caller's clock).
"""

import heapq
from collections import OrderedDict

from tau.kad.keys import KEY_BITS, bucketIndex, kadID, peerKadID, randomKeyWithPrefix

__all__ = ["RoutingTable", "Entry"]


class Entry:
    """
    A peer in the routing table or in a replacement cache.
    """

    __slots__ = ("peerID", "kid", "addedAt", "lastSeen", "failures")

    def __init__(self, peerID, kid, now):
        self.peerID = peerID
        self.kid = kid
        self.addedAt = now
        self.lastSeen = now
        self.failures = 0

    def __repr__(self):
        return f"<Entry {self.peerID} seen={self.lastSeen} failures={self.failures}>"


class _Bucket:
    __slots__ = ("entries", "replacements", "lastRefreshed")

    def __init__(self, now):
        # Both ordered least recently seen first.
        self.entries = OrderedDict()
        self.replacements = OrderedDict()
        self.lastRefreshed = now


class RoutingTable:
    """
    @ivar k: bucket size.
    @ivar maxFailures: failed requests in a row that evict a peer.
    @ivar staleAfter: seconds after which a peer that has not answered is
        no longer handed out, and may be replaced by a newcomer.
    @ivar replacementSize: size of each bucket's replacement cache.
    """

    def __init__(self, selfID, k=20, maxFailures=2, staleAfter=3600.0, replacementSize=None, now=0.0):
        self.selfID = selfID
        self.selfKadID = peerKadID(selfID)
        self.k = k
        self.maxFailures = maxFailures
        self.staleAfter = staleAfter
        self.replacementSize = k if replacementSize is None else replacementSize
        self._created = now
        self._buckets = {}
        # Every peer in a bucket (not in a replacement cache): peerID -> cpl.
        self._where = {}

    # Inspection

    def __len__(self):
        return len(self._where)

    def __contains__(self, peerID):
        return peerID in self._where

    def peers(self):
        return list(self._where)

    def entry(self, peerID):
        """
        The L{Entry} of a peer in the table, or L{None}.
        """
        cpl = self._where.get(peerID)
        if cpl is None:
            return None
        return self._buckets[cpl].entries[peerID]

    def bucketSizes(self):
        """
        C{{cpl: number of peers}} for every non-empty bucket.
        """
        return {cpl: len(b.entries) for cpl, b in sorted(self._buckets.items()) if b.entries}

    def replacements(self, cpl):
        b = self._buckets.get(cpl)
        return [] if b is None else list(b.replacements)

    # Changes

    def _bucket(self, cpl, now):
        b = self._buckets.get(cpl)
        if b is None:
            b = self._buckets[cpl] = _Bucket(self._created if now is None else now)
        return b

    def _isReplaceable(self, entry, now):
        return entry.failures > 0 or now - entry.lastSeen > self.staleAfter

    def add(self, peerID, isServer, now):
        """
        Record that C{peerID} is alive now (it answered us, or it connected and
        identify says it serves kad): add it or refresh its entry.

        @param isServer: False for a client-mode peer, which is never added
            (and is removed if it was in the table, having switched modes).
        @return: True if the peer is in the table afterwards, False if it was
            refused or went to the replacement cache.
        """
        if peerID == self.selfID:
            return False
        if not isServer:
            self.remove(peerID, now)
            return False
        cpl = self._where.get(peerID)
        if cpl is not None:
            b = self._buckets[cpl]
            entry = b.entries[peerID]
            entry.lastSeen = now
            entry.failures = 0
            b.entries.move_to_end(peerID)
            return True
        kid = peerKadID(peerID)
        cpl = bucketIndex(self.selfKadID, kid)
        b = self._bucket(cpl, now)
        entry = b.replacements.pop(peerID, None)
        if entry is None:
            entry = Entry(peerID, kid, now)
        entry.lastSeen = now
        entry.failures = 0
        if len(b.entries) >= self.k:
            victim = None
            for candidate in b.entries.values():
                if self._isReplaceable(candidate, now) and (
                    victim is None or candidate.failures > victim.failures
                ):
                    victim = candidate
            if victim is None:
                b.replacements[peerID] = entry
                while len(b.replacements) > self.replacementSize:
                    b.replacements.popitem(last=False)
                return False
            del b.entries[victim.peerID]
            del self._where[victim.peerID]
        b.entries[peerID] = entry
        self._where[peerID] = cpl
        return True

    def remove(self, peerID, now=None):
        """
        Drop a peer (from its bucket, or from a replacement cache) and promote
        the most recently seen replacement in its place.

        @return: True if the peer was in the table.
        """
        cpl = self._where.pop(peerID, None)
        if cpl is None:
            kid = peerKadID(peerID)
            b = self._buckets.get(bucketIndex(self.selfKadID, kid))
            if b is not None:
                b.replacements.pop(peerID, None)
            return False
        b = self._buckets[cpl]
        del b.entries[peerID]
        if b.replacements:
            _, promoted = b.replacements.popitem(last=True)
            b.entries[promoted.peerID] = promoted
            b.entries.move_to_end(promoted.peerID, last=False)
            self._where[promoted.peerID] = cpl
        return True

    def markFailed(self, peerID, now):
        """
        A request to C{peerID} failed (timeout, refused, protocol error).

        @return: True if the peer was evicted by this failure.
        """
        cpl = self._where.get(peerID)
        if cpl is None:
            # A peer in a replacement cache that fails is simply dropped.
            self.remove(peerID, now)
            return False
        entry = self._buckets[cpl].entries[peerID]
        entry.failures += 1
        if entry.failures >= self.maxFailures:
            self.remove(peerID, now)
            return True
        return False

    # Queries

    def closest(self, key, count, now=None, freshOnly=True, exclude=()):
        """
        The C{count} peers closest to C{key}, closest first.

        @param key: the key's bytes, or its position (an int from
            L{tau.kad.keys.kadID}).
        @param freshOnly: hand out only peers seen within C{staleAfter} of
            C{now} that have not failed since (what we tell other peers).
        @param exclude: peer IDs to leave out (e.g. the asker).
        """
        target = key if isinstance(key, int) else kadID(key)
        candidates = []
        if freshOnly:
            if now is None:
                raise ValueError("closest(freshOnly=True) needs now")
            horizon = now - self.staleAfter
            for b in self._buckets.values():
                for e in b.entries.values():
                    if e.failures == 0 and e.lastSeen >= horizon and e.peerID not in exclude:
                        candidates.append(e)
        else:
            for b in self._buckets.values():
                for e in b.entries.values():
                    if e.peerID not in exclude:
                        candidates.append(e)
        best = heapq.nsmallest(count, candidates, key=lambda e: e.kid ^ target)
        return [e.peerID for e in best]

    def stalePeers(self, now):
        """
        Peers not seen within C{staleAfter}: the refresh pings them (with a
        request) so that dead ones get evicted and live ones become usable.
        """
        horizon = now - self.staleAfter
        return [
            e.peerID for b in self._buckets.values() for e in b.entries.values() if e.lastSeen < horizon
        ]

    # Refresh bookkeeping

    def maxCommonPrefix(self):
        """
        The largest cpl of any peer in the table (-1 when empty).
        """
        populated = [cpl for cpl, b in self._buckets.items() if b.entries]
        return max(populated, default=-1)

    def markRefreshed(self, key, now):
        """
        A lookup for C{key} (bytes or position) just ran: the bucket it falls
        in counts as refreshed.
        """
        target = key if isinstance(key, int) else kadID(key)
        cpl = bucketIndex(self.selfKadID, target)
        self._bucket(cpl, now).lastRefreshed = now

    def bucketsNeedingRefresh(self, now, interval, maxCpl=15):
        """
        The buckets that need a refresh lookup: those from cpl 0 up to one past
        the deepest populated bucket (capped at C{maxCpl}, as go caps at 15:
        a random key for a deeper bucket costs too many hashes, and the lookup
        of our own ID covers them) not refreshed for C{interval} seconds.
        """
        upto = min(self.maxCommonPrefix() + 1, maxCpl, KEY_BITS - 1)
        due = []
        for cpl in range(upto + 1):
            b = self._buckets.get(cpl)
            last = self._created if b is None else b.lastRefreshed
            if now - last >= interval:
                due.append(cpl)
        return due

    def randomKey(self, cpl, rng):
        """
        A random FIND_NODE key (peer-ID shaped) that falls in bucket C{cpl}.
        """
        return randomKeyWithPrefix(self.selfKadID, cpl, rng)
