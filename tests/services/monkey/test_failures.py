"""
Jobs that fail: a broken config, a build that loops, fills its disk or
tries the network, a lost lease, a job past its time, a cancel.  Each ends:
failed (within 10 s of its failure, with a log saying why) or dropped;
nothing is published and tns keeps pointing at the last good version.
"""

import os
import socket
from dataclasses import replace

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tau.build.sandbox import MiB
from tau.project.indexes import assetKey
from tau.services.framework import LocalCalls
from tau.services.monkey.runner import JobFailed
from tests.build.test_taubyte import BUILD_SH, PING_WAT
from tests.services.monkey.helpers import (
    CODE_REPO,
    CONFIG_FILES,
    CONFIG_REPO,
    FUNCTION_WAT,
    PROJECT,
    World,
    function,
    taubyteConfig,
)

#: the project with one WAT function, and its code
ONE_FUNCTION = {**CONFIG_FILES, "functions/rping.yaml": None, "websites/site.yaml": None}


def pingCode(script=BUILD_SH):
    return {**{f"functions/ping/{k}": v for k, v in taubyteConfig("tau/wat").items()},
            "functions/ping/.taubyte/build.sh": script, "functions/ping/ping.wat": PING_WAT}


class FailureTests(TestCase):
    timeout = 180

    async def setUp(self):
        self.world = await World().start(self, buildCPU=1, buildWall=90.0, buildOutput=1 * MiB)
        self.failedAt = []
        runner = self.world.monkey.runner
        run = runner.run

        async def timed(job, joblog):
            try:
                return await run(job, joblog)
            except JobFailed:
                self.failedAt.append(reactor.seconds())
                raise
        runner.run = timed

    async def good(self):
        """
        A good config and a good build of its one function: the asset CID.
        """
        await self.world.push(CONFIG_REPO, ONE_FUNCTION)
        self.world.queue(self.world.job(CONFIG_REPO, await self.world.push(CONFIG_REPO, {})))
        after = await self.world.push(CODE_REPO, pingCode())
        self.world.queue(self.world.job(CODE_REPO, after))
        await self.world.startMonkey()
        reports = await self.world.patrick.wait(2)
        self.assertEqual([r["action"] for r in reports], ["done", "done"], await self.world.logOf(reports[-1]))
        return reports[1]["assets"][FUNCTION_WAT]

    async def failedJob(self, repoId, files, count):
        """
        Push C{files}, run the job: its failed report and its log.
        """
        after = await self.world.push(repoId, files)
        self.world.queue(self.world.job(repoId, after))
        if not self.world.monkey.running:
            await self.world.startMonkey()
        reports = await self.world.patrick.wait(count)
        report = reports[count - 1]
        log = await self.world.logOf(report)
        self.assertEqual(report["action"], "failed", log)
        self.assertEqual(report["assets"], {})
        self.assertTrue(self.failedAt, "the runner did not fail")
        self.assertLess(report["at"] - self.failedAt[-1], 10)
        self.assertIn("CI/CD Errors:", log)
        return report, log

    async def test_brokenConfig(self):
        """
        A config that does not compile fails its job with the compiler's
        FILE:LINE messages; tns keeps the last good config.
        """
        first = await self.world.push(CONFIG_REPO, CONFIG_FILES)
        self.world.queue(self.world.job(CONFIG_REPO, first))
        await self.world.startMonkey()
        await self.world.patrick.wait(1)
        broken = function(FUNCTION_WAT, "ping", "ping").replace("  timeout: 5s\n", "  timeout: soon\n")
        report, log = await self.failedJob(CONFIG_REPO, {"functions/ping.yaml": broken}, 2)
        self.assertRegex(log, r"config error: /?functions/ping\.yaml:\d+: execution/timeout: ")
        self.assertIn("the config does not compile (1 error); nothing was published", log)
        self.assertEqual((await self.world.tns.project(PROJECT, "main"))["commit"], first)

    async def test_wrongProjectId(self):
        """
        A config repository whose project id is not the project's fails.
        """
        other = "QmTDPCiJR8JVkjd1ZUabBHqBffZZKGSKhrJHeXqRUnu9P4"
        _, log = await self.failedJob(CONFIG_REPO, {**CONFIG_FILES, "config.yaml": f"id: {other}\n"}, 1)
        self.assertIn(f"project ids not equal `{PROJECT}` != `{other}`", log)
        self.assertIsNone(await self.world.tns.project(PROJECT, "main"))

    async def assertKept(self, cid):
        self.assertEqual(await self.world.tns.fetch(assetKey(PROJECT, FUNCTION_WAT, "main")), cid)

    async def test_buildLoops(self):
        """
        A build that loops is stopped at the CPU-time limit; the last good
        build stays published.
        """
        cid = await self.good()
        _, log = await self.failedJob(CODE_REPO, pingCode("while :; do :; done\n"), 3)
        self.assertIn("function ping: the build failed: stopped at the CPU-time limit of 1 s", log)
        await self.assertKept(cid)

    async def test_buildSleeps(self):
        """
        A build that waits past the wall-clock limit is killed.
        """
        self.world.monkey.runner.builder.limits = replace(self.world.config.limits(), wallSeconds=1.0)
        cid = await self.good()
        _, log = await self.failedJob(CODE_REPO, pingCode("sleep 600\n"), 3)
        self.assertIn("function ping: the build failed: stopped at the wall-clock limit of 1 s", log)
        await self.assertKept(cid)

    async def test_buildFillsDisk(self):
        """
        A build that fills its output fails at the size limit.
        """
        cid = await self.good()
        _, log = await self.failedJob(CODE_REPO, pingCode('yes > "$OUT/big"\n'), 3)
        self.assertIn("function ping: the build failed: exited with status 1 after filling /out (its limit is 1 MiB)",
                      log)
        await self.assertKept(cid)

    async def test_buildTriesNetwork(self):
        """
        A build that connects out (here to the git host it was cloned from,
        on the host's loopback) cannot: the sandbox has no network.
        """
        cid = await self.good()
        port = self.world.hosting.port
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        script = f"bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port} && echo CONNECTED'\n"
        _, log = await self.failedJob(CODE_REPO, pingCode(script), 3)
        self.assertNotIn("CONNECTED", log)
        self.assertIn("Connection refused", log)
        self.assertIn("function ping: the build failed: exited with status 1", log)
        await self.assertKept(cid)

    async def test_brokenBuildConfig(self):
        """
        A function whose .taubyte/config.yaml is not Taubyte's fails saying
        so.
        """
        cid = await self.good()
        files = {**pingCode(), "functions/ping/.taubyte/config.yaml": "environment: [1, 2]\n"}
        _, log = await self.failedJob(CODE_REPO, files, 3)
        self.assertIn("function ping: the build failed: .taubyte/config.yaml: environment must be a mapping", log)
        await self.assertKept(cid)

    async def test_missingFolder(self):
        """
        A function of the config with no folder in the code repository
        fails the job, naming the folder.
        """
        await self.world.push(CONFIG_REPO, ONE_FUNCTION)
        self.world.queue(self.world.job(CONFIG_REPO, await self.world.push(CONFIG_REPO, {})))
        await self.world.startMonkey()
        await self.world.patrick.wait(1)
        _, log = await self.failedJob(CODE_REPO, {"README.md": "nothing\n"}, 2)
        self.assertIn("function ping: the code repository has no folder functions/ping", log)

    async def test_codeBeforeConfig(self):
        """
        A code job of a project with no config in tns fails saying so.
        """
        _, log = await self.failedJob(CODE_REPO, pingCode(), 1)
        self.assertIn(f"project {PROJECT} has no config published on branch main", log)

    async def test_unknownRepository(self):
        """
        A repository that is neither the project's code nor config
        repository, and no library or website of it in tns, fails.
        """
        self.world.auth.repositories[("github", 999)] = {"id": 999, "provider": "github", "project": PROJECT,
                                                         "key": "k"}
        self.world.queue(self.world.job(999, "b" * 40))
        await self.world.startMonkey()
        [report] = await self.world.patrick.wait(1)
        log = await self.world.logOf(report)
        self.assertEqual(report["action"], "failed")
        self.assertIn("repository 999 is neither the code nor the config repository of project", log)

    async def test_badURL(self):
        """
        Only http(s) and ssh URLs are cloned: a local path or C{ext::} is
        refused.
        """
        for n, url in enumerate(["file:///etc", "ext::sh -c touch% /tmp/pwned", "/srv/repo"]):
            self.world.queue(self.world.job(CONFIG_REPO, "c" * 40, jid=f"bad{n}", url=url))
        await self.world.startMonkey()
        reports = await self.world.patrick.wait(3)
        for report in reports:
            self.assertEqual(report["action"], "failed")
            self.assertIn("only https, http and ssh URLs are cloned", await self.world.logOf(report))

    async def test_wrongDeployKey(self):
        """
        A clone with a deploy key the git host does not take fails with
        git's words.
        """
        after = await self.world.push(CONFIG_REPO, CONFIG_FILES)
        self.world.auth.repositories[("github", CONFIG_REPO)]["key"] = "not the key"
        self.world.queue(self.world.job(CONFIG_REPO, after))
        await self.world.startMonkey()
        [report] = await self.world.patrick.wait(1)
        log = await self.world.logOf(report)
        self.assertEqual(report["action"], "failed")
        self.assertIn(f"git could not fetch branch main of {self.world.hosting.url(str(CONFIG_REPO))}", log)

    async def test_cloneTooLarge(self):
        """
        A repository larger than the clone limit fails its job; nothing is
        published.
        """
        self.world.monkey.runner.maxClone = 1 * MiB
        after = await self.world.push(CONFIG_REPO, {**CONFIG_FILES, "blob.txt": os.urandom(3 * MiB).hex()})
        self.world.queue(self.world.job(CONFIG_REPO, after))
        await self.world.startMonkey()
        [report] = await self.world.patrick.wait(1)
        self.assertEqual(report["action"], "failed")
        self.assertIn(f"the repository is larger than the clone limit of {MiB} bytes", await self.world.logOf(report))
        self.assertIsNone(await self.world.tns.project(PROJECT, "main"))

    async def test_deployKeyLate(self):
        """
        auth is asked again (3 times) while it has no deploy key for the
        repository; without one the clone is refused by the host.
        """
        after = await self.world.push(CONFIG_REPO, CONFIG_FILES)
        self.world.auth.repositories[("github", CONFIG_REPO)]["key"] = ""
        self.world.monkey.runner.authDelay = 0.01
        self.world.queue(self.world.job(CONFIG_REPO, after))
        await self.world.startMonkey()
        [report] = await self.world.patrick.wait(1)
        log = await self.world.logOf(report)
        self.assertEqual(report["action"], "failed")
        self.assertEqual(log.count("auth has no deploy key for repository github/201 yet"), 3)
        self.assertIn("git could not fetch branch main", log)

    async def test_unknownCommit(self):
        """
        A job naming a commit the repository does not hold fails.
        """
        await self.world.push(CONFIG_REPO, CONFIG_FILES)
        self.world.queue(self.world.job(CONFIG_REPO, "d" * 40))
        await self.world.startMonkey()
        [report] = await self.world.patrick.wait(1)
        self.assertEqual(report["action"], "failed")
        self.assertIn(f"commit {'d' * 40} is not in", await self.world.logOf(report))


