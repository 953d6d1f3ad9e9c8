"""
The blocks and messages of the replicated key/value store, pure and strict.

Everything is DAG-CBOR (multicodec 0x71): canonical CBOR (map keys sorted
length first, shortest integer forms), links as tag 42 over ``0x00 || CID``.
A block's CID is CIDv1 dag-cbor sha2-256 of its bytes.  Decoders accept only
the canonical encoding, so one value has exactly one block and one CID.

A **delta** is one write, signed by its writer::

    {"t": "tau-kvdb-delta/1",
     "db": NAME,                        the database
     "h": HEIGHT,                       1 + the largest height of "p"
     "p": [LINK, ...],                  the heads the writer had (sorted)
     "e": [[KEY, VALUE or null], ...],  sorted by key, unique; null = deleted
     "pk": PUBLIC-KEY,                  the writer's libp2p public key (protobuf)
     "wv": LINK,                        (optional) the writer set it writes under
     "a": ADMISSION,                    (optional) the writer's cloud admission
     "s": SIGNATURE}                    over "tau-kvdb-delta:" || the map without "s"

C{"e"} may be empty only in a delta with C{"wv"} (one that announces a new
writer set).  C{"wv"} and C{"a"} (also allowed in a snapshot root) are how
a database with writers checks who signed (see L{tau.kvdb.writers}).

A **snapshot** is the whole state of a database and the deltas it covers::

    {"t": "tau-kvdb-snapshot/1", "db": NAME, "h": HEIGHT,
     "heads": [[LINK, HEIGHT], ...],   the heads the state is the merge of
     "state": [LINK, ...],             pages {"t": "tau-kvdb-state/1", "e": [[KEY, VALUE|null, H, CID], ...]}
     "covered": [LINK, ...],           pages {"t": "tau-kvdb-covered/1", "d": [[CID, H], ...]}
     "n": ENTRIES, "pk": ..., "s": ...}

An **announcement** (the pubsub payload) is
``{"t": "tau-kvdb-heads/1", "heads": [LINK, ...], "snap": LINK or null,
"b": [BLOCK, ...]}``, C{b} the newest delta blocks when small (up to 32 KiB).
"""

import hashlib

import cbor2
from cbor2 import CBORTag

from tau import cids
from tau.cloud import InvalidAdmission, decodeAdmission
from tau.identity import InvalidKey, PublicKey

DAG_CBOR = 0x71
LINK_TAG = 42

#: Largest block (delta, snapshot page) we make or accept: Bitswap's limit.
MAX_BLOCK = 2 << 20
MAX_KEY = 4096
MAX_VALUE = 1 << 20
MAX_ENTRIES = 10_000
MAX_PARENTS = 256
MAX_NAME = 255
MAX_PAGES = 100_000
MAX_MESSAGE = 64 << 10
#: Bytes of delta blocks an announcement carries at most.
MAX_INLINE = 32 << 10
#: Largest entries of a snapshot state page / covered page (kept under MAX_BLOCK).
PAGE_BYTES = 1 << 20

DELTA = "tau-kvdb-delta/1"
SNAPSHOT = "tau-kvdb-snapshot/1"
STATE_PAGE = "tau-kvdb-state/1"
COVERED_PAGE = "tau-kvdb-covered/1"
HEADS = "tau-kvdb-heads/1"
PUSH = "tau-kvdb-push/1"
PUSHED = "tau-kvdb-pushed/1"

DELTA_CONTEXT = b"tau-kvdb-delta:"
SNAPSHOT_CONTEXT = b"tau-kvdb-snapshot:"


class InvalidBlock(ValueError):
    """
    A block or message that is malformed, not canonical, forged or over a
    limit; the message says which.
    """


# -- DAG-CBOR ------------------------------------------------------------------

def link(cidBytes):
    return CBORTag(LINK_TAG, b"\x00" + bytes(cidBytes))


def unlink(value, what):
    if not isinstance(value, CBORTag) or value.tag != LINK_TAG:
        raise InvalidBlock(f"{what} is not a link")
    raw = value.value
    if not isinstance(raw, bytes) or not raw.startswith(b"\x00"):
        raise InvalidBlock(f"{what} is not a link")
    try:
        cids.cidFromBytes(raw[1:])
    except cids.InvalidCID as e:
        raise InvalidBlock(f"{what}: {e}") from None
    return raw[1:]


