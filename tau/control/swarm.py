"""
Control API commands for the p2p layer: swarm peers and connect, ping.
"""

from tau.control.routes import APIError, argument, command
from tau.host import DialError
from tau.identity import InvalidKey, PeerID


def peerArgument(args, name="arg"):
    text = argument(args, name)
    try:
        return PeerID.fromString(text)
    except InvalidKey as e:
        raise APIError(f"{text!r} is not a peer ID: {e}") from None


@command("swarm/peers")
async def swarmPeers(node, args):
    """
    The open connections: peer, remote address, direction, security
    protocol, streams, agent.
    """
    host = node.host
    peers = []
    for conn in host.connections():
        record = host.peerstore.get(conn.remotePeer)
        peers.append(
            {
                "Peer": str(conn.remotePeer),
                "Addr": conn.remoteAddr,
                "Direction": conn.direction,
                "Security": conn.security,
                "Streams": conn.streamCount,
                "Agent": record.agentVersion if record else "",
            }
        )
    peers.sort(key=lambda p: p["Peer"])
    return {"Peers": peers}


@command("swarm/holepunch")
async def swarmHolePunch(node, args):
    """
    How the last hole punch (DCUtR) with each peer went, or with the peer
    C{arg}: C{State} is C{punching}, C{direct} or C{relayed} (it failed:
    the connection stays on the relay, C{Reason} says why).
    """
    service = getattr(node, "holepunch", None)
    outcomes = service.outcomes if service is not None else {}
    if argument(args, required=False):
        peer = peerArgument(args)
        outcome = outcomes.get(peer)
        if outcome is None:
            raise APIError(f"no hole punch with {peer}", status=404)
        return {"Peer": str(peer), **outcome.asDict()}
    return {"Peers": [{"Peer": str(p), **o.asDict()} for p, o in sorted(outcomes.items(), key=lambda i: str(i[0]))]}


@command("swarm/connect")
async def swarmConnect(node, args):
    """
    Connect to a multiaddr ending in C{/p2p/ID}, or to a bare PeerId (its
    addresses come from the peer store or the DHT; relayed ones included).
    """
    addr = argument(args)
    if not addr.startswith("/"):
        addr = f"/p2p/{peerArgument(args)}"
    try:
        conn = await node.host.connect(addr)
    except DialError as e:
        raise APIError(f"connect {addr} failure: {e}", status=502) from None
    return {"Strings": [f"connect {conn.remotePeer} success"], "Peer": str(conn.remotePeer), "Addr": conn.remoteAddr}


#: Most bytes one C{perf} call moves each way.
MAX_PERF_BYTES = 1 << 30


@command("perf")
async def perfPeer(node, args):
    """
    One perf exchange (C{/perf/1.0.0}) with the peer C{arg} on one stream:
    C{upload} and C{download} bytes (at most 1 GiB each); the peer must
    serve perf (its config says C{perf: true}).  Seconds are first byte
    to last, as the client sees them.
    """
    from tau.protocols.perf import perf

    peer = peerArgument(args)
    sizes = {}
    for name in ("upload", "download"):
        text = argument(args, name, required=False) or "0"
        if not text.isdigit() or int(text) > MAX_PERF_BYTES:
            raise APIError(f"{name} must be a whole number of bytes from 0 to {MAX_PERF_BYTES}")
        sizes[name] = int(text)
    try:
        result = await perf(node.host, peer, sizes["upload"], sizes["download"], timeout=300)
    except DialError as e:
        raise APIError(f"perf {peer}: {e}", status=502) from None
    except Exception as e:
        raise APIError(f"perf {peer} failed: {e}", status=502) from None
    conn = node.host.connectionTo(peer)
    return {
        "Peer": str(peer),
        "Addr": conn.remoteAddr if conn is not None else None,
        **{name.capitalize(): {"Bytes": result[name][0], "Seconds": result[name][1]} for name in ("upload", "download")},
    }


@command("ping")
async def pingPeer(node, args):
    from tau.protocols.ping import ping

    peer = peerArgument(args)
    count = argument(args, "count", required=False) or "3"
    if not count.isdigit() or not 1 <= int(count) <= 100:
        raise APIError("count must be a whole number from 1 to 100")
    try:
        rtts = await ping(node.host, peer, count=int(count))
    except DialError as e:
        raise APIError(f"ping {peer}: {e}", status=502) from None
    except Exception as e:
        raise APIError(f"ping {peer} failed: {e}", status=502) from None
    ms = [round(r * 1000, 3) for r in rtts]
    return {"Peer": str(peer), "RTTs": ms, "Average": round(sum(ms) / len(ms), 3)}
