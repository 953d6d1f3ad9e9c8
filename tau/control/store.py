"""
Control API commands for stored data: add, cat, get, ls, pin, repo.
"""

import json
import tarfile

from google.protobuf.message import DecodeError

from twisted.internet.error import TimeoutError
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from tau import tarstream
from tau.bitswap.client import FetchTimeout
from tau.control.intake import storeFull
from tau.control.routes import APIError, BodyStream, argument, command
from tau.store import unixfs
from tau.store.blockstore import BadBlock, StoreFull
from tau.store.chunker import Buzhash, FixedSize
from tau.store.service import NetworkBlocks
from tau.streams import withTimeout

MAX_DIRECTORY_ENTRIES = 100_000
_log = Logger()


def _store(node):
    if node.store is None:
        raise APIError("this node keeps no block store", status=503)
    return node.store


def _cid(args, name="arg"):
    text = argument(args, name)
    try:
        return unixfs._parse(text.split("/ipfs/")[-1].strip("/"))
    except Exception:
        raise APIError(f"{text!r} is not a CID") from None


def _flag(args, name, default):
    value = argument(args, name, required=False)
    if value is None:
        return default
    if value not in ("true", "false"):
        raise APIError(f"{name} must be true or false")
    return value == "true"


def _number(args, name, default, low, high):
    value = argument(args, name, required=False)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise APIError(f"{name} must be a number") from None
    if not low <= number <= high:
        raise APIError(f"{name} must be between {low} and {high}")
    return number


def _params(args):
    chunker = argument(args, "chunker", required=False) or "size-262144"
    if chunker == "buzhash":
        return unixfs.Params(chunker=Buzhash())
    if chunker.startswith("size-") and chunker[5:].isdigit() and 1024 <= int(chunker[5:]) <= 1 << 20:
        return unixfs.Params(chunker=FixedSize(int(chunker[5:])))
    raise APIError("chunker must be size-N (1024 <= N <= 1048576) or buzhash")


async def _guard(what, coroutine):
    try:
        return await coroutine
    except unixfs.BlockMissing as e:
        raise APIError(f"{what}: block {e} not found", status=404) from None
    except TimeoutError:
        raise APIError(f"{what}: not found in time (no peer sent it)", status=504) from None
    except FetchTimeout as e:
        raise APIError(f"{what}: {e}", status=504) from None
    except StoreFull as e:
        raise APIError(storeFull(what, e), status=507) from None
    except (unixfs.NotAFile, unixfs.BadShard, BadBlock, ValueError) as e:
        raise APIError(f"{what}: {e}") from None
    except DecodeError:
        raise APIError(f"{what}: not a UnixFS node") from None


def _announce(node, cid):
    """
    Tell peers waiting for C{cid} that we have it, and provide it in the
    DHT, in the background (a slow DHT must not hold up an add).
    """
    if node.bitswap is not None:
        node.bitswap.notifyNewBlocks([cid])
    if node.dht is not None:
        d = node.dht.provide(bytes(cid.multihash))
        d.addErrback(lambda f: _log.info("providing {cid} failed: {why}", cid=unixfs.cidText(cid), why=f.getErrorMessage()))


@command("add", body=True)
async def add(node, args, body):
    """
    Import the request body as one UnixFS file; pinned unless pin=false.
    """
    store = _store(node)
    entry = await _guard(
        "add",
        unixfs.importFile(store.blocks, body, node.reactor, params=_params(args), pin=_flag(args, "pin", True)),
    )
    _announce(node, entry.cid)
    return {"Hash": unixfs.cidText(entry.cid), "Size": entry.filesize, "CumulativeSize": entry.size}


#: Longest path (in UTF-8 bytes) and name accepted in a tar stream.
MAX_TAR_PATH = 4096
MAX_TAR_NAME = 255


def _tarPath(member) -> str:
    """
    A tar member's path, as a relative "/"-separated path ("" for the top
    folder itself, as in C{tar -C DIR -c .}); APIError when unsafe.
    """
    name = member.name
    parts = [x for x in name.split("/") if x not in ("", ".")]
    if (not (parts or member.isdir()) or name.startswith("/") or len(name.encode("utf-8")) > MAX_TAR_PATH
            or not all(unixfs.safeName(x) and len(x.encode("utf-8")) <= MAX_TAR_NAME for x in parts)):
        raise APIError(f"refusing the path {name[:200]!r} in the tar stream")
    return "/".join(parts)


