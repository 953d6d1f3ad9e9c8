"""
L{MonkeyService}: the poll loop, one job at a time, its lease, its
report, and the C{job} command; L{makeMonkey} and the service factory.
"""

from __future__ import annotations

import os
import shutil
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from tau.build.sandbox import Sandbox, SandboxUnavailable
from tau.build.taubyte import Builder
from tau.interfaces import IContent, IHost, IMembers, IPatrickClient, IRouting, ITNSClient
from tau.services import needs
from tau.services.auth.client import AuthClient
from tau.services.framework import CommandRouter, Refused
from tau.services.base import StartedService
from tau.services.monkey import PROTOCOL
from tau.services.monkey.config import MonkeyConfig
from tau.services.monkey.joblog import JobLog, rfc3339
from tau.services.monkey.runner import JobFailed, JobRunner
from tau.services.monkey.buildcache import BuildCache
from tau.services.monkey.stash import Stasher, hoarderClient
from tau.services.patrick.client import JobStatus, PatrickClient
from tau.store.unixfs import cidText

log = Logger()

#: jobs remembered for the job command
HISTORY = 100
#: tries of a report to patrick
REPORT_TRIES = 3
#: seconds between two of them
REPORT_DELAY = 1.0


@dataclass
class JobRecord:
    """
    A job this monkey took: its status (L{JobStatus}), its logs (name ->
    CID), why it failed.
    """

    jid: str
    status: JobStatus = JobStatus.LOCKED
    logs: dict = field(default_factory=dict)
    failure: str | None = None
    assets: dict = field(default_factory=dict)


class _Running:
    """
    The job under way: its Deferred and why it was stopped, if it was.
    """

    def __init__(self, jid, deferred):
        self.jid = jid
        self.deferred = deferred
        self.reason = None
        self.checks = None
        self.timer = None

    def stop(self, reason):
        if self.reason is None and not self.deferred.called:
            self.reason = reason
            self.deferred.cancel()


