"""
Who may change a database: its writers.

A database is either **open** (named C{NAME}, as every database made before
writers existed: any peer of the network may write it) or has **writers**
(named C{NAME@GENESIS}).  The name of a database with writers holds the CID
of its genesis block, so the writers it was created with are part of its
name, and every replica that knows the name knows them::

    {"t": "tau-kvdb-genesis/1", "db": NAME,
     "w": [WRITER, ...],      sorted by their encoding, unique
     "q": BYTES}              the per-writer quota (see below)

A WRITER is a node's PeerId (multihash bytes) or C{[CLOUD-PEERID,
SERVICE]}: every node the cloud admitted for that service (see
L{tau.cloud}), so a service's databases follow the cloud's members without
any change to them.  In text: C{12D3KooW...} and C{cloud:12D3KooW.../tns}.

The writer set only grows, and only by a writer: a **writer set** block
names its predecessor (the genesis or another writer set) and lists a
superset of its writers, signed by a writer of the predecessor::

    {"t": "tau-kvdb-writers/1", "db": NAME@GENESIS, "prev": LINK,
     "w": [WRITER, ...], "pk": ..., "a": ADMISSION (optional), "s": ...}

A delta (and a snapshot) names the writer set it writes under (C{"wv"},
none: the genesis) and, for a writer through its cloud, carries its
admission (C{"a"}).  **The rule**: a delta is accepted when its signer is a
writer of the writer set it names, and that writer set is valid (its chain
down to the genesis is, each link signed by a writer of the one below and a
superset of it).  Whether a delta is accepted so depends only on the delta
and blocks it names by CID, never on what else a replica holds or the
order deltas arrive in: every replica accepts the same deltas, which is
what the CRDT needs.  Since writers are only ever added, there is no
revocation: to shut a writer out, create a new database (and copy the
keys).  Adding writers is a writer set block plus an empty delta that
names it, so every replica (and the new writer) learns it.

Refused, and logged at most once per writer per minute: deltas and
snapshots signed by others (a snapshot from a non-writer is not merged),
and pushes (C{/tau/kvdb/push/1.0.0}) from peers that are not writers.

**Quota**: each replica counts the bytes of the delta blocks of each
writer it applied, and refuses a writer's deltas past the genesis's
C{"q"} (set when the database is created, by default the creating node's
C{kvdb.writer-quota}).  An honest writer writes on its own heads, so its
deltas form a chain that every replica applies in the same order, and
every replica refuses the same ones.  A replica that started from a
snapshot counts the bytes of the deltas it covers once it checked it
(L{tau.kvdb.snapshots}), about 10 s later.  (A writer that forks its own
history right at its quota can make replicas disagree about its last
deltas; only a writer at its quota is concerned.)

Open databases stay open: there is no migration in place (their name has
no genesis).  To protect one, create a database with writers and copy its
keys into it.
"""

from twisted.logger import Logger

from tau import cids
from tau.cloud import InvalidAdmission, checkService
from tau.identity import InvalidKey, PeerID
from tau.kvdb import codec

GENESIS = "tau-kvdb-genesis/1"
WRITERS = "tau-kvdb-writers/1"
WRITERS_CONTEXT = b"tau-kvdb-writers:"
#: Most writers a database lists, and writer sets one chain holds.
MAX_WRITERS = 256
MAX_CHAIN = 64
#: Invalid writer sets remembered (never fetched again).
MAX_INVALID = 4096
#: Seconds between two log lines about one refused writer, and how many
#: writers are remembered for it (past that, all are forgotten).
REFUSAL_LOG_EVERY = 60.0
MAX_REFUSERS = 4096


class NotAWriter(Exception):
    """
    This node may not change the database, or a writer is over its quota.
    """