async def _tarEntries(node, body):
    """
    The (path, file object or None for a folder) entries of the tar stream
    ``body``, read in worker threads; each file's object must be read to
    its end before the next entry is asked for.  Regular files and folders
    only; at most MAX_DIRECTORY_ENTRIES entries.
    """
    def inThread(f, *a):
        return deferToThreadPool(node.reactor, node.reactor.getThreadPool(), f, *a)

    def nextEntries():
        """
        The next entries, many per thread hop: small files read already,
        up to a big one (streamed by the importer) or the end (None).
        """
        out, got = [], 0
        while len(out) < 256 and got < unixfs.SMALL_FILE:
            member = archive.next()
            if member is not None and member.isreg() and member.size <= unixfs.SMALL_FILE:
                out.append((member, archive.extractfile(member).read()))
                got += member.size
            else:
                out.append((member, None))
                if member is None or not member.isdir():
                    break
        return out
    try:
        archive = await inThread(lambda: tarfile.open(fileobj=body, mode="r|"))
        count = 0
        while True:
            for member, data in await inThread(nextEntries):
                if member is None:
                    return
                count += 1
                if count > MAX_DIRECTORY_ENTRIES:
                    raise APIError(f"more than {MAX_DIRECTORY_ENTRIES} entries in the tar stream")
                path = _tarPath(member)
                if member.isdir():
                    if path:
                        yield path, None
                elif member.isreg():
                    yield path, archive.extractfile(member) if data is None else data
                else:
                    raise APIError(f"{path}: only files and folders can be added (not links or devices)")
    except (tarfile.TarError, EOFError) as e:
        raise APIError(f"not a valid tar stream: {e}") from None


@command("add/tar", body=True)
async def addTar(node, args, body):
    """
    Import a folder sent as one tar stream (regular files and folders;
    relative paths), in one write batch: every file and the folder are
    durable, and the folder pinned unless pin=false, once this answers.
    The answer names each file's CID (C{Entries}, in the stream's order)
    and the folder's (C{Hash}).
    """
    store = _store(node)
    files: dict = {}   # path -> CID text, in the stream's order

    def added(path, entry):
        files[path] = unixfs.cidText(entry.cid)
    try:
        root = await _guard("add", unixfs.importDirectory(
            store.blocks, _tarEntries(node, body), node.reactor, params=_params(args),
            pin=_flag(args, "pin", True), onFile=added))
    except (tarfile.TarError, EOFError) as e:   # cut short inside a file
        raise APIError(f"not a valid tar stream: {e}") from None
    _announce(node, root.cid)
    return {"Hash": unixfs.cidText(root.cid), "CumulativeSize": root.size,
            "Entries": [{"Name": path, "Hash": cid} for path, cid in files.items()]}


@command("add/dir", body=True)
async def addDirectory(node, args, body):
    """
    A directory over nodes already stored: the body is JSON
    C{{"entries": {"path/in/dir": "CID", ...}}}; each name of a path is
    one safe path component (L{unixfs.safeName}).
    """
    store = _store(node)
    try:
        given = json.loads(body.read(16 << 20))["entries"]
        if not isinstance(given, dict) or len(given) > MAX_DIRECTORY_ENTRIES:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise APIError('expected a JSON body {"entries": {"path": "CID", ...}}') from None
    entries = {}
    for path, text in given.items():
        if not all(unixfs.safeName(name) for name in path.split("/")):
            raise APIError(f"refusing the path {path[:200]!r}: every name must be a single path component "
                           "(not empty, '.' or '..', no NUL)")
        entries[path] = await _guard(path, unixfs.entryOf(store.blocks, unixfs._parse(text)))
    root = await _guard("add/dir", unixfs.buildDirectory(store.blocks, entries, reactor=node.reactor))
    if _flag(args, "pin", True):
        await unixfs.pinRecursive(store.blocks, root.cid)
    _announce(node, root.cid)
    return {"Hash": unixfs.cidText(root.cid), "CumulativeSize": root.size}


