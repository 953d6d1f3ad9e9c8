"""
tau dream start|status|stop|inject: a whole tau cloud on this machine
(L{tau.dream}), run by a supervisor process in the background.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from tau.cli import UsageError, runReactor

DEFAULT_NAME = "default"


def register(sub):
    p = sub.add_parser("dream", help="a whole tau cloud on this machine")
    dsub = p.add_subparsers(dest="action", metavar="ACTION")
    dsub.required = True

    def common(q):
        q.add_argument("--name", "-n", default=DEFAULT_NAME, help=f"the dream's name (default: {DEFAULT_NAME})")
        q.add_argument("--root", default=None, metavar="DIR",
                       help="the dream's folder (default: ~/.cache/tau/dream/NAME)")

    start = dsub.add_parser("start", help="start a dream in the background and print where everything is")
    common(start)
    start.add_argument("--shapes", default=None, metavar="S,S,...",
                       help="one node per item, an item a service or services joined by + (default: one node "
                            "per service this build provides)")
    start.add_argument("--nodes", type=int, default=None, metavar="N",
                       help="run N nodes: the shapes repeated in order (N at least the number of shapes)")
    start.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for every node (default 180)")
    start.set_defaults(run=dreamStart)

    status = dsub.add_parser("status", help="the nodes of a running dream, their services, pids, ports, health")
    common(status)
    status.add_argument("--json", action="store_true", help="print the state as JSON")
    status.set_defaults(run=dreamStatus)

    stop = dsub.add_parser("stop", aliases=["kill"], help="stop every process of a dream and remove its folder")
    common(stop)
    stop.add_argument("--keep", action="store_true", help="keep the folder (nodes' identities and data)")
    stop.set_defaults(run=dreamStop)

    inject = dsub.add_parser("inject", help="add nodes to a running dream: inject SHAPE[,SHAPE...], "
                                            "inject service NAME")
    common(inject)
    inject.add_argument("words", nargs="*", metavar="SHAPE",
                        help="a node per comma-separated item, its services joined by + (or: service NAME)")
    inject.add_argument("--shape", default=None, help="the same, as an option")
    inject.set_defaults(run=dreamInject)


def _layout(args):
    from tau.dream.universe import DreamError, Layout, checkName, defaultFolder

    try:
        checkName(args.name)
        return Layout(Path(args.root) if args.root else defaultFolder(args.name))
    except DreamError as e:
        raise UsageError(str(e)) from None


def _shapes(args):
    from tau.dream.universe import DreamError, defaultShapes, parseShapes

    try:
        shapes = parseShapes(args.shapes) if args.shapes is not None else defaultShapes()
    except DreamError as e:
        raise UsageError(str(e)) from None
    if args.nodes is not None:
        if args.nodes < len(shapes):
            raise UsageError(f"--nodes {args.nodes}: the {len(shapes)} shapes need at least {len(shapes)} nodes")
        shapes = [shapes[i % len(shapes)] for i in range(args.nodes)]
    return shapes


def _running(layout):
    from tau.dream.supervisor import alive, readPid

    pid = readPid(layout)
    return pid if pid is not None and alive(pid) else None


def _source():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def dreamStart(args):
    layout = _layout(args)
    shapes = _shapes(args)
    pid = _running(layout)
    if pid is not None:
        raise UsageError(f"dream {args.name} already runs (supervisor pid {pid}); tau dream stop --name {args.name}")
    # a supervisor killed earlier may have left nodes running on this folder
    _killLeftovers(layout)
    layout.folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_source(), env.get("PYTHONPATH")) if p)
    env["TMPDIR"] = str(layout.tmp)
    layout.tmp.mkdir(exist_ok=True)
    readEnd, writeEnd = os.pipe()
    with open(layout.log, "ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", "tau.dream.supervisor", "--folder", str(layout.folder), "--name", args.name,
             "--shapes", ",".join("+".join(s) for s in shapes), "--ready-fd", str(writeEnd)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, pass_fds=(writeEnd,),
            start_new_session=True, env=env, cwd=str(layout.folder))
    os.close(writeEnd)
    answer = runReactor(_readAll, readEnd, args.timeout) or "failed: interrupted"
    if answer.strip() != "ready":
        why = answer.strip().removeprefix("failed: ") or f"the supervisor gave no answer (see {layout.log})"
        _killLeftovers(layout)
        raise UsageError(f"dream {args.name} did not start: {why}")
    print(summary(json.loads(layout.state.read_text(encoding="utf-8"))))
    return 0


async def _readAll(reactor, fd, timeout):
    """
    What the supervisor writes on its ready pipe C{fd} until it closes it
    (C{ready} or C{failed: WHY}); C{failed: timed out} after C{timeout}
    seconds of silence.
    """
    from twisted.internet.defer import TimeoutError

    pipe = _Pipe(reactor, fd)
    reactor.addReader(pipe)
    try:
        return (await pipe.done.addTimeout(timeout, reactor)).decode("utf-8", "replace")
    except TimeoutError:
        return pipe.data.decode("utf-8", "replace") or "failed: timed out"
    finally:
        reactor.removeReader(pipe)
        os.close(fd)


class _Pipe:
    """
    The read end of a pipe, read on the reactor (an C{IReadDescriptor}):
    C{done} fires with all it carried once the writer closed it.
    """

    def __init__(self, reactor, fd):
        from twisted.internet.defer import Deferred

        os.set_blocking(fd, False)
        self.reactor = reactor
        self.fd = fd
        self.data = b""
        self.done = Deferred()

    def fileno(self):
        return self.fd

    def logPrefix(self):
        return "dream-ready"

    def doRead(self):
        try:
            chunk = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        if chunk:
            self.data += chunk
        elif not self.done.called:
            self.done.callback(self.data)

    def connectionLost(self, reason):
        if not self.done.called:
            self.done.callback(self.data)


def summary(state, health=None):
    """
    The text C{start} and C{status} print for a dream's state.
    """
    name, fqdn = state["name"], state["fqdn"]
    lines = [f"dream {name}: {len(state['nodes'])} nodes, supervisor pid {state.get('supervisor')}",
             f"  folder   {state['folder']}",
             f"  network  {fqdn}"]
    if state.get("console"):
        lines.append(f"  console  {state['console']}")
    dns = state.get("dns")
    if dns:
        host, _, port = dns.rpartition(":")
        lines += [f"  dns      {dns} (seer; no hosts-file edits needed)",
                  f"           dig @{host} -p {port} gateway.tau.{fqdn}",
                  f"           dig @{host} -p {port} <project-domain>.g.{fqdn}"]
    gateway = state.get("urls", {}).get("gateway")
    if gateway:
        port = gateway.rsplit(":", 1)[-1].rstrip("/")
        lines.append(f"  gateway  {gateway}   curl --resolve NAME.g.{fqdn}:{port}:127.0.0.1 "
                     f"http://NAME.g.{fqdn}:{port}/")
    for key in ("auth", "patrick"):
        if key in state.get("urls", {}):
            lines.append(f"  {key:<8} {state['urls'][key]}")
    lines.append("  nodes:")
    for node in state["nodes"]:
        health_ = (health or {}).get(node["name"], "up" if node.get("running") else "exited")
        lines.append(f"    {node['name']:<22} pid {node['pid']:<8} {health_:<13} {', '.join(node['services'])}")
        for what, where in sorted(node.get("urls", {}).items()):
            if what != "api":
                lines.append(f"      {what:<14} {where}")
    return "\n".join(lines)


async def _control(reactor, layout, method, path, timeout=120):
    import treq
    from twisted.web.client import Agent

    try:
        url = json.loads(layout.state.read_text(encoding="utf-8"))["control"]
        token = layout.controlToken.read_text(encoding="ascii").strip()
    except (OSError, ValueError, KeyError) as e:
        raise UsageError(f"the dream's supervisor is not ready (no control address in {layout.state}: {e})") from None
    if not isinstance(url, str):
        raise UsageError("the dream is still starting")
    try:
        response = await treq.request(method, url + path, headers={"Authorization": f"Bearer {token}"},
                                      agent=Agent(reactor), timeout=timeout, persistent=False)
        body = await response.content()
    except Exception as e:
        raise UsageError(f"the dream's supervisor does not answer on {url}: {e}") from None
    try:
        value = json.loads(body)
    except ValueError:
        raise UsageError(f"the dream's supervisor answered {response.code} without JSON") from None
    if response.code != 200:
        raise UsageError(value.get("error") or f"the dream's supervisor answered {response.code}")
    return value


def _needRunning(args, layout):
    if _running(layout) is None:
        raise UsageError(f"no dream {args.name} runs (in {layout.folder}); start one with: tau dream start "
                         f"--name {args.name}")


def dreamStatus(args):
    layout = _layout(args)
    _needRunning(args, layout)
    state = runReactor(lambda reactor: _control(reactor, layout, "GET", "/status"))
    print(json.dumps(state, indent=2) if args.json else summary(state, state.get("health")))
    return 0


def dreamInject(args):
    from urllib.parse import quote

    from tau.dream.universe import DreamError, parseShapes

    layout = _layout(args)
    words = list(args.words)
    if words[:1] in (["service"], ["services"]):
        words = words[1:]
    text = args.shape or ",".join(words)
    if not text:
        raise UsageError("inject: give the new nodes' services: tau dream inject SHAPE[,SHAPE...] "
                         "(e.g. substrate, seer+tns)")
    try:
        shapes = parseShapes(text)
    except DreamError as e:
        raise UsageError(str(e)) from None
    _needRunning(args, layout)

    async def injectAll(reactor):
        for shape in shapes:
            node = await _control(reactor, layout, "POST", f"/inject?shape={quote('+'.join(shape))}")
            print(f"node {node['name']} started, pid {node['pid']}: {', '.join(node['services'])}")
            for what, where in sorted(node.get("urls", {}).items()):
                print(f"  {what:<14} {where}")
    runReactor(injectAll)
    return 0


def dreamStop(args):
    layout = _layout(args)
    pid = _running(layout)
    if pid is not None:
        runReactor(_stopSupervisor, layout, pid)
    elif not layout.folder.exists():
        raise UsageError(f"no dream {args.name} (no folder {layout.folder})")
    _killLeftovers(layout)
    if args.keep:
        for path in (layout.pidFile, layout.state, layout.controlToken):
            if path.exists():
                path.unlink()
        print(f"dream {args.name} stopped; its folder {layout.folder} is kept")
    else:
        shutil.rmtree(layout.folder, ignore_errors=True)
        if args.root is None:
            # ~/.cache/tau/dream and ~/.cache/tau, when no other dream is left
            for parent in (layout.folder.parent, layout.folder.parent.parent):
                try:
                    parent.rmdir()
                except OSError:
                    break
        print(f"dream {args.name} stopped; {layout.folder} removed")
    return 0


async def _stopSupervisor(reactor, layout, pid, wait=60.0):
    """
    Ask the supervisor C{pid} to stop (SIGTERM when its control API does not
    answer), wait up to C{wait} seconds for it to exit, then SIGKILL it.
    """
    from twisted.internet.task import deferLater

    from tau.dream.supervisor import alive

    try:
        await _control(reactor, layout, "POST", "/stop", timeout=30)
    except UsageError:
        _signal(pid, signal.SIGTERM)
    deadline = reactor.seconds() + wait
    while alive(pid) and reactor.seconds() < deadline:
        await deferLater(reactor, 0.05, lambda: None)
    if alive(pid):
        _signal(pid, signal.SIGKILL)


def _signal(pid, number):
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass


def _killLeftovers(layout):
    """
    End the node processes a supervisor that died left behind (their pids
    are in C{dream.json}; each is checked to run from the dream's folder).
    """
    try:
        state = json.loads(layout.state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    for node in state.get("nodes", []):
        pid = node.get("pid")
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except (OSError, TypeError):
            continue
        if Path(cwd) == Path(node.get("root", "")):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
