"""
L{KVDBService}: the node's replicated key/value databases.

Wire:

- heads are announced on the pubsub topic C{/tau/kvdb/1.0.0/NAME} (payload:
  L{codec.encodeHeads}), after every write (at most every C{announceDelay}
  seconds; writes made meanwhile go out together) and every C{rebroadcast}
  seconds; a replica merges what it hears at most every C{mergeDelay}
  seconds (what came meanwhile is merged together);
- deltas and snapshots are blocks in the block store, fetched with Bitswap;
- C{/tau/kvdb/push/1.0.0} is how a writer asks a peer to hold a write now:
  one request C{{"t": "tau-kvdb-push/1", "db", "heads"}} and one answer
  C{{"t": "tau-kvdb-pushed/1", "ok", "err"}}, each length-prefixed
  DAG-CBOR.  The peer answers C{ok} only once every head (and so every
  ancestor) is stored (fsync'd), pinned and applied to its view, which is
  what a write with C{replicas=N} waits for from N-1 peers.

Who may write: every delta is signed by its writer and the signature is
checked, so a write cannot be forged or altered.  A database with writers
(C{NAME@GENESIS}, made by L{KVDBService.create}) takes deltas, snapshots
and pushes from its writers only, each up to a byte quota; an open
database (C{NAME}) from any peer of the network (see L{tau.kvdb.writers}).
Services get their databases from L{KVDBService.serviceDatabase}: the
writers are the nodes the cloud admitted for that service (L{tau.cloud}).
"""

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from tau.interfaces import IKVDB
from tau.kvdb import codec, writers
from tau.kvdb.replica import Replica
from tau.kvdb.view import View
from tau.oneshot import OneShot
from tau.ratelog import PeerLog
from tau.streams import withTimeout

PUSH_PROTOCOL = "/tau/kvdb/push/1.0.0"
TOPIC_PREFIX = "/tau/kvdb/1.0.0/"
#: Pushes served at once.
MAX_SERVING = 16
#: Seconds a peer that failed a push waits before it is asked again.
PUSH_RETRY = 1.0
#: Bytes of delta blocks one writer may write in a database created here
#: when no quota is given (the config's kvdb.writer-quota).
WRITER_QUOTA = 1 << 30

peerLog = PeerLog(Logger())


class ReplicationTimeout(Exception):
    """
    A write was stored here but not confirmed by enough peers in time (it
    still replicates in the background).
    """

    def __init__(self, confirmed, wanted, delta):
        super().__init__(f"the write is stored on {confirmed} of the {wanted} nodes asked for so far (it keeps replicating)")
        self.confirmed = confirmed
        self.wanted = wanted
        self.delta = delta


def topicFor(name):
    return TOPIC_PREFIX + name


def asKey(key):
    if isinstance(key, str):
        key = key.encode("utf-8")
    return codec.checkKey(bytes(key))