class NodeWriter:
    __slots__ = ("peer",)

    def __init__(self, peer):
        self.peer = peer

    def admits(self, peer, admission):
        return peer == self.peer

    def toCBOR(self):
        return self.peer.toBytes()

    def __str__(self):
        return str(self.peer)

    def __eq__(self, other):
        return isinstance(other, NodeWriter) and other.peer == self.peer

    def __hash__(self):
        return hash(("node", self.peer))


class CloudWriter:
    """
    Every node the cloud C{cloud} (a L{PeerID}) admitted for C{service}.
    """

    __slots__ = ("cloud", "service")

    def __init__(self, cloud, service):
        self.cloud = cloud
        self.service = service

    def admits(self, peer, admission):
        return admission is not None and admission.admits(self.cloud, peer, self.service)

    def toCBOR(self):
        return [self.cloud.toBytes(), self.service]

    def __str__(self):
        return f"cloud:{self.cloud}/{self.service}"

    def __eq__(self, other):
        return isinstance(other, CloudWriter) and (other.cloud, other.service) == (self.cloud, self.service)

    def __hash__(self):
        return hash(("cloud", self.cloud, self.service))


def parseWriter(text):
    """
    A writer from its text: a PeerId, or C{cloud:CLOUD-PEERID/SERVICE}.

    @raise ValueError: otherwise.
    """
    try:
        if text.startswith("cloud:"):
            cloud, sep, service = text[len("cloud:"):].partition("/")
            if not sep:
                raise ValueError("expected cloud:CLOUD-PEERID/SERVICE")
            return CloudWriter(PeerID.fromString(cloud), checkService(service))
        return NodeWriter(PeerID.fromString(text))
    except (InvalidKey, InvalidAdmission) as e:
        raise ValueError(f"{text!r} is not a writer (a PeerId, or cloud:CLOUD-PEERID/SERVICE): {e}") from None


def _writerFromCBOR(value):
    try:
        if isinstance(value, bytes):
            return NodeWriter(PeerID.fromBytes(value))
        if isinstance(value, list) and len(value) == 2 and isinstance(value[0], bytes):
            return CloudWriter(PeerID.fromBytes(value[0]), checkService(value[1]))
    except (InvalidKey, InvalidAdmission) as e:
        raise codec.InvalidBlock(f"a writer: {e}") from None
    raise codec.InvalidBlock("a writer is a PeerId or [cloud PeerId, service]")


def _encodeWriters(writers):
    items = sorted({codec.encode(w.toCBOR()): w for w in writers}.items())
    if not 0 < len(items) <= MAX_WRITERS:
        raise codec.InvalidBlock(f"a database has 1 to {MAX_WRITERS} writers")
    return [w.toCBOR() for _, w in items]


def _decodeWriters(value):
    if not isinstance(value, list) or not 0 < len(value) <= MAX_WRITERS:
        raise codec.InvalidBlock(f"a database has 1 to {MAX_WRITERS} writers")
    encoded = [codec.encode(w) for w in value]
    if encoded != sorted(set(encoded)):
        raise codec.InvalidBlock("writers are not sorted and unique")
    return frozenset(_writerFromCBOR(w) for w in value)


def admits(writers, peer, admission):
    return any(w.admits(peer, admission) for w in writers)


# -- names -----------------------------------------------------------------------

def databaseName(name, genesis):
    return f"{name}@{codec.cidString(genesis)}"


def splitName(db):
    """
    C{(name, genesis CID or None)}: a database with writers is named
    C{NAME@GENESIS} (the CIDv1 of a dag-cbor block); any other name is an
    open database's.
    """
    name, sep, tail = db.rpartition("@")
    if not sep or not name or not tail.startswith("b"):
        return db, None
    try:
        c = cids.parseCID(tail)
    except cids.InvalidCID:
        return db, None
    if c.version != 1 or cids.codecCode(c) != codec.DAG_CBOR:
        return db, None
    return name, bytes(cids.cidToBytes(c))


# -- blocks ----------------------------------------------------------------------