def encode(value):
    return cbor2.dumps(value, canonical=True)


def _tag(*args):
    # cbor2 5 calls tag_hook(decoder, tag), cbor2 6 tag_hook(tag, immutable)
    tag = next(a for a in args if isinstance(a, CBORTag))
    if tag.tag != LINK_TAG:
        raise InvalidBlock(f"CBOR tag {tag.tag} is not allowed")
    return tag


def decode(data, limit=MAX_BLOCK):
    """
    Decode canonical DAG-CBOR; anything else raises L{InvalidBlock}.
    """
    if len(data) > limit:
        raise InvalidBlock(f"{len(data)} bytes, limit {limit}")
    try:
        value = cbor2.loads(data, tag_hook=_tag, max_depth=16, allow_indefinite=False, allow_duplicate_keys=False)
    except InvalidBlock:
        raise
    except Exception as e:
        raise InvalidBlock(f"not CBOR: {e}") from None
    try:
        canonical = encode(value)
    except Exception as e:
        raise InvalidBlock(f"not DAG-CBOR: {e}") from None
    if canonical != bytes(data):
        raise InvalidBlock("not canonical DAG-CBOR")
    return value


def cidOf(data):
    """
    The binary CIDv1 (dag-cbor, sha2-256) of a block.
    """
    return b"\x01\x71\x12\x20" + hashlib.sha256(data).digest()


def cidObject(cidBytes):
    return cids.cidFromBytes(cidBytes)


def cidString(cidBytes):
    return cids.cidText(cids.cidFromBytes(cidBytes))


def _map(value, kind, fields):
    if not isinstance(value, dict) or value.get("t") != kind:
        raise InvalidBlock(f"not a {kind} block")
    if set(value) != fields:
        raise InvalidBlock(f"{kind}: fields {sorted(value)}, expected {sorted(fields)}")
    return value


def _int(value, what, low=0, high=1 << 62):
    if type(value) is not int or not low <= value <= high:
        raise InvalidBlock(f"{what} must be a whole number from {low} to {high}")
    return value


def _list(value, what, limit):
    if not isinstance(value, list):
        raise InvalidBlock(f"{what} must be a list")
    if len(value) > limit:
        raise InvalidBlock(f"{what}: {len(value)} items, limit {limit}")
    return value


def checkName(name):
    if not isinstance(name, str) or not 0 < len(name.encode("utf-8")) <= MAX_NAME:
        raise InvalidBlock(f"a database name is 1 to {MAX_NAME} bytes of text")
    if any(ord(ch) < 0x20 for ch in name) or "/" in name:
        raise InvalidBlock("a database name has no control characters and no '/'")
    return name


def checkKey(key):
    if not isinstance(key, bytes) or not 0 < len(key) <= MAX_KEY:
        raise InvalidBlock(f"a key is 1 to {MAX_KEY} bytes")
    return key


def checkValue(value):
    if value is not None and (not isinstance(value, bytes) or len(value) > MAX_VALUE):
        raise InvalidBlock(f"a value is at most {MAX_VALUE} bytes")
    return value


# -- deltas ----------------------------------------------------------------------

class Delta:
    """
    A decoded, verified delta.

    @ivar cid: its binary CID.  @ivar writer: the writer's L{PeerID}.
    @ivar parents: binary CIDs.  @ivar entries: C{[(key, value or None)]}.
    """

    __slots__ = ("cid", "db", "height", "parents", "entries", "writer", "data", "version", "admission")

    def __init__(self, cid, db, height, parents, entries, writer, data, version=None, admission=None):
        self.cid = cid
        self.db = db
        self.height = height
        self.parents = parents
        self.entries = entries
        self.writer = writer
        self.data = data
        #: the writer set it writes under (binary CID), None: the genesis's
        self.version = version
        #: the writer's L{tau.cloud.Admission}, or None
        self.admission = admission

    def __repr__(self):
        return f"<Delta {cidString(self.cid)} {self.db!r} h={self.height} {len(self.entries)} entries>"


def _authorityFields(body, version, admission):
    if version is not None:
        body["wv"] = link(version)
    if admission is not None:
        body["a"] = bytes(admission)


