"""
Fakes of the node's capabilities (L{tau.interfaces}) for tests: one per
interface, each checked against its interface with C{verifyObject} (as
txtorcon ships fakes for its users' tests), so a fake cannot drift from
what the node provides.  They keep everything in memory, answer at once
(no threads, no sockets, no timers), and record what they were asked so a
test can check it.

 - L{FakeHost} (L{IHost}): hosts that share a C{network} dict reach each
   other; a stream is a pair of in-memory L{StreamProtocol}s; a test can
   also add connections to peers with no host behind them.
 - L{FakeContent} (L{IContent}): the real UnixFS importer and exporter over
   blocks in memory, so CIDs are the real ones.
 - L{FakeRouting} (L{IRouting}), L{FakePubSub} (L{IPubSub}), L{FakeKVDB}
   (L{IKVDB}).
 - L{fakeTNSClient} (L{ITNSClient}): the real client (its cache and
   lookups) on L{FakeTNSCalls}, a registry in memory answering tns's
   C{fetch}, C{push}, C{lookup} and C{list} as tns does.
"""

from types import SimpleNamespace

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.python.failure import Failure
from zope.interface import implementer

from tau import cids, tarstream
from tau.identity import PrivateKey
from tau.interfaces import IContent, IHost, IKVDB, IPubSub, IRouting
from tau.kvdb import writers
from tau.kvdb.service import WRITER_QUOTA, asKey
from tau.peerstore import PeerStore, stripPeer
from tau.protocols.multistream import NegotiationFailed
from tau.pubsub.message import MAX_TOPIC_LENGTH
from tau.pubsub.service import Subscription
from tau.store import content as _content
from tau.store import unixfs, unixfsread
from tau.streams import StreamProtocol

__all__ = ["FakeHost", "FakeConnection", "FakeContent", "FakeRouting", "FakePubSub", "FakeKVDB", "FakeReplica",
           "DialError"]


class DialError(Exception):
    """A fake host could not reach a peer."""


# -- host ---------------------------------------------------------------------------------

class _PipeEnd:
    """
    One end of an in-memory stream: what is written reaches the other
    end's protocol at once; closing writes half-closes, as a yamux stream
    does.
    """

    def __init__(self):
        self.protocol = None
        self.other = None
        self.writing = True
        self.lost = False

    def write(self, data):
        if self.writing and not self.lost:
            self.other.protocol.dataReceived(bytes(data))

    def writeSequence(self, data):
        self.write(b"".join(data))

    def loseConnection(self):
        if not self.writing or self.lost:
            return
        self.writing = False
        self.other.protocol.readConnectionLost()
        if not self.other.writing:
            self._end(ConnectionDone())

    def abortConnection(self):
        if not self.lost:
            self._end(ConnectionLost("the stream was reset"))

    def _end(self, reason):
        for end in (self, self.other):
            if not end.lost:
                end.lost = True
                end.writing = False
                end.protocol.connectionLost(Failure(reason))

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        self.abortConnection()


def _streamPair(a, b):
    ends = _PipeEnd(), _PipeEnd()
    ends[0].other, ends[1].other = ends[1], ends[0]
    for end, protocol in zip(ends, (a, b)):
        end.protocol = protocol
        protocol.makeConnection(end)


class FakeConnection:
    """
    A connection of a L{FakeHost}: C{remotePeer}, C{remoteAddr}, C{relay}
    (None for a direct one), C{direction}; L{close} ends it.
    """

    def __init__(self, host, remotePeer, remoteAddr, direction="outbound", relay=None):
        self.host = host
        self.remotePeer = remotePeer
        self.remoteAddr = remoteAddr
        self.direction = direction
        self.relay = relay
        self.opened = host.clock.seconds()
        self.closing = False
        self._closed = []

    def whenClosed(self):
        d = Deferred()
        if self.closing:
            d.callback(None)
        else:
            self._closed.append(d)
        return d

    def close(self):
        if self.closing:
            return
        self.closing = True
        if self.host.conns.get(self.remotePeer) is self:
            del self.host.conns[self.remotePeer]
        waiting, self._closed = self._closed, []
        for d in waiting:
            d.callback(None)


