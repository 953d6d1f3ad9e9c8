"""
tau swarm peers, tau swarm connect, tau ping.
"""

import json

from tau.cli import nodeConfig, runReactor
from tau.control.client import call


def register(sub):
    p = sub.add_parser("swarm", help="the node's p2p connections")
    ssub = p.add_subparsers(dest="action", metavar="ACTION")
    ssub.required = True
    peers = ssub.add_parser("peers", help="list the open connections")
    peers.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    peers.set_defaults(run=swarmPeers)
    connect = ssub.add_parser("connect", help="connect to a peer by multiaddr (ending in /p2p/ID) or by PeerId alone")
    connect.add_argument("address", help="a multiaddr ending in /p2p/ID, or a PeerId (found through the DHT)")
    connect.set_defaults(run=swarmConnect)

    p = sub.add_parser("ping", help="measure the round trip to a peer")
    p.add_argument("peer", help="a peer ID")
    p.add_argument("-n", "--count", type=int, default=3, help="how many pings (1-100, default 3)")
    p.set_defaults(run=pingPeer)


def _config(args):
    return nodeConfig(args)


async def _call(reactor, config, name, params):
    return await call(reactor, config, name, params)


def swarmPeers(args):
    answer = runReactor(_call, _config(args), "swarm/peers", {})
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    for peer in answer["Peers"]:
        print(f"{peer['Addr']}/p2p/{peer['Peer']}  {peer['Direction']}  {peer['Agent']}".rstrip())
    return 0


def swarmConnect(args):
    answer = runReactor(_call, _config(args), "swarm/connect", {"arg": args.address})
    print(answer["Strings"][0])
    return 0


def pingPeer(args):
    answer = runReactor(_call, _config(args), "ping", {"arg": args.peer, "count": str(args.count)})
    for rtt in answer["RTTs"]:
        print(f"pong from {answer['Peer']}: time={rtt} ms")
    print(f"average {answer['Average']} ms")
    return 0