def decodeAuthority(value, what):
    """
    The optional C{"wv"} and C{"a"} fields: C{(version CID or None,
    Admission or None)}.
    """
    version = unlink(value["wv"], f"{what} writer set") if "wv" in value else None
    admission = None
    if "a" in value:
        try:
            admission = decodeAdmission(value["a"])
        except InvalidAdmission as e:
            raise InvalidBlock(f"{what}: admission: {e}") from None
    return version, admission


def checkFields(value, kind, required, optional=frozenset({"wv", "a"})):
    if not isinstance(value, dict) or value.get("t") != kind:
        raise InvalidBlock(f"not a {kind} block")
    if not required <= set(value) <= required | optional:
        raise InvalidBlock(f"{kind}: fields {sorted(value)}, expected {sorted(required)} and maybe {sorted(optional)}")
    return value


def makeDelta(key, db, height, parents, entries, version=None, admission=None):
    """
    Sign and encode a delta; C{entries} is C{[(key, value or None)]} with
    unique keys (none only with C{version}).

    @param version: the binary CID of the writer set it writes under (see
        L{tau.kvdb.writers}), or None.
    @param admission: the writer's encoded cloud admission, or None.

    @return: a L{Delta} (C{.data} the block bytes, C{.cid} its CID).
    @raise InvalidBlock: when it breaks a limit.
    """
    checkName(db)
    entries = sorted(((checkKey(k), checkValue(v)) for k, v in entries), key=lambda e: e[0])
    if (not entries and version is None) or len(entries) > MAX_ENTRIES:
        raise InvalidBlock(f"a delta has 1 to {MAX_ENTRIES} entries")
    if any(a[0] == b[0] for a, b in zip(entries, entries[1:])):
        raise InvalidBlock("a key appears twice in one write")
    parents = sorted(set(parents))
    if len(parents) > MAX_PARENTS:
        raise InvalidBlock(f"more than {MAX_PARENTS} parents")
    body = {
        "t": DELTA,
        "db": db,
        "h": height,
        "p": [link(p) for p in parents],
        "e": [[k, v] for k, v in entries],
        "pk": key.publicKey().toProtobuf(),
    }
    _authorityFields(body, version, admission)
    body["s"] = key.sign(DELTA_CONTEXT + encode(body))
    data = encode(body)
    if len(data) > MAX_BLOCK:
        raise InvalidBlock(f"the write is {len(data)} bytes encoded, limit {MAX_BLOCK}")
    return Delta(cidOf(data), db, height, parents, entries, key.peerID(), data, version, admission and decodeAdmission(bytes(admission)))


def verifySigner(value, context, what, verify=True):
    signature = value.pop("s")
    if not isinstance(signature, bytes) or len(signature) > 1024:
        raise InvalidBlock(f"{what}: bad signature field")
    if not isinstance(value["pk"], bytes):
        raise InvalidBlock(f"{what}: bad public key field")
    try:
        publicKey = PublicKey.fromProtobuf(value["pk"])
    except InvalidKey as e:
        raise InvalidBlock(f"{what}: {e}") from None
    if verify and not publicKey.verify(signature, context + encode(value)):
        raise InvalidBlock(f"{what}: bad signature")
    return publicKey.peerID()


def decodeDelta(cid, data, db=None, verify=True):
    """
    Check that C{data} is the block C{cid} (hash), a well-formed delta (of
    database C{db} when given) and signed by the key it carries.

    @param verify: False to skip the signature check, for a block whose
        signature was checked before it was stored (the block store checks
        the hash on every read, so the bytes are the same).
    @raise InvalidBlock: otherwise.
    """
    if cidOf(data) != bytes(cid):
        raise InvalidBlock("the block does not hash to its CID")
    value = checkFields(decode(data), DELTA, {"t", "db", "h", "p", "e", "pk", "s"})
    name = checkName(value["db"]) if isinstance(value["db"], str) else checkName(None)
    if db is not None and name != db:
        raise InvalidBlock(f"a delta of database {name!r}, expected {db!r}")
    height = _int(value["h"], "height", 1)
    parents = [unlink(p, "parent") for p in _list(value["p"], "parents", MAX_PARENTS)]
    if parents != sorted(set(parents)):
        raise InvalidBlock("parents are not sorted and unique")
    if (height == 1) != (not parents):
        raise InvalidBlock("height 1 and only height 1 has no parents")
    entries = []
    for item in _list(value["e"], "entries", MAX_ENTRIES):
        if not isinstance(item, list) or len(item) != 2:
            raise InvalidBlock("an entry is [key, value]")
        try:
            entries.append((checkKey(item[0]), checkValue(item[1])))
        except InvalidBlock as e:
            raise InvalidBlock(f"entry: {e}") from None
    if (not entries and "wv" not in value) or any(a[0] >= b[0] for a, b in zip(entries, entries[1:])):
        raise InvalidBlock("entries are empty or not sorted and unique by key")
    version, admission = decodeAuthority(value, "delta")
    writer = verifySigner(value, DELTA_CONTEXT, "delta", verify)
    return Delta(bytes(cid), name, height, parents, entries, writer, bytes(data), version, admission)