@implementer(IHost)
class FakeHost:
    """
    A host without a network.  Hosts made with the same C{network} dict
    (PeerID -> host) dial each other; C{newStream} runs the other host's
    handler on an in-memory stream.  Handler failures are kept in
    C{failures}.

    @ivar handlers: protocol id -> C{async def handler(stream)}.
    @ivar dialed: the peers dialed, in order.
    @ivar changes: how many times the announced addresses changed.
    """

    def __init__(self, clock, key=None, network=None, listen=("/ip4/127.0.0.1/tcp/4001",), announce=()):
        self.key = key or PrivateKey.generate()
        self.peerID = self.key.peerID()
        self.clock = clock
        self.peerstore = PeerStore(clock)
        self.swarmKey = None
        self.network = {} if network is None else network
        self.network[self.peerID] = self
        self.listen = list(listen)
        self.announce = list(announce)
        self.extra = []
        self.changes = 0
        self.handlers = {}
        self.conns = {}
        self.observers = []
        self.dialed = []
        self.failures = []

    # what a test does

    def addConnection(self, peer, protocols=(), observed=None, relay=None, remoteAddr="/ip4/1.2.3.4/tcp/4001"):
        """
        A connection to C{peer} (no host behind it) that speaks
        C{protocols} and saw us at C{observed}; the connection observers
        are told.
        """
        conn = FakeConnection(self, peer, remoteAddr, "inbound", relay)
        self.conns[peer] = conn
        self.peerstore.setProtocols(peer, protocols)
        if observed is not None:
            self.peerstore.record(peer).observedAddr = observed
        for observer in list(self.observers):
            observer(conn)
        return conn

    def disconnect(self, peer):
        self.conns[peer].close()

    # IHost

    def setStreamHandler(self, protocolID, handler, *, allowLimited=False, maxInbound=None):
        self.handlers[protocolID] = handler

    def removeHandler(self, protocolID):
        self.handlers.pop(protocolID, None)

    def protocols(self):
        return list(self.handlers)

    def connectedPeers(self):
        return list(self.conns)

    async def dial(self, peerID, timeout=None, route=True):
        if peerID == self.peerID:
            raise DialError("cannot dial ourselves")
        existing = self.conns.get(peerID)
        if existing is not None:
            return existing
        other = self.network.get(peerID)
        if other is None:
            raise DialError(f"{peerID} is not on this fake network")
        self.dialed.append(peerID)
        theirs = FakeConnection(other, self.peerID, self.listen[0] if self.listen else None, "inbound")
        other.conns[self.peerID] = theirs
        ours = FakeConnection(self, peerID, other.listen[0] if other.listen else None, "outbound")
        self.conns[peerID] = ours
        self.peerstore.setProtocols(peerID, other.protocols())
        other.peerstore.setProtocols(self.peerID, self.protocols())
        for host, conn in ((other, theirs), (self, ours)):
            for observer in list(host.observers):
                observer(conn)
        return ours

    async def connect(self, addr, timeout=None):
        text, peer = stripPeer(addr)
        if peer is None:
            raise DialError(f"a fake host dials peers, not {addr!r}: end the address with /p2p/ID")
        if text:
            self.peerstore.addAddrs(peer, [text], ttl=600)
        return await self.dial(peer)

    async def newStream(self, peerID, protocols, timeout=None, *, allowLimited=False, lazy=False):
        conn = await self.dial(peerID)
        other = self.network.get(peerID)
        chosen = next((p for p in protocols if other is not None and p in other.handlers), None)
        if chosen is None:
            raise NegotiationFailed(f"{peerID} speaks none of {list(protocols)}")
        ours = StreamProtocol(chosen, peerID, conn)
        theirs = StreamProtocol(chosen, self.peerID, other.conns.get(self.peerID))
        _streamPair(ours, theirs)

        def failed(failure):
            other.failures.append(failure)
            theirs.reset()
        Deferred.fromCoroutine(other.handlers[chosen](theirs)).addErrback(failed)
        return ours

    # more of the host, for the node's own machinery (autonat, relay, kvdb)

    def connections(self, peer=None):
        if peer is not None:
            return [self.conns[peer]] if peer in self.conns else []
        return list(self.conns.values())

    def connectionTo(self, peer):
        return self.conns.get(peer)

    def addConnectionObserver(self, observer):
        self.observers.append(observer)

    def listenAddresses(self):
        return list(self.listen)

    def announcedAddresses(self):
        base = self.announce or self.listen
        return list(base) + [a for a in self.extra if a not in base]

    def addAnnouncedAddrs(self, addrs):
        self.extra.extend(a for a in addrs if a not in self.extra)
        self.notifyChanged()

    def removeAnnouncedAddrs(self, addrs):
        self.extra = [a for a in self.extra if a not in addrs]
        self.notifyChanged()

    def notifyChanged(self):
        self.changes += 1


