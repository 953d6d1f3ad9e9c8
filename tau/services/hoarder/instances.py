"""
Database and storage instances: found in tns (every project's current
config on C{main} and C{master}, its databases and storages, the project's
and its applications'), each the kvdb database substrate serves it from
(C{db-<project>-<resource id>} or C{st-<project>-<resource id>}, a
database of the cloud's substrate nodes), and kept on the best placed
C{max(1, min(3, fleet))} live members, which claim it and open it so the
CRDT replicates to them (L{Reconciler}).
"""

import random
from dataclasses import dataclass

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import deferLater
from twisted.logger import Logger

from tau.kvdb import codec
from tau.project.indexes import multihash
from tau.services.hoarder.placement import instanceTarget, owners
from tau.services.hoarder.registry import DATABASE, STORAGE

#: the service whose databases the instances are (as substrate opens them)
SUBSTRATE = "substrate"
BRANCHES = ("main", "master")
GROUPS = {"databases": DATABASE, "storages": STORAGE}

log = Logger()


@dataclass(frozen=True)
class Instance:
    kind: int
    project: str
    application: str
    configId: str
    match: str
    branch: str

    @property
    def hash(self):
        """
        Taubyte's instance hash: mh(project + application + match).
        """
        return instanceHash(self.project, self.application, self.match)

    @property
    def kvdbName(self):
        name = f"{'db' if self.kind == DATABASE else 'st'}-{self.project}-{self.configId}"
        codec.checkName(name)
        return name

    def meta(self):
        return {"Kind": self.kind, "ConfigId": self.configId, "ProjectId": self.project,
                "ApplicationId": self.application, "Match": self.match, "Branch": self.branch}


def instanceHash(project, application, match):
    return multihash((project or "") + (application or "") + (match or ""))


def instancesOf(projectId, branch, tree):
    """
    The database and storage instances of one project config C{tree}.
    """
    scopes = [("", tree)]
    apps = tree.get("applications")
    if isinstance(apps, dict):
        scopes += [(appId, app) for appId, app in apps.items() if isinstance(appId, str) and isinstance(app, dict)]
    out = []
    for appId, scope in scopes:
        for group, kind in GROUPS.items():
            resources = scope.get(group)
            if not isinstance(resources, dict):
                continue
            for resId, config in resources.items():
                if not isinstance(resId, str) or not isinstance(config, dict):
                    continue
                match = config.get("match") or config.get("name") or resId
                if isinstance(match, str):
                    out.append(Instance(kind, projectId, appId, resId, match, branch))
    return out


async def discover(tns, maxItems):
    """
    The instances of every project tns holds, at most C{maxItems}.
    """
    projects = []
    for key in await tns.lookup(["projects"]):
        parts = key.strip("/").split("/")
        if len(parts) >= 4 and parts[2] == "branches" and parts[3] in BRANCHES and (parts[1], parts[3]) not in projects:
            projects.append((parts[1], parts[3]))
    found = {}
    for projectId, branch in projects:
        config = await tns.project(projectId, branch)
        if config is None or not isinstance(config.get("object"), dict):
            continue
        for instance in instancesOf(projectId, branch, config["object"]):
            found.setdefault(instance.hash, instance)
            if len(found) >= maxItems:
                log.warn("hoarder: {count} instances, the most one reconcile reads", count=maxItems)
                return list(found.values())
    return list(found.values())


