"""
Control API commands of the replicated key/value store: kv/put, kv/get,
kv/delete, kv/list, kv/dbs, kv/create, kv/writers.  Keys are text (UTF-8)
here; values are bytes.
"""

from tau.configsection import parseSize
from tau.control.routes import APIError, BodyStream, argument, command
from tau.control.store import _number
from tau.kvdb import codec
from tau.kvdb.service import ReplicationTimeout
from tau.kvdb.writers import NodeWriter, NotAWriter, parseWriter


def _kvdb(node):
    if getattr(node, "kvdb", None) is None or not node.kvdb.running:
        raise APIError("this node keeps no key/value store", status=503)
    return node.kvdb


def _dbAndKey(args, withKey=True):
    values = args.get("arg", [])
    want = 2 if withKey else 1
    if len(values) != want:
        raise APIError("expected the arguments DB KEY" if withKey else "expected the argument DB")
    try:
        codec.checkName(values[0])
        if withKey:
            codec.checkKey(values[1].encode("utf-8"))
    except codec.InvalidBlock as e:
        raise APIError(str(e)) from None
    return values if withKey else (values[0], None)


def _keyText(key):
    return key.decode("utf-8", errors="backslashreplace")


async def _write(node, args, value):
    kvdb = _kvdb(node)
    db, key = _dbAndKey(args)
    replicas = int(_number(args, "replicas", 1, 1, 100))
    timeout = _number(args, "timeout", 30, 0.1, 600)
    try:
        delta, confirmed = await kvdb.write(db, [(key, value)], replicas, timeout)
    except ReplicationTimeout as e:
        raise APIError(f"{db}/{key}: {e}", status=504) from None
    except NotAWriter as e:
        raise APIError(f"{db}/{key}: {e}", status=403) from None
    except codec.InvalidBlock as e:
        raise APIError(str(e)) from None
    return {"Database": db, "Key": key, "Delta": codec.cidString(delta.cid), "Height": delta.height, "Replicas": confirmed}


@command("kv/put", body=True)
async def put(node, args, body):
    """
    Set KEY of DB to the request body; C{replicas=N} waits until N nodes
    (this one included) hold the write.
    """
    value = body.read(codec.MAX_VALUE + 1)
    if len(value) > codec.MAX_VALUE:
        raise APIError(f"a value is at most {codec.MAX_VALUE} bytes")
    return await _write(node, args, value)


@command("kv/delete")
async def delete(node, args):
    return await _write(node, args, None)


@command("kv/get")
async def get(node, args):
    """
    The value of KEY in DB, as bytes; 404 when it is not set.
    """
    kvdb = _kvdb(node)
    db, key = _dbAndKey(args)
    value = await kvdb.get(db, key)
    if value is None:
        raise APIError(f"{db}/{key}: no such key", status=404)

    async def body():
        yield value

    return BodyStream(body())


@command("kv/list")
async def listKeys(node, args):
    """
    The keys of DB starting with C{prefix}, in byte order (C{limit} of them
    at most).
    """
    kvdb = _kvdb(node)
    db, _ = _dbAndKey(args, withKey=False)
    prefix = argument(args, "prefix", required=False) or ""
    limit = _number(args, "limit", None, 1, 1 << 40)
    keys = await kvdb.list(db, prefix.encode("utf-8"), None if limit is None else int(limit))
    return {"Database": db, "Keys": [_keyText(k) for k in keys]}


@command("kv/dbs")
async def databases(node, args):
    kvdb = _kvdb(node)
    out = []
    for name in kvdb.databases():
        replica = kvdb.replicas[name]
        out.append(
            {
                "Name": name,
                "Heads": sorted(codec.cidString(c) for c in replica.heads),
                "Height": max(replica.heads.values(), default=0),
                "Snapshot": None if replica.snapshotCID is None else codec.cidString(replica.snapshotCID),
            }
        )
    return {"Databases": out}


def _writers(args, name):
    try:
        return [parseWriter(text) for text in args.get(name, [])]
    except ValueError as e:
        raise APIError(str(e)) from None


def _writersAnswer(db, writers):
    return {"Database": db, "Open": writers is None, "Writers": None if writers is None else sorted(str(w) for w in writers)}


@command("kv/create")
async def create(node, args):
    """
    Create the database NAME whose writers are the C{writer} arguments
    (PeerIds, or cloud:CLOUD-PEERID/SERVICE) and this node (unless
    C{self=false}), each allowed C{quota} bytes (default: the config's
    kvdb.writer-quota); answers its full name, NAME@GENESIS.
    """
    kvdb = _kvdb(node)
    name, _ = _dbAndKey(args, withKey=False)
    writers = _writers(args, "writer")
    if (argument(args, "self", required=False) or "true") != "false":
        writers.append(NodeWriter(node.host.peerID))
    quota = argument(args, "quota", required=False)
    try:
        quota = None if quota is None else parseSize(quota)
        replica = await kvdb.create(name, writers, quota)
    except (ValueError, codec.InvalidBlock) as e:
        raise APIError(str(e)) from None
    return _writersAnswer(replica.name, await kvdb.writersOf(replica.name)) | {"Quota": replica.quota}


@command("kv/writers")
async def showWriters(node, args):
    """
    The writers of DB known here (C{Open}: anyone may write); each C{add}
    argument is added first (this node must be a writer).
    """
    kvdb = _kvdb(node)
    db, _ = _dbAndKey(args, withKey=False)
    added = _writers(args, "add")
    try:
        if added:
            await kvdb.addWriters(db, added)
        writers = await kvdb.writersOf(db)
    except NotAWriter as e:
        raise APIError(f"{db}: {e}", status=403) from None
    except codec.InvalidBlock as e:
        raise APIError(f"{db}: {e}") from None
    replica = kvdb.replicas[db]
    return _writersAnswer(db, writers) | {"Quota": replica.quota}
