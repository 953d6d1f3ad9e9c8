"""
Control API commands of hoarder: hoarder/stash, hoarder/stash-status,
hoarder/list, hoarder/rare, hoarder/replicas.

They reach hoarder through L{tau.services.hoarder.client.HoarderClient}:
on the node's own hoarder where it runs one, else on the hoarders it finds.
"""

from tau.control.routes import APIError, argument, command
from tau.services.commands import RemoteError
from tau.services.framework import LocalCalls, ServiceError
from tau.services.hoarder.client import HoarderClient

#: CIDs one stash-status names at most
MAX_CIDS = 1000


def hoarderClient(node, local=True):
    """
    A L{HoarderClient} for the node: on its own hoarder (with C{local})
    when it runs one.
    """
    service = getattr(node, "shapeServices", {}).get("hoarder")
    if local and service is not None:
        return HoarderClient(node.host, node.dht, client=LocalCalls(service.commands.handlers, node.host.peerID))
    return HoarderClient(node.host, node.dht)


async def _ask(coroutine):
    try:
        return await coroutine
    except RemoteError as e:
        raise APIError(f"hoarder: {e}") from None
    except ServiceError as e:
        raise APIError(f"hoarder: {e}", status=502) from None


def _target(args):
    text = argument(args, "target", required=False)
    if text is None:
        return 2
    try:
        return int(text)
    except ValueError:
        raise APIError(f"target: expected a whole number, found {text[:40]!r}") from None


@command("hoarder/stash")
async def stash(node, args):
    """
    Stash CID C{arg} (pinned on this node, or anywhere the hoarders reach)
    on C{target} hoarders.
    """
    answer = await _ask(hoarderClient(node).stash(argument(args), _target(args)))
    return {"Cid": answer["cid"], "Peers": answer["peers"]}


@command("hoarder/stash-status")
async def stashStatus(node, args):
    cids = args.get("arg", [])
    if not cids or len(cids) > MAX_CIDS:
        raise APIError(f"expected 1 to {MAX_CIDS} CIDs (arg), found {len(cids)}")
    answer = await _ask(hoarderClient(node).stashStatus(cids))
    return {"Claims": answer.get("claims") or {}, "Target": answer.get("target")}


@command("hoarder/list")
async def listStashed(node, args):
    return {"Ids": await _ask(hoarderClient(node).list())}


@command("hoarder/rare")
async def rare(node, args):
    return {"Rare": await _ask(hoarderClient(node).rare())}


@command("hoarder/replicas")
async def replicas(node, args):
    project, match = argument(args), argument(args, "match")
    application = argument(args, "application", required=False) or ""
    return {"Peers": await _ask(hoarderClient(node).replicas(project, application, match))}
