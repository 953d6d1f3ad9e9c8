"""
A build sandbox on bubblewrap (C{bwrap}, Debian's C{bubblewrap}).

A command runs through C{spawnProcess} as C{setsid prlimit ... [setpriv
...] bwrap ...}:

 - as C{nobody} on the host when tau runs as root (L{Sandbox} C{runAs}),
   with C{RLIMIT_NPROC} then bounding its processes;
 - in new user, pid, network, IPC, UTS and cgroup namespaces, as uid and
   gid 1000 with no capabilities and no further user namespaces; the
   network namespace holds only its own loopback, so nothing outside is
   reachable;
 - with the toolchain read-only: C{/usr}, the C{/bin}, C{/lib*} links (or
   folders) of the host, a few files of C{/etc} (L{ETC}), fresh C{/proc}
   and C{/dev};
 - with every writable place a size-capped tmpfs: C{/src} (the source,
   archived by a host C{tar} into the sandbox's stdin; no host path of
   it is visible), C{/out}, C{/tmp}
   and C{/dev/shm} (L{SHM}); the root and C{/dev} are read-only; a build
   that fills one gets C{ENOSPC} and its failure says which limit it
   reached;
 - with rlimits: C{RLIMIT_CPU} (each process), C{RLIMIT_AS} (the memory
   limit: address space per process; tau does not use a cgroup), and
   C{RLIMIT_FSIZE};
 - under a wall-clock timer that kills the process group (bwrap's
   C{--die-with-parent} and the pid namespace take everything inside
   with it).

The command's output and error go to one log, kept bounded (its head and
its tail).  After the command, whatever it left running is killed, and
the sandbox writes a status line and a tar
stream of C{/out} to a host file (bounded by C{RLIMIT_FSIZE}), which is
extracted, checked, into the caller's output folder in a worker thread.

If bwrap is missing or cannot make its namespaces (user namespaces
disabled, seccomp in a container...), L{Sandbox.run} raises
L{SandboxUnavailable}: nothing runs unsandboxed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from tau.build import outcome
from tau.build.outcome import MiB

log = Logger()


#: Files and folders of the host's /etc the sandbox sees (read-only) when
#: they exist: what the loader and Debian's alternatives need.
ETC = ("alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf",
       "passwd", "group")

#: Top-level links or folders of the host mirrored read-only.
TOP = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")

#: The uid and gid a command runs as inside.
UID = 1000

#: Size of /dev/shm (the rest of /dev and / are read-only).
SHM = 64 * MiB

#: The host uid builds run as when tau runs as root.
NOBODY = 65534

DEFAULT = object()

#: Seconds the check of bwrap may take.
PROBE_SECONDS = 30

#: seconds between two kills of what still holds a stopped command's pipes
ESCAPE_SWEEP = 1.0

# Made read-only once every mount is in place.
_SEAL = ("--remount-ro", "/dev", "--remount-ro", "/")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# Run inside by /bin/sh: unpack the source (a tar on stdin), run the command with its
# output on the log, then a status line and the tar of /out on stdout.
_WRAPPER = r"""
rc=0
if [ "$TAU_SOURCE" = 1 ]; then tar -x -C /src -f - >&2 || rc=copy; fi
unset TAU_SOURCE
if [ "$rc" = 0 ]; then "$@" </dev/null >&2; rc=$?; fi
# whatever the command left running goes (it could hold every process
# the limit allows), then the free space of each tmpfs (a fork: retried
# while the killed processes are reaped)
kill -KILL -1 2>/dev/null
n=0
until free=$(stat -f -c '%a %S' /src /out /tmp 2>/dev/null); do
    n=$((n + 1)); [ $n -lt 10000 ] || exit 126