class Reconciler:
    """
    One reconcile at a time: C{trigger()} runs one now, or once more after
    the one under way.

    @param kvdb: L{tau.interfaces.IKVDB} (instances are opened with
        C{serviceDatabase("substrate", name)}).
    @param tns: L{tau.interfaces.ITNSClient}.
    @param stasher: L{tau.services.hoarder.stash.Stasher} (its repair runs
        after the instances).
    """

    def __init__(self, me, registry, membership, kvdb, tns, stasher, clock, *, jitter=0.5, maxItems=100_000,
                 rng=random.random):
        self.me = me
        self.registry = registry
        self.membership = membership
        self.kvdb = kvdb
        self.tns = tns
        self.stasher = stasher
        self.clock = clock
        self.jitter = jitter
        self.maxItems = maxItems
        self.rng = rng
        #: instance hash -> kvdb name of the instances opened here
        self.loaded = {}
        self.runs = 0
        self._running = None
        self._busy = False
        self._tnsFailure = None
        self._again = False
        self.stopped = False

    def trigger(self):
        """
        Reconcile now, or again once the run under way ends.
        """
        if self.stopped:
            return
        if self._busy:
            self._again = True
            return
        self._busy = True
        d = Deferred.fromCoroutine(self._loop())
        self._running = None if d.called else d

    async def _loop(self):
        try:
            while not self.stopped:
                self._again = False
                try:
                    await self.reconcile()
                except CancelledError:
                    break
                except Exception:
                    log.failure("hoarder: reconcile failed")
                if not self._again:
                    break
        finally:
            self._busy = False
            self._running = None

    def stop(self):
        """
        Stop reconciling: the run under way is cancelled; a Deferred firing
        once it has ended.
        """
        self.stopped = True
        idle = self.whenIdle()
        if self._running is not None:
            self._running.cancel()
        return idle

    def whenIdle(self):
        """
        A Deferred firing once no reconcile runs (for tests and stop).
        """
        if self._running is None:
            return succeed(None)
        out = Deferred()
        self._running.addBoth(lambda r: (out.callback(None), r)[1])
        return out

    async def reconcile(self):
        self.runs += 1
        # the stashes first: they need only the registry, tns may be slow
        await self.stasher.repair(self.maxItems)
        if self.stopped:
            return
        live = self.membership.live()
        target = instanceTarget(len(live))
        try:
            instances = await discover(self.tns, self.maxItems)
        except Exception as e:
            # said once while the reason stays the same
            why = str(e) or e.__class__.__name__
            (log.debug if why == self._tnsFailure else log.info)(
                "hoarder: the instances could not be read from tns: {why}", why=why)
            self._tnsFailure = why
            return
        self._tnsFailure = None
        await self._instances(instances, live, target)

    async def _instances(self, instances, live, target):
        waited = False
        for instance in instances:
            if self.stopped:
                return
            desired = owners(instance.hash, live, target)
            claims = await self.registry.claims(instance.hash)
            if self.me in desired:
                if self.me in claims and instance.hash in self.loaded:
                    continue
                if not waited and self.jitter > 0:
                    waited = True
                    await deferLater(self.clock, self.rng() * self.jitter, lambda: None)
                await self.load(instance)
            elif self.me in claims:
                others = [p for p in claims if p != self.me and self.membership.isLive(p)]
                if len(others) >= target:
                    await self.unload(instance.hash)
        # instances gone from tns: this node lets go of them
        current = {i.hash for i in instances}
        for hash in list(self.loaded):
            if hash not in current:
                await self.unload(hash)

    async def load(self, instance):
        """
        Claim C{instance} and open its database here.
        """
        if await self.registry.meta(instance.hash) is None:
            await self.registry.putMeta(instance.hash, instance.meta())
        await self.registry.claim(instance.hash, self.me, int(self.clock.seconds() * 1e9))
        replica = await self.kvdb.serviceDatabase(SUBSTRATE, instance.kvdbName)
        self.loaded[instance.hash] = replica.name
        log.info("hoarder: holding {kind} {name}", kind="database" if instance.kind == DATABASE else "storage",
                 name=instance.kvdbName)

    async def unload(self, hash):
        """
        Release this node's claim on C{hash}.  (The kvdb keeps a database
        open until the node stops: it has no close.)
        """
        await self.registry.release(hash, self.me)
        self.loaded.pop(hash, None)
