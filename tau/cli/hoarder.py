"""
tau hoarder stash|status|list|rare|replicas: the cloud's replication
(hoarder), through the running node.
"""

import json

from tau.cli import runReactor
from tau.cli.swarm import _config
from tau.control.client import call


def register(sub):
    p = sub.add_parser("hoarder", help="keep artefacts and databases on enough nodes (hoarder)")
    hsub = p.add_subparsers(dest="action", metavar="ACTION")
    hsub.required = True
    stash = hsub.add_parser("stash", help="keep a CID (pinned on this node) on several hoarders")
    stash.add_argument("cid")
    stash.add_argument("--target", type=int, default=2, help="hoarders to hold it (default 2)")
    stash.set_defaults(run=hoarderStash)
    status = hsub.add_parser("status", help="live claims of stashed CIDs, and the stash target")
    status.add_argument("cids", nargs="+")
    status.set_defaults(run=hoarderStatus)
    hsub.add_parser("list", help="the CIDs the hoarder holds").set_defaults(run=hoarderList)
    hsub.add_parser("rare", help="the CIDs the hoarder holds under their target").set_defaults(run=hoarderRare)
    replicas = hsub.add_parser("replicas", help="the live holders of a database or storage")
    replicas.add_argument("project")
    replicas.add_argument("match")
    replicas.add_argument("--application", default="", help="the application's id (none: the project's)")
    replicas.set_defaults(run=hoarderReplicas)


def _call(args, name, params, timeout=60):
    return runReactor(lambda reactor: call(reactor, _config(args), name, params, timeout=timeout))


def hoarderStash(args):
    answer = _call(args, "hoarder/stash", [("arg", args.cid), ("target", str(args.target))], timeout=240)
    print(f"stashed {answer['Cid']} on {', '.join(answer['Peers'])}")
    return 0


def hoarderStatus(args):
    answer = _call(args, "hoarder/stash-status", [("arg", cid) for cid in args.cids])
    print(json.dumps({"claims": answer["Claims"], "target": answer["Target"]}, indent=2))
    return 0


def hoarderList(args):
    for cid in _call(args, "hoarder/list", [])["Ids"]:
        print(cid)
    return 0


def hoarderRare(args):
    for cid in _call(args, "hoarder/rare", [])["Rare"]:
        print(cid)
    return 0


def hoarderReplicas(args):
    params = [("arg", args.project), ("match", args.match), ("application", args.application)]
    for peer in _call(args, "hoarder/replicas", params)["Peers"]:
        print(peer)
    return 0
