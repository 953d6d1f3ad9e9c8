"""
DHT records: provider records and values, kept in SQLite, and the validators
that decide which values are acceptable and which of several is best.

Everything here is synchronous and every call is one small transaction on
indexed columns (a handful of rows), so it is cheap enough for the reactor
thread with an in-memory or a local file database: the node's store runs in
WAL mode with C{synchronous=NORMAL}, so a commit is a write to the log, no
fsync.  A node expecting a very large provider table (millions of rows, slow
disks) should move the store to a single dedicated thread (C{sqlite3}
connections are bound to their thread) and call it through
C{deferToThreadPool} with a one-thread pool; the methods take plain values and
return plain values so that move needs no change here.

Time is always passed in (C{now}, seconds from the caller's clock).
"""

import datetime
import os

import sqlite_utils
from twisted.logger import Logger

from tau.identity import InvalidKey as InvalidPublicKey, PeerID, PublicKey
from tau.protocols import varint

__all__ = [
    "RecordStore",
    "InvalidRecord",
    "LimitExceeded",
    "Validator",
    "defaultValidators",
    "validatePublicKeyRecord",
    "splitKey",
    "pkKey",
    "rfc3339",
    "PROVIDE_VALIDITY",
    "REPROVIDE_INTERVAL",
    "PROVIDER_ADDR_TTL",
    "MAX_RECORD_AGE",
    "MAX_PROVIDER_RECORDS",
    "MAX_PROVIDER_BYTES",
    "MAX_ADDRS_PER_PROVIDER",
]

log = Logger()

HOUR = 3600.0
#: go DefaultProvideValidity, js PROVIDERS_VALIDITY.
PROVIDE_VALIDITY = 48 * HOUR
#: go DefaultReprovideInterval.
REPROVIDE_INTERVAL = 22 * HOUR
#: How long a provider's addresses are handed out with its record (go: 24 h).
PROVIDER_ADDR_TTL = 24 * HOUR
#: Values older than this are dropped (go MaxRecordAge).
MAX_RECORD_AGE = 48 * HOUR
#: Provider records kept in all, and their bytes (keys, peer IDs, addresses).
MAX_PROVIDER_RECORDS = 1_000_000
MAX_PROVIDER_BYTES = 128 << 20
#: Addresses kept with one provider record.
MAX_ADDRS_PER_PROVIDER = 8

# The bytes a provider row counts for.
_SIZE = "length(key) + length(peer) + length(addrs)"


class InvalidRecord(ValueError):
    """
    A value record failed its namespace's validator, or has no validator.
    """


class LimitExceeded(ValueError):
    """
    A record was refused because a per-key or per-peer limit is reached.
    """


def rfc3339(seconds):
    """
    C{seconds} since the epoch as the RFC 3339 text go puts in
    C{Record.timeReceived}.
    """
    t = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _packAddrs(addrs):
    return b"".join(varint.lpEncode(a) for a in addrs)


def _unpackAddrs(blob):
    return tuple(varint.LPDecoder(len(blob) + 1).feed(blob))


# Values


def splitKey(key):
    """
    C{(namespace, rest)} of a value key C{/namespace/rest} (bytes).

    @raise InvalidRecord: when the key has no namespace.
    """
    if not key.startswith(b"/"):
        raise InvalidRecord("a value key starts with /namespace/")
    end = key.find(b"/", 1)
    if end <= 1:
        raise InvalidRecord("a value key starts with /namespace/")
    try:
        namespace = key[1:end].decode("ascii")
    except UnicodeDecodeError:
        raise InvalidRecord("value key namespace is not ASCII") from None
    return namespace, key[end + 1 :]


def pkKey(peerID):
    """
    The value key of a peer's public key: C{/pk/} + its peer ID bytes.
    """
    return b"/pk/" + peerID.toBytes()


class Validator:
    """
    The rules of one namespace.

    @ivar validate: C{validate(key, value)}: raises L{InvalidRecord} if
        C{value} may not be stored under C{key}.
    @ivar select: C{select(key, values) -> index} of the best of several
        valid values.
    @ivar maxSize: the largest value accepted.
    """

    def __init__(self, validate, select, maxSize=10 * 1024):
        self.validate = validate
        self.select = select
        self.maxSize = maxSize