class LifecycleTests(TestCase):
    timeout = 120

    async def setUp(self):
        self.world = await World().start(self, leaseInterval=0.2, jobTimeout=60.0)
        await self.world.push(CONFIG_REPO, ONE_FUNCTION)
        self.world.queue(self.world.job(CONFIG_REPO, await self.world.push(CONFIG_REPO, {})))
        await self.world.startMonkey()
        await self.world.patrick.wait(1)
        self.building = []
        builder = self.world.monkey.runner.builder
        build = builder.buildWasm

        async def recorded(root, libraries=()):
            self.building.append(root)
            return await build(root, libraries)
        builder.buildWasm = recorded

    async def sleepingJob(self):
        """
        A job whose build sleeps, once its build started (past the clone:
        git's transfer is not cut).
        """
        after = await self.world.push(CODE_REPO, pingCode("sleep 600\n"))
        job = self.world.job(CODE_REPO, after)
        self.world.queue(job)
        for _ in range(1200):
            if self.building:
                break
            await deferLater(reactor, 0.05, lambda: None)
        self.assertTrue(self.building, "the build did not start")
        self.assertEqual(self.world.monkey._running.jid, job.id)
        return job

    async def waitEnded(self, jid):
        for _ in range(400):
            record = self.world.monkey.jobs.get(jid)
            if record is not None and record.status.ended:
                return record
            await deferLater(reactor, 0.05, lambda: None)
        self.fail(f"job {jid} did not end")

    async def test_leaseChecked(self):
        """
        While a job runs, patrick is asked every lease interval whether it
        is still the monkey's; when it is not, the run is killed and
        nothing is reported.
        """
        job = await self.sleepingJob()
        for _ in range(100):
            if len([a for a in self.world.patrick.asked if a[0] == job.id]) >= 2:
                break
            await deferLater(reactor, 0.05, lambda: None)
        self.world.patrick.assigned.discard(job.id)
        start = reactor.seconds()
        record = await self.waitEnded(job.id)
        self.assertLess(reactor.seconds() - start, 5)
        self.assertEqual(record.failure, "no longer assigned to this monkey: dropped")
        self.assertEqual(len(self.world.patrick.reports), 1)

    async def test_cancel(self):
        """
        The job command lists, shows and cancels the running job; a
        cancelled job is not reported.
        """
        job = await self.sleepingJob()
        calls = LocalCalls(self.world.monkey.router._handlers, "caller")
        self.assertIn(job.id, (await calls.call("job", {"action": "list"}))["ids"])
        self.assertEqual((await calls.call("job", {"action": "status", "jid": job.id}))["status"], 1)
        self.assertIsNone(await calls.call("job", {"action": "cancel", "jid": job.id}))
        record = await self.waitEnded(job.id)
        self.assertEqual(int(record.status), 3)
        self.assertEqual((await calls.call("job", {"action": "status", "jid": job.id}))["status"], 3)
        self.assertEqual(len(self.world.patrick.reports), 1)
        with self.assertRaises(Exception) as caught:
            await calls.call("job", {"action": "cancel", "jid": job.id})
        self.assertIn("is not running on this monkey", str(caught.exception))

    async def test_cancelRefusedToStrangers(self):
        """
        Only nodes of the cloud may cancel a job.
        """
        async def trusted(peer):
            return peer == "member"
        self.world.monkey.trusted = trusted
        job = await self.sleepingJob()
        with self.assertRaises(Exception) as caught:
            await LocalCalls(self.world.monkey.router._handlers, "stranger").call(
                "job", {"action": "cancel", "jid": job.id})
        self.assertIn("only nodes of this cloud may cancel a job", str(caught.exception))
        self.assertIsNone(await LocalCalls(self.world.monkey.router._handlers, "member").call(
            "job", {"action": "cancel", "jid": job.id}))
        await self.waitEnded(job.id)

    async def test_jobTimeout(self):
        """
        A job past its time limit is stopped and reported failed.
        """
        self.world.monkey.config = replace(self.world.config, jobTimeout=2.0)
        after = await self.world.push(CODE_REPO, pingCode("sleep 600\n"))
        job = self.world.job(CODE_REPO, after)
        self.world.queue(job)
        reports = await self.world.patrick.wait(2)
        self.assertEqual((reports[1]["jid"], reports[1]["action"]), (job.id, "failed"))
        log = await self.world.logOf(reports[1])
        self.assertIn("the job ran past its limit of 2 s and was stopped", log)

    async def test_stopWaits(self):
        """
        Stopping the monkey kills the job under way and waits for it.
        """
        job = await self.sleepingJob()
        await self.world.monkey.stopService()
        record = self.world.monkey.jobs[job.id]
        self.assertEqual(record.failure, "stopped with the node")
        self.assertIsNone(self.world.monkey._running)
