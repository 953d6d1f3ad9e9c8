"""
The monkey's parts on their own: its config section, the clone's checks,
the job log, the artefact zip, the code targets, hoarder stashes, the
service factory.
"""

import io
import os
import zipfile
from pathlib import Path

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from tau import fakes, loadConfig
from tau.build.sandbox import MiB
from tau.errors import ConfigError
from tau.interfaces import IContent, IHost, IMembers, IPatrickClient, IRouting, ITNSClient
from tau.services import Capabilities, factoryFor
from tau.services.monkey import clone
from tau.services.monkey.config import MonkeyConfig
from tau.services.monkey.joblog import JobLog, rfc3339
from tau.services.monkey.runner import artifactZip, branchOf, codeTargets, repositoryNumber
from tau.services.monkey.service import MonkeyService, workdirOf
from tau.services.monkey.stash import GIVE_UP, RETRY, Stasher
from tau.services.patrick.client import PatrickClient
from tau.services.patrick.job import Meta, Repository


class ConfigTests(SynchronousTestCase):
    def test_defaults(self):
        config = MonkeyConfig.check("test", None)
        self.assertEqual(config, MonkeyConfig())
        limits = config.limits()
        self.assertEqual((limits.cpuSeconds, limits.wallSeconds, limits.memoryBytes, limits.outputBytes),
                         (300, 600.0, 4096 * MiB, 256 * MiB))

    def test_read(self):
        config = MonkeyConfig.check("test", {"poll-interval": 2, "build-memory": "1GiB", "build-output": 1,
                                             "build-cpu": 1, "workdir": "jobs"})
        self.assertEqual((config.pollInterval, config.buildMemory, config.buildOutput, config.buildCPU,
                          config.workdir), (2.0, 1 << 30, 1, 1, "jobs"))

    def test_refused(self):
        for field, value, said in [("poll-interval", 0, "positive number of seconds"),
                                   ("build-cpu", 0, "whole number of seconds above 0"),
                                   ("build-cpu", 1.5, "whole number of seconds above 0"),
                                   ("build-output", 0, "size above 0"),
                                   ("build-memory", "lots", "invalid size"),
                                   ("workdir", "", "folder path"),
                                   ("colour", 1, "unknown field")]:
            with self.assertRaises(ConfigError) as caught:
                MonkeyConfig.check("test", {field: value})
            self.assertIn(f"monkey.{field}", str(caught.exception))
            self.assertIn(said, str(caught.exception))

    def test_nodeConfig(self):
        root = Path(self.mktemp())
        config = loadConfig(shape="monkey", root=root, overrides={"monkey": {"workdir": "jobs"}})
        self.assertEqual(config.monkey.workdir, "jobs")
        self.assertEqual(workdirOf(config), root / "jobs")
        self.assertEqual(workdirOf(loadConfig(shape="monkey", root=root)), loadConfig(
            shape="monkey", root=root).dataDir / "monkey")


