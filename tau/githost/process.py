"""
Run git as a child process, never in the reactor thread: its output is
bounded, its time too.
"""

import os

from twisted.internet.defer import CancelledError
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol

from tau.oneshot import OneShot

#: the most bytes kept of one git command's stdout (refs, a page of log)
MAX_OUTPUT = 4 << 20
#: the most bytes kept of its stderr (the tail)
MAX_ERRORS = 8 << 10
#: seconds a short git command may take
TIMEOUT = 60.0
#: the git executable
GIT = "/usr/bin/git"


class GitError(Exception):
    """
    git failed, timed out, or said more than we read.
    """


def gitEnvironment(**extra):
    """
    An environment for server-side git that ignores the user's and the
    system's config (a node's behaviour does not depend on who runs it).
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C",
        "LC_ALL": "C",
        "HOME": "/nonexistent",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
    }
    env.update(extra)
    return env


class _Collect(ProcessProtocol):
    def __init__(self, limit):
        self.limit = limit
        self.out = []
        self.size = 0
        self.err = b""
        self.overflow = False
        self.ended = OneShot()

    def outReceived(self, data):
        self.size += len(data)
        if self.size > self.limit:
            if not self.overflow:
                self.overflow = True
                try:
                    self.transport.signalProcess("KILL")
                except ProcessExitedAlready:
                    pass
            return
        self.out.append(data)

    def errReceived(self, data):
        self.err = (self.err + data)[-MAX_ERRORS:]

    def processEnded(self, reason):
        code = 0 if reason.check(ProcessDone) else getattr(reason.value, "exitCode", None)
        self.ended.fire(code)


async def runGit(reactor, args, *, cwd=None, env=None, limit=MAX_OUTPUT, timeout=TIMEOUT, check=True):
    """
    C{(exit code, stdout)} of C{git args...}.

    @param limit: the most stdout bytes read; git is killed past it.
    @raise GitError: git exits non-zero (with C{check}), is killed after
        C{timeout} seconds, or says more than C{limit} bytes.
    """
    protocol = _Collect(limit)
    reactor.spawnProcess(protocol, GIT, [GIT, *args], env=env or gitEnvironment(), path=cwd)
    timedOut = []

    def expire():
        timedOut.append(True)
        try:
            protocol.transport.signalProcess("KILL")
        except Exception:
            pass

    timer = reactor.callLater(timeout, expire)
    try:
        code = await protocol.ended.whenFired()
    except CancelledError:
        # cancelled: git does not outlive the caller's interest
        expire()
        await protocol.ended.whenFired()
        raise
    finally:
        if timer.active():
            timer.cancel()
    what = " ".join(args[:2])
    if timedOut:
        raise GitError(f"git {what} took more than {timeout} seconds")
    if protocol.overflow:
        raise GitError(f"git {what} said more than {limit} bytes")
    if check and code != 0:
        raise GitError(f"git {what} failed ({code}): {protocol.err.decode('utf-8', 'replace').strip()}")
    return code, b"".join(protocol.out)
