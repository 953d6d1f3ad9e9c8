"""
The fetching side of Bitswap: wants, sessions, block verification.

One L{Session} serves one fetch or one DAG walk (like boxo's and helia's
sessions).  For each CID:

  1. peers of the session (those that already sent HAVE or blocks) are
     asked first: want-block (with send-dont-have) to the least loaded of
     them, want-have to the others;
  2. with no session peers yet, want-have (with send-dont-have) goes to
     every connected peer;
  3. when nobody has it after C{providerSearchDelay} seconds (or everyone
     said DONT_HAVE), providers are looked up in the DHT by multihash,
     dialled, and asked in turn;
  4. a want-block unanswered after C{blockTimeout} seconds, answered with
     DONT_HAVE, or whose peer disconnects moves to another peer that said
     HAVE (or back to step 1) -- but while that peer keeps sending us
     blocks (it is working through a long wantlist on a slow link) its
     wants wait on, C{blockTimeout} after its last block, up to
     C{MAX_BLOCK_WAIT} times C{blockTimeout} in all;
  5. once the block arrives (hashed and checked first) every other peer
     asked is sent a cancel.

A block is checked against the CID rebuilt from its prefix and its hash; a
block that hashes to nothing we asked that peer for is a bad block and
raises L{BadBlock} (the service then drops the peer).  The hashing of a
message's blocks runs in a worker thread (the store's pool), never in the
reactor thread, and the blocks of one message are stored with one
C{putMany}.  A DAG walk (L{Client.fetchDAG}) stores what it receives in one
write batch of the store when it has one (no fsync per block; everything
is durable once the walk returns), looks up which children of a node are
stored already with one C{hasMany} (not a read per block) and asks the
network for the others at once.  Blocks from the network are memoryviews
of the message they came in until L{Client.fetch} hands them out as bytes.
"""

from collections import OrderedDict

from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from tau import cids
from tau.bitswap.message import BLOCK, HAVE, PRESENCE_DONT_HAVE, PRESENCE_HAVE, Entry
from tau.oneshot import OneShot
from tau.ratelog import PeerLog

log = Logger()
peerLog = PeerLog(log)


class FetchTimeout(Exception):
    """
    No peer delivered a block in time.
    """


class BadBlock(Exception):
    """
    A peer sent a block that is not one we asked it for (corrupt data, a
    bad prefix): the peer is to be dropped.
    """


#: How many CIDs asked of one peer are remembered to recognize its blocks.
ASKED_HISTORY = 16384
#: Messages carrying fewer block bytes than this are hashed in the reactor
#: thread (a thread hop costs more).
INLINE_HASH_BYTES = 64 * 1024
#: The longest a want-block waits on a peer that keeps sending other
#: blocks, in blockTimeouts.
MAX_BLOCK_WAIT = 6


class Session:
    """
    Peers that proved useful for one fetch or DAG walk, and how busy each is.
    """

    _ids = 0

    def __init__(self, batch=None):
        Session._ids += 1
        #: a store write batch the session's blocks go to, or None
        self.batch = batch
        #: stores into the batch under way, and the first that failed
        self.storing = set()
        self.storeFailure = None
        self.id = Session._ids
        self.peers = OrderedDict()  # peer -> blocks delivered
        self.outstanding = {}  # peer -> want-blocks in flight
        self.providersSearched = False
        self.blocks = 0
        self.bytes = 0

    def join(self, peer):
        self.peers.setdefault(peer, 0)

    def leave(self, peer):
        self.peers.pop(peer, None)
        self.outstanding.pop(peer, None)

    def pick(self, candidates):
        """
        The least loaded of C{candidates}; ties go to the one that
        delivered most.
        """
        return min(candidates, key=lambda p: (self.outstanding.get(p, 0), -self.peers.get(p, 0)))


class _Want:
    def __init__(self, c, session, clock):
        self.cid = c
        self.session = session
        self.clock = clock
        self.data = None
        self.asked = {}  # peer -> BLOCK | HAVE
        self.haves = set()
        self.dontHaves = set()
        self.failed = set()
        self.blockPeer = None
        self.blockAsked = None
        self.blockDeadline = None
        self._event = None

    def poke(self):
        d, self._event = self._event, None
        if d is not None:
            d.callback(None)

    async def wait(self, seconds):
        d = self._event = Deferred()
        call = self.clock.callLater(max(0.0, seconds), self.poke)
        try:
            await d
        finally:
            if call.active():
                call.cancel()


