"""
The bubblewrap sandbox, run for real (bwrap from Debian's bubblewrap).
"""

import os
import socket

from twisted.internet import reactor, task
from twisted.internet.defer import CancelledError, Deferred
from twisted.trial.unittest import SkipTest, TestCase

from tau.build import sandbox
from tau.build.sandbox import MiB, BoundedLog, Limits, Sandbox, SandboxUnavailable

SMALL = Limits(cpuSeconds=2, wallSeconds=20, memoryBytes=512 * MiB, sourceBytes=8 * MiB, outputBytes=1 * MiB,
               tmpBytes=8 * MiB, logBytes=64 * 1024, outputFiles=100)


def limits(**changes):
    values = {name: getattr(SMALL, name) for name in SMALL.__dataclass_fields__}
    values.update(changes)
    return Limits(**values)


def sh(script):
    return ["/bin/sh", "-c", script]


class BoundedLogTests(TestCase):
    def test_exactlyTheLimit(self):
        """
        A stream of exactly the limit is kept whole, in any pieces.
        """
        log = BoundedLog(10)
        for piece in (b"012", b"3456", b"789"):
            log.write(piece)
        self.assertEqual(log.value(), b"0123456789")
        self.assertEqual(log.dropped, 0)

    def test_onePast(self):
        """
        One byte past the limit drops one byte from the middle, and says so;
        the start and the end are kept.
        """
        log = BoundedLog(10)
        log.write(b"0123456789X")
        self.assertEqual(log.dropped, 1)
        self.assertEqual(log.value(), b"01234\n[... 1 bytes of log dropped ...]\n6789X")

    def test_longStream(self):
        log = BoundedLog(100)
        for _ in range(1000):
            log.write(b"x" * 99 + b"\n")
        self.assertEqual(log.dropped, 100000 - 100)
        self.assertEqual(len(log.head) + len(log.tail), 100)


class LimitsTests(TestCase):
    def test_refused(self):
        for name, value in (("cpuSeconds", 0), ("outputBytes", -1), ("logBytes", 1.5), ("wallSeconds", 0)):
            with self.assertRaises(ValueError) as caught:
                limits(**{name: value})
            self.assertIn(name, str(caught.exception))