@command("cat")
async def cat(node, args):
    """
    The bytes of a file, streamed; C{offset} and C{length} select a range.
    A CID found neither here nor from peers fails after C{timeout} seconds.
    """
    store = _store(node)
    c = _cid(args)
    offset = int(_number(args, "offset", 0, 0, 1 << 62))
    length = argument(args, "length", required=False)
    length = None if length is None else int(_number(args, "length", 0, 0, 1 << 62))
    timeout = _number(args, "timeout", 60, 0.1, 600)
    chunks = unixfs.cat(NetworkBlocks(store), c, offset, length).__aiter__()

    async def first():
        try:
            return await chunks.__anext__()
        except StopAsyncIteration:
            return b""

    head = await _guard(f"cat {unixfs.cidText(c)}", withTimeout(node.reactor, timeout, first()))

    async def rest():
        if head:
            yield head
        async for chunk in chunks:
            yield chunk

    return BodyStream(rest())


@command("get")
async def get(node, args):
    """
    A file or a folder as a tar stream, as kubo's C{get} answers: the
    top entry is named after the CID, a folder's entries below it
    ("CID/a/b").  A CID found neither here nor from peers fails after
    C{timeout} seconds; a problem found later (an unsafe name, a block
    nobody has) cuts the stream short.
    """
    store = NetworkBlocks(_store(node))
    c = _cid(args)
    timeout = _number(args, "timeout", 60, 0.1, 600)
    name = unixfs.cidText(c)
    entries = unixfs.tree(store, c).__aiter__()
    head = await _guard(f"get {name}", withTimeout(node.reactor, timeout, entries.__anext__()))

    async def archive():
        entry = head
        while entry is not None:
            path, child, size = entry
            full = f"{name}/{path}" if path else name
            yield tarstream.header(full, size)
            if size is not None:
                sent = 0
                async for chunk in unixfs.cat(store, child):
                    sent += len(chunk)
                    if sent > size:
                        break
                    yield chunk
                if sent != size:
                    raise unixfs.NotAFile(f"{full}: {sent} bytes where the file says {size}")
                yield tarstream.padding(size)
            entry = await anext(entries, None)
        yield tarstream.END

    return BodyStream(archive(), contentType=b"application/x-tar")


@command("ls")
async def ls(node, args):
    store = _store(node)
    c = _cid(args)
    timeout = _number(args, "timeout", 60, 0.1, 600)
    entries = await _guard(f"ls {unixfs.cidText(c)}", withTimeout(node.reactor, timeout, unixfs.ls(NetworkBlocks(store), c)))
    return {"Links": [{"Name": name, "Hash": unixfs.cidText(child), "Size": size} for name, child, size in entries]}


@command("pin/add")
async def pinAdd(node, args):
    store = _store(node)
    c = _cid(args)
    count = await _guard(f"pin {unixfs.cidText(c)}", unixfs.pinRecursive(NetworkBlocks(store), c))
    return {"Pins": [unixfs.cidText(c)], "Blocks": count}


@command("pin/rm")
async def pinRemove(node, args):
    store = _store(node)
    c = _cid(args)
    if c not in await store.blocks.pins():
        raise APIError(f"{unixfs.cidText(c)} is not pinned")
    await unixfs.unpinRecursive(store.blocks, c)
    return {"Pins": [unixfs.cidText(c)]}


@command("pin/ls")
async def pinList(node, args):
    store = _store(node)
    return {"Keys": sorted(unixfs.cidText(c) for c in await store.blocks.pins())}


@command("repo/gc")
async def repoGC(node, args):
    store = _store(node)
    budget = argument(args, "budget", required=False)
    budget = None if budget is None else int(_number(args, "budget", 0, 0, 1 << 62))
    removed, freed = await store.blocks.gc(budget)
    return {"Removed": removed, "Freed": freed}


@command("repo/stat")
async def repoStat(node, args):
    store = _store(node)
    stat = await store.blocks.stat()
    return {"NumObjects": stat["blocks"], "RepoSize": stat["bytes"], "Pinned": stat["pinned"], "RepoPath": str(node.config.dataDir / "blocks")}
