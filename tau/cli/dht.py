"""
tau dht findpeer, tau dht findprovs, tau dht provide.
"""

from tau.cli import runReactor
from tau.cli.swarm import _call, _config


def register(sub):
    p = sub.add_parser("dht", help="query the Kademlia DHT")
    dsub = p.add_subparsers(dest="action", metavar="ACTION")
    dsub.required = True
    findpeer = dsub.add_parser("findpeer", help="the addresses of a peer")
    findpeer.add_argument("peer", help="a peer ID")
    findpeer.set_defaults(run=findPeer)
    findprovs = dsub.add_parser("findprovs", help="the peers that provide a CID")
    findprovs.add_argument("key", help="a CID")
    findprovs.add_argument("-n", "--num-providers", type=int, default=20, help="at most this many (default 20)")
    findprovs.set_defaults(run=findProviders)
    provide = dsub.add_parser("provide", help="announce that this node provides a CID")
    provide.add_argument("key", help="a CID")
    provide.set_defaults(run=provideKey)
    for parser in (findpeer, findprovs, provide):
        parser.add_argument("--timeout", type=float, default=60, help="seconds (default 60)")


def findPeer(args):
    answer = runReactor(_call, _config(args), "dht/findpeer", {"arg": args.peer, "timeout": str(args.timeout)})
    for addr in answer["Addrs"]:
        print(addr)
    return 0


def findProviders(args):
    params = {"arg": args.key, "num-providers": str(args.num_providers), "timeout": str(args.timeout)}
    answer = runReactor(_call, _config(args), "dht/findprovs", params)
    for provider in answer["Providers"]:
        print(provider["ID"])
    return 0


def provideKey(args):
    answer = runReactor(_call, _config(args), "dht/provide", {"arg": args.key, "timeout": str(args.timeout)})
    print(f"provided to {answer['Peers']} peers")
    return 0