@implementer(IKVDB)
class KVDBService(Service):
    """
    @param host: the node's host (push protocol, our PeerID).
    @param pubsub: the node's pubsub (C{subscribe}, C{publish},
        C{topicPeers}, C{addValidator}), or None (no announcements).
    @param store: the node's L{tau.store.service.StoreService}.
    @param fetch: C{async fetch(cid, timeout) -> bytes} (Bitswap).
    @param notify: called with new block CIDs (Bitswap's notifyNewBlocks).
    @param cloud: the L{PeerID} of the cloud's key, or None (no cloud).
    @param admission: this node's L{tau.cloud.Admission}, or None.
    @param writerQuota: the per-writer quota of databases created here.
    """

    log = Logger()
    #: kvdb push streams one peer may have open to us at once
    maxInboundStreams = 16
    #: seconds a peer has to send its push once the stream is open
    pushReadTimeout = 10.0

    def __init__(self, host, pubsub, store, fetch, key, path, reactor, *, notify=None, rebroadcast=10.0, fetchTimeout=30.0, snapshotEvery=1000, announceDelay=0.05, mergeDelay=0.05, cloud=None, admission=None, writerQuota=WRITER_QUOTA):
        self.setName("kvdb")
        self.cloud = cloud
        self.admission = admission
        self.writerQuota = writerQuota
        self._geneses = {}
        self.refusals = writers.RefusalLog(reactor)
        self.host = host
        self.pubsub = pubsub
        self.store = store
        self._fetch = fetch
        self.key = key
        self.reactor = reactor
        self.view = View(path, reactor)
        self.notify = notify
        self.rebroadcast = rebroadcast
        self.fetchTimeout = fetchTimeout
        self.snapshotEvery = snapshotEvery
        self.announceDelay = announceDelay
        self.mergeDelay = mergeDelay
        self.replicas = {}
        self._opening = {}
        self._subscriptions = {}
        self._loop = None
        self._ready = OneShot()
        self._started = None
        self._serving = DeferredSemaphore(MAX_SERVING)

    # Service

    def startService(self):
        super().startService()
        if self._ready.fired:
            self._ready = OneShot()
        self.reactor.callWhenRunning(self._start)

    def _start(self):
        if not self.running:
            return
        self._started = Deferred.fromCoroutine(self._open())
        self._started.addCallbacks(lambda _: self._ready.fire(self), self._failed)

    def _failed(self, failure):
        self.log.failure("kvdb could not start", failure)
        self._ready.fire(failure)

    async def _open(self):
        await self.store.whenReady()
        await self.view.open()
        if not self.running:
            return
        self.host.setStreamHandler(PUSH_PROTOCOL, self._servePush, maxInbound=self.maxInboundStreams)
        for name in await self.view.databases():
            await self.open(name)
        if not self.running:
            return
        self._loop = LoopingCall(self._announceAll)
        self._loop.clock = self.reactor
        self._loop.start(self.rebroadcast, now=False).addErrback(lambda f: self.log.failure("kvdb rebroadcast stopped", f))

    def whenReady(self):
        return self._ready.whenFired()

    def stopService(self):
        """
        Stop announcing and serving pushes, stop every replica (merges and
        fetches in flight are cancelled and waited for, writes already
        asked for are committed; see L{Replica.stop}), then close the view.
        """
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self.host.removeHandler(PUSH_PROTOCOL)
        for sub in self._subscriptions.values():
            sub.cancel()
        self._subscriptions.clear()
        started, self._started = self._started, None
        if started is None:
            return None

        async def close():
            try:
                await started
            except Exception:
                pass
            # merges and fetches in flight are cancelled (the walks resume
            # from the view at the next start), writes being committed end
            replicas = list(self.replicas.values())
            await gatherResults([Deferred.fromCoroutine(r.stop()) for r in replicas], consumeErrors=True)
            self.replicas.clear()
            await self.view.close()

        return Deferred.fromCoroutine(close())

    # databases

    async def open(self, name):
        """
        The replica of database C{name}, opened (and replicated from now on,
        across restarts) when it is not yet.
        """
        replica = self.replicas.get(name)
        if replica is not None:
            return replica
        codec.checkName(name)
        pending = self._opening.get(name)
        if pending is not None:
            return await pending.whenFired()
        pending = self._opening[name] = OneShot()
        try:
            genesis = await self._genesis(name)
            replica = Replica(
                name,
                self.view,
                self.store.blocks,
                self._fetch,
                lambda data: self._publish(name, data),
                self.key,
                self.reactor,
                fetchTimeout=self.fetchTimeout,
                snapshotEvery=self.snapshotEvery,
                notify=self.notify,
                announceDelay=self.announceDelay,
                mergeDelay=self.mergeDelay,
                genesis=genesis,
                admission=self.admission,
                refusals=self.refusals,
            )
            await replica.open()
            self.replicas[name] = replica
            self._subscribe(replica)
            replica.announce()
            pending.fire(replica)
        except BaseException as e:
            pending.fire(e)
            raise
        finally:
            del self._opening[name]
        return replica

    async def _genesis(self, name):
        """
        The L{writers.Genesis} a database's name holds (from here, or
        fetched), or None for an open database.
        """
        _, cid = writers.splitName(name)
        if cid is None:
            return None
        genesis = self._geneses.pop(name, None)
        if genesis is not None:
            return genesis
        data = await self.store.blocks.get(codec.cidObject(cid))
        if data is None:
            data = await self._fetch(codec.cidObject(cid), self.fetchTimeout)
        genesis = writers.decodeGenesis(cid, data)
        if writers.databaseName(genesis.name, cid) != name:
            raise codec.InvalidBlock(f"the genesis of {name!r} names database {genesis.name!r}")
        return genesis

    async def create(self, name, writerList, quota=None):
        """
        Create (or open: the same arguments give the same database) the
        database C{name} whose writers are C{writerList} (L{writers.NodeWriter}
        and L{writers.CloudWriter}s), each allowed C{quota} bytes of deltas
        (default: C{writerQuota}).

        @return: its replica; C{replica.name} is its full name, C{NAME@GENESIS}.
        """
        genesis = writers.makeGenesis(name, writerList, self.writerQuota if quota is None else quota)
        full = writers.databaseName(name, genesis.cid)
        if full not in self.replicas:
            self._geneses[full] = genesis
        return await self.open(full)

    def cloudWriters(self, service):
        """
        The writer that stands for the nodes of this node's cloud that run
        C{service}: those the cloud's key admitted for it.

        @raise writers.NotAWriter: when this node belongs to no cloud.
        """
        if self.cloud is None:
            raise writers.NotAWriter("this node belongs to no cloud (config: cloud.key)")
        return writers.CloudWriter(self.cloud, service)

    async def serviceDatabase(self, service, name, quota=WRITER_QUOTA):
        """
        The database C{name} of C{service}: its writers are the nodes of the
        cloud that run the service, so every node of the cloud opens the
        same one (the name is C{NAME@GENESIS} of the same genesis; so the
        quota is the service's choice, not each node's config).  A node in
        no cloud is a cloud of one: the database's writer is this node.
        """
        writer = self.cloudWriters(service) if self.cloud is not None else writers.NodeWriter(self.key.peerID())
        return await self.create(name, [writer], quota)

    async def writersOf(self, db):
        """
        The writers of C{db} known here, or None for an open database.
        """
        replica = await self.open(db)
        return None if replica.authority is None else replica.authority.current()

    async def addWriters(self, db, writerList):
        return await (await self.open(db)).addWriters(writerList)

    def databases(self):
        return sorted(self.replicas)

    async def _publish(self, name, data):
        if self.pubsub is not None and self.running:
            await self.pubsub.publish(topicFor(name), data)

    def _announceAll(self):
        for replica in list(self.replicas.values()):
            replica.announce()

    def _subscribe(self, replica):
        if self.pubsub is None:
            return
        topic = topicFor(replica.name)
        self.pubsub.addValidator(topic, _validHeads)
        sub = self.pubsub.subscribe(topic)
        self._subscriptions[replica.name] = sub
        d = Deferred.fromCoroutine(self._read(replica, sub))
        d.addErrback(lambda f: self.log.failure("kvdb {db}: reading announcements failed", f, db=replica.name))

    async def _read(self, replica, sub):
        async for message in sub:
            if not self.running:
                break
            if message.source == self.host.peerID:
                continue
            try:
                heads, snapshot, blocks = codec.decodeHeads(message.data)
            except codec.InvalidBlock as e:
                peerLog.info(self.reactor, "bad announcement", "kvdb {db}: bad announcement from {peer}: {why}", db=replica.name, peer=str(message.source), why=str(e))
                continue
            d = Deferred.fromCoroutine(replica.merge(heads, snapshot, source=message.source, blocks=blocks))
            d.addErrback(lambda f: self.log.failure("kvdb {db}: merge failed", f, db=replica.name))

    # reads and writes

    async def get(self, db, key):
        return await (await self.open(db)).get(asKey(key))

    async def list(self, db, prefix=b"", limit=None, values=False):
        if isinstance(prefix, str):
            prefix = prefix.encode("utf-8")
        return await (await self.open(db)).list(bytes(prefix), limit, values)

    async def put(self, db, key, value, replicas=1, timeout=30.0):
        return await self.write(db, [(key, bytes(value))], replicas, timeout)

    async def delete(self, db, key, replicas=1, timeout=30.0):
        return await self.write(db, [(key, None)], replicas, timeout)

    async def write(self, db, entries, replicas=1, timeout=30.0):
        """
        Write C{[(key, value or None)]} as one delta, and wait until
        C{replicas} nodes (this one included) hold it.

        @return: C{(delta, confirmed)}.
        @raise ReplicationTimeout: when fewer confirmed within C{timeout}
            seconds (the write is kept and keeps replicating).
        """
        replica = await self.open(db)
        delta = await replica.write([(asKey(k), v) for k, v in entries])
        confirmed = 1
        if replicas > 1:
            confirmed = await self._replicate(replica, delta, replicas, timeout)
        return delta, confirmed

    # replication acknowledgements

    async def _replicate(self, replica, delta, replicas, timeout):
        needed = replicas - 1
        confirmed, asking, retryAt = set(), set(), {}
        deadline = self.reactor.seconds() + timeout
        wake = [None]

        def poke():
            if wake[0] is not None and not wake[0].called:
                wake[0].callback(None)

        async def ask(peer):
            try:
                ok, why = await withTimeout(self.reactor, max(0.1, deadline - self.reactor.seconds()), self._push(peer, replica.name, [delta.cid]))
            except Exception as e:
                ok, why = False, str(e) or e.__class__.__name__
            asking.discard(peer)
            if ok:
                confirmed.add(peer)
            else:
                self.log.debug("kvdb {db}: {peer} did not confirm: {why}", db=replica.name, peer=str(peer), why=why)
                retryAt[peer] = self.reactor.seconds() + PUSH_RETRY
            poke()

        while len(confirmed) < needed:
            now = self.reactor.seconds()
            if now >= deadline:
                raise ReplicationTimeout(len(confirmed) + 1, replicas, delta)
            peers = self.pubsub.topicPeers(topicFor(replica.name)) if self.pubsub is not None else []
            for peer in peers:
                if peer in confirmed or peer in asking or retryAt.get(peer, 0) > now or peer == self.host.peerID:
                    continue
                asking.add(peer)
                Deferred.fromCoroutine(ask(peer))
            wake[0] = Deferred()
            wake[0].addTimeout(min(0.25, deadline - now), self.reactor).addErrback(lambda f: None)
            await wake[0]
        return len(confirmed) + 1

    async def _push(self, peer, name, heads):
        stream = await self.host.newStream(peer, [PUSH_PROTOCOL])
        try:
            replica = self.replicas.get(name)
            admission = self.admission.data if self.admission is not None and replica is not None and replica.authority is not None else None
            stream.writeLP(codec.encodePush(name, heads, admission))
            stream.closeWrite()
            answer = await stream.readLP(codec.MAX_MESSAGE)
            return codec.decodePushed(answer)
        finally:
            stream.reset()

    async def _servePush(self, stream):
        peer = stream.remotePeer
        try:
            data = await withTimeout(self.reactor, self.pushReadTimeout, stream.readLP(codec.MAX_MESSAGE))
            name, heads, admission = codec.decodePush(data)
        except Exception as e:
            peerLog.info(self.reactor, "bad push", "kvdb: bad push from {peer}: {why}", peer=str(peer), why=str(e) or e.__class__.__name__)
            stream.reset()
            return
        replica = self.replicas.get(name)
        if replica is None:
            stream.writeLP(codec.encodePushed(False, f"database {name!r} is not replicated here"))
            stream.closeWrite()
            return
        if replica.authority is not None and not replica.authority.isWriter(peer, admission):
            # a push makes us fetch: only writers may ask for it
            self.refusals.refused(name, peer, "a push", f"not a writer of database {name}")
            stream.writeLP(codec.encodePushed(False, "not a writer of this database"))
            stream.closeWrite()
            return

        async def merge():
            await replica.retryMissing(heads)
            await replica.merge(heads, source=peer)
            if not self.running:
                return False
            known = await self.view.known(name, heads)
            return len(known) == len(set(heads))

        if self._serving.tokens == 0:
            # no queue of waiting pushes (each holds a stream): the writer
            # asks again
            stream.writeLP(codec.encodePushed(False, "busy"))
            stream.closeWrite()
            return
        try:
            ok = await self._serving.run(lambda: Deferred.fromCoroutine(withTimeout(self.reactor, self.fetchTimeout * 2, merge())))
            why = "" if ok else "some deltas could not be fetched or were rejected"
        except Exception as e:
            ok, why = False, str(e) or e.__class__.__name__
        stream.writeLP(codec.encodePushed(ok, why))
        stream.closeWrite()


def _validHeads(message):
    try:
        codec.decodeHeads(message.data)
    except codec.InvalidBlock:
        return False
    return True
