"""
Control API commands for the DHT: dht/findpeer, dht/findprovs, dht/provide.
"""

import cid as pycid
import multihash

from tau.control.routes import APIError, argument, command
from tau.control.swarm import peerArgument
from tau.diskfull import isFull


def contentKey(args):
    """
    The DHT key of a CID argument: its multihash (CIDv0 and v1 of the same
    content meet).  A raw base58 multihash is accepted too.
    """
    text = argument(args)
    try:
        return bytes(pycid.from_string(text).multihash)
    except Exception:
        pass
    try:
        data = multihash.from_b58_string(text)
        multihash.decode(data)
        return data
    except Exception:
        raise APIError(f"{text!r} is not a CID") from None


def _dht(node):
    if node.dht is None:
        raise APIError("this node runs no DHT", status=503)
    return node.dht


def _timeout(args, default=60):
    text = argument(args, "timeout", required=False)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise APIError("timeout must be a number of seconds") from None
    if not 0 < value <= 600:
        raise APIError("timeout must be between 0 and 600 seconds")
    return value


async def _bounded(node, d, args, what):
    d.addTimeout(_timeout(args), node.reactor)
    try:
        return await d
    except Exception as e:
        if isFull(e):
            raise   # the server answers a full disk (507)
        raise APIError(f"{what}: {e.__class__.__name__}: {e}", status=504 if "Timeout" in type(e).__name__ else 502) from None


@command("dht/findpeer")
async def findPeer(node, args):
    peer = peerArgument(args)
    addrs = await _bounded(node, _dht(node).findPeer(peer), args, f"findpeer {peer}")
    return {"ID": str(peer), "Addrs": addrs}


@command("dht/findprovs")
async def findProviders(node, args):
    key = contentKey(args)
    count = argument(args, "num-providers", required=False) or "20"
    if not count.isdigit() or not 1 <= int(count) <= 100:
        raise APIError("num-providers must be a whole number from 1 to 100")
    found = await _bounded(node, _dht(node).findProviders(key, int(count)), args, "findprovs")
    return {"Providers": [{"ID": str(peer), "Addrs": addrs} for peer, addrs in found]}


@command("dht/provide")
async def provide(node, args):
    key = contentKey(args)
    told = await _bounded(node, _dht(node).provide(key), args, "provide")
    return {"Peers": told}
