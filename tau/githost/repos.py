"""
The bare repositories on disk: C{<root>/<id>.git}, made on first use, with
one shared hooks folder (C{<root>/.hooks}, set through C{core.hooksPath}
in the environment, so a pusher cannot change it) whose C{post-receive}
reports what a push changed on file descriptor 3.
"""

import os
import re
from pathlib import Path

from twisted.internet.threads import deferToThreadPool

from tau.githost.process import gitEnvironment, runGit

#: a repository id: what auth's repository records accept
REPO_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$")
#: commits described in one push event (GitHub's payload lists 20 at most)
MAX_COMMITS = 20
#: the zero object id: a ref created or deleted
ZERO = "0" * 40

POST_RECEIVE = b"""#!/bin/sh
# tau: tell the server what this push changed ("<old> <new> <ref>" lines,
# on the descriptor it opened for us)
if [ -n "$TAU_PUSH_FD" ]; then exec cat >&3; fi
exec cat >/dev/null
"""

_FIELDS = ["%H", "%T", "%an", "%ae", "%aI", "%cn", "%ce", "%cI", "%B"]


def checkID(repoID):
    """
    C{repoID} if it names a repository, else None (never a path outside
    the root: no C{/}, no leading C{.}).
    """
    if isinstance(repoID, str) and REPO_ID.match(repoID) and not repoID.endswith(".git"):
        return repoID
    return None


class Repositories:
    """
    @param root: the folder the repositories live in.
    @param reactor: IReactorProcess, IReactorThreads, IReactorTime.
    """

    def __init__(self, root, reactor):
        self.root = Path(root).absolute()
        self.reactor = reactor
        self.hooks = self.root / ".hooks"

    def path(self, repoID):
        return self.root / f"{repoID}.git"

    def _prepare(self):
        self.hooks.mkdir(parents=True, exist_ok=True)
        hook = self.hooks / "post-receive"
        if not hook.exists() or hook.read_bytes() != POST_RECEIVE:
            temporary = self.hooks / "post-receive.tmp"
            temporary.write_bytes(POST_RECEIVE)
            temporary.chmod(0o755)
            os.replace(temporary, hook)

    async def prepare(self):
        """
        Make the root and the shared hooks folder (in a thread).
        """
        await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._prepare)

    def environment(self, **extra):
        """
        git's environment for serving these repositories: the shared hooks,
        pushed objects checked.
        """
        # no automatic gc from receive-pack: a daemonized gc would hold the
        # request's pipes (L{gc} runs it after a push, under our control)
        config = {"core.hooksPath": str(self.hooks), "receive.fsckObjects": "true", "receive.autogc": "false",
                  "gc.autoDetach": "false"}
        env = gitEnvironment(GIT_CONFIG_COUNT=str(len(config)))
        for i, (key, value) in enumerate(config.items()):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        env.update(extra)
        return env

    async def ensure(self, repoID):
        """
        Make the bare repository C{repoID} (branch C{main}) unless it exists.
        """
        path = self.path(repoID)
        exists = await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), (path / "HEAD").exists)
        if not exists:
            await runGit(self.reactor, ["init", "--quiet", "--bare", "--initial-branch=main", str(path)],
                         env=self.environment())
        return path

    async def gc(self, repoID, timeout=600.0):
        """
        C{git gc --auto} of C{repoID} (packs loose objects when there are
        many), as a child the reactor waits for.
        """
        await runGit(self.reactor, ["gc", "--auto", "--quiet"], cwd=str(self.path(repoID)), env=self.environment(),
                     timeout=timeout)

    async def commits(self, repoID, before, after, limit=MAX_COMMITS):
        """
        The commits C{after} brought (newest last, at most C{limit}), each
        C{{id, tree_id, author: {name, email}, committer: {...}, timestamp,
        message}}; C{before} is the zero id for a new ref.
        """
        span = [after] if before == ZERO else [f"{before}..{after}"]
        if before != ZERO and before == after:
            return []
        _, out = await runGit(self.reactor, ["log", f"--max-count={limit}", "--format=" + "%x00".join(_FIELDS) + "%x01",
                                             *span, "--"], cwd=str(self.path(repoID)), env=self.environment())
        found = []
        for record in out.decode("utf-8", "replace").split("\x01"):
            fields = record.lstrip("\n").split("\x00")
            if len(fields) != len(_FIELDS):
                continue
            sha, tree, an, ae, ad, cn, ce, cd, message = fields
            found.append({"id": sha, "tree_id": tree, "message": message.rstrip("\n"), "timestamp": ad,
                          "author": {"name": an, "email": ae}, "committer": {"name": cn, "email": ce, "date": cd}})
        found.reverse()
        return found