# -- snapshots -------------------------------------------------------------------

class Snapshot:
    __slots__ = ("cid", "db", "height", "heads", "state", "covered", "count", "writer", "version", "admission")

    def __init__(self, cid, db, height, heads, state, covered, count, writer, version=None, admission=None):
        self.version = version
        self.admission = admission
        self.cid = cid
        self.db = db
        self.height = height
        self.heads = heads
        self.state = state
        self.covered = covered
        self.count = count
        self.writer = writer


def _pages(items, kind, field, size):
    """
    Encode C{items} into pages of about C{PAGE_BYTES}: C{[(cid, data)]}.
    """
    pages, current, used = [], [], 0
    for item in items:
        n = size(item)
        if current and used + n > PAGE_BYTES:
            pages.append(current)
            current, used = [], 0
        current.append(item)
        used += n
    if current:
        pages.append(current)
    out = []
    for page in pages:
        data = encode({"t": kind, field: page})
        out.append((cidOf(data), data))
    return out


def makeSnapshot(key, db, heads, state, covered, version=None, admission=None):
    """
    The blocks of a snapshot: C{heads} C{[(cid, height)]}, C{state}
    C{[(key, value|None, height, cid)]} sorted by key, C{covered}
    C{[(cid, height)]}.

    @return: C{(rootCID, [(cid, data), ...])}, the root last.
    """
    checkName(db)
    statePages = _pages(([k, v, h, c] for k, v, h, c in state), STATE_PAGE, "e", lambda e: len(e[0]) + len(e[1] or b"") + 64)
    coveredPages = _pages(([c, h] for c, h in covered), COVERED_PAGE, "d", lambda e: 48)
    if len(statePages) > MAX_PAGES or len(coveredPages) > MAX_PAGES:
        raise InvalidBlock("the database is too large to snapshot")
    heads = sorted(heads)
    body = {
        "t": SNAPSHOT,
        "db": db,
        "h": max((h for _, h in heads), default=0),
        "heads": [[link(c), h] for c, h in heads],
        "state": [link(c) for c, _ in statePages],
        "covered": [link(c) for c, _ in coveredPages],
        "n": len(state),
        "pk": key.publicKey().toProtobuf(),
    }
    _authorityFields(body, version, admission)
    body["s"] = key.sign(SNAPSHOT_CONTEXT + encode(body))
    data = encode(body)
    if len(data) > MAX_BLOCK:
        raise InvalidBlock("the snapshot root is too large")
    root = cidOf(data)
    return root, statePages + coveredPages + [(root, data)]


def decodeSnapshot(cid, data, db):
    if cidOf(data) != bytes(cid):
        raise InvalidBlock("the block does not hash to its CID")
    value = checkFields(decode(data), SNAPSHOT, {"t", "db", "h", "heads", "state", "covered", "n", "pk", "s"})
    if value["db"] != db:
        raise InvalidBlock(f"a snapshot of database {value['db']!r}, expected {db!r}")
    heads = []
    for item in _list(value["heads"], "heads", MAX_PARENTS):
        if not isinstance(item, list) or len(item) != 2:
            raise InvalidBlock("a snapshot head is [link, height]")
        heads.append((unlink(item[0], "head"), _int(item[1], "head height", 1)))
    height = _int(value["h"], "height")
    if height != max((h for _, h in heads), default=0):
        raise InvalidBlock("snapshot height is not its highest head's")
    state = [unlink(p, "state page") for p in _list(value["state"], "state pages", MAX_PAGES)]
    covered = [unlink(p, "covered page") for p in _list(value["covered"], "covered pages", MAX_PAGES)]
    count = _int(value["n"], "entry count")
    version, admission = decodeAuthority(value, "snapshot")
    writer = verifySigner(value, SNAPSHOT_CONTEXT, "snapshot")
    return Snapshot(bytes(cid), db, height, heads, state, covered, count, writer, version, admission)