def validatePublicKeyRecord(key, value):
    """
    C{/pk/<multihash>}: the value is a protobuf public key whose peer ID is
    C{<multihash>}.
    """
    namespace, rest = splitKey(key)
    if namespace != "pk":
        raise InvalidRecord(f"not a /pk/ key: /{namespace}/")
    try:
        expected = PeerID.fromBytes(rest)
        publicKey = PublicKey.fromProtobuf(value)
    except InvalidPublicKey as e:
        raise InvalidRecord(f"bad /pk/ record: {e}") from None
    if not expected.matches(publicKey):
        raise InvalidRecord("/pk/ record: the key does not match the peer ID")


def _selectFirst(key, values):
    # Every valid /pk/ value for one key is the same key.
    return 0


def defaultValidators():
    """
    A fresh registry C{{namespace: Validator}} with the namespaces tau
    understands: C{pk}.  Add C{ipns} and others by assignment.
    """
    return {"pk": Validator(validatePublicKeyRecord, _selectFirst, maxSize=8 * 1024)}


class RecordStore:
    """
    Provider records, values and the keys this node provides, in SQLite.

    @param path: a file path, or C{":memory:"} (tests, simulations).  The
        database is opened on first use.
    @ivar provideValidity: seconds a provider record lives.
    @ivar providerAddrTTL: seconds a provider's addresses are handed out.
    @ivar maxProvidersPerKey: providers kept per key; further peers are
        refused until some expire (existing ones can always refresh theirs).
    @ivar maxRecordsPerPeer: provider records one peer may have with us.
    @ivar maxProviderRecords: other peers' provider records kept in all; a
        new one beyond it evicts the oldest.  Our own records are not
        counted and never evicted.
    @ivar maxProviderBytes: the bytes of other peers' provider records kept
        in all (their keys, peer IDs and addresses; with SQLite's indexes
        and pages the file takes up to about 2.5 times this); beyond it the
        oldest are evicted.
    @ivar maxAddrsPerProvider: addresses kept with one provider record.
    @ivar maxValues: values kept; beyond it new keys are refused.
    @ivar maxRecordAge: seconds a value lives.
    """

    def __init__(
        self,
        path=":memory:",
        provideValidity=PROVIDE_VALIDITY,
        providerAddrTTL=PROVIDER_ADDR_TTL,
        maxProvidersPerKey=200,
        maxRecordsPerPeer=10000,
        maxProviderRecords=MAX_PROVIDER_RECORDS,
        maxProviderBytes=MAX_PROVIDER_BYTES,
        maxAddrsPerProvider=MAX_ADDRS_PER_PROVIDER,
        maxValues=100000,
        maxRecordAge=MAX_RECORD_AGE,
    ):
        self.path = os.fspath(path)
        self.provideValidity = provideValidity
        self.providerAddrTTL = providerAddrTTL
        self.maxProvidersPerKey = maxProvidersPerKey
        self.maxRecordsPerPeer = maxRecordsPerPeer
        self.maxProviderRecords = maxProviderRecords
        self.maxProviderBytes = maxProviderBytes
        self.maxAddrsPerProvider = maxAddrsPerProvider
        self.maxValues = maxValues
        self.maxRecordAge = maxRecordAge
        self._db = None
        # Rows and bytes of other peers' provider records, kept up to date so
        # the caps cost no scan.
        self._rows = self._bytes = 0

    @property
    def db(self):
        if self._db is None:
            self._db = self._open()
        return self._db

    def _open(self):
        if self.path == ":memory:":
            db = sqlite_utils.Database(memory=True)
        else:
            db = sqlite_utils.Database(self.path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        if "providers" not in db.table_names():
            with db.conn:
                db["providers"].create(
                    {"key": bytes, "peer": bytes, "addrs": bytes, "received": float, "expires": float, "own": int},
                    pk=("key", "peer"),
                    not_null={"own"},
                    defaults={"own": 0},
                )
                db["providers"].create_index(["peer"])
                db["providers"].create_index(["expires"])
                db["provided"].create({"key": bytes, "lastProvided": float}, pk="key")
                db["provided"].create_index(["lastProvided"])
                db["kvalues"].create({"key": bytes, "value": bytes, "received": float}, pk="key")
                db["kvalues"].create_index(["received"])
        if "own" not in db["providers"].columns_dict:
            # A store from before the caps: ours are marked at our next republish.
            with db.conn:
                db.execute("ALTER TABLE providers ADD COLUMN own INTEGER NOT NULL DEFAULT 0")
        db.execute("CREATE INDEX IF NOT EXISTS providers_own_expires ON providers (own, expires)")
        rows, size = db.execute(f"SELECT count(*), total({_SIZE}) FROM providers WHERE own = 0").fetchone()
        self._rows, self._bytes = rows, int(size)
        return db

    def close(self):
        if self._db is not None:
            self._db.close()
            self._db = None

    def _one(self, sql, params):
        return self.db.execute(sql, params).fetchone()[0]

    # Provider records

    def addProvider(self, key, peer, addrs, now, limited=True):
        """
        Store (or refresh) C{peer} as a provider of C{key} until C{now} +
        C{provideValidity}.  A record beyond C{maxProviderRecords} or
        C{maxProviderBytes} evicts the oldest records (never our own).

        @param peer: a L{PeerID}.
        @param addrs: the provider's multiaddrs (bytes), cut to
            C{maxAddrsPerProvider}; empty keeps the ones already stored.
        @param limited: False for our own records, which no limit applies to,
            which do not count towards the caps and are never evicted.
        @return: how many records were evicted to make room.
        @raise LimitExceeded: when the key has C{maxProvidersPerKey}
            providers, the peer C{maxRecordsPerPeer} records, or the record
            alone is over C{maxProviderBytes}.
        """
        peerBytes = peer.toBytes()
        addrs = tuple(addrs)[: self.maxAddrsPerProvider]
        db = self.db
        with db.conn:
            row = db.execute(
                f"SELECT rowid, addrs, {_SIZE}, own FROM providers WHERE key = ? AND peer = ?", (key, peerBytes)
            ).fetchone()
            if row is None and limited:
                n = self._one("SELECT count(*) FROM providers WHERE key = ? AND expires > ?", (key, now))
                if n >= self.maxProvidersPerKey:
                    raise LimitExceeded(f"key already has {n} providers")
                n = self._one("SELECT count(*) FROM providers WHERE peer = ? AND expires > ?", (peerBytes, now))
                if n >= self.maxRecordsPerPeer:
                    raise LimitExceeded(f"peer already has {n} provider records")
            rows, total = self._rows, self._bytes
            if row is not None:
                if not addrs:
                    addrs = _unpackAddrs(row[1])
                db.execute("DELETE FROM providers WHERE rowid = ?", (row[0],))
                if not row[3]:
                    rows, total = rows - 1, total - row[2]
            packed = _packAddrs(addrs)
            size = len(key) + len(peerBytes) + len(packed)
            evicted = 0
            if limited:
                evicted, rows, total = self._evict(db, rows, total, size)
                rows, total = rows + 1, total + size
            db.execute(
                "INSERT INTO providers (key, peer, addrs, received, expires, own) VALUES (?, ?, ?, ?, ?, ?)",
                (key, peerBytes, packed, now, now + self.provideValidity, 0 if limited else 1),
            )
        self._rows, self._bytes = rows, total
        return evicted

    def _evict(self, db, rows, total, size):
        # Delete the oldest records (expired ones first) until one more of
        # C{size} bytes fits; return how many went and the new totals.
        if size > self.maxProviderBytes:
            raise LimitExceeded(f"a provider record of {size} bytes exceeds {self.maxProviderBytes}")
        evicted = 0
        while rows + 1 > self.maxProviderRecords or total + size > self.maxProviderBytes:
            extraBytes = total + size - self.maxProviderBytes
            batch = max(rows + 1 - self.maxProviderRecords, -(-extraBytes * rows // max(total, 1)), 1)
            victims = db.execute(
                f"SELECT rowid, {_SIZE} FROM providers WHERE own = 0 ORDER BY expires LIMIT ?", (batch,)
            ).fetchall()
            if not victims:
                raise LimitExceeded(f"no room for a provider record of {size} bytes")
            db.conn.executemany("DELETE FROM providers WHERE rowid = ?", [(rowid,) for rowid, _ in victims])
            evicted += len(victims)
            rows -= len(victims)
            total -= sum(s for _, s in victims)
        return evicted, rows, total

    def getProviders(self, key, now, limit=None):
        """
        The live providers of C{key}, most recently received first.

        @return: a list of C{(PeerID, addrs)}; C{addrs} is empty once older
            than C{providerAddrTTL}.
        """
        rows = self.db.execute(
            "SELECT peer, addrs, received FROM providers WHERE key = ? AND expires > ? "
            "ORDER BY received DESC LIMIT ?",
            (key, now, -1 if limit is None else limit),
        ).fetchall()
        out = []
        for peer, addrs, received in rows:
            fresh = now - received <= self.providerAddrTTL
            out.append((PeerID(peer), _unpackAddrs(addrs) if fresh else ()))
        return out

    def providerCount(self, peer=None, now=None):
        """
        How many provider records are stored (live ones when C{now} is given),
        all of them or C{peer}'s.
        """
        sql, params = "SELECT count(*) FROM providers WHERE 1", []
        if peer is not None:
            sql += " AND peer = ?"
            params.append(peer.toBytes())
        if now is not None:
            sql += " AND expires > ?"
            params.append(now)
        return self._one(sql, params)

    def expire(self, now):
        """
        Delete expired provider records and values.

        @return: how many rows were deleted.
        """
        db = self.db
        with db.conn:
            rows, size = db.execute(
                f"SELECT count(*), total({_SIZE}) FROM providers WHERE own = 0 AND expires <= ?", (now,)
            ).fetchone()
            n = db.execute("DELETE FROM providers WHERE expires <= ?", (now,)).rowcount
            n += db.execute("DELETE FROM kvalues WHERE received <= ?", (now - self.maxRecordAge,)).rowcount
        self._rows -= rows
        self._bytes -= int(size)
        return n

    # Keys this node provides

    def addProvided(self, key, now):
        """
        Remember that this node provides C{key}, provided at C{now}.
        """
        with self.db.conn:
            self.db.execute("INSERT OR REPLACE INTO provided (key, lastProvided) VALUES (?, ?)", (key, now))

    def removeProvided(self, key):
        with self.db.conn:
            self.db.execute("DELETE FROM provided WHERE key = ?", (key,))

    def providedDue(self, before, limit=1000):
        """
        Keys this node provides that were last provided before C{before}:
        the ones to republish.
        """
        rows = self.db.execute(
            "SELECT key FROM provided WHERE lastProvided < ? ORDER BY lastProvided LIMIT ?", (before, limit)
        ).fetchall()
        return [r[0] for r in rows]

    def provided(self):
        return [r[0] for r in self.db.execute("SELECT key FROM provided ORDER BY key").fetchall()]

    # Values

    def putValue(self, key, value, now):
        """
        Store a value (already validated by the caller) received at C{now}.

        @raise LimitExceeded: when C{maxValues} values are stored already.
        """
        db = self.db
        with db.conn:
            if db.execute("SELECT 1 FROM kvalues WHERE key = ?", (key,)).fetchone() is None:
                n = self._one("SELECT count(*) FROM kvalues", ())
                if n >= self.maxValues:
                    raise LimitExceeded(f"{n} values stored already")
            db.execute(
                "INSERT OR REPLACE INTO kvalues (key, value, received) VALUES (?, ?, ?)", (key, value, now)
            )

    def getValue(self, key, now):
        """
        C{(value, received)} for C{key}, or L{None} if absent or too old.
        """
        row = self.db.execute(
            "SELECT value, received FROM kvalues WHERE key = ? AND received > ?",
            (key, now - self.maxRecordAge),
        ).fetchone()
        return None if row is None else (row[0], row[1])