# -- content ------------------------------------------------------------------------------

class _Blocks:
    """Blocks in memory, with what the UnixFS importer and exporter use."""

    def __init__(self):
        self.data = {}

    async def get(self, c):
        return self.data.get(bytes(c.multihash))

    async def has(self, c):
        return bytes(c.multihash) in self.data

    async def put(self, c, block):
        self.data[bytes(c.multihash)] = bytes(block)

    async def putMany(self, blocks, verified=False):
        for c, block in blocks:
            if not verified and not cids.verifyBlock(c, block):
                raise ValueError("a block does not match its CID")
            self.data[bytes(c.multihash)] = bytes(block)


def _now(f, *args):
    return maybeDeferred(f, *args)


@implementer(IContent)
class FakeContent:
    """
    L{IContent} in memory: the real importer (so the CIDs are those a node
    gives), files read whole, no network (a block not here is
    L{_content.NotFound} at once).

    @ivar provided: the CIDs provided (adds included), in order.
    @ivar pinned: the pinned roots (CIDs).
    """

    def __init__(self):
        self.blocks = _Blocks()
        self.provided = []
        self.pinned = []

    def _read(self, source):
        if isinstance(source, (bytes, bytearray, memoryview)):
            return bytes(source)
        if hasattr(source, "read"):
            return source.read()
        with open(source, "rb") as f:
            return f.read()

    async def _store(self, entry, pin):
        if pin and entry.cid not in self.pinned:
            self.pinned.append(entry.cid)
        self.provide(entry.cid)
        return entry

    async def _import(self, source, params):
        [(root, blocks)] = unixfs._smallFiles([self._read(source)], params)
        await self.blocks.putMany(blocks, verified=True)
        return unixfs.Entry(*root)

    async def add(self, source, pin=True, chunker=None):
        return await self._store(await self._import(source, _content.params(chunker)), pin)

    async def addFolder(self, entries, pin=True, chunker=None, onFile=None):
        params = _content.params(chunker)
        found = {}

        async def place(path, source):
            if source is None:   # a folder
                found[path] = None
                return
            entry = found[path] = await self._import(source, params)
            if onFile is not None:
                onFile(path, entry)
        if hasattr(entries, "__aiter__"):
            async for path, source in entries:
                await place(path, source)
        else:
            for path, source in entries:
                await place(path, source)
        root = await _content.typed(unixfs.buildDirectory(self.blocks, found, params))
        return await self._store(root, pin)

    async def addTar(self, stream, pin=True, chunker=None, onFile=None, maxEntries=_content.MAX_DIRECTORY_ENTRIES):
        entries = tarstream.entries(stream, _now, maxEntries)
        return await _content.typed(self.addFolder(entries, pin=pin, chunker=chunker, onFile=onFile))

    async def addDirectory(self, entries, pin=True, maxEntries=_content.MAX_DIRECTORY_ENTRIES):
        if not isinstance(entries, dict) or len(entries) > maxEntries:
            raise _content.BadInput(f"expected at most {maxEntries} entries, as a mapping of paths to CIDs")
        found = {}
        for path, value in entries.items():
            if not all(unixfsread.safeName(name) for name in path.split("/")):
                raise _content.BadInput(f"refusing the path {path[:200]!r}")
            found[path] = await _content.typed(unixfsread.entryOf(self.blocks, _content.parse(value)))
        root = await _content.typed(unixfs.buildDirectory(self.blocks, found))
        return await self._store(root, pin)

    async def cat(self, cid, offset=0, length=None, timeout=_content.DEFAULT_TIMEOUT):
        c = _content.parse(cid)
        data = b"".join([chunk async for chunk in _content.typedItems(unixfsread.cat(self.blocks, c, offset, length))])

        async def chunks():
            if data:
                yield data
        return chunks()

    async def get(self, cid, timeout=_content.DEFAULT_TIMEOUT):
        c = _content.parse(cid)
        name = unixfs.cidText(c)
        out = []
        async for path, child, size in _content.typedItems(unixfsread.tree(self.blocks, c)):
            full = f"{name}/{path}" if path else name
            out.append(tarstream.header(full, size))
            if size is not None:
                out.append(b"".join([x async for x in unixfsread.cat(self.blocks, child)]))
                out.append(tarstream.padding(size))
        out.append(tarstream.END)

        async def archive():
            for piece in out:
                yield piece
        return archive()

    async def ls(self, cid, timeout=_content.DEFAULT_TIMEOUT):
        return await _content.typed(unixfsread.ls(self.blocks, _content.parse(cid)))

    async def entry(self, cid, timeout=_content.DEFAULT_TIMEOUT):
        return await _content.typed(unixfsread.entryOf(self.blocks, _content.parse(cid)))

    async def has(self, cid):
        return await self.blocks.has(_content.parse(cid))

    async def pin(self, cid):
        c = _content.parse(cid)
        count = 0
        async for _ in _content.typedItems(unixfsread.walkDag(self.blocks, c)):
            count += 1
        if c not in self.pinned:
            self.pinned.append(c)
        return count

    async def unpin(self, cid):
        c = _content.parse(cid)
        if c not in self.pinned:
            raise _content.NotPinned(f"{unixfs.cidText(c)} is not pinned")
        self.pinned.remove(c)

    async def pins(self):
        return list(self.pinned)

    async def _kept(self):
        kept = set()
        for root in self.pinned:
            async for c in unixfsread.walkDag(self.blocks, root):
                kept.add(bytes(c.multihash))
        return kept

    async def gc(self, budget=None):
        kept = await self._kept()
        gone = [k for k in self.blocks.data if k not in kept]
        freed = sum(len(self.blocks.data.pop(k)) for k in gone)
        return len(gone), freed

    async def stat(self):
        return {"blocks": len(self.blocks.data), "bytes": sum(map(len, self.blocks.data.values())),
                "pinned": len(await self._kept())}

    def provide(self, cid):
        self.provided.append(_content.parse(cid))
        return succeed(0)