class Client:
    """
    @param store: the block store (async C{has}, C{get}, C{put}).
    @param sendWants: C{sendWants(peer, [Entry])}, queued for the peer.
    @param connectedPeers: C{() -> [PeerID]}, peers we may ask.
    @param findProviders: C{async (multihash) -> [PeerID]} of connected
        providers, or None.
    @param blocksAdded: C{([cid])}, told about every block stored.
    """

    def __init__(
        self,
        store,
        clock,
        sendWants,
        connectedPeers,
        findProviders=None,
        blocksAdded=None,
        *,
        blockTimeout=5.0,
        fetchTimeout=60.0,
        providerSearchDelay=1.0,
        providerSearchInterval=10.0,
        threadpool=None,
    ):
        self.store = store
        self.clock = clock
        if threadpool is None:
            threadpool = getattr(store, "threadpool", None)
        if threadpool is None and hasattr(clock, "getThreadPool"):
            threadpool = clock.getThreadPool()
        #: where received blocks are hashed (None: in the calling thread)
        self.threadpool = threadpool
        self.sendWants = sendWants
        self.connectedPeers = connectedPeers
        self.findProviders = findProviders
        self.blocksAdded = blocksAdded or (lambda added: None)
        self.blockTimeout = blockTimeout
        self.fetchTimeout = fetchTimeout
        self.providerSearchDelay = providerSearchDelay
        self.providerSearchInterval = providerSearchInterval
        self.wants = {}
        self._inflight = {}
        self._asked = {}
        self._searches = set()
        self._recent = OrderedDict()  # cid -> session, of finished wants
        self._lastBlock = {}  # peer -> when it last sent us a block
        self.receivedBlocks = 0
        self.receivedBytes = 0
        self.duplicateBlocks = 0
        self.badBlocks = 0

    # fetching

    async def fetch(self, c, session=None, timeout=None):
        """
        The bytes of block C{c} (a CID object or text), from the store or
        the network; stored once verified.

        @raise FetchTimeout: when no peer delivered it in time.
        """
        data = await self._get(cids.parseCID(c), session, timeout, True)
        # a block from the network is a view of the message it came in
        return data if isinstance(data, bytes) else bytes(data)

    async def _get(self, c, session, timeout, local):
        """
        L{fetch}, with the block as it came (bytes, or a memoryview of the
        message that brought it).

        @param local: C{False} when the caller just learnt that the store
            does not hold C{c} (the store is not asked again).
        """
        if local:
            try:
                data = await self.store.get(c)
            except Exception as e:
                log.warn("bitswap: local copy of {cid} unusable: {why}", cid=cids.cidText(c), why=str(e))
                data = None
            if data is not None:
                return data
        pending = self._inflight.get(c)
        if pending is None:
            pending = self._inflight[c] = OneShot()
            d = Deferred.fromCoroutine(self._fetch(c, session or Session(), timeout or self.fetchTimeout))
            pending.task = d
            d.addBoth(self._fetched, c, pending)
        return await pending.whenFired()

    def _fetched(self, result, c, pending):
        if self._inflight.get(c) is pending:
            del self._inflight[c]
        pending.fire(result)
        return None

    async def _fetch(self, c, session, timeout):
        w = self.wants[c] = _Want(c, session, self.clock)
        started = self.clock.seconds()
        deadline = started + timeout
        nextSearch = started + self.providerSearchDelay
        try:
            while w.data is None:
                now = self.clock.seconds()
                if now >= deadline:
                    raise FetchTimeout(f"no peer sent block {cids.cidText(c)} within {timeout:g} seconds (asked {len(w.asked)} peers)")
                self._step(w, now)
                waitUntil = deadline
                if w.blockDeadline is not None:
                    waitUntil = min(waitUntil, w.blockDeadline)
                if self.findProviders is not None and w.blockPeer is None and not w.haves - w.failed:
                    if self._allSaidNo(w):
                        nextSearch = min(nextSearch, now)
                    if nextSearch <= now:
                        nextSearch = now + self.providerSearchInterval
                        self._searchProviders(w)
                    waitUntil = min(waitUntil, nextSearch)
                if w.data is None:
                    await w.wait(waitUntil - now)
            session.blocks += 1
            session.bytes += len(w.data)
            return w.data
        finally:
            self._finish(w)

    def _allSaidNo(self, w):
        return bool(w.asked) and all(p in w.dontHaves or p in w.failed for p in w.asked)

    def _step(self, w, now):
        """
        Decide who to ask next.
        """
        connected = set(self.connectedPeers())
        session = w.session
        if w.blockPeer is not None:
            p = w.blockPeer
            if p in w.dontHaves or p not in connected or p in w.failed:
                self._release(w)
            elif w.blockDeadline is not None and now >= w.blockDeadline:
                last = self._lastBlock.get(p)
                if last is not None and last > w.blockAsked:
                    # p sends blocks: ours is further down its queue
                    slid = min(last + self.blockTimeout, w.blockAsked + MAX_BLOCK_WAIT * self.blockTimeout)
                    if slid > now:
                        w.blockDeadline = slid
                        return
                log.info("bitswap: {peer} did not send {cid} in {t:g} s, asking another peer", peer=str(p), cid=cids.cidText(w.cid), t=self.blockTimeout)
                w.failed.add(p)
                self._release(w)
            else:
                return
        usable = lambda p: p in connected and p not in w.failed and p not in w.dontHaves  # noqa: E731
        havers = [p for p in w.haves if usable(p)]
        if havers:
            self._askBlock(w, session.pick(havers), now)
            return
        sessionPeers = [p for p in session.peers if usable(p) and w.asked.get(p) != BLOCK]
        if sessionPeers:
            target = session.pick(sessionPeers)
            self._askBlock(w, target, now)
            self._askHave(w, [p for p in sessionPeers if p != target and p not in w.asked])
            return
        self._askHave(w, [p for p in connected if p not in w.asked and p not in w.failed])

    def _askBlock(self, w, peer, now):
        w.blockPeer = peer
        w.blockAsked = now
        w.blockDeadline = now + self.blockTimeout
        w.asked[peer] = BLOCK
        w.session.outstanding[peer] = w.session.outstanding.get(peer, 0) + 1
        self._send(peer, [Entry(w.cid, priority=1, wantType=BLOCK, sendDontHave=True)])

    def _askHave(self, w, peers):
        for peer in peers:
            w.asked[peer] = HAVE
            self._send(peer, [Entry(w.cid, priority=1, wantType=HAVE, sendDontHave=True)])

    def _release(self, w):
        p = w.blockPeer
        if p is not None:
            n = w.session.outstanding.get(p, 0) - 1
            if n > 0:
                w.session.outstanding[p] = n
            else:
                w.session.outstanding.pop(p, None)
        w.blockPeer = None
        w.blockDeadline = None

    def _send(self, peer, entries):
        history = self._asked.get(peer)
        if history is None:
            history = self._asked[peer] = OrderedDict()
        for e in entries:
            if not e.cancel:
                history[e.cid.multihash] = None
                history.move_to_end(e.cid.multihash)
        while len(history) > ASKED_HISTORY:
            history.popitem(last=False)
        try:
            self.sendWants(peer, entries)
        except Exception:
            log.failure("bitswap: queueing wants for {peer} failed", peer=str(peer))

    def _finish(self, w):
        self._release(w)
        if self.wants.get(w.cid) is w:
            del self.wants[w.cid]
        self._recent[w.cid.multihash] = w.session
        while len(self._recent) > 1024:
            self._recent.popitem(last=False)
        for peer in w.asked:
            self._send(peer, [Entry(w.cid, cancel=True)])

    def _searchProviders(self, w):
        key = w.cid.multihash
        if key in self._searches:
            return
        self._searches.add(key)
        d = Deferred.fromCoroutine(self._search(w, key))
        d.addErrback(lambda f: log.info("bitswap: provider search for {cid} failed: {why}", cid=cids.cidText(w.cid), why=f.getErrorMessage()))
        d.addBoth(lambda _: self._searches.discard(key))

    async def _search(self, w, key):
        providers = await self.findProviders(key)
        log.debug("bitswap: {n} providers for {cid}", n=len(providers), cid=cids.cidText(w.cid))
        if providers:
            w.poke()

    async def fetchDAG(self, root, childrenOf=cids.childrenOf, parallelism=32, timeout=None):
        """
        Fetch every block reachable from C{root}, C{parallelism} blocks at
        a time, in one session.  C{childrenOf(cid, data)} lists the
        children of a block (default: dag-pb links).

        @return: C{{"blocks": n, "bytes": m}}.
        @raise FetchTimeout: when a block cannot be found.
        """
        root = cids.parseCID(root)
        makeBatch = getattr(self.store, "batch", None)
        session = Session(makeBatch() if makeBatch is not None else None)
        try:
            result = await self._fetchDAG(root, session, childrenOf, parallelism, timeout)
        finally:
            if session.batch is not None:
                # what was fetched is verified: keep it, even after a failure
                await gatherResults(list(session.storing), consumeErrors=True).addErrback(lambda f: None)
                d = Deferred.fromCoroutine(session.batch.commit())
                d.addErrback(self._commitFailed, session)
                await d
        if session.storeFailure is not None:
            raise session.storeFailure
        return result

    def _commitFailed(self, failure, session):
        log.warn("bitswap: storing the blocks of a DAG walk failed: {why}", why=failure.getErrorMessage())
        if session.storeFailure is None:
            session.storeFailure = failure.value

    async def _fetchDAG(self, root, session, childrenOf, parallelism, timeout):
        sem = DeferredSemaphore(parallelism)
        seen = {root}
        state = {"blocks": 0, "bytes": 0, "failed": None}

        async def visit(c, local):
            await sem.acquire()
            try:
                if state["failed"] is not None:
                    return
                data = await self._get(c, session, timeout, local)
                state["blocks"] += 1
                state["bytes"] += len(data)
                children = [child for child in childrenOf(c, data) if child not in seen]
                seen.update(children)
            except BaseException as e:
                if state["failed"] is None:
                    state["failed"] = e
                raise
            finally:
                sem.release()
            if children:
                # one look in the store for all the children, not a read each
                present = await self._present(children)
                await gatherResults(
                    [Deferred.fromCoroutine(visit(child, child.multihash in present)) for child in children],
                    consumeErrors=True,
                )

        try:
            await visit(root, True)
        except Exception:
            failure = state["failed"]
            if failure is not None:
                raise failure from None
            raise
        return {"blocks": state["blocks"], "bytes": state["bytes"]}

    async def _present(self, blocks):
        """
        The multihashes of those of C{blocks} the store holds.
        """
        hasMany = getattr(self.store, "hasMany", None)
        try:
            if hasMany is not None:
                return set(await hasMany(blocks))
            found = await gatherResults([Deferred.fromCoroutine(self.store.has(c)) for c in blocks], consumeErrors=True)
        except Exception:
            log.failure("bitswap: looking for blocks in the store failed")
            return {c.multihash for c in blocks}  # read each, as fetch would
        return {c.multihash for c, there in zip(blocks, found) if there}

    # events from the network

    async def blocksReceived(self, peer, blocks):
        """
        Verify and store C{blocks} (C{(prefix, data)} pairs) from C{peer}.

        @raise BadBlock: when one of them is not a block we asked C{peer}
            for; the blocks before it are kept.
        """
        if self.threadpool is not None and sum(len(data) for _, data in blocks) >= INLINE_HASH_BYTES:
            hashed = await deferToThreadPool(self.clock, self.threadpool, _hashBlocks, blocks)
        else:
            hashed = _hashBlocks(blocks)
        asked = self._asked.get(peer, {})
        accepted = {}  # want -> data
        bad = None
        for (prefix, data), c in zip(blocks, hashed):
            if isinstance(c, cids.UnsupportedHash):
                peerLog.info(self.clock, "unexpected block", "bitswap: ignoring a block from {peer}: {why}", peer=str(peer), why=str(c))
                continue
            if isinstance(c, cids.InvalidCID):
                self.badBlocks += 1
                bad = BadBlock(f"bad block prefix: {c}")
                break
            if c.multihash not in asked:
                self.badBlocks += 1
                bad = BadBlock(f"block {cids.cidText(c)} ({len(data)} bytes) does not hash to anything we asked for")
                break
            self.receivedBlocks += 1
            self.receivedBytes += len(data)
            self._lastBlock[peer] = self.clock.seconds()
            w = self._wantFor(c)
            if w is None or w.data is not None or w in accepted:
                self.duplicateBlocks += 1
                # a peer that has it is a good peer for the session
                session = w.session if w is not None else self._recent.get(c.multihash)
                if session is not None:
                    session.join(peer)
                continue
            accepted[w] = data
        if accepted:
            # A DAG walk gets its blocks at once, before they are on disk:
            # it asks for their children while they are written (its batch
            # is committed only after every write it started).  A lone
            # fetch returns once its block is stored.
            early = [w for w in accepted if w.session.batch is not None]
            # the write is under way (and known to the session) before the
            # walk hears of the blocks: it may end, and commit, at once
            d = Deferred.fromCoroutine(self._store(accepted))
            for session in {w.session for w in early}:
                session.storing.add(d)
                d.addErrback(self._storeFailed, session)
                d.addBoth(lambda r, session=session: (session.storing.discard(d), r)[1])
            for w in early:
                self._deliver(w, peer, accepted[w])
            await d
            for w, data in accepted.items():
                if w.session.batch is None:
                    self._deliver(w, peer, data)
            self.blocksAdded([w.cid for w in accepted])
        if bad is not None:
            raise bad

    def _deliver(self, w, peer, data):
        if w.data is not None:
            return
        w.data = data
        w.session.join(peer)
        w.session.peers[peer] = w.session.peers.get(peer, 0) + 1
        w.poke()

    def _storeFailed(self, failure, session):
        if session.storeFailure is None:
            session.storeFailure = failure.value
        return failure

    async def _store(self, accepted):
        """
        Store the verified blocks of one message: each session's in its
        write batch, the others durably, one C{putMany} each.
        """
        groups = {}
        for w, data in accepted.items():
            groups.setdefault(w.session.batch, []).append((w.cid, data))
        for batch, items in groups.items():
            target = batch if batch is not None else self.store
            putMany = getattr(target, "putMany", None)
            if putMany is not None:
                # hashed above: no need for the store to hash them again
                await putMany(items, verified=True)
            else:
                for c, data in items:
                    await target.put(c, data)

    def _wantFor(self, c):
        w = self.wants.get(c)
        if w is not None:
            return w
        for wanted, w in self.wants.items():
            if wanted.multihash == c.multihash:
                return w
        return None

    def presencesReceived(self, peer, presences):
        for c, kind in presences:
            w = self._wantFor(c)
            if w is None or peer not in w.asked:
                session = self._recent.get(c.multihash)
                if session is not None and kind == PRESENCE_HAVE:
                    session.join(peer)
                continue
            if kind == PRESENCE_HAVE:
                w.haves.add(peer)
                w.session.join(peer)
            elif kind == PRESENCE_DONT_HAVE:
                w.dontHaves.add(peer)
                w.haves.discard(peer)
            w.poke()

    def peerConnected(self, peer):
        for w in list(self.wants.values()):
            w.poke()

    def peerDisconnected(self, peer):
        self._asked.pop(peer, None)
        self._lastBlock.pop(peer, None)
        for w in list(self.wants.values()):
            if peer in w.asked:
                w.asked.pop(peer, None)
                w.haves.discard(peer)
                w.failed.add(peer)
                w.session.leave(peer)
                w.poke()

    def stop(self):
        for pending in list(self._inflight.values()):
            pending.task.cancel()

    def stat(self):
        return {
            "wantlist": [cids.cidText(c) for c in self.wants],
            "blocksReceived": self.receivedBlocks,
            "bytesReceived": self.receivedBytes,
            "duplicateBlocks": self.duplicateBlocks,
            "badBlocks": self.badBlocks,
        }



def _hashBlocks(blocks):
    """
    The CID of each C{(prefix, data)}, or the L{cids.InvalidCID} (or
    L{cids.UnsupportedHash}) its prefix raised.  Runs in a worker thread.
    """
    out = []
    for prefix, data in blocks:
        try:
            out.append(cids.cidForBlock(prefix, data))
        except cids.InvalidCID as e:
            out.append(e)
    return out
