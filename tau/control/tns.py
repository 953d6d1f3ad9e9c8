"""
Control API commands of tns: tns/push (compile a project config folder and
publish it), tns/asset (store a resource's build and publish its CID),
tns/fetch, tns/lookup.

They reach tns through the node's tns client, L{tnsClient}: the one place
the control API gets it from.
"""

import base64
import os
from pathlib import Path

from twisted.internet.threads import deferToThreadPool

from tau.control.routes import APIError, argument, command
from tau.control.store import MAX_DIRECTORY_ENTRIES, _contentOf, _guard
from tau.project import DEFAULT_BRANCH, ProjectErrors, compileInThread
from tau.project.indexes import assetKey
from tau.store.unixfs import TooManyEntries, cidText, folderEntries
from tau.services.commands import RemoteError
from tau.services.framework import ServiceError
from tau.services.tns.paths import PathError


def tnsClient(node):
    """
    The node's L{tau.services.tns.client.TNSClient} (C{node.tnsClient}:
    one on the local service where the node runs tns, else one that finds
    tns nodes in the network).

    @raise APIError: when the node has none.
    """
    client = getattr(node, "tnsClient", None)
    if client is None:
        raise APIError("this node has no tns client", status=503)
    return client


def _json(value):
    """
    C{value} as JSON can hold it: bytes as C{{"bytes": base64}}.
    """
    if isinstance(value, bytes):
        return {"bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value


def _path(text):
    return [s for s in (text or "").split("/") if s]


async def _ask(coroutine):
    try:
        return await coroutine
    except (RemoteError, PathError) as e:
        raise APIError(f"tns: {e}") from None
    except ServiceError as e:
        raise APIError(f"tns: {e}", status=502) from None


@command("tns/push")
async def push(node, args):
    """
    Compile the project config folder C{arg} (on the node's machine) for
    C{branch} and publish it to tns as C{commit}.
    """
    folder = argument(args)
    commit = argument(args, "commit")
    branch = argument(args, "branch", required=False) or DEFAULT_BRANCH
    cloud = getattr(node.config, "networkFqdn", "") or None
    try:
        compiled = await compileInThread(node.reactor, folder, branch, cloud)
    except ProjectErrors as e:
        raise APIError("\n".join(str(error) for error in e.errors)) from None
    except OSError as e:
        raise APIError(f"{folder}: {e.strerror or e}") from None
    peer = await _ask(tnsClient(node).publish(compiled, commit))
    return {"Project": compiled.projectId, "Branch": branch, "Commit": commit, "Peer": str(peer)}


#: longest project or resource id tns/asset takes
MAX_ID = 256
#: most files and empty folders in a folder tns/asset adds
MAX_ASSET_ENTRIES = MAX_DIRECTORY_ENTRIES


async def _addPath(node, path):
    """
    Add C{path} (on the node's machine) to the node's store, pinned (and
    provided): a file as one UnixFS file, a folder (of at most
    L{MAX_ASSET_ENTRIES} files and empty folders) as a UnixFS directory.
    Its entry.
    """
    def inThread(f, *args):
        return deferToThreadPool(node.reactor, node.reactor.getThreadPool(), f, *args)

    content = _contentOf(node)
    if not os.path.isabs(path):
        raise APIError(f"{path}: expected an absolute path (on the node's machine)")
    if await inThread(os.path.isfile, path):
        return await _guard(f"add {path}", content.add(path, pin=True))
    if not await inThread(os.path.isdir, path):
        raise APIError(f"{path}: no such file or folder")
    try:
        entries = await inThread(folderEntries, Path(path), MAX_ASSET_ENTRIES)
    except TooManyEntries:
        raise APIError(f"{path}: more than {MAX_ASSET_ENTRIES} files and empty folders") from None
    return await _guard(f"add {path}", content.addFolder(entries, pin=True))


@command("tns/asset")
async def asset(node, args):
    """
    C{arg=PROJECT} C{arg=RESOURCE} C{arg=PATH} [C{branch}]: publish a
    build without a build job.  The file or folder PATH (on the node's
    machine) is added to the node's store (pinned and provided) and its
    CID pushed to tns at the resource's asset key
    (L{tau.project.indexes.assetKey}), where a build job would publish
    it.  tns takes the push because the node is a node of the cloud
    (L{tau.services.tns.tenancy}: C{assets/...} is the cloud's).
    """
    values = args.get("arg", [])
    if len(values) != 3:
        raise APIError(f"tns/asset takes 3 arguments (project, resource, path), found {len(values)}")
    project, resource, path = values
    for name, value in (("project", project), ("resource", resource)):
        if not value or len(value) > MAX_ID or "/" in value:
            raise APIError(f"{name}: expected an id of 1 to {MAX_ID} characters without '/', found {value[:MAX_ID]!r}")
    branch = argument(args, "branch", required=False) or DEFAULT_BRANCH
    entry = await _addPath(node, path)
    cid = cidText(entry.cid)
    key = assetKey(project, resource, branch)
    await _ask(tnsClient(node).push(key, cid))
    return {"Project": project, "Resource": resource, "Branch": branch, "Key": "/" + "/".join(key),
            "Hash": cid, "Size": entry.size}


@command("tns/fetch")
async def fetch(node, args):
    """
    The object at path C{arg} (segments joined by C{/}).
    """
    path = _path(argument(args))
    return {"Path": "/" + "/".join(path), "Object": _json(await _ask(tnsClient(node).fetch(path)))}


@command("tns/lookup")
async def lookup(node, args):
    """
    C{kind=project} C{arg=PROJECT} [C{branch}]; C{kind=resource}
    C{arg=PROJECT} C{arg=ID} [C{branch}]; C{kind=http} C{arg=HOST}
    C{arg=PATH} [C{method}]; C{kind=keys} C{arg=PREFIX} [C{regex=1}].
    """
    client = tnsClient(node)
    kind = argument(args, "kind")
    values = args.get("arg", [])
    branch = argument(args, "branch", required=False) or DEFAULT_BRANCH
    wanted = {"project": 1, "resource": 2, "http": 2, "keys": 1}
    if kind not in wanted:
        raise APIError(f"kind: expected one of {', '.join(wanted)}, found {kind!r}")
    if len(values) != wanted[kind]:
        raise APIError(f"a {kind} lookup takes {wanted[kind]} argument(s), found {len(values)}")
    if kind == "project":
        found = await _ask(client.project(values[0], branch))
    elif kind == "resource":
        found = await _ask(client.resource(values[0], values[1], branch))
    elif kind == "http":
        method = argument(args, "method", required=False) or "GET"
        found = await _ask(client.http(values[0], values[1], method))
        if found is not None:
            found = {k: v for k, v in found.items() if k != "path"}
    else:
        regex = argument(args, "regex", required=False) in ("1", "true")
        found = await _ask(client.lookup(_path(values[0]) if not regex else values[0].split("/"), regex))
    return {"Found": _json(found)}