# -- routing, pubsub ----------------------------------------------------------------------

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


@implementer(IPubSub)
class FakePubSub:
    """
    Topics in memory: what is published is checked by the topic's
    validator (if any) and delivered to every subscription of the topic at
    once, with C{source} this node (None unless given).

    @ivar published: C{(topic, data)} in order, rejected ones included.
    @ivar peers: topic -> the peers L{topicPeers} answers.
    """

    def __init__(self, source=None):
        self.source = source
        self.subscriptions = {}
        self.published = []
        self.validators = {}
        self.peers = {}

    def subscribe(self, topic):
        if not topic or len(topic) > MAX_TOPIC_LENGTH:
            raise ValueError("an empty or too long topic")
        subscription = Subscription(topic, self)
        self.subscriptions.setdefault(topic, []).append(subscription)
        return subscription

    def _unsubscribe(self, subscription):
        subscriptions = self.subscriptions.get(subscription.topic, [])
        if subscription in subscriptions:
            subscriptions.remove(subscription)

    async def publish(self, topic, data):
        self.published.append((topic, data))
        message = SimpleNamespace(topic=topic, data=data, source=self.source)
        validator = self.validators.get(topic)
        if validator is not None:
            verdict = validator(message)
            if hasattr(verdict, "__await__"):
                verdict = await verdict
            if not verdict:
                return
        for subscription in list(self.subscriptions.get(topic, ())):
            subscription._push(message)

    def topicPeers(self, topic):
        return list(self.peers.get(topic, ()))

    def addValidator(self, topic, fn):
        self.validators[topic] = fn

    def removeValidator(self, topic):
        self.validators.pop(topic, None)


# -- kvdb ---------------------------------------------------------------------------------

