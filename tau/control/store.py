"""
Control API commands for stored data: add, cat, get, ls, pin, repo.  Each
translates a request onto the node's content service (L{IContent}) and its
answer (or typed error, mapped to a status in L{_guard}) back.
"""

from tau.control.intake import storeFull
from tau.control.routes import APIError, BodyStream, argument, command
from tau.store import content as _content
from tau.store.unixfs import cidText

#: Most entries in a folder added through the API (a tar stream, add/dir).
MAX_DIRECTORY_ENTRIES = _content.MAX_DIRECTORY_ENTRIES
#: Largest add/dir body read, in bytes.
MAX_DIRECTORY_JSON = 16 << 20


def _contentOf(node):
    if node.content is None:
        raise APIError("this node keeps no block store", status=503)
    return node.content


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


def _timeout(args):
    return _number(args, "timeout", _content.DEFAULT_TIMEOUT, 0.1, 600)


async def _guard(what, coroutine):
    """
    Await C{coroutine}; the content service's errors become the API's
    statuses.
    """
    try:
        return await coroutine
    except _content.NotFound as e:
        raise APIError(f"{what}: {e}", status=404) from None
    except _content.NotInTime as e:
        raise APIError(f"{what}: {e}", status=504) from None
    except _content.StoreFull as e:
        raise APIError(storeFull(what, e), status=507) from None
    except _content.BadInput as e:
        raise APIError(f"{what}: {e}") from None


@command("add", body=True)
async def add(node, args, body):
    """
    Import the request body as one UnixFS file; pinned unless pin=false.
    """
    content = _contentOf(node)
    entry = await _guard("add", content.add(
        body, pin=_flag(args, "pin", True), chunker=argument(args, "chunker", required=False)))
    return {"Hash": cidText(entry.cid), "Size": entry.filesize, "CumulativeSize": entry.size}


@command("add/tar", body=True)
async def addTar(node, args, body):
    """
    Import a folder sent as one tar stream (regular files and folders;
    relative paths), in one write batch: every file and the folder are
    durable, and the folder pinned unless pin=false, once this answers.
    The answer names each file's CID (C{Entries}, in the stream's order)
    and the folder's (C{Hash}).
    """
    content = _contentOf(node)
    files: dict = {}   # path -> CID text, in the stream's order

    def added(path, entry):
        files[path] = cidText(entry.cid)
    root = await _guard("add", content.addTar(
        body, pin=_flag(args, "pin", True), chunker=argument(args, "chunker", required=False),
        onFile=added, maxEntries=MAX_DIRECTORY_ENTRIES))
    return {"Hash": cidText(root.cid), "CumulativeSize": root.size,
            "Entries": [{"Name": path, "Hash": cid} for path, cid in files.items()]}


@command("add/dir", body=True)
async def addDirectory(node, args, body):
    """
    A directory over nodes already stored: the body is JSON
    C{{"entries": {"path/in/dir": "CID", ...}}}; each name of a path is
    one safe path component (L{tau.store.unixfsread.safeName}).
    """
    content = _contentOf(node)
    root = await _guard("add/dir", content.addDirectoryJSON(
        body.read(MAX_DIRECTORY_JSON), pin=_flag(args, "pin", True), maxEntries=MAX_DIRECTORY_ENTRIES))
    return {"Hash": cidText(root.cid), "CumulativeSize": root.size}


@command("cat")
async def cat(node, args):
    """
    The bytes of a file, streamed; C{offset} and C{length} select a range.
    A CID found neither here nor from peers fails after C{timeout} seconds.
    """
    content = _contentOf(node)
    arg = argument(args)
    offset = int(_number(args, "offset", 0, 0, 1 << 62))
    length = argument(args, "length", required=False)
    length = None if length is None else int(_number(args, "length", 0, 0, 1 << 62))
    return BodyStream(await _guard(f"cat {arg}", content.cat(arg, offset, length, timeout=_timeout(args))))


@command("get")
async def get(node, args):
    """
    A file or a folder as a tar stream, as kubo's C{get} answers: the
    top entry is named after the CID, a folder's entries below it
    ("CID/a/b").  A CID found neither here nor from peers fails after
    C{timeout} seconds; a problem found later (an unsafe name, a block
    nobody has) cuts the stream short.
    """
    content = _contentOf(node)
    arg = argument(args)
    archive = await _guard(f"get {arg}", content.get(arg, timeout=_timeout(args)))
    return BodyStream(archive, contentType=b"application/x-tar")


@command("ls")
async def ls(node, args):
    content = _contentOf(node)
    arg = argument(args)
    entries = await _guard(f"ls {arg}", content.ls(arg, timeout=_timeout(args)))
    return {"Links": [{"Name": name, "Hash": cidText(child), "Size": size} for name, child, size in entries]}


@command("pin/add")
async def pinAdd(node, args):
    content = _contentOf(node)
    arg = argument(args)
    count = await _guard(f"pin {arg}", content.pin(arg))
    return {"Pins": [cidText(_content.parse(arg))], "Blocks": count}


@command("pin/rm")
async def pinRemove(node, args):
    content = _contentOf(node)
    arg = argument(args)
    await _guard(f"pin rm {arg}", content.unpin(arg))
    return {"Pins": [cidText(_content.parse(arg))]}


@command("pin/ls")
async def pinList(node, args):
    content = _contentOf(node)
    return {"Keys": sorted(cidText(c) for c in await content.pins())}


@command("repo/gc")
async def repoGC(node, args):
    content = _contentOf(node)
    budget = argument(args, "budget", required=False)
    budget = None if budget is None else int(_number(args, "budget", 0, 0, 1 << 62))
    removed, freed = await content.gc(budget)
    return {"Removed": removed, "Freed": freed}


@command("repo/stat")
async def repoStat(node, args):
    content = _contentOf(node)
    stat = await content.stat()
    return {"NumObjects": stat["blocks"], "RepoSize": stat["bytes"], "Pinned": stat["pinned"],
            "RepoPath": str(node.config.dataDir / "blocks")}
