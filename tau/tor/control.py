"""
Getting a bootstrapped tor: launched by us (C{spawnProcess}, then
C{txtorcon.connect} to the control port it opened) or running already
(C{txtorcon.connect} to its control port).  Either way the result is a
C{txtorcon.Tor}; a failure is a L{TorStartError} that says why and shows
tor's last log lines.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import deque

from twisted.internet.defer import CancelledError, TimeoutError
from twisted.internet.endpoints import TCP4ClientEndpoint, clientFromString
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from tau.oneshot import OneShot

log = Logger()

#: Lines of tor's output kept for the error when it fails.
TAIL_LINES = 20
#: Seconds between two looks at the bootstrap of a running tor.
BOOTSTRAP_POLL = 1.0


class TorStartError(Exception):
    """
    Tor could not be launched, reached or bootstrapped.

    @ivar reason: what went wrong.
    @ivar logLines: tor's last log lines (launched tors; else empty).
    """

    def __init__(self, reason, logLines=()):
        super().__init__(reason)
        self.reason = reason
        self.logLines = list(logLines)

    def __str__(self):
        if not self.logLines:
            return self.reason
        return self.reason + "; tor's last log lines:\n  " + "\n  ".join(self.logLines)


class LogTail:
    """
    A file-like sink (C{write}) keeping the last C{lines} lines written.
    """

    def __init__(self, lines=TAIL_LINES):
        self.lines = deque(maxlen=lines)
        self._partial = ""

    def write(self, data):
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        text = self._partial + data
        *complete, self._partial = text.split("\n")
        self.lines.extend(line.rstrip("\r") for line in complete if line.strip())
        self._partial = self._partial[-4096:]

    def tail(self):
        return list(self.lines) + ([self._partial] if self._partial.strip() else [])


def findTor(binary=""):
    """
    The path of the tor binary: C{binary} when given, else C{tor} on the
    PATH or in /usr/sbin (Debian's).

    @raise TorStartError: when there is none.
    """
    if binary:
        if os.access(binary, os.X_OK) and os.path.isfile(binary):
            return binary
        raise TorStartError(f"the tor binary {binary!r} (tor.binary) is not an executable file")
    found = shutil.which("tor") or ("/usr/sbin/tor" if os.access("/usr/sbin/tor", os.X_OK) else None)
    if found is None:
        raise TorStartError("no tor binary found on the PATH or in /usr/sbin (apt-get install tor, or set tor.binary)")
    return found


class LaunchedTor(ProcessProtocol):
    """
    A tor process we started: its output (the last lines in L{tail}), the
    control port it opened, its end.
    """

    def __init__(self):
        self.tail = LogTail()
        self.controlPort = OneShot()
        self.ended = OneShot()
        self._seen = ""

    def outReceived(self, data):
        self.tail.write(data)
        if not self.controlPort.fired:
            self._seen = (self._seen + data.decode("utf-8", "replace"))[-4096:]
            found = _CONTROL_OPENED.search(self._seen)
            if found:
                self.controlPort.fire(int(found.group(1)))

    errReceived = outReceived

    def processEnded(self, reason):
        code = getattr(reason.value, "exitCode", None)
        why = f"tor exited with status {code}" if code is not None else f"tor was killed (signal {getattr(reason.value, 'signal', '?')})"
        self.controlPort.fire(Failure(TorStartError(why, self.tail.tail())))
        self.ended.fire(why)

    async def stop(self, clock, grace=10.0):
        """
        SIGTERM, then SIGKILL after C{grace} seconds; returns once it ended.
        """
        for sig in ("TERM", "KILL"):
            if self.ended.fired:
                return
            try:
                self.transport.signalProcess(sig)
            except ProcessExitedAlready:
                pass
            ended = self.ended.whenFired()
            ended.addTimeout(grace, clock)
            try:
                await ended
                return
            except TimeoutError:
                continue


_CONTROL_OPENED = re.compile(r"Opened Control listener connection \(ready\) on 127\.0\.0\.1:(\d+)")


def _torrc(settings, directory, socksPort):
    lines = [
        ("DataDirectory", directory),
        ("SocksPort", f"127.0.0.1:{socksPort}"),
        ("ControlPort", "auto"),
        ("CookieAuthentication", "1"),
        ("PidFile", os.path.join(directory, "tor.pid")),
        ("__OwningControllerProcess", str(os.getpid())),
        ("Log", "notice stdout"),
        ("RunAsDaemon", "0"),
    ]
    for key, value in settings["options"].items():
        for item in value if isinstance(value, list) else [value]:
            lines.append((key, item))
    return "".join(f"{key} {value}\n" for key, value in lines)


async def launchTor(reactor, settings, dataDir, progress=None):
    """
    Launch a tor with C{settings} (the C{tor} config section: its binary,
    data directory and extra options), connect to its control port, make
    it ours (it exits when our control connection closes, or when this
    process dies) and wait until it is bootstrapped; all within
    C{settings["timeout"]} seconds.

    @param dataDir: its DataDirectory when C{settings} names none.
    @param progress: C{progress(percent, tag, summary)} while it
        bootstraps.
    @return: C{(tor, process)}: a C{txtorcon.Tor} and the L{LaunchedTor}.
    @raise TorStartError: with the reason and tor's last log lines.
    """
    import txtorcon
    from txtorcon.util import available_tcp_port

    binary = findTor(settings["binary"])
    directory = os.path.realpath(settings["data-dir"] or str(dataDir))
    timeout = settings["timeout"]
    deadline = reactor.seconds() + timeout
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        socksPort = await available_tcp_port(reactor)
        torrc = os.path.join(directory, "torrc")
        with open(torrc, "w", encoding="utf-8") as f:
            f.write(_torrc(settings, directory, socksPort))
    except OSError as e:
        raise TorStartError(f"cannot prepare tor's data directory {directory}: {e.strerror}") from None
    process = LaunchedTor()
    try:
        reactor.spawnProcess(process, binary, [binary, "-f", torrc], env={"HOME": directory}, path=directory)
    except OSError as e:
        raise TorStartError(f"cannot run {binary}: {e.strerror}") from None
    try:
        opened = process.controlPort.whenFired()
        opened.addTimeout(timeout, reactor)
        try:
            controlPort = await opened
        except TimeoutError:
            raise TorStartError(f"tor opened no control port in {timeout}s", process.tail.tail()) from None
        try:
            tor = await txtorcon.connect(reactor, TCP4ClientEndpoint(reactor, "127.0.0.1", controlPort))
        except CancelledError:
            raise
        except Exception as e:
            raise TorStartError(f"cannot reach the control port of the tor we launched: {e.__class__.__name__}: {e}",
                                process.tail.tail()) from None
        try:
            await tor.protocol.queue_command("TAKEOWNERSHIP")
            await waitBootstrapped(reactor, tor.protocol, timeout, progress, deadline=deadline)
        except BaseException:
            tor.protocol.transport.loseConnection()
            raise
    except TorStartError as e:
        await process.stop(reactor)
        if not e.logLines:
            e.logLines = process.tail.tail()
        raise
    except BaseException:
        await process.stop(reactor)
        raise
    return tor, process


async def connectTor(reactor, settings, progress=None):
    """
    Connect to the running tor at C{settings["control"]} and wait until it
    is bootstrapped, for C{settings["timeout"]} seconds at most.

    @rtype: C{txtorcon.Tor}
    @raise TorStartError: when it cannot be reached or does not bootstrap.
    """
    import txtorcon

    where = settings["control"]
    try:
        endpoint = clientFromString(reactor, where)
    except (ValueError, TypeError, KeyError) as e:
        raise TorStartError(f"bad tor.control endpoint {where!r}: {e}") from None
    connecting = txtorcon.connect(reactor, endpoint)
    connecting.addTimeout(settings["timeout"], reactor)
    try:
        tor = await connecting
    except TimeoutError:
        raise TorStartError(f"the tor control port {where} did not answer in {settings['timeout']}s") from None
    except CancelledError:
        raise
    except Exception as e:
        raise TorStartError(f"cannot reach the tor control port {where}: {e.__class__.__name__}: {e}") from None
    try:
        await waitBootstrapped(reactor, tor.protocol, settings["timeout"], progress)
    except BaseException:
        tor.protocol.transport.loseConnection()
        raise
    return tor


def bootstrapProgress(phase):
    """
    The C{(progress, tag, summary)} of a C{status/bootstrap-phase} answer
    (C{NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"}).
    """
    fields = {}
    for key in ("PROGRESS", "TAG"):
        marker = f"{key}="
        at = phase.find(marker)
        if at >= 0:
            fields[key] = phase[at + len(marker):].split(" ", 1)[0]
    summary = ""
    at = phase.find('SUMMARY="')
    if at >= 0:
        summary = phase[at + 9:].split('"', 1)[0]
    try:
        progress = int(fields.get("PROGRESS", "0"))
    except ValueError:
        progress = 0
    return progress, fields.get("TAG", ""), summary


async def waitBootstrapped(clock, protocol, timeout, progress=None, deadline=None):
    """
    Poll C{status/bootstrap-phase} on C{protocol} (a
    C{TorControlProtocol}) until it says 100%.

    @param deadline: when to give up (C{clock} time); default C{timeout}
        seconds from now.
    @raise TorStartError: then, with the last phase.
    """
    if deadline is None:
        deadline = clock.seconds() + timeout
    last = None
    while True:
        asking = protocol.get_info("status/bootstrap-phase")
        asking.addTimeout(max(1.0, deadline - clock.seconds()), clock)
        try:
            answer = await asking
        except TimeoutError:
            raise TorStartError(f"tor did not answer on its control port in {timeout}s") from None
        phase = answer.get("status/bootstrap-phase", "") if isinstance(answer, dict) else str(answer)
        percent, tag, summary = bootstrapProgress(phase)
        if (percent, tag) != last and progress is not None:
            progress(percent, tag, summary)
        last = (percent, tag)
        if percent >= 100:
            return
        if clock.seconds() >= deadline:
            raise TorStartError(f"tor did not bootstrap in {timeout}s (at {percent}%: {summary or tag or phase})")
        await deferLater(clock, BOOTSTRAP_POLL, lambda: None)


async def quitTor(clock, tor, process=None):
    """
    Let go of C{tor}: close our control connection (the ephemeral onion
    services we added go with it) and, when we launched it (C{process},
    a L{LaunchedTor}), stop it and wait until it ended.
    """
    try:
        tor.protocol.transport.loseConnection()
    except Exception as e:
        log.info("closing the tor control connection: {reason}", reason=str(e))
    if process is not None:
        await process.stop(clock)