class SandboxTests(TestCase):
    """
    Real sandboxed commands.
    """

    def setUp(self):
        self.sandbox = Sandbox(reactor)
        self.source = self.mktemp()
        os.makedirs(self.source)
        with open(os.path.join(self.source, "a.txt"), "w") as f:
            f.write("from the host\n")

    def run_(self, argv, **kw):
        kw.setdefault("limits", SMALL)
        kw.setdefault("source", self.source)
        return Deferred.fromCoroutine(self.sandbox.run(argv, **kw))

    async def _ok(self, argv, **kw):
        result = await self.run_(argv, **kw)
        self.assertIsNone(result.failure, result.log)
        return result

    def test_sourceInOutputOut(self):
        """
        The source is in /src (the working folder), what the command leaves
        in /out comes back in the output folder, its output and error are
        logged, and the variables given reach it.
        """
        out = self.mktemp()

        async def check():
            result = await self._ok(sh('cat a.txt; mkdir /out/d && echo "$GREETING" > /out/d/f; echo oops >&2'),
                                    outDir=out, env={"GREETING": "hi"})
            self.assertEqual(result.status, 0)
            self.assertEqual(result.log, b"from the host\noops\n")
            self.assertEqual(result.output, out)
            with open(os.path.join(out, "d", "f")) as f:
                self.assertEqual(f.read(), "hi\n")
        return Deferred.fromCoroutine(check())

    def test_hostSourceUntouched(self):
        """
        The command writes its own copy of the source: the host's folder
        stays as it was.
        """
        async def check():
            await self._ok(sh("echo changed > a.txt && rm a.txt && touch new"))
            self.assertEqual(os.listdir(self.source), ["a.txt"])
            with open(os.path.join(self.source, "a.txt")) as f:
                self.assertEqual(f.read(), "from the host\n")
        return Deferred.fromCoroutine(check())

    def test_onlySrcOutTmpWritable(self):
        """
        Everything but /src, /out, /tmp and /dev/shm is read-only: the
        toolchain, /etc, the root, /dev, /proc.
        """
        async def check():
            script = ("for p in /usr/x /etc/x /x /dev/x /proc/x /bin/x; do"
                      " if touch $p 2>/dev/null; then echo WROTE $p; fi; done;"
                      " touch /src/x /out/x /tmp/x /dev/shm/x && echo fine")
            result = await self._ok(sh(script))
            self.assertEqual(result.log, b"fine\n")
            self.assertFalse(os.path.exists(os.path.join(self.source, "x")))
        return Deferred.fromCoroutine(check())

    def test_noPrivileges(self):
        """
        The command runs as uid 1000 with no capabilities (even when tau
        runs as root), and cannot make user namespaces of its own.
        """
        async def check():
            result = await self._ok(sh("id -u; grep -E '^Cap(Eff|Prm|Amb)' /proc/self/status;"
                                       " unshare -U true 2>/dev/null && echo NESTED; echo done"))
            self.assertEqual(result.log, b"1000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n"
                                         b"CapAmb:\t0000000000000000\ndone\n")
        return Deferred.fromCoroutine(check())

    async def _whileRunning(self, sandbox, marker, inspect):
        """
        Run C{sleep marker} in C{sandbox}, call C{inspect(pid)} with the
        host pid of that sleep, then cancel the run.
        """
        d = Deferred.fromCoroutine(sandbox.run(["sleep", marker], limits=limits(wallSeconds=60)))
        try:
            for _ in range(200):
                if _running(marker, b"sleep\0"):
                    break
                await task.deferLater(reactor, 0.05, lambda: None)
            [pid] = _running(marker, b"sleep\0")
            return inspect(pid)
        finally:
            d.cancel()
            with self.assertRaises(CancelledError):
                await d

    def test_buildsNotRootOutside(self):
        """
        When tau runs as root, the sandbox's processes are nobody's on the
        host (uid 1000 inside maps to 65534 outside).
        """
        if os.geteuid() != 0:
            raise SkipTest("tau runs as root here only in CI")

        async def check():
            uids = await self._whileRunning(self.sandbox, "4545.%d" % os.getpid(), _uids)
            self.assertEqual(uids, [65534] * 4)
        return Deferred.fromCoroutine(check())

    def test_runAsTausUser(self):
        """
        With C{runAs=None} the sandbox runs as tau's own user (mapped to
        1000 inside), without a process limit.
        """
        sandbox = Sandbox(reactor, runAs=None)

        async def check():
            uids = await self._whileRunning(sandbox, "4646.%d" % os.getpid(), _uids)
            self.assertEqual(uids, [os.getuid()] * 4)
            result = await Deferred.fromCoroutine(sandbox.run(sh("id -u"), limits=SMALL))
            self.assertEqual(result.log, b"1000\n")
        return Deferred.fromCoroutine(check())

    def test_processLimit(self):
        """
        A build that starts processes without end is stopped at the
        process limit, and everything it started dies with it.
        """
        if os.geteuid() != 0:
            raise SkipTest("the process limit applies when tau runs as root (builds run as nobody)")
        marker = "4747.%d" % os.getpid()
        # a uid of this test's own: the limit counts every process of the
        # user, and other tests' builds run as nobody at the same time
        self.sandbox = Sandbox(reactor, runAs=47000 + os.getpid() % 1000)

        async def check():
            script = f"i=0; while [ $i -lt 500 ]; do sleep {marker} & i=$((i+1)); done; echo all $i"
            result = await self.run_(sh(script), limits=limits(processes=50, wallSeconds=30))
            self.assertNotIn(b"all 500", result.log)
            self.assertIn(b"Cannot fork", result.log)
            self.assertEqual(result.failure, "exited with status 2")
            for _ in range(100):
                if not _running(marker):
                    break
                await task.deferLater(reactor, 0.05, lambda: None)
            self.assertEqual(_running(marker), [])
        return Deferred.fromCoroutine(check())

    def test_hostFilesHidden(self):
        """
        Host folders outside the toolchain (the test's own folder, /root,
        /home) are not there at all.
        """
        here = os.path.abspath(".")

        async def check():
            result = await self._ok(sh(f"for p in {here} /root /home /var /work; do [ -e $p ] && echo SEEN $p; done;"
                                       " echo done"))
            self.assertEqual(result.log, b"done\n")
        return Deferred.fromCoroutine(check())

    def test_noNetwork(self):
        """
        A command cannot reach the host's loopback listeners (nor
        anything else): the connection that works from the host fails
        inside.
        """
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        socket.create_connection(("127.0.0.1", port), timeout=5).close()

        async def check():
            result = await self.run_(["/bin/bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo CONNECTED;"
                                      " exec 4<>/dev/tcp/1.1.1.1/80 && echo CONNECTED"])
            self.assertEqual(result.failure, "exited with status 1")
            self.assertNotIn(b"CONNECTED", result.log)
            self.assertIn(b"Connection refused", result.log)
        return Deferred.fromCoroutine(check())

    def test_cpuLimit(self):
        """
        A busy loop is stopped at the CPU-time limit.
        """
        async def check():
            result = await self.run_(sh("while :; do :; done"), limits=limits(cpuSeconds=1))
            self.assertEqual(result.failure, "stopped at the CPU-time limit of 1 s")
            self.assertLess(result.elapsed, 10)
        return Deferred.fromCoroutine(check())

    def test_wallClockKillsEverything(self):
        """
        A command that waits past the wall-clock limit is killed with
        everything it started (nothing is left running).
        """
        marker = "4242.%d" % os.getpid()

        async def check():
            result = await self.run_(sh(f"sleep {marker} & sleep {marker}; echo never"),
                                     limits=limits(wallSeconds=0.5))
            self.assertEqual(result.failure, "stopped at the wall-clock limit of 0.5 s")
            self.assertIsNone(result.status)
            self.assertNotIn(b"never", result.log)
            for _ in range(100):
                if not _running(marker):
                    break
                await task.deferLater(reactor, 0.05, lambda: None)
            self.assertEqual(_running(marker), [])
        return Deferred.fromCoroutine(check())

    def test_cancelKills(self):
        """
        Cancelling a run kills the command and everything it started.
        """
        marker = "4343.%d" % os.getpid()

        async def check():
            d = self.run_(sh(f"sleep {marker} & sleep {marker}"), limits=limits(wallSeconds=60))
            for _ in range(100):
                if _running(marker):
                    break
                await task.deferLater(reactor, 0.05, lambda: None)
            self.assertNotEqual(_running(marker), [])
            d.cancel()
            with self.assertRaises(CancelledError):
                await d
            for _ in range(100):
                if not _running(marker):
                    break
                await task.deferLater(reactor, 0.05, lambda: None)
            self.assertEqual(_running(marker), [])
        return Deferred.fromCoroutine(check())

    def test_outputAtTheLimit(self):
        """
        /out takes exactly its limit, and the command succeeds.
        """
        out = self.mktemp()

        async def check():
            await self._ok(sh(f"head -c {MiB} /dev/zero > /out/big"), outDir=out)
            self.assertEqual(os.path.getsize(os.path.join(out, "big")), MiB)
        return Deferred.fromCoroutine(check())

    def test_outputBomb(self):
        """
        One byte past /out's limit fails, and so does an endless writer:
        the failure names /out and its limit.
        """
        async def check():
            for script in (f"head -c {MiB + 1} /dev/zero > /out/big", "yes > /out/big"):
                result = await self.run_(sh(script), outDir=self.mktemp())
                self.assertEqual(result.failure, "exited with status 1 after filling /out (its limit is 1 MiB)")
                self.assertIsNone(result.output)
                self.assertIn(b"No space left on device", result.log)
        return Deferred.fromCoroutine(check())

    def test_tmpBomb(self):
        async def check():
            result = await self.run_(sh("yes > /tmp/big"))
            self.assertEqual(result.failure, "exited with status 1 after filling /tmp (its limit is 8 MiB)")
        return Deferred.fromCoroutine(check())

    def test_sourceTooBig(self):
        """
        A source larger than /src's limit is refused before the command runs.
        """
        with open(os.path.join(self.source, "big"), "wb") as f:
            f.write(b"\0" * (256 * 1024))

        async def check():
            result = await self.run_(sh("echo RAN"), limits=limits(sourceBytes=128 * 1024))
            self.assertEqual(result.failure, "the source does not fit the /src limit of 131072 bytes")
            self.assertIsNone(result.status)
            self.assertNotIn(b"RAN", result.log)
        return Deferred.fromCoroutine(check())

    def test_memoryLimit(self):
        """
        A process cannot map more than the memory limit; below it, it can.
        """
        async def check():
            grab = "import sys; x = bytearray(int(sys.argv[1]) * 1024 * 1024); print('got it')"
            result = await self.run_(["python3", "-c", grab, "64"], limits=limits(memoryBytes=256 * MiB))
            self.assertIsNone(result.failure, result.log)
            result = await self.run_(["python3", "-c", grab, "300"], limits=limits(memoryBytes=256 * MiB))
            self.assertEqual(result.failure, "exited with status 1")
            self.assertIn(b"MemoryError", result.log)
        return Deferred.fromCoroutine(check())

    def test_logBounded(self):
        async def check():
            result = await self._ok(sh("i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done"),
                                    limits=limits(logBytes=1000))
            self.assertTrue(result.log.startswith(b"line 0\nline 1\n"))
            self.assertTrue(result.log.endswith(b"line 1999\n"))
            self.assertIn(b"bytes of log dropped", result.log)
            self.assertLess(len(result.log), 1100)
        return Deferred.fromCoroutine(check())

    def test_outputLinkRefused(self):
        async def check():
            result = await self.run_(sh("ln -s /etc/passwd /out/p"), outDir=self.mktemp())
            self.assertEqual(result.failure, "the output holds 'p', which is neither a file nor a folder")
            self.assertIsNone(result.output)
        return Deferred.fromCoroutine(check())

    def test_outputEntries(self):
        """
        /out may hold exactly C{outputFiles} entries, not one more.
        """
        async def check():
            await self._ok(sh("touch /out/1 /out/2 /out/3"), outDir=self.mktemp(), limits=limits(outputFiles=3))
            result = await self.run_(sh("touch /out/1 /out/2 /out/3 /out/4"), outDir=self.mktemp(),
                                     limits=limits(outputFiles=3))
            self.assertEqual(result.failure, "the output holds more than 3 entries")
        return Deferred.fromCoroutine(check())

    def test_exitStatus(self):
        async def check():
            result = await self.run_(sh("exit 3"))
            self.assertEqual((result.status, result.failure), (3, "exited with status 3"))
            result = await self.run_(sh("kill -TERM $$"))
            self.assertEqual(result.failure, "killed by SIGTERM")
        return Deferred.fromCoroutine(check())

    def test_badVariable(self):
        async def check():
            with self.assertRaises(ValueError):
                await self.run_(sh("true"), env={"A-B": "x"})
        return Deferred.fromCoroutine(check())