@implementer(IKVDB)
class FakeKVDB:
    """
    Databases in dicts (C{stored}: name -> {key: value}), every write
    acknowledged at once.  A database made by C{create} is named
    C{NAME@GENESIS} as the real one names it; C{serviceDatabase(service,
    name)} is C{NAME@service:SERVICE}.

    @ivar writes: how many writes were made.
    """

    def __init__(self):
        self.stored = {}
        self.replicas = {}
        self.writers = {}
        self.writes = 0

    async def open(self, name):
        self.stored.setdefault(name, {})
        return self.replicas.setdefault(name, FakeReplica(self, name))

    def databases(self):
        return sorted(self.stored)

    def _db(self, name):
        if name not in self.stored:
            raise KeyError(f"database {name!r} is not open")
        return self.stored[name]

    async def get(self, db, key):
        return self._db(db).get(asKey(key))

    async def list(self, db, prefix=b"", limit=None, values=False):
        prefix = asKey(prefix) if prefix else b""
        keys = sorted(k for k in self._db(db) if k.startswith(prefix))[:limit]
        if values:
            return [(k, self._db(db)[k]) for k in keys]
        return keys

    async def put(self, db, key, value, replicas=1, timeout=30.0):
        self._db(db)[asKey(key)] = bytes(value)
        self._changed(db)
        return None, 1

    async def delete(self, db, key, replicas=1, timeout=30.0):
        self._db(db).pop(asKey(key), None)
        self._changed(db)
        return None, 1

    async def write(self, db, entries, replicas=1, timeout=30.0):
        """
        C{[(key, value or None)]} as one write (None deletes).
        """
        keys = [asKey(k) for k, _ in entries]
        if len(set(keys)) != len(keys):
            raise ValueError("a key appears twice in one write")
        target = self._db(db)
        for key, (_, value) in zip(keys, entries):
            if value is None:
                target.pop(key, None)
            else:
                target[key] = bytes(value)
        self._changed(db)
        return None, 1

    async def create(self, name, writerList, quota=None):
        quota = WRITER_QUOTA if quota is None else quota
        full = writers.databaseName(name, writers.makeGenesis(name, writerList, quota).cid)
        replica = await self.open(full)
        replica.quota = quota
        self.writers.setdefault(full, list(writerList))
        return replica

    def whenReady(self):
        return succeed(self)

    async def serviceDatabase(self, service, name, quota=WRITER_QUOTA):
        replica = await self.open(f"{name}@service:{service}")
        replica.quota = quota
        return replica

    async def writersOf(self, db):
        await self.open(db)
        return self.writers.get(db)

    async def addWriters(self, db, writerList):
        await self.open(db)
        self.writers.setdefault(db, []).extend(w for w in writerList if w not in self.writers[db])

    def _changed(self, db):
        self.writes += 1
        replica = self.replicas.get(db)
        if replica is not None:
            for observer in list(replica.observers):
                observer(replica)

    def snapshot(self):
        """
        A copy of everything stored, to check that a refused request left
        it untouched.
        """
        return {name: dict(db) for name, db in self.stored.items()}


class FakeReplica:
    """
    What C{open} returns: the heads (one, named after the count of writes
    made) and C{onChange}.
    """

    def __init__(self, kvdb, name):
        self.kvdb = kvdb
        self.name = name
        self.quota = None
        self.observers = []

    @property
    def heads(self):
        return {b"head-%d" % self.kvdb.writes: self.kvdb.writes} if self.kvdb.writes else {}

    def onChange(self, observer):
        self.observers.append(observer)
        return lambda: self.observers.remove(observer)


class FakeTNSCalls:
    """
    tns's commands on leaves in memory (C{leaves}: path tuple -> value), as
    a L{tau.services.tns.client.TNSClient} calls them (C{peers}, C{call});
    C{calls} records C{(name, body)}.
    """

    peer = "fake-tns"

    def __init__(self):
        self.leaves = {}
        self.calls = []

    async def peers(self):
        return [self.peer]

    async def call(self, name, body=None, *, peers=None):
        from tau.saferegex import compileSafe
        from tau.services.tns.paths import KEY_PREFIX, assemble, checkPath, leaves

        body = dict(body or {})
        self.calls.append((name, body))
        if name == "push":
            for path, value in leaves(checkPath(body["path"]), body["data"]):
                self.leaves[tuple(path)] = value
            return {"pushed": True}
        if name == "fetch":
            path = tuple(checkPath(body["path"]))
            return {"object": assemble([(list(p[len(path):]), v) for p, v in sorted(self.leaves.items())
                                        if p[:len(path)] == path])}
        if name == "lookup":
            if body.get("regex"):
                # tns's rule: the pattern /tns/v1/<prefix...> searched in
                # every /tns/v1/<key>
                regex = compileSafe("/".join([KEY_PREFIX, *body["prefix"]]))
                keys = [KEY_PREFIX + "/" + "/".join(p) for p in sorted(self.leaves)]
                return {"keys": [k[len(KEY_PREFIX):] for k in keys if regex.search(k)]}
            prefix = tuple(body["prefix"])
            return {"keys": ["/" + "/".join(p) for p in sorted(self.leaves) if p[:len(prefix)] == prefix]}
        if name == "list":
            depth = body["depth"]
            return {"keys": sorted({p[:i] for p in self.leaves for i in range(1, min(depth, len(p)) + 1)})}
        raise LookupError(f'router: command "{name}" not registered')


def fakeTNSClient(clock):
    """
    An L{ITNSClient}: the real client on L{FakeTNSCalls} (its C{calls}
    attribute), nothing cached across pushes (no pubsub).
    """
    from tau.services.tns.client import TNSClient

    return TNSClient(None, None, None, clock, calls=FakeTNSCalls())