class Genesis:
    __slots__ = ("cid", "name", "writers", "quota", "data")

    def __init__(self, cid, name, writers, quota, data):
        self.cid = cid
        self.name = name
        self.writers = writers
        self.quota = quota
        self.data = data


def makeGenesis(name, writers, quota):
    """
    The genesis of a database C{name} with C{writers} and a per-writer
    C{quota} in bytes (the same arguments give the same database).
    """
    codec.checkName(name)
    if "@" in name:
        raise codec.InvalidBlock("the name of a database with writers has no '@'")
    if type(quota) is not int or quota < 1:
        raise codec.InvalidBlock("a quota is a whole number of bytes above 0")
    data = codec.encode({"t": GENESIS, "db": name, "w": _encodeWriters(writers), "q": quota})
    return decodeGenesis(codec.cidOf(data), data)


def decodeGenesis(cid, data):
    if codec.cidOf(data) != bytes(cid):
        raise codec.InvalidBlock("the block does not hash to its CID")
    value = codec.decode(data)
    if not isinstance(value, dict) or value.get("t") != GENESIS or set(value) != {"t", "db", "w", "q"}:
        raise codec.InvalidBlock("not a database genesis")
    name = codec.checkName(value["db"]) if isinstance(value["db"], str) else codec.checkName(None)
    quota = value["q"]
    if type(quota) is not int or quota < 1:
        raise codec.InvalidBlock("a quota is a whole number of bytes above 0")
    return Genesis(bytes(cid), name, _decodeWriters(value["w"]), quota, bytes(data))


class WriterSet:
    __slots__ = ("cid", "prev", "writers", "signer", "admission", "data")

    def __init__(self, cid, prev, writers, signer, admission, data):
        self.cid = cid
        self.prev = prev
        self.writers = writers
        self.signer = signer
        self.admission = admission
        self.data = data


def makeWriterSet(key, db, prev, writers, admission=None):
    body = {"t": WRITERS, "db": db, "prev": codec.link(prev), "w": _encodeWriters(writers), "pk": key.publicKey().toProtobuf()}
    if admission is not None:
        body["a"] = bytes(admission)
    body["s"] = key.sign(WRITERS_CONTEXT + codec.encode(body))
    data = codec.encode(body)
    return decodeWriterSet(codec.cidOf(data), data, db)


def decodeWriterSet(cid, data, db):
    """
    A writer set block, its form and signature checked (not yet its place
    in the chain: see L{Authority.resolve}).
    """
    if codec.cidOf(data) != bytes(cid):
        raise codec.InvalidBlock("the block does not hash to its CID")
    value = codec.checkFields(codec.decode(data), WRITERS, {"t", "db", "prev", "w", "pk", "s"}, frozenset({"a"}))
    if value["db"] != db:
        raise codec.InvalidBlock(f"a writer set of database {value['db']!r}, expected {db!r}")
    prev = codec.unlink(value["prev"], "previous writer set")
    writers = _decodeWriters(value["w"])
    _, admission = codec.decodeAuthority(value, "writer set")
    signer = codec.verifySigner(value, WRITERS_CONTEXT, "writer set")
    return WriterSet(bytes(cid), prev, writers, signer, admission, bytes(data))


# -- the authority of one database ------------------------------------------------

class RefusalLog:
    """
    Logs refusals at most once per writer and kind (deltas, a snapshot, a
    push) every C{REFUSAL_LOG_EVERY} seconds, with how many were refused
    meanwhile.
    """

    log = Logger()

    def __init__(self, clock):
        self.clock = clock
        self._last = {}
        self._count = {}

    def refused(self, db, writer, what, why):
        key = (str(writer), what)
        if key not in self._last and len(self._last) >= MAX_REFUSERS:
            self._last.clear()
            self._count.clear()
        self._count[key] = self._count.get(key, 0) + 1
        now = self.clock.seconds()
        last = self._last.get(key)
        if last is not None and now - last < REFUSAL_LOG_EVERY:
            return
        n, self._count[key] = self._count[key], 0
        self._last[key] = now
        self.log.warn("kvdb {db}: refused {what} from {writer} ({n} since the last report): {why}", db=db, what=what, writer=key[0], n=n, why=why)