done
set -- $free
echo "tau-sandbox $rc $(($1 * $2)) $(($3 * $4)) $(($5 * $6))"
exec tar -C /out -cf - .
"""


class SandboxUnavailable(Exception):
    """
    The sandbox cannot run here (and nothing is run without it): why.
    """


@dataclass(frozen=True)
class Limits:
    """
    What one sandboxed command may use.

    @ivar cpuSeconds: CPU time of each process (C{RLIMIT_CPU}).
    @ivar wallSeconds: wall-clock time of the whole command.
    @ivar memoryBytes: address space of each process (C{RLIMIT_AS}).
    @ivar sourceBytes: size of C{/src} (the copied source and what the
        build writes there).
    @ivar outputBytes: size of C{/out}.
    @ivar tmpBytes: size of C{/tmp}.
    @ivar logBytes: bytes of log kept (half from its start, half from its end).
    @ivar outputFiles: most entries (files and folders) C{/out} may hold.
    @ivar processes: most processes and threads of the sandbox's host
        user, all its sandboxes together (C{RLIMIT_NPROC}; only when the
        sandbox runs as its own user, see L{Sandbox}).
    """

    cpuSeconds: int = 300
    wallSeconds: float = 600.0
    memoryBytes: int = 4096 * MiB
    sourceBytes: int = 1024 * MiB
    outputBytes: int = 256 * MiB
    tmpBytes: int = 512 * MiB
    logBytes: int = 1 * MiB
    outputFiles: int = 10000
    processes: int = 1024

    def __post_init__(self):
        for name in ("cpuSeconds", "memoryBytes", "sourceBytes", "outputBytes", "tmpBytes", "logBytes",
                     "outputFiles", "processes"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ValueError(f"sandbox limit {name} must be a positive integer, not {value!r}")
        if not isinstance(self.wallSeconds, (int, float)) or not self.wallSeconds > 0:
            raise ValueError(f"sandbox limit wallSeconds must be positive, not {self.wallSeconds!r}")


@dataclass(frozen=True)
class SandboxResult:
    """
    How a sandboxed command ended.

    @ivar status: its exit status (128+N when signal N ended it), None when
        it did not run to its end (killed by the wall clock, the sandbox
        did not start, the source did not fit).
    @ivar failure: None when it succeeded, else a sentence saying why not.
    @ivar log: its output and error, bounded (L{BoundedLog}).
    @ivar output: the host folder holding what it left in C{/out}, or None.
    @ivar elapsed: wall-clock seconds.
    """

    status: int | None
    failure: str | None
    log: bytes
    output: str | None
    elapsed: float

    @property
    def ok(self):
        return self.failure is None


class BoundedLog:
    """
    At most C{limit} bytes of a stream: its first half and its last half,
    with a line telling how much was dropped between them.
    """

    def __init__(self, limit):
        self.limit = limit
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def write(self, data):
        room = self.limit // 2 - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            extra = len(self.tail) - (self.limit - self.limit // 2)
            if extra > 0:
                self.dropped += extra
                del self.tail[:extra]

    def value(self):
        if self.dropped:
            return bytes(self.head) + b"\n[... %d bytes of log dropped ...]\n" % self.dropped + bytes(self.tail)
        return bytes(self.head + self.tail)


class _Collect(ProcessProtocol):
    def __init__(self, logLimit, reactor):
        self.log = BoundedLog(logLimit)
        self.reactor = reactor
        # cancelling the wait kills the command; done fires when it ended
        self.ended = Deferred(lambda d: _killGroup(self.transport))
        self.done = Deferred()

    def connectionMade(self):
        self.transport.closeStdin()

    def childDataReceived(self, fd, data):
        self.log.write(data)

    def processEnded(self, reason):
        value = reason.value
        ended = (0, None) if isinstance(value, ProcessDone) else (value.exitCode, value.signal)
        self.done.callback(ended)
        if not self.ended.called:
            self.ended.callback(ended)

    async def stop(self):
        """
        Kill the process (if it still runs) and wait for its end.

        The end comes once every process holding our pipes is gone.  One
        can escape the kill of the group: bwrap's sandboxed child, in its
        own session, is meant to die with bwrap (C{--die-with-parent}), but
        not when bwrap is killed before the child asked for that.  Every
        L{ESCAPE_SWEEP} seconds until the end, what still holds the pipes
        is killed.
        """
        if self.done.called:
            return
        inodes = _pipeInodes(self.transport)
        _killGroup(self.transport)
        sweep = LoopingCall(self._sweep, inodes)
        sweep.clock = self.reactor
        swept = sweep.start(ESCAPE_SWEEP, now=False)
        try:
            await self.done
        finally:
            sweep.stop()
            await swept

    async def _sweep(self, inodes):
        pool = self.reactor.getThreadPool()
        try:
            holders = await deferToThreadPool(self.reactor, pool, _pipeHolders, inodes)
        except OSError as e:
            log.warn("sandbox: cannot look for processes that escaped a kill: {why}", why=str(e))
            return
        for pid in holders:
            log.warn("sandbox: killing process {pid}, which escaped the kill of its group", pid=pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


class Sandbox:
    """
    Runs commands in bubblewrap.

    @param reactor: spawns the processes and times them.
    @param bwrap: the bwrap executable (a name found on C{PATH} or a path).
    @param root: the host folder whose C{usr}, C{bin}, C{lib*} and C{etc}
        files make the sandbox's toolchain.
    @param runAs: the host uid (and gid) bwrap runs as, dropped to with
        C{setpriv}; then C{RLIMIT_NPROC} bounds the processes a build may
        start (L{Limits.processes}).  By default C{nobody} (65534) when tau
        runs as root, so no build runs as root even outside its user
        namespace; None keeps tau's user (and no process limit: it would
        count tau's own threads).
    """

    def __init__(self, reactor, bwrap="bwrap", root="/", runAs=DEFAULT):
        self.reactor = reactor
        self.bwrap = bwrap
        self.root = root
        if runAs is DEFAULT:
            runAs = NOBODY if os.geteuid() == 0 else None
        self.runAs = runAs
        self._checked = None

    def _tools(self):
        found = {}
        for name in (self.bwrap, "prlimit", "setsid", "setpriv", "tar"):
            path = shutil.which(name)
            if path is None:
                hint = {self.bwrap: "bubblewrap", "tar": "tar"}.get(name, "util-linux")
                hint = f" (Debian package {hint})"
                raise SandboxUnavailable(f"cannot sandbox builds: {name} is not installed{hint}")
            found[name] = path
        return found

    def _base(self, env):
        """
        bwrap's options for the namespaces and the read-only toolchain.
        """
        args = ["--unshare-all", "--unshare-user", "--uid", str(UID), "--gid", str(UID), "--disable-userns",
                "--die-with-parent", "--new-session", "--hostname", "tau-build", "--clearenv"]
        for name, value in env.items():
            args += ["--setenv", name, value]
        args += ["--ro-bind", os.path.join(self.root, "usr"), "/usr"]
        for name in TOP:
            host = os.path.join(self.root, name)
            if os.path.islink(host):
                args += ["--symlink", os.readlink(host), "/" + name]
            elif os.path.isdir(host):
                args += ["--ro-bind", host, "/" + name]
        for name in ETC:
            host = os.path.join(self.root, "etc", name)
            if os.path.exists(host):
                args += ["--ro-bind", host, "/etc/" + name]
        return args + ["--proc", "/proc", "--dev", "/dev", "--size", str(SHM), "--tmpfs", "/dev/shm"]

    async def check(self):
        """
        Make sure bwrap works here: a no-op command in the sandbox.  Raises
        L{SandboxUnavailable}, saying why, when it does not.  Checked once.
        """
        if self._checked is None:
            self._checked = await self._probe()
        if self._checked is not True:
            raise SandboxUnavailable(self._checked)

    async def _probe(self):
        try:
            tools = self._tools()
        except SandboxUnavailable as e:
            return str(e)
        drop = []
        if self.runAs is not None:
            drop = [tools["setpriv"], f"--reuid={self.runAs}", f"--regid={self.runAs}", "--clear-groups", "--"]
        argv = [*drop, tools[self.bwrap], *self._base({"PATH": "/usr/bin:/bin"}), *_SEAL, "--", "/bin/sh", "-c",
                "exit 0"]
        proto = _Collect(4096, self.reactor)
        transport = self.reactor.spawnProcess(proto, argv[0], argv, env={}, childFDs={0: "w", 1: "r", 2: "r"})
        timer = self.reactor.callLater(PROBE_SECONDS, _killGroup, transport)
        try:
            status, sig = await proto.ended
        finally:
            if timer.active():
                timer.cancel()
        if status == 0:
            return True
        if status is None and sig == signal.SIGKILL and not timer.active():
            return f"cannot sandbox builds: bwrap did not finish a no-op within {PROBE_SECONDS} s"
        said = proto.log.value().decode("utf-8", "replace").strip() or f"status {status}, signal {sig}"
        return (f"cannot sandbox builds: bwrap cannot create its namespaces here ({said}); unprivileged user"
                f" namespaces must be enabled (sysctl user.max_user_namespaces > 0, and"
                f" kernel.unprivileged_userns_clone=1 or kernel.apparmor_restrict_unprivileged_userns=0 where"
                f" those exist)")

    async def run(self, argv, *, source=None, outDir=None, env=None, limits=Limits(), files=None, workdir="/src"):
        """
        Run C{argv} in the sandbox.

        @param source: a host folder copied into C{/src}: tau archives it
            (a host C{tar}, as tau's user) into the sandbox's stdin, so the
            sandbox sees no host path of it.
        @param outDir: a host folder (not yet existing) to receive the tree
            the command left in C{/out}; None to drop it.
        @param env: variables for the command (besides C{PATH}, C{HOME},
            C{TMPDIR}, C{LANG}, which it may override).
        @param files: C{{sandbox path: host file}}, files copied in
            read-only (passed as open files: the host path need not be
            reachable by the sandbox's user).
        @return: a coroutine of a L{SandboxResult}; cancelling the Deferred
            that runs it kills the command.
        @raise SandboxUnavailable: bwrap does not work here.
        """
        await self.check()
        tools = self._tools()
        variables = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp",
                     "LANG": "C.UTF-8"}
        for name, value in (env or {}).items():
            if not _NAME.match(name) or "\0" in value:
                raise ValueError(f"bad variable for the sandbox: {name!r}")
            variables[name] = value
        variables["TAU_SOURCE"] = "0" if source is None else "1"
        args = self._base(variables)
        args += ["--size", str(limits.tmpBytes), "--tmpfs", "/tmp",
                 "--size", str(limits.outputBytes), "--tmpfs", "/out",
                 "--size", str(limits.sourceBytes), "--tmpfs", "/src"]
        opened = []
        try:
            for inside, host in (files or {}).items():
                opened.append(os.open(host, os.O_RDONLY))
                args += ["--ro-bind-data", str(2 + len(opened)), inside]
            args += [*_SEAL, "--chdir", workdir]
            fsize = max(limits.sourceBytes, limits.outputBytes, limits.tmpBytes) + 16 * MiB
            rlimits = [f"--cpu={limits.cpuSeconds}:{limits.cpuSeconds + 1}", f"--as={limits.memoryBytes}",
                       f"--fsize={fsize}", "--core=0"]
            drop = []
            if self.runAs is not None:
                rlimits.append(f"--nproc={limits.processes}")
                drop = [tools["setpriv"], f"--reuid={self.runAs}", f"--regid={self.runAs}", "--clear-groups", "--"]
            full = [tools["setsid"], tools["prlimit"], *rlimits, "--", *drop, tools[self.bwrap], *args, "--",
                    "/bin/sh", "-c", _WRAPPER, "tau-sandbox", *argv]
            fd, tarPath = tempfile.mkstemp(prefix="tau-sandbox-", suffix=".tar")
            opened.append(fd)
        except BaseException:
            for f in opened:
                os.close(f)
            raise
        try:
            return await self._run(full, opened, tarPath, source, outDir, limits, argv)
        finally:
            if os.path.exists(tarPath):
                os.unlink(tarPath)

    async def _run(self, argv, opened, tarPath, source, outDir, limits, command):
        proto = _Collect(limits.logBytes, self.reactor)
        started = self.reactor.seconds()
        childFDs = {0: "w", 1: opened[-1], 2: "r"}
        for number, fd in enumerate(opened[:-1], start=3):
            childFDs[number] = fd
        feeder = None
        try:
            if source is not None:
                readEnd, writeEnd = os.pipe()
                opened += [readEnd, writeEnd]
                childFDs[0] = readEnd
                feeder = _Collect(4096, self.reactor)
                self.reactor.spawnProcess(feeder, self._tools()["tar"],
                                          ["tar", "-C", os.path.abspath(source), "-cf", "-", "."],
                                          env={"PATH": "/usr/bin:/bin"}, childFDs={0: "w", 1: writeEnd, 2: "r"})
            self.reactor.spawnProcess(proto, argv[0], argv, env={"PATH": "/usr/bin:/bin"}, childFDs=childFDs)
        finally:
            for fd in opened:
                os.close(fd)
        timedOut = []

        def kill():
            timedOut.append(True)
            Deferred.fromCoroutine(proto.stop()).addErrback(
                lambda f: log.failure("sandbox: stopping a command at its wall-clock limit failed", f))
        timer = self.reactor.callLater(limits.wallSeconds, kill)
        try:
            status, sig = await proto.ended
        finally:
            if timer.active():
                timer.cancel()
            # cancelled or not, nothing is left running: the sandbox, and
            # the tar feeding it (nobody reads what it writes any more)
            await proto.stop()
            if feeder is not None:
                await feeder.stop()
        elapsed = self.reactor.seconds() - started
        logged = proto.log.value()
        if timedOut:
            return SandboxResult(None, f"stopped at the wall-clock limit of {limits.wallSeconds:g} s", logged, None,
                                 elapsed)
        pool = self.reactor.getThreadPool()
        line = await deferToThreadPool(self.reactor, pool, outcome.statusLine, tarPath)
        if line is None:
            said = logged.decode("utf-8", "replace").strip()[-2000:]
            why = f"exit status {status}" if sig is None else outcome.signalName(sig)
            return SandboxResult(None, f"the sandbox did not start ({why}): {said}", logged, None, elapsed)
        rc, free = line
        failure = outcome.failure(rc, free, limits)
        if rc == "copy" and feeder is not None and feeder.log.value():
            failure += ": " + feeder.log.value().decode("utf-8", "replace").strip()[-500:]
        code = None if rc == "copy" else int(rc)
        output = None
        if failure is None and outDir is not None:
            try:
                await deferToThreadPool(self.reactor, pool, outcome.extract, tarPath, outDir, limits)
                output = outDir
            except outcome.BadOutput as e:
                failure = str(e)
        log.info("sandboxed {command} ended in {elapsed:.2f} s: {failure}", command=command[:1], elapsed=elapsed,
                 failure=failure or "ok")
        return SandboxResult(code, failure, logged, output, elapsed)


def _pipeInodes(transport):
    """
    The inodes of the pipes between us and the process of C{transport}.
    """
    inodes = set()
    for pipe in getattr(transport, "pipes", {}).values():
        try:
            inodes.add(os.fstat(pipe.fileno()).st_ino)
        except (OSError, ValueError):
            pass
    return inodes


def _pipeHolders(inodes, proc="/proc"):
    """
    The pids of the processes (not ours) with a pipe of C{inodes} open.
    """
    wanted = {f"pipe:[{inode}]" for inode in inodes}
    holders = []
    if not wanted:
        return holders
    me = os.getpid()
    for name in os.listdir(proc):
        if not name.isdigit() or int(name) == me:
            continue
        folder = os.path.join(proc, name, "fd")
        try:
            fds = os.listdir(folder)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(os.path.join(folder, fd)) in wanted:
                    holders.append(int(name))
                    break
            except OSError:
                continue
    return holders


def _killGroup(transport):
    pid = transport.pid
    if pid is None:
        return
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
            return
    except ProcessLookupError:
        return
    transport.signalProcess("KILL")