class CloneCheckTests(SynchronousTestCase):
    def test_urls(self):
        self.assertEqual(clone.urlKind("https://git.example.com/a/b.git"), "http")
        self.assertEqual(clone.urlKind("http://127.0.0.1:8080/7.git"), "http")
        self.assertEqual(clone.urlKind("ssh://git@github.com/a/b.git"), "ssh")
        self.assertEqual(clone.urlKind("git@github.com:a/b.git"), "ssh")
        for url in ("file:///etc", "ext::sh -c id", "/srv/repo", "local:///srv/repo", "-uhttps://x", "", None,
                    "https://x/" + "a" * 3000, "--upload-pack=touch@x:y"):
            with self.assertRaises(clone.CloneError):
                clone.urlKind(url)

    def test_redact(self):
        self.assertEqual(clone.redact("https://alice:tok@h/x.git"), "https://***@h/x.git")
        self.assertEqual(clone.redact("https://h/x.git"), "https://h/x.git")

    def test_commits(self):
        clone.checkCommit("a" * 40)
        clone.checkCommit("b" * 64)
        for commit in ("", "a" * 39, "a" * 41, "A" * 40, "main", None):
            with self.assertRaises(clone.CloneError):
                clone.checkCommit(commit)
        with self.assertRaises(clone.CloneError) as caught:
            clone.checkCommit("0" * 40)
        self.assertIn("deleted the branch", str(caught.exception))

    def test_branches(self):
        clone.checkBranch("main")
        clone.checkBranch("feature/x-1")
        for branch in ("", "-x", "a..b", "x.lock", "a b", "x/", None):
            with self.assertRaises(clone.CloneError):
                clone.checkBranch(branch)

    def test_credentialNotOnCommandLine(self):
        env = clone.environment("http", "KEY", self.mktemp(), "/g", "/w")
        values = [env[f"GIT_CONFIG_VALUE_{i}"] for i in range(int(env["GIT_CONFIG_COUNT"]))]
        self.assertTrue(any(v.startswith("Authorization: Basic ") for v in values))
        self.assertEqual(env["GIT_ALLOW_PROTOCOL"], "http:https:ssh")
        self.assertEqual(clone.environment("http", None, self.mktemp(), "/g", "/w")["GIT_CONFIG_COUNT"], "4")


class PartsTests(SynchronousTestCase):
    def test_rfc3339(self):
        self.assertEqual(rfc3339(0), "1970-01-01T00:00:00Z")
        self.assertEqual(rfc3339(1796657433.7), "2026-12-07T15:30:33Z")

    def test_jobLogBounded(self):
        clock = Clock()
        joblog = JobLog(clock, 1000)
        joblog.say("one\ntwo")
        self.assertEqual(joblog.value(), b"1970-01-01T00:00:00Z one\n1970-01-01T00:00:00Z two\n")
        joblog.output(b"x" * 5000)
        value = joblog.value()
        self.assertLessEqual(len(value), 1000 + 100)
        self.assertIn(b"bytes of log dropped", value)

    def test_artifactZip(self):
        data = artifactZip(b"\0asm\1\0\0\0")
        self.assertEqual(data, artifactZip(b"\0asm\1\0\0\0"))
        archive = zipfile.ZipFile(io.BytesIO(data))
        self.assertEqual(archive.read("main.wasm"), b"\0asm\1\0\0\0")

    def test_codeTargets(self):
        project = {
            "functions": {"F1": {"name": "a", "source": "."}, "F2": {"name": "b", "source": "libraries/L"},
                          "F3": {"name": "../x", "source": "."}},
            "smartops": {"S1": {"name": "guard", "source": "."}},
            "applications": {"A": {"name": "shop", "functions": {"F4": {"name": "c", "source": "."}}}},
        }
        self.assertEqual(codeTargets("/r", project), [("F1", "functions", "a", "/r/functions/a"),
                                                      ("S1", "smartops", "guard", "/r/smartops/guard"),
                                                      ("F4", "functions", "c", "/r/shop/functions/c")])

    def test_ids(self):
        self.assertEqual(repositoryNumber("42"), 42)
        self.assertEqual(repositoryNumber(42), 42)
        self.assertEqual(repositoryNumber("abc"), "abc")
        self.assertEqual(branchOf(Meta(ref="refs/heads/dev")), "dev")
        self.assertEqual(branchOf(Meta(ref="refs/heads/dev", repository=Repository(branch="main"))), "main")


class FlakyHoarder:
    def __init__(self, failures):
        self.failures = failures
        self.calls = []

    def stash(self, cid, target=2):
        self.calls.append((cid, target))
        if len(self.calls) <= self.failures:
            return fail(RuntimeError("no hoarder answered"))
        return succeed({})


async def _await(d):
    return await d


def stashOf(hoarder):
    return lambda cid, target=2: _await(hoarder.stash(cid, target))