class MonkeyService(StartedService):
    """
    @param host: serves the C{job} command.
    @param reactor: clock, threads, processes.
    @param config: L{MonkeyConfig}.
    @param runner: a L{JobRunner}.
    @param patrick: a L{PatrickClient}.
    @param sandbox: the builds' L{Sandbox} (checked before the first job:
        where it cannot run, the monkey takes no job and says why).
    @param content: L{IContent}: the logs go there.
    @param stasher: a L{Stasher} (logs and builds to hoarder), or None.
    @param trusted: C{async trusted(peer)}: who may cancel a job (None:
        anyone).
    @param workdir: the jobs' folder (what is left there from a previous
        run is removed at start).
    """

    def __init__(self, host, reactor, config, runner, patrick, sandbox, content, *, stasher=None, trusted=None,
                 workdir=None):
        self.setName("monkey")
        self.host = host
        self.reactor = reactor
        self.config = config
        self.runner = runner
        self.patrick = patrick
        self.sandbox = sandbox
        self.content = content
        self.stasher = stasher
        self.trusted = trusted
        self.workdir = workdir
        self.router = CommandRouter(PROTOCOL, reactor)
        self.router.define("job", self._job)
        self.jobs = OrderedDict()
        self.unavailable = None
        self._installed = False
        self._timer = None
        self._ticking = None
        self._running = None
        self._stopping = False
        self._patrickDown = False

    async def _start(self):
        self._stopping = False
        if self.workdir is not None:
            await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), _clean, self.workdir)
        if not self.running:
            return self
        self.router.install(self.host)
        self._installed = True
        self._schedule(0)
        log.info("monkey serving {protocol}, polling patrick every {interval} s", protocol=PROTOCOL,
                 interval=self.config.pollInterval)
        return self

    # the loop

    def _schedule(self, delay):
        if self.running and not self._stopping and self.unavailable is None:
            self._timer = self.reactor.callLater(delay, self._tick)

    def _tick(self):
        self._timer = None
        self._ticking = Deferred.fromCoroutine(self._poll())

        def after(result):
            self._ticking = None
            if isinstance(result, Failure):
                if not result.check(CancelledError):
                    log.failure("monkey: the poll failed", result)
                result = False
            self._schedule(0 if result else self.config.pollInterval)

        self._ticking.addBoth(after)

    async def _poll(self):
        """
        Ask patrick for a job and run it: whether one ran.
        """
        try:
            await self.sandbox.check()
        except SandboxUnavailable as e:
            self.unavailable = str(e)
            log.error("monkey takes no jobs: {why}", why=self.unavailable)
            return False
        try:
            job = await self.patrick.dequeue()
        except CancelledError:
            raise
        except Exception as e:
            if not self._patrickDown:
                log.info("monkey: cannot ask patrick for a job: {why}", why=str(e))
            self._patrickDown = True
            return False
        self._patrickDown = False
        if job is None or self._stopping:
            return False
        await self.runJob(job)
        return True

    # one job

    def _remember(self, record):
        self.jobs[record.jid] = record
        self.jobs.move_to_end(record.jid)
        while len(self.jobs) > HISTORY:
            self.jobs.popitem(last=False)

    async def runJob(self, job):
        """
        Run C{job}, check its lease while it runs, report how it ended.

        @return: its L{JobRecord}.
        """
        record = JobRecord(job.id)
        self._remember(record)
        joblog = JobLog(self.reactor, self.config.maxLog)
        log.info("monkey: running job {jid}", jid=job.id)
        running = self._running = _Running(job.id, Deferred.fromCoroutine(self.runner.run(job, joblog)))
        running.timer = self.reactor.callLater(self.config.leaseInterval, self._lease, running)
        deadline = self.reactor.callLater(self.config.jobTimeout, running.stop, "timeout")
        failure = None
        try:
            record.assets = await running.deferred
        except CancelledError:
            if running.reason == "timeout":
                failure = f"the job ran past its limit of {self.config.jobTimeout:g} s and was stopped"
            else:
                why = {"cancelled": "cancelled", "unassigned": "no longer assigned to this monkey: dropped",
                       "stopping": "stopped with the node"}.get(running.reason, "stopped")
                joblog.say(f"job {job.id}: {why}")
                record.status = JobStatus.CANCELLED
                record.failure = why
                log.info("monkey: job {jid} {why}", jid=job.id, why=why)
                return record
        except JobFailed as e:
            failure = str(e)
        except Exception as e:
            log.failure("monkey: job {jid} broke", jid=job.id)
            failure = f"monkey error: {type(e).__name__}: {e}"
        finally:
            self._running = None
            for timer in (running.timer, deadline):
                if timer is not None and timer.active():
                    timer.cancel()
            if running.checks is not None:
                running.checks.cancel()
        await self._end(job, record, joblog, failure)
        return record

    def _lease(self, running):
        running.timer = None
        running.checks = Deferred.fromCoroutine(self._checkLease(running))

    async def _checkLease(self, running):
        """
        Ask patrick whether the job is still ours (which refreshes its
        assignment); drop the run when it is not.
        """
        try:
            assigned = await self.patrick.isAssigned(running.jid)
        except CancelledError:
            return
        except Exception as e:
            log.info("monkey: patrick did not say whether job {jid} is still ours: {why}", jid=running.jid,
                     why=str(e))
            assigned = True
        if not assigned:
            # from the reactor, not inside this check (stopping the run
            # cancels this check's own Deferred)
            self.reactor.callLater(0, running.stop, "unassigned")
        elif not running.deferred.called:
            running.timer = self.reactor.callLater(self.config.leaseInterval, self._lease, running)

    async def _end(self, job, record, joblog, failure):
        """
        Store the logs, and report to patrick (unless the job is no longer
        ours).
        """
        stamp = rfc3339(self.reactor.seconds())
        logs = {}
        stages = joblog.endStages()
        if stages is not None:
            joblog.say(stages)
        body = await self._storeLog(joblog)
        if failure is None:
            joblog.say(f"Running job `{job.id}` was successful")
        else:
            joblog.say("CI/CD Errors:")
            joblog.say(failure)
        whole = await self._storeLog(joblog)
        if body is not None:
            logs[stamp] = body
        if whole is not None:
            logs[job.id] = whole
        record.logs = logs
        record.failure = failure
        record.status = JobStatus.FAILED if failure else JobStatus.SUCCESS
        if failure:
            record.assets = {}
            log.info("monkey: job {jid} failed: {why}", jid=job.id, why=failure)
        else:
            log.info("monkey: job {jid} succeeded: {assets}", jid=job.id, assets=record.assets)
        try:
            assigned = await self.patrick.isAssigned(job.id)
        except CancelledError:
            raise
        except Exception:
            assigned = True  # patrick refuses a report from a monkey that does not hold the job
        if not assigned:
            log.info("monkey: job {jid} is no longer ours; its result is dropped", jid=job.id)
            return
        for attempt in range(REPORT_TRIES):
            if attempt:
                await deferLater(self.reactor, REPORT_DELAY, lambda: None)
            try:
                if failure is None:
                    await self.patrick.done(job.id, logs, record.assets)
                else:
                    await self.patrick.failed(job.id, logs, {})
                return
            except CancelledError:
                raise
            except Exception as e:
                log.info("monkey: reporting job {jid} failed: {why}", jid=job.id, why=str(e))

    async def _storeLog(self, joblog):
        try:
            entry = await self.content.add(joblog.value(), pin=True)
        except CancelledError:
            raise
        except Exception as e:
            log.error("monkey: storing a job log failed: {why}", why=str(e))
            return None
        cid = cidText(entry.cid)
        if self.stasher is not None:
            self.stasher.stash(cid)
        return cid

    # the job command

    async def _job(self, peer, body):
        action = body.get("action")
        if action == "list":
            return {"ids": list(self.jobs)}
        jid = body.get("jid")
        if not isinstance(jid, str) or not jid:
            raise ValueError("job: jid is missing")
        if action in ("status", "update"):
            record = self.jobs.get(jid)
            if record is None:
                raise ValueError(f"job {jid} is not known to this monkey")
            return {"jid": jid, "status": int(record.status), "logs": dict(record.logs)}
        if action == "cancel":
            if self.trusted is not None and not await self.trusted(peer):
                raise Refused("only nodes of this cloud may cancel a job")
            running = self._running
            if running is None or running.jid != jid:
                raise ValueError(f"job {jid} is not running on this monkey")
            running.stop("cancelled")
            return None
        raise ValueError(f"job: unknown action {action!r} (list, status, cancel)")

    def stopService(self):
        self._stopping = True
        if self._installed:
            self.router.uninstall(self.host)
            self._installed = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._running is not None:
            self._running.stop("stopping")
        if self.stasher is not None:
            self.stasher.stop()
        super().stopService()
        ticking = self._ticking
        if ticking is None:
            return None
        waited = Deferred()
        ticking.addBoth(lambda r: waited.callback(None) or r)
        return waited


