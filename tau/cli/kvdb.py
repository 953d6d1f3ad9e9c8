"""
tau kv put|get|delete|list|dbs: the node's replicated key/value databases.
"""

import json
import sys

from tau.cli import UsageError, runReactor
from tau.cli.swarm import _config
from tau.control.client import call, stream


def register(sub):
    p = sub.add_parser("kv", help="replicated key/value databases")
    ksub = p.add_subparsers(dest="action", metavar="ACTION")
    ksub.required = True

    put = ksub.add_parser("put", help="set a key (the value from the command line, or stdin)")
    put.add_argument("db")
    put.add_argument("key")
    put.add_argument("value", nargs="?", help="the value (default: read stdin)")
    put.set_defaults(run=kvPut)

    delete = ksub.add_parser("delete", help="delete a key")
    delete.add_argument("db")
    delete.add_argument("key")
    delete.set_defaults(run=kvDelete)
    for q in (put, delete):
        q.add_argument("--replicas", type=int, default=1, help="wait until this many nodes (this one included) hold the write (default 1)")
        q.add_argument("--timeout", type=float, default=30, help="seconds to wait for the replicas (default 30)")
        q.add_argument("--json", action="store_true", help="print the whole answer as JSON")

    get = ksub.add_parser("get", help="print a key's value")
    get.add_argument("db")
    get.add_argument("key")
    get.set_defaults(run=kvGet)

    ls = ksub.add_parser("list", help="list keys in byte order")
    ls.add_argument("db")
    ls.add_argument("prefix", nargs="?", default="")
    ls.add_argument("--limit", type=int, default=None)
    ls.set_defaults(run=kvList)

    dbs = ksub.add_parser("dbs", help="the databases this node replicates")
    dbs.add_argument("--json", action="store_true")
    dbs.set_defaults(run=kvDatabases)


def _writeArgs(args):
    if args.replicas < 1:
        raise UsageError("--replicas must be at least 1")
    return [("arg", args.db), ("arg", args.key), ("replicas", str(args.replicas)), ("timeout", str(args.timeout))]


def _printWrite(args, answer, verb):
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print(f"{verb} {answer['Database']}/{answer['Key']} delta {answer['Delta']} on {answer['Replicas']} node(s)")
    return 0


def kvPut(args):
    value = args.value.encode("utf-8") if args.value is not None else sys.stdin.buffer.read()
    answer = runReactor(lambda reactor: call(reactor, _config(args), "kv/put", _writeArgs(args), timeout=args.timeout + 30, body=value))
    return _printWrite(args, answer, "put")


def kvDelete(args):
    answer = runReactor(lambda reactor: call(reactor, _config(args), "kv/delete", _writeArgs(args), timeout=args.timeout + 30))
    return _printWrite(args, answer, "deleted")


def kvGet(args):
    out = sys.stdout.buffer
    runReactor(lambda reactor: stream(reactor, _config(args), "kv/get", [("arg", args.db), ("arg", args.key)], out.write, timeout=60))
    out.flush()
    return 0


def kvList(args):
    params = [("arg", args.db), ("prefix", args.prefix)]
    if args.limit is not None:
        params.append(("limit", str(args.limit)))
    answer = runReactor(lambda reactor: call(reactor, _config(args), "kv/list", params))
    for key in answer["Keys"]:
        print(key)
    return 0


def kvDatabases(args):
    answer = runReactor(lambda reactor: call(reactor, _config(args), "kv/dbs", {}))
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    for db in answer["Databases"]:
        print(f"{db['Name']}  height {db['Height']}  heads {len(db['Heads'])}")
    return 0
