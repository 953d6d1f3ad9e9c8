"""
Control API commands of tns: tns/push (compile a project config folder and
publish it), tns/fetch, tns/lookup.

They reach tns through the node's tns client, L{tnsClient}: the one place
the control API gets it from.
"""

import base64

from tau.control.routes import APIError, argument, command
from tau.project import DEFAULT_BRANCH, ProjectErrors, compileInThread
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