def _clean(workdir):
    """
    Remove what jobs of a previous run left in C{workdir}.
    """
    os.makedirs(workdir, exist_ok=True)
    for name in os.listdir(workdir):
        if name.startswith("job-"):
            shutil.rmtree(os.path.join(workdir, name), True)


def workdirOf(config):
    """
    The jobs' folder of a node config.
    """
    folder = config.monkey.workdir
    if folder is None:
        return config.dataDir / "monkey"
    return config.root / Path(folder).expanduser()


def makeMonkey(host, routing, content, tns, reactor, config, workdir, *, cloud=None, trusted=None, sandbox=None,
               patrick=None, auth=None):
    """
    A monkey: its sandbox, builder, runner, clients.
    """
    config = config or MonkeyConfig()
    sandbox = sandbox or Sandbox(reactor)
    stasher = Stasher(reactor, lambda: hoarderClient(host, routing))
    runner = JobRunner(reactor, content, tns, auth or AuthClient(host, routing), Builder(reactor, sandbox,
                                                                                        config.limits()),
                       str(workdir), stash=stasher.stash, cloud=cloud, cloneTimeout=config.cloneTimeout,
                       maxClone=config.maxClone, cache=BuildCache(reactor, os.path.join(str(workdir), "builds.json")))
    return MonkeyService(host, reactor, config, runner, patrick or PatrickClient(host, routing), sandbox, content,
                         stasher=stasher, trusted=trusted, workdir=str(workdir))


@needs(IHost, IRouting, IContent, ITNSClient, IMembers, IPatrickClient)
def serviceFactory(capabilities, config, reactor):
    """
    The monkey of a node whose shape names it: it reaches patrick, auth and
    hoarder through their clients, stores through the node's content,
    publishes through the node's tns client; nodes of its cloud may cancel
    its jobs.
    """
    members = capabilities[IMembers]
    return makeMonkey(capabilities[IHost], capabilities[IRouting], capabilities[IContent], capabilities[ITNSClient],
                      reactor, config.monkey, workdirOf(config), cloud=config.networkFqdn or None,
                      trusted=members.isMember, patrick=capabilities[IPatrickClient])
