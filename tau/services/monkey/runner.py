"""
L{JobRunner}: one job, from the pushed repository to what tns points at.

As Taubyte's monkey (C{services/monkey/job.go}, C{jobs/*.go}):

 1. the repository's type, by its id (L{tau.build.repotype}): auth gives
    its project and deploy key (C{repositories get}, retried while the key
    is empty) and the project's code and config repositories
    (C{projects get}); a library or website is what tns says;
 2. the clone, at the pushed commit (C{after}; the head commit when a
    job has none) (L{tau.services.monkey.clone});
 3. by type:

    - config: compiled (L{tau.project.compileInThread}); its id must be the
      project's; published to tns (L{tau.interfaces.ITNSClient.publish})
      as the pushed commit;
    - code: every function and smartop of the project's config in tns
      (its current commit on the branch) whose source is C{.} is built
      from C{<repo>/[<app name>/]functions|smartops/<name>};
    - library: the repository's root, built as a function is;
    - website: the repository's root built, its tree stored as a UnixFS
      folder (L{tau.build.website.addWebsite});

 4. the artefacts stored (pinned) by CID, a function's as Taubyte's
    C{artifact.zip} holding C{main.wasm}; handed to hoarder; and, once
    every build of the job succeeded, tns C{assets/<mh(P+resource+branch)>}
    written with each CID.  A job that fails publishes nothing: the cloud
    keeps serving the last good build.

Unlike Taubyte, a library or website repository shared by several
resources of the project builds once and is published for each of them
(Taubyte fails that job), and the job's project config comes from tns
rather than a second clone of the config repository.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile

from twisted.internet.defer import CancelledError
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from tau.build.repotype import NOTHING_TO_BUILD, RepositoryType, RepositoryTypeError, repositoryType
from tau.build.website import BadWebsite, addWebsite
from tau.project import ProjectErrors, compileInThread
from tau.project.indexes import assetKey
from tau.services.monkey.clone import CloneError, cloneAt
from tau.services.tns.client import projectsOfRepository
from tau.store.unixfs import cidText

log = Logger()

#: tries of auth's C{repositories get} while the deploy key is empty
AUTH_TRIES = 3
#: tries of each tns push of an asset key
PUSH_TRIES = 5
#: the provider of the tns keys the config compiler writes for libraries and
#: websites (it reads only C{source.github}), whatever host the job's
#: repository is on
TNS_PROVIDER = "github"
#: the groups of a project whose C{source: .} resources a code repository builds
CODE_GROUPS = ("functions", "smartops")
#: the most resources one job builds
MAX_BUILDS = 256
#: an artefact zip's entries' date (fixed: the same module, the same CID)
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class JobFailed(Exception):
    """
    The job cannot succeed: a sentence for its log.
    """


def repositoryNumber(value):
    """
    A repository id as an int when it is one (GitHub's and hosted ids are
    numbers; auth may give them as text), else the value as is.
    """
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


def branchOf(meta):
    """
    The job's branch: the repository's, else the ref's.
    """
    if meta.repository.branch:
        return meta.repository.branch
    ref = meta.ref or ""
    return ref[len("refs/heads/"):] if ref.startswith("refs/heads/") else ref


def artifactZip(wasm):
    """
    Taubyte's C{artifact.zip}: one entry C{main.wasm} (deterministic bytes).
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo("main.wasm", ZIP_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        archive.writestr(info, wasm)
    return buffer.getvalue()


def codeTargets(tree, projectObject):
    """
    C{[(resource id, group, name, folder)]} of the resources a code
    repository builds: each function and smartop whose source is C{.},
    from C{<tree>/[<app name>/]<group>/<name>}.
    """
    scopes = [("", projectObject)]
    apps = projectObject.get("applications")
    if isinstance(apps, dict):
        for app in apps.values():
            if isinstance(app, dict) and isinstance(app.get("name"), str):
                scopes.append((app["name"], app))
    targets = []
    for appName, scope in scopes:
        for group in CODE_GROUPS:
            resources = scope.get(group)
            if not isinstance(resources, dict):
                continue
            for resourceId, config in resources.items():
                if not isinstance(config, dict) or config.get("source") != "." or not isinstance(config.get("name"),
                                                                                                  str):
                    continue
                name = config["name"]
                if "/" in name or name in ("", ".", ".."):
                    continue
                folder = os.path.join(tree, *([appName] if appName else []), group, name)
                targets.append((resourceId, group, name, folder))
    return targets


class JobRunner:
    """
    Runs jobs.

    @param reactor: clock, threads, processes.
    @param content: L{tau.interfaces.IContent}: artefacts and logs go there.
    @param tns: L{tau.interfaces.ITNSClient}.
    @param auth: an L{tau.services.auth.client.AuthClient} (C{repository},
        C{project}).
    @param builder: a L{tau.build.taubyte.Builder}.
    @param workdir: the folder jobs clone into.
    @param stash: C{stash(cid)}: hands a stored CID to hoarder (never
        fails the job).
    @param cloud: the network FQDN the config compiler reads C{clouds:}
        entries for, or None.
    @param cloneTimeout: seconds a clone may take.
    @param maxClone: bytes a clone may hold.
    @param authDelay: seconds between two C{repositories get} tries.
    @param cache: a L{tau.services.monkey.buildcache.BuildCache} (functions
        of unchanged sources are not built again), or None.
    """

    def __init__(self, reactor, content, tns, auth, builder, workdir, *, stash=lambda cid: None, cloud=None,
                 cloneTimeout=300.0, maxClone=2 << 30, authDelay=5.0, cache=None):
        self.reactor = reactor
        self.content = content
        self.tns = tns
        self.auth = auth
        self.builder = builder
        self.workdir = workdir
        self.stash = stash
        self.cloud = cloud
        self.cloneTimeout = cloneTimeout
        self.maxClone = maxClone
        self.authDelay = authDelay
        self.cache = cache

    def _inThread(self, f, *args):
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f, *args)

    async def run(self, job, joblog):
        """
        Run C{job} (a L{tau.services.patrick.job.Job}), saying what it does
        in C{joblog} (a L{tau.services.monkey.joblog.JobLog}).

        @return: the assets published, resource id -> CID.
        @raise JobFailed: why it failed; nothing was published then.
        """
        meta = job.meta
        repo = meta.repository
        provider = (repo.provider or "github").lower()
        repoId = repositoryNumber(repo.id)
        branch = branchOf(meta)
        commit = meta.after or meta.headCommit
        joblog.say(f"job {job.id}: repository {provider}/{repoId} branch {branch} commit {commit}"
                   f" (attempt {job.attempt + 1})")
        if repoId == NOTHING_TO_BUILD:
            joblog.say("repository id 1: nothing to build")
            return {}
        if repoId == 0 or not isinstance(repoId, int):
            raise JobFailed(f"the job names no repository (id {repo.id!r})")
        info = await self._repository(repoId, provider, joblog)
        projectId = info.get("project")
        if not isinstance(projectId, str) or not projectId:
            projectId = await self._projectInTNS(repoId, provider)
        try:
            project = await self.auth.project(projectId)
        except CancelledError:
            raise
        except Exception as e:
            raise JobFailed(f"auth could not give project {projectId}: {e}") from None
        if not isinstance(project, dict):
            raise JobFailed(f"auth gave no record of project {projectId}")
        try:
            kind = await repositoryType(repoId, projectId, repositoryNumber(project.get("code")),
                                        repositoryNumber(project.get("config")), self.tns.fetch, TNS_PROVIDER)
        except RepositoryTypeError as e:
            raise JobFailed(str(e)) from None
        if kind is None:
            joblog.say("nothing to build")
            return {}
        joblog.say(f"repository {provider}/{repoId} is the {kind.name.lower()} repository of project {projectId}")
        work = await self._inThread(self._makeWork)
        try:
            joblog.stage("clone")
            try:
                tree = await cloneAt(self.reactor, repo.sshURL or repo.uri, branch, commit, work,
                                     key=info.get("key") or None, timeout=self.cloneTimeout, maxBytes=self.maxClone,
                                     say=joblog.say)
            except CloneError as e:
                raise JobFailed(str(e)) from None
            joblog.stage("build")
            if kind == RepositoryType.CONFIG:
                await self._config(tree, projectId, branch, commit, joblog)
                return {}
            if kind == RepositoryType.CODE:
                built = await self._code(tree, projectId, branch, joblog)
            else:
                built = await self._repositoryBuild(kind, tree, work, repoId, projectId, joblog)
            return await self._publish(built, projectId, branch, joblog)
        finally:
            await self._inThread(shutil.rmtree, work, True)

    def _makeWork(self):
        os.makedirs(self.workdir, exist_ok=True)
        return tempfile.mkdtemp(prefix="job-", dir=self.workdir)

    async def _projectInTNS(self, repoId, provider):
        """
        The project whose config names the repository as a website's or
        library's (auth knows only a project's config and code
        repositories), as patrick found it.
        """
        try:
            projects = await projectsOfRepository(self.tns, repoId, TNS_PROVIDER)
        except CancelledError:
            raise
        except Exception as e:
            raise JobFailed(f"auth knows no project for repository {provider}/{repoId}, and tns did not answer: {e}")
        if len(projects) != 1:
            raise JobFailed(f"auth knows no project for repository {provider}/{repoId}, and tns names"
                            f" {len(projects)} ({', '.join(projects) or 'none'})")
        return projects[0]

    async def _repository(self, repoId, provider, joblog):
        """
        auth's record of the repository, asked again while its deploy key
        is empty (Taubyte: 3 tries, 5 s apart).
        """
        info = {}
        for attempt in range(AUTH_TRIES):
            if attempt:
                await deferLater(self.reactor, self.authDelay, lambda: None)
            try:
                info = await self.auth.repository(repoId, provider)
            except CancelledError:
                raise
            except Exception as e:
                raise JobFailed(f"auth does not know repository {provider}/{repoId}: {e}") from None
            if isinstance(info, dict) and info.get("key"):
                return info
            joblog.say(f"auth has no deploy key for repository {provider}/{repoId} yet")
        return info if isinstance(info, dict) else {}

    # the types

    async def _config(self, tree, projectId, branch, commit, joblog):
        joblog.say(f"compiling the config of project {projectId} for branch {branch}")
        try:
            compiled = await compileInThread(self.reactor, tree, branch, self.cloud)
        except ProjectErrors as e:
            for error in e.errors:
                joblog.say(f"config error: {error}")
            raise JobFailed(f"the config does not compile ({len(e.errors)} error"
                            f"{'s' if len(e.errors) != 1 else ''}); nothing was published") from None
        if compiled.projectId != projectId:
            raise JobFailed(f"project ids not equal `{projectId}` != `{compiled.projectId}`")
        joblog.stage("publish")
        try:
            peer = await self.tns.publish(compiled, commit)
        except CancelledError:
            raise
        except Exception as e:
            raise JobFailed(f"publishing the config to tns failed: {e}") from None
        joblog.say(f"config of project {projectId} published to tns ({peer}) as commit {commit}")

    async def _code(self, tree, projectId, branch, joblog):
        found = await self.tns.project(projectId, branch)
        if not found:
            raise JobFailed(f"project {projectId} has no config published on branch {branch}: push its config"
                            f" repository first")
        targets = await self._inThread(codeTargets, tree, found["object"])
        if len(targets) > MAX_BUILDS:
            raise JobFailed(f"the project has {len(targets)} functions and smartops to build, more than {MAX_BUILDS}")
        joblog.say(f"{len(targets)} function(s) and smartop(s) with source . in config commit {found['commit']}")
        built = []
        for resourceId, group, name, folder in targets:
            relative = os.path.relpath(folder, tree)
            if not await self._inThread(os.path.isdir, folder):
                raise JobFailed(f"{group[:-1]} {name}: the code repository has no folder {relative}")
            key = await self.cache.key(folder) if self.cache is not None else None
            cached = await self.cache.get(key) if key is not None else None
            if cached is not None and await self.content.has(cached):
                joblog.say(f"{group[:-1]} {name} ({resourceId}): source unchanged since it built {cached}: reused")
                built.append((resourceId, cached))
                continue
            joblog.stage("build")
            joblog.say(f"building {group[:-1]} {name} ({resourceId}) from {relative}")
            result = await self.builder.buildWasm(folder)
            joblog.output(result.log)
            if not result.ok:
                raise JobFailed(f"{group[:-1]} {name}: the build failed: {result.failure}")
            joblog.stage("store")
            archive = await self._inThread(artifactZip, result.wasm)
            cid = await self._store(archive, resourceId, joblog)
            if key is not None:
                await self.cache.put(key, cid)
            built.append((resourceId, cid))
        return built

    async def _store(self, archive, resourceId, joblog):
        """
        Store an artefact zip, pinned, and hand it to hoarder: its CID.
        """
        entry = await self.content.add(archive, pin=True)
        cid = cidText(entry.cid)
        self.stash(cid)
        joblog.say(f"{resourceId}: artifact.zip stored as {cid} ({len(archive)} bytes)")
        return cid

    async def _repositoryBuild(self, kind, tree, work, repoId, projectId, joblog):
        value = await self.tns.fetch(["repositories", TNS_PROVIDER, str(repoId), projectId, "resources"])
        if isinstance(value, dict):
            resources = sorted(k for k in value if isinstance(k, str) and k)
        elif isinstance(value, str) and value:
            resources = [value.rsplit("/", 1)[-1]]
        else:
            resources = []
        if not resources:
            raise JobFailed(f"tns has no resource of project {projectId} built from repository {repoId}")
        joblog.say(f"building the {kind.name.lower()} of resource(s) {', '.join(resources)}")
        if kind == RepositoryType.WEBSITE:
            result = await self.builder.buildWebsite(tree, os.path.join(work, "website"))
            joblog.output(result.log)
            if not result.ok:
                raise JobFailed(f"website: the build failed: {result.failure}")
            try:
                entry = await addWebsite(self.reactor, self.content, result.folder)
            except BadWebsite as e:
                raise JobFailed(f"website: {e}") from None
            cid = cidText(entry.cid)
            self.stash(cid)
            joblog.say(f"website stored as folder {cid} ({entry.size} bytes)")
            return [(resourceId, cid) for resourceId in resources]
        result = await self.builder.buildWasm(tree)
        joblog.output(result.log)
        if not result.ok:
            raise JobFailed(f"library: the build failed: {result.failure}")
        archive = await self._inThread(artifactZip, result.wasm)
        return [(resourceId, archive) for resourceId in resources]

    async def _publish(self, built, projectId, branch, joblog):
        """
        Store each build (bytes: an artefact zip; text: a CID already
        stored), then write every asset key.
        """
        assets = {}
        joblog.stage("store")
        for resourceId, build in built:
            assets[resourceId] = await self._store(build, resourceId, joblog) if isinstance(build, bytes) else build
        joblog.stage("publish")
        for resourceId, cid in assets.items():
            key = assetKey(projectId, resourceId, branch)
            await self._push(key, cid)
            joblog.say(f"tns {'/'.join(key)} = {cid}")
        return assets

    async def _push(self, key, cid):
        errors = []
        for attempt in range(PUSH_TRIES):
            if attempt:
                await deferLater(self.reactor, 0.5 * attempt, lambda: None)
            try:
                await self.tns.push(key, cid)
                return
            except CancelledError:
                raise
            except Exception as e:
                errors.append(str(e))
        raise JobFailed(f"tns did not take {'/'.join(key)} after {PUSH_TRIES} tries: {errors[-1]}")