class StashTests(SynchronousTestCase):
    def stasher(self, failures):
        clock = Clock()
        hoarder = FlakyHoarder(failures)
        client = type("Client", (), {"stash": staticmethod(stashOf(hoarder))})()
        return clock, hoarder, Stasher(clock, lambda: client)

    def test_retried(self):
        clock, hoarder, stasher = self.stasher(2)
        stasher.stash("cidA")
        self.assertEqual(stasher.pending(), ["cidA"])
        clock.advance(RETRY)
        clock.advance(RETRY)
        self.assertEqual(hoarder.calls, [("cidA", 2)] * 3)
        self.assertEqual(stasher.pending(), [])

    def test_givenUp(self):
        clock, hoarder, stasher = self.stasher(10 ** 6)
        stasher.stash("cidA")
        for _ in range(int(GIVE_UP / RETRY) + 5):
            clock.advance(RETRY)
        self.assertEqual(stasher.pending(), [])
        # the first try, then one every RETRY seconds until GIVE_UP
        self.assertEqual(len(hoarder.calls), int(GIVE_UP / RETRY) + 1)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_stop(self):
        clock, hoarder, stasher = self.stasher(10 ** 6)
        stasher.stash("cidA")
        stasher.stop()
        self.assertEqual(clock.getDelayedCalls(), [])
        stasher.stash("cidB")
        self.assertEqual(len(hoarder.calls), 1)

    def test_noHoarder(self):
        seen = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        stasher = Stasher(Clock(), lambda: None)
        stasher.stash("cidA")
        stasher.stash("cidB")
        said = [e for e in seen if "no hoarder in this build" in e.get("log_format", "")]
        self.assertEqual(len(said), 1)
        self.assertEqual(said[0]["log_level"], LogLevel.info)
        self.assertEqual(stasher.pending(), [])


class Members:
    async def isMember(self, peer, service=None):
        return False


class FactoryTests(TestCase):
    def test_factory(self):
        """
        The factory declares what it uses and builds an unstarted monkey
        that serves /monkey/v1 once started.
        """
        factory = factoryFor("monkey")
        self.assertEqual(set(factory.needs), {IHost, IRouting, IContent, ITNSClient, IMembers, IPatrickClient})
        clock = Clock()
        host = fakes.FakeHost(clock)
        config = loadConfig(shape="monkey", root=Path(self.mktemp()))
        patrick = PatrickClient(host, None)
        capabilities = Capabilities({IHost: host, IRouting: fakes.FakeRouting(), IContent: fakes.FakeContent(),
                                     ITNSClient: fakes.fakeTNSClient(clock), IMembers: Members(),
                                     IPatrickClient: patrick})
        verifyObject(IContent, capabilities[IContent])
        verifyObject(IPatrickClient, patrick)
        service = factory(capabilities.only(factory.needs), config, clock)
        self.assertIsInstance(service, MonkeyService)
        # patrick is reached through the node's client (on a node that runs
        # patrick, it asks that one too)
        self.assertIs(service.patrick, patrick)
        self.assertEqual(service.name, "monkey")
        self.assertNotIn("/monkey/v1", host.protocols())
        self.assertEqual(clock.getDelayedCalls(), [])


class CountingPatrick:
    def __init__(self, error=None):
        self.dequeues = 0
        self.error = error

    async def dequeue(self):
        self.dequeues += 1
        if self.error:
            raise self.error
        return None


class FakeSandbox:
    def __init__(self, why=None):
        self.why = why

    async def check(self):
        if self.why:
            from tau.build.sandbox import SandboxUnavailable
            raise SandboxUnavailable(self.why)


