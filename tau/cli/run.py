"""
tau run FILE.wasm --call EXPORT: run one function locally, with the
substrate's runtime, and print its response.  Needs no node.

By default the function gets an HTTP request and its response is printed
(status line, headers, body).  With C{--pubsub CHANNEL} it gets a pubsub
message (C{--data}) on that channel and nothing is printed; with C{--p2p
COMMAND} a p2p command (C{--data}, C{--protocol}) and the bytes it answers
are printed.  A pubsub or p2p function that traps or times out exits 1.
"""

import sys

from tau.cli import UsageError, runReactor
from tau.configsection import parseSize


def register(sub):
    p = sub.add_parser("run", help="run one HTTP function (a .wasm file) locally and print its response")
    p.add_argument("file", help="the function's .wasm file")
    p.add_argument("--call", required=True, metavar="EXPORT", help="the exported function to call")
    p.add_argument("--method", default="GET", help="the request method (default GET)")
    p.add_argument("--path", default="/", help="the request path, with an optional ?query (default /)")
    p.add_argument("--host", default="example.com", help="the request host (default example.com)")
    p.add_argument("--header", action="append", default=[], metavar="K:V", help="a request header; repeat for more")
    p.add_argument("--body", default="", help="the request body")
    p.add_argument("--memory", default="64MiB", help="the function's memory limit (default 64MiB)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds the call may run (default 10)")
    event = p.add_mutually_exclusive_group()
    event.add_argument("--pubsub", metavar="CHANNEL", help="send a pubsub message on CHANNEL instead of a request")
    event.add_argument("--p2p", metavar="COMMAND", help="send a p2p command instead of a request; print its answer")
    p.add_argument("--data", default="", help="the pubsub message's or p2p command's data")
    p.add_argument("--protocol", help="the p2p command's protocol (none by default)")
    p.set_defaults(run=runFunction)


def _request(args):
    from tau.services.substrate.wasm import HttpRequest

    headers = []
    for header in args.header:
        key, sep, value = header.partition(":")
        if not sep or not key.strip():
            raise UsageError(f"invalid --header {header!r}: expected KEY:VALUE")
        headers.append((key.strip(), value.strip()))
    return HttpRequest(args.method, args.path, args.host, headers, args.body.encode())


def _limits(args):
    from tau.services.substrate.wasm import Limits

    try:
        memory = parseSize(args.memory)
    except ValueError as e:
        raise UsageError(f"invalid --memory: {e}") from None
    if not args.timeout > 0:
        raise UsageError(f"invalid --timeout {args.timeout}: must be more than 0")
    return Limits(memory=memory, timeout=args.timeout)


def _invoke(args, request, limits):
    """
    C{async invoke(runtime, cid)}: the call C{args} ask for.
    """
    data = args.data.encode()
    if args.pubsub is not None:
        from tau.services.substrate.triggers import topicOf

        try:
            topic = topicOf("", None, args.pubsub)
        except ValueError as e:
            raise UsageError(f"invalid --pubsub: {e}") from None
        return lambda runtime, cid: runtime.callPubsub(cid, args.call, topic, data, limits)
    if args.p2p is not None:
        body = {"data": data, "command": args.p2p}
        if args.protocol is not None:
            body["protocol"] = args.protocol
        return lambda runtime, cid: runtime.callP2P(cid, args.call, args.p2p, body, None, None, limits)
    return lambda runtime, cid: runtime.call(cid, args.call, request, limits)


async def _run(reactor, wasm, invoke):
    from twisted.internet.defer import Deferred

    from tau.services.substrate.wasm import Runtime

    runtime = Runtime(reactor)
    runtime.start()
    # On ^C the reactor stops: the runtime stops first, while the reactor
    # still ticks, so a looping guest reaches its deadline and the process
    # can exit.
    reactor.addSystemEventTrigger("before", "shutdown", lambda: Deferred.fromCoroutine(runtime.stop()))
    try:
        cid = await runtime.load(wasm)
        return ("answer", await invoke(runtime, cid))
    finally:
        await runtime.stop()


def runFunction(args):
    from wasmtime import WasmtimeError

    from tau.services.substrate.wasm import FunctionFailed

    request, limits = _request(args), _limits(args)
    invoke = _invoke(args, request, limits)
    try:
        with open(args.file, "rb") as f:
            wasm = f.read()
    except OSError as e:
        raise UsageError(f"cannot read {args.file}: {e.strerror}") from None
    try:
        outcome = runReactor(_run, wasm, invoke)
    except WasmtimeError as e:
        raise UsageError(f"{args.file} is not a valid module: {str(e).splitlines()[0]}") from None
    except FunctionFailed as e:
        raise UsageError(str(e)) from None
    if outcome is None:  # the reactor was stopped (^C) before the call answered
        raise KeyboardInterrupt
    answer = outcome[1]
    if args.pubsub is not None:
        return 0
    if args.p2p is not None:
        sys.stdout.buffer.write(answer or b"")
        sys.stdout.flush()
        return 0
    status, headers, body = answer
    from tau.services.substrate.wasm.http import statusText

    print(f"{status} {statusText(status)}".rstrip())
    for key, value in headers:
        print(f"{key}: {value}")
    print()
    sys.stdout.flush()
    sys.stdout.buffer.write(body)
    sys.stdout.flush()
    return 0
