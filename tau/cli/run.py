"""
tau run FILE.wasm --call EXPORT: run one HTTP function locally, with the
substrate's runtime, and print its response.  Needs no node.
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


async def _run(reactor, wasm, export, request, limits):
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
        return await runtime.call(cid, export, request, limits)
    finally:
        await runtime.stop()


def runFunction(args):
    from wasmtime import WasmtimeError

    request, limits = _request(args), _limits(args)
    try:
        with open(args.file, "rb") as f:
            wasm = f.read()
    except OSError as e:
        raise UsageError(f"cannot read {args.file}: {e.strerror}") from None
    try:
        answer = runReactor(_run, wasm, args.call, request, limits)
    except WasmtimeError as e:
        raise UsageError(f"{args.file} is not a valid module: {str(e).splitlines()[0]}") from None
    if answer is None:  # the reactor was stopped (^C) before the call answered
        raise KeyboardInterrupt
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
