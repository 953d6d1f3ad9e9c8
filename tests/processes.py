"""
Run real processes from tests: twistd, the tau CLI, and helpers.
"""

import os
import signal
import sys

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol

TWISTD = [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]
TAU = [sys.executable, "-m", "tau.cli"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def environment(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


class Process(ProcessProtocol):
    """
    A child process whose output is collected, and which can be waited on for
    a line of output or for its end.
    """

    def __init__(self, clock):
        self.clock = clock
        self.out = b""
        self.err = b""
        self.status = None
        self.signal = None
        #: true once the process ended (by a signal too: then C{status} is None)
        self.exited = False
        self._ended = Deferred()
        self._waiting = []

    def outReceived(self, data):
        self.out += data
        self._check()

    def errReceived(self, data):
        self.err += data
        self._check()

    def _check(self):
        for needle, d in list(self._waiting):
            if needle in self.out or needle in self.err:
                self._waiting.remove((needle, d))
                d.callback(None)

    def processEnded(self, reason):
        self.exited = True
        self.status = reason.value.exitCode if reason.check(ProcessDone) is None else 0
        self.signal = getattr(reason.value, "signal", None)
        for needle, d in self._waiting:
            d.errback(AssertionError(f"process ended before printing {needle!r}:\n{self.output()}"))
        self._waiting = []
        self._ended.callback(self.status)

    def output(self):
        return (self.out + self.err).decode("utf-8", "replace")

    def waitFor(self, needle, timeout=30):
        """
        Fire when C{needle} (bytes) appears in stdout or stderr.
        """
        d = Deferred()
        self._waiting.append((needle, d))
        self._check()
        return d.addTimeout(timeout, self.clock)

    def ended(self, timeout=30):
        d = Deferred()
        self._ended.addBoth(lambda r: (d.callback(r) if not d.called else None, r)[1])
        return d.addTimeout(timeout, self.clock)

    def kill(self, sig=signal.SIGTERM):
        if not self.exited and self.transport.pid is not None:
            self.transport.signalProcess({signal.SIGTERM: "TERM", signal.SIGINT: "INT", signal.SIGKILL: "KILL"}[sig])


def stopped(proc):
    """
    Kill C{proc} if it still runs, and wait for its end (a test cleanup).
    """
    if proc.exited:
        return None
    proc.kill(signal.SIGKILL)
    return proc.ended()


def spawn(reactor, argv, cwd=None, env=None):
    proto = Process(reactor)
    reactor.spawnProcess(proto, argv[0], argv, env=env or environment(), path=cwd)
    return proto


async def run(reactor, argv, cwd=None, env=None, timeout=60):
    """
    Run C{argv} to its end: C{(status, stdout, stderr)} as text.
    """
    proto = spawn(reactor, argv, cwd=cwd, env=env)
    try:
        await proto.ended(timeout)
    except Exception:
        proto.kill(signal.SIGKILL)
        raise
    return proto.status, proto.out.decode("utf-8", "replace"), proto.err.decode("utf-8", "replace")