class LoopTests(SynchronousTestCase):
    def monkey(self, patrick, sandbox):
        clock = Clock()
        host = fakes.FakeHost(clock)
        service = MonkeyService(host, clock, MonkeyConfig(pollInterval=5.0), None, patrick, sandbox,
                                fakes.FakeContent())
        service.startService()
        self.addCleanup(service.stopService)
        return clock, host, service

    def logged(self):
        seen = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        return seen

    def test_pollsEveryInterval(self):
        """
        An idle monkey asks patrick for a job every poll interval, and
        serves /monkey/v1; stopping it stops the loop.
        """
        patrick = CountingPatrick()
        clock, host, service = self.monkey(patrick, FakeSandbox())
        self.assertIn("/monkey/v1", host.protocols())
        clock.advance(0)
        self.assertEqual(patrick.dequeues, 1)
        clock.advance(4.9)
        self.assertEqual(patrick.dequeues, 1)
        clock.advance(0.1)
        self.assertEqual(patrick.dequeues, 2)
        service.stopService()
        self.assertNotIn("/monkey/v1", host.protocols())
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_patrickUnreachable(self):
        """
        A patrick that cannot be reached is said once, and asked again.
        """
        seen = self.logged()
        patrick = CountingPatrick(RuntimeError("no node offers /patrick/v1"))
        clock, host, service = self.monkey(patrick, FakeSandbox())
        clock.advance(0)
        clock.advance(5)
        clock.advance(5)
        self.assertEqual(patrick.dequeues, 3)
        said = [e for e in seen if "cannot ask patrick" in e.get("log_format", "")]
        self.assertEqual(len(said), 1)
        self.assertEqual(said[0]["why"], "no node offers /patrick/v1")

    def test_noSandbox(self):
        """
        Where the sandbox cannot run, the monkey takes no job and says why.
        """
        seen = self.logged()
        patrick = CountingPatrick()
        clock, host, service = self.monkey(patrick, FakeSandbox("cannot sandbox builds: bwrap is not installed"))
        clock.advance(0)
        clock.advance(60)
        self.assertEqual(patrick.dequeues, 0)
        self.assertEqual(service.unavailable, "cannot sandbox builds: bwrap is not installed")
        said = [e for e in seen if "takes no jobs" in e.get("log_format", "")]
        self.assertEqual([e["log_level"] for e in said], [LogLevel.error])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_jobCommandRefusals(self):
        """
        The job command names what is wrong: no jid, an unknown job, an
        unknown action.
        """
        from tau.services.framework import LocalCalls
        from tau.services.commands import RemoteError

        clock, host, service = self.monkey(CountingPatrick(), FakeSandbox())
        calls = LocalCalls(service.router._handlers, "caller")
        for body, said in [({"action": "status"}, "job: jid is missing"),
                           ({"action": "status", "jid": "j1"}, "job j1 is not known to this monkey"),
                           ({"action": "cancel", "jid": "j1"}, "job j1 is not running on this monkey"),
                           ({"action": "explode", "jid": "j1"}, "job: unknown action 'explode'")]:
            d = Deferred.fromCoroutine(calls.call("job", body))
            failure = self.failureResultOf(d, RemoteError)
            self.assertIn(said, str(failure.value))
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(calls.call("job", {"action": "list"}))),
                         {"ids": []})


class CloneWatchTests(TestCase):
    async def test_killedPastTheLimit(self):
        """
        A git command whose folder grows past the limit is stopped while it
        runs (it is cancelled, as runGit kills git), not when it ends.
        """
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        work = self.mktemp()
        os.makedirs(work)
        stopped = []

        async def git():
            with open(os.path.join(work, "pack"), "wb") as f:
                f.write(b"x" * 2000)
            try:
                await deferLater(reactor, 30, lambda: None)
            except CancelledError:
                stopped.append(reactor.seconds())
                raise

        start = reactor.seconds()
        with self.assertRaises(clone.CloneError) as caught:
            await clone._watched(reactor, git(), work, 1000, 0.05)
        self.assertEqual(str(caught.exception), "the repository is larger than the clone limit of 1000 bytes")
        self.assertEqual(len(stopped), 1)
        self.assertLess(stopped[0] - start, 5)

    async def test_withinTheLimit(self):
        from twisted.internet import reactor

        work = self.mktemp()
        os.makedirs(work)

        async def git():
            with open(os.path.join(work, "pack"), "wb") as f:
                f.write(b"x" * 1000)
            return "ok"

        self.assertEqual(await clone._watched(reactor, git(), work, 1000, 0.05), "ok")
