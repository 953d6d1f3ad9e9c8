"""
Cloning a job's repository at the pushed commit, with the real C{git}
(L{tau.githost.process.runGit}: a child process, its output and time
bounded).

Taubyte's monkey clones the branch and checks out its head, which may be
a later push than the job's; tau checks out the job's C{after} commit, so
a job builds exactly what was pushed.  The branch is fetched first (the
commit is on it); a commit no longer on it (a force push) is fetched by
its id.

The git folder and the tree together hold at most C{maxBytes} (checked
while git runs, which is killed past it), and git runs at most
C{timeout} seconds per fetch or checkout.  The git folder is kept apart from the work tree (no C{.git} in the tree
that goes into the sandbox).  Only C{https}, C{http} and C{ssh} are
allowed (C{GIT_ALLOW_PROTOCOL}: no C{file}, no C{ext}); no user or system
git config is read.  Credentials:

 - over HTTP(S), the repository's deploy read token
   (L{tau.githost.credentials.deployReadToken} of the deploy key auth
   gives), sent as HTTP Basic in an extra header given through git's
   C{GIT_CONFIG_*} variables (not on a command line), redirects not
   followed: what tau's own git hosting takes;
 - over SSH, the deploy key itself, host key unchecked (as Taubyte).
"""

from __future__ import annotations

import base64
import os
import re

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool

from tau.githost.credentials import deployReadToken
from tau.githost.process import GitError, gitEnvironment, runGit

_COMMIT = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?\Z")
_BRANCH = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._/-]{0,199}\Z")
_SCP = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+\Z")
_URL = re.compile(r"(https?|ssh)://[^\s]+\Z")

#: seconds each of git's short commands (init, checks, checkout) may take
SHORT = 120.0


class CloneError(Exception):
    """
    The repository could not be checked out at the job's commit: why.
    """


def redact(url):
    """
    C{url} without the password of its user part, for logs.
    """
    return re.sub(r"^([a-z+]+://)[^/@]*@", r"\1***@", url)


def urlKind(url):
    """
    C{"http"} or C{"ssh"} for a URL a job may clone.

    @raise CloneError: any other (a local path, C{file:}, C{ext::}...).
    """
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise CloneError("the job names no repository URL")
    if _URL.match(url):
        return "ssh" if url.startswith("ssh://") else "http"
    if _SCP.match(url) and not url.startswith("-"):
        return "ssh"
    raise CloneError(f"cannot clone {redact(url)!r}: only https, http and ssh URLs are cloned")


def checkCommit(commit):
    """
    @raise CloneError: C{commit} is not a full commit id (or names a
        deleted branch).
    """
    if not isinstance(commit, str) or not _COMMIT.match(commit):
        raise CloneError(f"the push names no commit to build ({commit!r} is not a full commit id)")
    if set(commit) == {"0"}:
        raise CloneError("the push deleted the branch: nothing to build")


def checkBranch(branch):
    if not isinstance(branch, str) or not _BRANCH.match(branch) or ".." in branch or branch.endswith((".lock", "/")):
        raise CloneError(f"the job names no valid branch ({branch!r})")


def environment(kind, key, work, gitDir, workTree):
    """
    git's environment for a clone: its folders, the allowed protocols and
    the credential of C{key} (the deploy key's PEM text, or None).
    """
    env = gitEnvironment(GIT_DIR=gitDir, GIT_WORK_TREE=workTree, GIT_ALLOW_PROTOCOL="http:https:ssh",
                         GIT_ASKPASS="/bin/false", SSH_ASKPASS="/bin/false")
    config = [("advice.detachedHead", "false"), ("core.hooksPath", "/dev/null"),
              ("http.followRedirects", "false"), ("protocol.file.allow", "never")]
    if key and kind == "http":
        token = deployReadToken(key)
        basic = base64.b64encode(f"deploy:{token}".encode()).decode("ascii")
        config.append(("http.extraHeader", f"Authorization: Basic {basic}"))
    ssh = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
           "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=30"]
    if key and kind == "ssh":
        path = os.path.join(work, "deploy-key")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key if key.endswith("\n") else key + "\n")
        ssh += ["-o", "IdentitiesOnly=yes", "-i", path]
    env["GIT_SSH_COMMAND"] = " ".join(ssh)
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for i, (name, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{i}"] = name
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def folderSize(folder):
    """
    Bytes of the files under C{folder} (blocking; links not followed).
    """
    total = 0
    for top, _folders, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(top, name)).st_size
            except OSError:
                pass
    return total