class EscapedTests(TestCase):
    """
    A process that left the command's process group (as bwrap's sandboxed
    child does when bwrap is killed before it asked to die with it) still
    holds the command's pipes: stopping the command kills it too, instead
    of waiting for it forever.
    """

    def test_stopKillsWhatHoldsThePipes(self):
        marker = "4344.%d" % os.getpid()

        async def check():
            proto = sandbox._Collect(4096, reactor)
            reactor.spawnProcess(proto, "/bin/sh", sh(f"setsid sleep {marker} & exit 0"), env={"PATH": "/usr/bin:/bin"})
            for _ in range(100):
                if _running(marker, b"sleep"):
                    break
                await task.deferLater(reactor, 0.05, lambda: None)
            [escaped] = _running(marker, b"sleep")
            self.assertNotEqual(os.getpgid(escaped), proto.transport.pid)
            started = reactor.seconds()
            await Deferred.fromCoroutine(proto.stop()).addTimeout(10, reactor)
            self.assertLess(reactor.seconds() - started, 10)
            self.assertEqual(_running(marker, b"sleep"), [])
            self.assertTrue(proto.done.called)
        return Deferred.fromCoroutine(check())


class UnavailableTests(TestCase):
    """
    Where bwrap cannot work, nothing runs: a clear error instead.
    """

    def test_notInstalled(self):
        sandbox = Sandbox(reactor, bwrap="tau-no-such-bwrap")

        async def check():
            with self.assertRaises(SandboxUnavailable) as caught:
                await sandbox.run(sh("true"))
            self.assertEqual(str(caught.exception),
                             "cannot sandbox builds: tau-no-such-bwrap is not installed (Debian package bubblewrap)")
        return Deferred.fromCoroutine(check())

    def test_noNamespaces(self):
        """
        A bwrap that cannot make its namespaces (as on a kernel without
        unprivileged user namespaces) makes every run refuse, saying why;
        the command never runs.
        """
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        fake = os.path.join(folder, "bwrap")
        with open(fake, "w") as f:
            f.write("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
        os.chmod(fake, 0o755)
        marker = os.path.join(folder, "ran")
        sandbox = Sandbox(reactor, bwrap=fake, runAs=None)

        async def check():
            for _ in range(2):
                with self.assertRaises(SandboxUnavailable) as caught:
                    await sandbox.run(sh(f"touch {marker}"))
                self.assertIn("bwrap cannot create its namespaces here (bwrap: No permissions to creating new"
                              " namespace)", str(caught.exception))
            self.assertFalse(os.path.exists(marker))
        return Deferred.fromCoroutine(check())


    def test_hungBwrap(self):
        """
        A bwrap that hangs is killed, and the sandbox refused.
        """
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        fake = os.path.join(folder, "bwrap")
        with open(fake, "w") as f:
            f.write("#!/bin/sh\nexec sleep 1000\n")
        os.chmod(fake, 0o755)
        self.patch(sandbox, "PROBE_SECONDS", 0.2)

        async def check():
            with self.assertRaises(SandboxUnavailable) as caught:
                await Sandbox(reactor, bwrap=fake, runAs=None).check()
            self.assertEqual(str(caught.exception), "cannot sandbox builds: bwrap did not finish a no-op within 0.2 s")
        return Deferred.fromCoroutine(check())


def _uids(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]


def _running(marker, start=b""):
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    line = f.read()
                    if marker.encode() in line and line.startswith(start):
                        found.append(int(pid))
            except OSError:
                pass
    return found
