"""
One dream node as a real C{twistd -n taubyte} child process: its output
goes to C{ROOT/node.log}; it is started when it printed its p2p address.
"""

import re
import sys

from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from tau.oneshot import OneShot

#: How twistd is run (the interpreter running dream, so the same tau).
TWISTD = [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]
REACHABLE = re.compile(rb"reachable at (\S+)")
#: The most output kept in memory to look for the address (the log file has it all).
MAX_SCAN = 1 << 20


class NodeProcess(ProcessProtocol):
    """
    @ivar address: the p2p multiaddr (with C{/p2p/ID}) once started.
    @ivar status: the exit status once ended (None when killed by a signal).
    """

    def __init__(self, logPath):
        self.logPath = logPath
        self.address = None
        self.status = None
        self.exited = False
        self._log = None
        self._scan = b""
        self._started = OneShot()
        self._ended = OneShot()

    @property
    def pid(self):
        return self.transport.pid if self.transport is not None else None

    def connectionMade(self):
        self._log = open(self.logPath, "ab", buffering=0)

    def _output(self, data):
        if self._log is not None:
            self._log.write(data)
        if self.address is None and len(self._scan) < MAX_SCAN:
            self._scan += data
            found = REACHABLE.search(self._scan)
            if found:
                self.address = found.group(1).decode("ascii")
                self._scan = b""
                self._started.fire(self.address)

    outReceived = errReceived = _output

    def processEnded(self, reason):
        self.exited = True
        self.status = 0 if reason.check(ProcessDone) else reason.value.exitCode
        if self._log is not None:
            self._log.close()
            self._log = None
        if not self._started.fired:
            self._started.fire(_failure(RuntimeError(f"the node exited ({self.status}) before it started; "
                                                     f"see {self.logPath}")))
        self._ended.fire(self.status)

    def whenStarted(self):
        """
        Fires with the node's p2p address, or fails when it ended first.
        """
        return self._started.whenFired()

    def whenEnded(self):
        return self._ended.whenFired()

    def signal(self, name):
        if not self.exited and self.transport is not None and self.transport.pid is not None:
            try:
                self.transport.signalProcess(name)
            except OSError:
                pass

    async def stop(self, clock, grace=15.0):
        """
        SIGTERM, then SIGKILL after C{grace} seconds; the exit status.
        """
        if self.exited:
            return self.status
        self.signal("TERM")
        ended = self.whenEnded()
        timer = clock.callLater(grace, self.signal, "KILL")
        try:
            return await ended
        finally:
            if timer.active():
                timer.cancel()


def _failure(exception):
    return Failure(exception)


def spawnNode(reactor, root, shape, peers, env):
    """
    Start C{twistd -n taubyte --shape SHAPE --root ROOT --peer ...}: its
    L{NodeProcess}.
    """
    proto = NodeProcess(root / "node.log")
    argv = TWISTD + ["-n", "--pidfile=", "taubyte", f"--shape={shape}", f"--root={root}"]
    argv += [f"--peer={peer}" for peer in peers]
    reactor.spawnProcess(proto, argv[0], argv, env=env, path=str(root))
    return proto