async def _watched(reactor, run, work, maxBytes, every):
    """
    Await C{run} (a coroutine of git) while C{work} holds at most
    C{maxBytes}: checked every C{every} seconds (git is killed past it)
    and once it ended.
    """
    def size():
        return deferToThreadPool(reactor, reactor.getThreadPool(), folderSize, work)

    running = Deferred.fromCoroutine(run)
    over = []

    async def watch():
        while True:
            await deferLater(reactor, every, lambda: None)
            if running.called:
                return
            found = await size()
            if found > maxBytes and not running.called:
                over.append(found)
                running.cancel()
                return

    watcher = Deferred.fromCoroutine(watch())
    watcher.addErrback(lambda f: f.trap(CancelledError))
    try:
        result = await running
    except CancelledError:
        if over:
            raise CloneError(f"the repository is larger than the clone limit of {maxBytes} bytes") from None
        raise
    finally:
        watcher.cancel()
    if await size() > maxBytes:
        raise CloneError(f"the repository is larger than the clone limit of {maxBytes} bytes")
    return result


async def cloneAt(reactor, url, branch, commit, work, *, key=None, timeout=300.0, maxBytes=2 << 30, every=1.0,
                  say=lambda line: None):
    """
    Check out C{commit} of C{url}'s C{branch} into C{work}/src (C{work}, an
    empty folder of the job, also holds the git folder and the key).

    @param key: the repository's deploy key (PEM text) from auth, or None.
    @param maxBytes: the most bytes the git folder and the tree may hold
        (checked every C{every} seconds while git runs: it is killed past
        it).
    @param say: called with each line for the job's log.
    @return: the work tree's path.
    @raise CloneError: why it could not (git's own words, bounded).
    """
    kind = urlKind(url)
    checkBranch(branch)
    checkCommit(commit)
    gitDir = os.path.join(work, "git")
    tree = os.path.join(work, "src")
    os.makedirs(tree)
    env = environment(kind, key, work, gitDir, tree)
    shown = redact(url)
    say(f"git: fetching branch {branch} of {shown}")
    try:
        bare = {k: v for k, v in env.items() if k not in ("GIT_DIR", "GIT_WORK_TREE")}
        await runGit(reactor, ["init", "--quiet", "--bare", gitDir], env=bare, timeout=SHORT)
        await _watched(reactor, runGit(reactor, ["fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "--", url,
                                                 f"+refs/heads/{branch}:refs/remotes/origin/{branch}"],
                                       env=env, timeout=timeout), work, maxBytes, every)
    except GitError as e:
        raise CloneError(f"git could not fetch branch {branch} of {shown}: {e}") from None
    present, _ = await runGit(reactor, ["cat-file", "-e", f"{commit}^{{commit}}"], env=env, timeout=SHORT,
                              check=False)
    if present != 0:
        say(f"git: commit {commit} is not on branch {branch}; fetching it by id")
        try:
            await _watched(reactor, runGit(reactor, ["fetch", "--quiet", "--no-tags", "--no-recurse-submodules",
                                                     "--", url, commit], env=env, timeout=timeout),
                           work, maxBytes, every)
        except GitError as e:
            raise CloneError(f"commit {commit} is not in {shown}: {e}") from None
    try:
        await _watched(reactor, runGit(reactor, ["checkout", "--quiet", "--detach", "--force", commit], env=env,
                                       timeout=timeout), work, maxBytes, every)
        _, head = await runGit(reactor, ["rev-parse", "HEAD"], env=env, timeout=SHORT)
    except GitError as e:
        raise CloneError(f"git could not check out {commit}: {e}") from None
    if head.decode("ascii", "replace").strip() != commit:
        raise CloneError(f"git checked out {head.decode('ascii', 'replace').strip()}, not {commit}")
    say(f"git: checked out {commit} (the pushed commit)")
    return tree
