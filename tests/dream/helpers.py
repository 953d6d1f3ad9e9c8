"""
Drive C{tau dream} from tests: the CLI as a real process, with its own
C{HOME} and C{TMPDIR} (so a test sees whether anything was written outside
the dream's folder), and cleanups that end whatever a failed test left.
"""

import json
import os
import signal
from pathlib import Path

from twisted.internet import reactor

from tests.processes import TAU, environment, run


def sandbox(case):
    """
    C{(env, home, tmp)}: an environment whose C{HOME} and C{TMPDIR} are
    new empty folders of C{case}.
    """
    base = Path(case.mktemp()).resolve()
    home, tmp = base / "home", base / "tmp"
    home.mkdir(parents=True)
    tmp.mkdir()
    return environment(HOME=str(home), TMPDIR=str(tmp), XDG_CACHE_HOME=str(home / ".cache")), home, tmp


async def tau(env, *args, timeout=240):
    """
    Run C{tau ARGS}: C{(status, stdout, stderr)}.
    """
    return await run(reactor, TAU + list(args), env=env, timeout=timeout)


async def tauOK(env, *args, timeout=240):
    status, out, err = await tau(env, *args, timeout=timeout)
    if status != 0:
        raise AssertionError(f"tau {' '.join(args)} exited {status}:\n{out}{err}")
    return out


def state(folder):
    return json.loads((Path(folder) / "dream.json").read_text())


def pidsOf(folder):
    """
    The supervisor's and the nodes' pids of the dream in C{folder}.
    """
    s = state(folder)
    return [s["supervisor"]] + [n["pid"] for n in s["nodes"]]


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def killAll(pids):
    """
    A cleanup: SIGKILL whatever still runs of C{pids}.
    """
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def killDream(folder):
    """
    A cleanup: SIGKILL the supervisor and nodes of the dream in C{folder}
    if they still run.
    """
    try:
        killAll(pidsOf(folder))
    except (OSError, ValueError, KeyError):
        pass
    try:
        killAll([int((Path(folder) / "dream.pid").read_text())])
    except (OSError, ValueError):
        pass
