"""
tau tns fetch|lookup: read what the cloud's tns holds, through the running
node.
"""

import json

from tau.cli import runReactor
from tau.cli.swarm import _config
from tau.control.client import call
from tau.project import DEFAULT_BRANCH


def register(sub):
    p = sub.add_parser("tns", help="the cloud's project registry (tns)")
    tsub = p.add_subparsers(dest="action", metavar="ACTION")
    tsub.required = True

    fetch = tsub.add_parser("fetch", help="print the object at a tns path (JSON; bytes as {\"bytes\": base64})")
    fetch.add_argument("path", help="segments joined by /, e.g. projects/<P>/branches/main/current")
    fetch.set_defaults(run=tnsFetch)

    lookup = tsub.add_parser("lookup", help="look a project, a resource, a host and path, or keys up")
    lsub = lookup.add_subparsers(dest="kind", metavar="KIND")
    lsub.required = True
    project = lsub.add_parser("project", help="a project's current config on a branch")
    project.add_argument("project")
    resource = lsub.add_parser("resource", help="one resource of a project by its id")
    resource.add_argument("project")
    resource.add_argument("id")
    for q in (project, resource):
        q.add_argument("--branch", default=DEFAULT_BRANCH, help=f"default {DEFAULT_BRANCH}")
    http = lsub.add_parser("http", help="the function or website serving a host, path and method")
    http.add_argument("host")
    http.add_argument("path")
    http.add_argument("--method", default="GET", help="default GET")
    keys = lsub.add_parser("keys", help="the keys under a prefix, or matching a regex")
    keys.add_argument("prefix", help="segments joined by /")
    keys.add_argument("--regex", action="store_true", help="PREFIX is a regex matched anywhere in /tns/v1/<key>")
    for q in (project, resource, http, keys):
        q.set_defaults(run=tnsLookup)


def tnsFetch(args):
    answer = runReactor(lambda reactor: call(reactor, _config(args), "tns/fetch", [("arg", args.path)]))
    print(json.dumps(answer["Object"], indent=2, ensure_ascii=False))
    return 0


def tnsLookup(args):
    params = [("kind", args.kind)]
    if args.kind == "project":
        params += [("arg", args.project), ("branch", args.branch)]
    elif args.kind == "resource":
        params += [("arg", args.project), ("arg", args.id), ("branch", args.branch)]
    elif args.kind == "http":
        params += [("arg", args.host), ("arg", args.path), ("method", args.method)]
    else:
        params += [("arg", args.prefix), ("regex", "1" if args.regex else "0")]
    found = runReactor(lambda reactor: call(reactor, _config(args), "tns/lookup", params))["Found"]
    if found is None:
        print(f"tau: nothing found for {args.kind} {' '.join(v for k, v in params if k == 'arg')}")
        return 1
    print(json.dumps(found, indent=2, ensure_ascii=False))
    return 0
