"""
Git hosting: push and clone of an incompressible SIZE MiB commit over our
smart-HTTP server (git http-backend through spawnProcess) against the same
git over file:// (no HTTP, no server) on the same machine; and the longest
the reactor stalled while serving (a 10 ms ticker's worst lateness).

    .venv/bin/python bench/githost.py [SIZE_MIB] [RUNS]

Prints medians of RUNS runs and the ratios ours / file://.
"""

import os
import statistics
import sys
import tempfile

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.utils import getProcessOutputAndValue
from zope.interface import implementer

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tau.githost import IGitAccess  # noqa: E402
from tau.githost.process import GIT  # noqa: E402
from tau.githost.repos import Repositories  # noqa: E402
from tau.githost.resource import GitResource, GitSite  # noqa: E402


@implementer(IGitAccess)
class Open:
    async def authorize(self, repoID, credential, write):
        return {"name": "bench", "email": ""}

    async def pushTarget(self, repoID):
        return None


async def git(reactor, home, *args, cwd=None):
    env = {"PATH": os.environ["PATH"], "HOME": home, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
           "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}
    out, err, code = await getProcessOutputAndValue(GIT, args, env=env, path=cwd or home, reactor=reactor)
    if code:
        raise RuntimeError(f"git {args}: {err.decode()}")


async def timed(reactor, coroutine):
    started = reactor.seconds()
    await coroutine
    return reactor.seconds() - started


async def main(reactor, size=32, runs=5):
    size, runs = int(size), int(runs)
    top = tempfile.mkdtemp(prefix="githost-bench-")
    repos = Repositories(os.path.join(top, "served"), reactor)
    await repos.prepare()
    resource = GitResource(Open(), repos, reactor, lambda: base, None, maxBody=1 << 30)
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(GitSite(resource, 1 << 30))
    base = f"http://bench:token@127.0.0.1:{port.getHost().port}/"
    work = os.path.join(top, "work")
    await git(reactor, top, "init", "-q", "-b", "main", work)
    with open(os.path.join(work, "blob"), "wb") as f:
        f.write(os.urandom(size << 20))
    await git(reactor, top, "add", "blob", cwd=work)
    await git(reactor, top, "commit", "-qm", "blob", cwd=work)

    worst = [0.0]
    last = [reactor.seconds()]

    def tick():
        now = reactor.seconds()
        worst[0] = max(worst[0], now - last[0] - 0.01)
        last[0] = now
    ticker = task.LoopingCall(tick)
    ticker.start(0.01)

    figures = {"push http": [], "push file": [], "clone http": [], "clone file": []}
    stalls = {k: [] for k in figures}

    async def measure(name, coroutine):
        worst[0] = 0.0
        last[0] = reactor.seconds()
        figures[name].append(await timed(reactor, coroutine))
        stalls[name].append(worst[0])

    for run in range(runs):
        bare = os.path.join(top, f"bare{run}.git")
        await git(reactor, top, "init", "-q", "--bare", bare)
        await measure("push http", git(reactor, top, "push", "-q", f"{base}r{run}.git", "main", cwd=work))
        await measure("push file", git(reactor, top, "push", "-q", f"file://{bare}", "main", cwd=work))
        await measure("clone http", git(reactor, top, "clone", "-q", f"{base}r{run}.git", os.path.join(top, f"c{run}")))
        await measure("clone file", git(reactor, top, "clone", "-q", f"file://{bare}", os.path.join(top, f"f{run}")))
    ticker.stop()
    await port.stopListening()
    medians = {k: statistics.median(v) for k, v in figures.items()}
    print(f"{size} MiB incompressible commit, medians of {runs} runs")
    for what in ("push", "clone"):
        ours, base_ = medians[f"{what} http"], medians[f"{what} file"]
        print(f"  {what:5}  http {ours * 1000:7.0f} ms ({size / ours:6.1f} MiB/s)   file:// {base_ * 1000:7.0f} ms"
              f"   ratio {ours / base_:.2f}")
    print("  median of each run's longest reactor stall (10 ms ticker): " + ", ".join(
        f"{k} {statistics.median(v) * 1000:.1f} ms" for k, v in stalls.items()))


if __name__ == "__main__":
    task.react(lambda reactor, *a: Deferred.fromCoroutine(main(reactor, *a)), sys.argv[1:])
