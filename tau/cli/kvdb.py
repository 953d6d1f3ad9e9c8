"""
tau kv put|get|delete|list|dbs|create|writers: the node's replicated
key/value databases.
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

    create = ksub.add_parser("create", help="create a database that only its writers can change; prints its full name NAME@GENESIS")
    create.add_argument("name")
    create.add_argument("--writer", action="append", default=[], metavar="WRITER", help="a writer: a PeerId, or cloud:CLOUD-PEERID/SERVICE (the nodes that cloud admitted for SERVICE); repeat for more")
    create.add_argument("--no-self", action="store_true", help="this node is not a writer")
    create.add_argument("--quota", default=None, help="bytes of writes each writer may make, e.g. 100MiB (default: the config's kvdb.writer-quota)")
    create.add_argument("--json", action="store_true")
    create.set_defaults(run=kvCreate)

    writers = ksub.add_parser("writers", help="the writers of a database (--add adds some; this node must be a writer)")
    writers.add_argument("db")
    writers.add_argument("--add", action="append", default=[], metavar="WRITER", help="a writer to add (PeerId or cloud:CLOUD-PEERID/SERVICE); repeat for more")
    writers.add_argument("--json", action="store_true")
    writers.set_defaults(run=kvWriters)


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


def _printWriters(args, answer):
    if args.json:
        print(json.dumps(answer, indent=2))
    elif answer["Open"]:
        print(f"{answer['Database']}: open, any peer of the network may write")
    else:
        print(answer["Database"])
        print(f"quota {answer['Quota']} bytes per writer")
        for writer in answer["Writers"]:
            print(f"writer {writer}")
    return 0


def kvCreate(args):
    params = [("arg", args.name)] + [("writer", w) for w in args.writer]
    if args.no_self:
        params.append(("self", "false"))
    if args.quota is not None:
        params.append(("quota", args.quota))
    if not args.writer and args.no_self:
        raise UsageError("a database needs a writer: give --writer, or leave out --no-self")
    return _printWriters(args, runReactor(lambda reactor: call(reactor, _config(args), "kv/create", params, timeout=60)))


def kvWriters(args):
    params = [("arg", args.db)] + [("add", w) for w in args.add]
    return _printWriters(args, runReactor(lambda reactor: call(reactor, _config(args), "kv/writers", params, timeout=60)))