class Authority:
    """
    The writers of one database: its genesis and the writer sets known
    here (each checked down to the genesis).

    @param fetch: C{async fetch(cid) -> bytes} of a block (the store first,
        then Bitswap).
    @param keep: C{async keep(writerSet)}: store and pin a new writer set,
        and remember it across restarts.
    """

    def __init__(self, db, genesis, fetch, keep):
        self.db = db
        self.genesis = genesis
        self.quota = genesis.quota
        self._fetch = fetch
        self._keep = keep
        self.sets = {}
        # writer sets found invalid: {cid: why}, never fetched again
        self._invalid = {}

    def writersOf(self, version):
        return self.genesis.writers if version is None or version == self.genesis.cid else self.sets[version].writers

    def current(self):
        """
        Every writer of the genesis and of the writer sets known here.
        """
        out = set(self.genesis.writers)
        for s in self.sets.values():
            out |= s.writers
        return out

    def isWriter(self, peer, admission=None):
        return admits(self.current(), peer, admission)

    async def resolve(self, version):
        """
        The writers of the writer set C{version} (None: the genesis),
        fetching and checking its chain down to the genesis.

        @raise codec.InvalidBlock: when it is not a valid writer set.
        @raise Exception: when a block of it cannot be fetched now.
        """
        if version is None or version == self.genesis.cid:
            return self.genesis.writers
        if version in self._invalid:
            raise codec.InvalidBlock(self._invalid[version])
        try:
            return await self._resolve(version)
        except codec.InvalidBlock as e:
            if len(self._invalid) >= MAX_INVALID:
                self._invalid.pop(next(iter(self._invalid)))
            self._invalid[version] = str(e)
            raise

    async def _resolve(self, version):
        chain, c = [], version
        while c != self.genesis.cid and c not in self.sets:
            if len(chain) >= MAX_CHAIN:
                raise codec.InvalidBlock(f"a chain of more than {MAX_CHAIN} writer sets")
            ws = decodeWriterSet(c, await self._fetch(c), self.db)
            chain.append(ws)
            c = ws.prev
        for ws in reversed(chain):
            below = self.writersOf(ws.prev)
            if not admits(below, ws.signer, ws.admission):
                raise codec.InvalidBlock(f"a writer set signed by {ws.signer}, not a writer of the set before it")
            if not below <= ws.writers:
                raise codec.InvalidBlock("a writer set that drops writers (writers are only ever added)")
            self.sets[ws.cid] = ws
            await self._keep(ws)
        return self.writersOf(version)

    async def check(self, signed):
        """
        Why a delta or snapshot may not be accepted, or None when it may.

        @raise Exception: when its writer set cannot be fetched now.
        """
        try:
            writers = await self.resolve(signed.version)
        except codec.InvalidBlock as e:
            return f"writer set: {e}"
        if not admits(writers, signed.writer, signed.admission):
            return f"signed by {signed.writer}, not a writer of database {self.db}"
        return None

    def signingFields(self, peer, admission):
        """
        C{(version, admission)} for a delta or snapshot signed by C{peer}
        (admission: its L{tau.cloud.Admission} or None): the largest known
        writer set that admits it (so a new writer set is named by the next
        write), the admission only when it is needed.

        @raise NotAWriter: when none does.
        """
        best = None
        for version, writers in [(None, self.genesis.writers)] + [(c, s.writers) for c, s in self.sets.items()]:
            if best is not None and len(writers) <= best[0]:
                continue
            if admits(writers, peer, None):
                best = (len(writers), version, None)
            elif admission is not None and admits(writers, peer, admission):
                best = (len(writers), version, admission.data)
        if best is None:
            raise NotAWriter(f"{peer} is not a writer of database {self.db}")
        return best[1], best[2]