def decodeStatePage(cid, data):
    if cidOf(data) != bytes(cid):
        raise InvalidBlock("the block does not hash to its CID")
    value = _map(decode(data), STATE_PAGE, {"t", "e"})
    out = []
    for item in _list(value["e"], "state entries", PAGE_BYTES):
        if not isinstance(item, list) or len(item) != 4:
            raise InvalidBlock("a state entry is [key, value, height, cid]")
        k, v, h, c = item
        checkKey(k)
        checkValue(v)
        _int(h, "entry height", 1)
        if not isinstance(c, bytes):
            raise InvalidBlock("a state entry's CID is bytes")
        out.append((k, v, h, c))
    return out


def decodeCoveredPage(cid, data):
    if cidOf(data) != bytes(cid):
        raise InvalidBlock("the block does not hash to its CID")
    value = _map(decode(data), COVERED_PAGE, {"t", "d"})
    out = []
    for item in _list(value["d"], "covered deltas", PAGE_BYTES):
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], bytes):
            raise InvalidBlock("a covered delta is [cid, height]")
        out.append((item[0], _int(item[1], "covered height", 1)))
    return out


# -- messages --------------------------------------------------------------------

def encodeHeads(heads, snapshot=None, blocks=()):
    """
    The announcement; C{blocks} are small delta blocks sent along (the
    newest writes), so receivers need not fetch them: each is checked
    like a fetched one (its CID is the hash of its bytes).
    """
    heads = sorted(heads)[:MAX_PARENTS]
    inline, used = [], 0
    for data in blocks:
        if used + len(data) > MAX_INLINE:
            break
        inline.append(bytes(data))
        used += len(data)
    return encode({"t": HEADS, "heads": [link(c) for c in heads], "snap": None if snapshot is None else link(snapshot), "b": inline})


def decodeHeads(data):
    """
    @return: C{(heads, snapshot or None, {cid: block})}.
    """
    value = _map(decode(data, MAX_MESSAGE), HEADS, {"t", "heads", "snap", "b"})
    heads = [unlink(c, "head") for c in _list(value["heads"], "heads", MAX_PARENTS)]
    snap = None if value["snap"] is None else unlink(value["snap"], "snapshot")
    blocks = {}
    for block in _list(value["b"], "blocks", MAX_PARENTS):
        if not isinstance(block, bytes):
            raise InvalidBlock("an inline block is bytes")
        blocks[cidOf(block)] = block
    return heads, snap, blocks


def encodePush(db, heads, admission=None):
    """
    A push; C{admission} (the pusher's encoded cloud admission) is sent
    along when the pusher is a writer through its cloud.
    """
    body = {"t": PUSH, "db": db, "heads": [link(c) for c in sorted(heads)[:MAX_PARENTS]]}
    _authorityFields(body, None, admission)
    return encode(body)


def decodePush(data):
    """
    @return: C{(db, heads, Admission or None)}.
    """
    value = checkFields(decode(data, MAX_MESSAGE), PUSH, {"t", "db", "heads"}, frozenset({"a"}))
    db = checkName(value["db"]) if isinstance(value["db"], str) else checkName(None)
    _, admission = decodeAuthority(value, "push")
    return db, [unlink(c, "head") for c in _list(value["heads"], "heads", MAX_PARENTS)], admission


def encodePushed(ok, error=""):
    return encode({"t": PUSHED, "ok": bool(ok), "err": str(error)[:200]})


def decodePushed(data):
    value = _map(decode(data, MAX_MESSAGE), PUSHED, {"t", "ok", "err"})
    if not isinstance(value["ok"], bool) or not isinstance(value["err"], str):
        raise InvalidBlock("bad push answer")
    return value["ok"], value["err"]
