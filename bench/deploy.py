"""
Push to serving, in a dream cloud on this machine (one twistd node per
service), split by stage; and the same builds outside tau as a baseline.

    .venv/bin/python bench/deploy.py [RUNS]

For a config change (a function's path moves) and a code change (a WAT
function's answer changes), RUNS times each:

  push      git push to the cloud's own git hosting, until patrick lists
            the job (the webhook included)
  queue     until a monkey took it (patrick shows it locked)
  clone, build, store, publish
            the monkey's own measure (its log's "tau: stages" line)
  report    the rest of the job, until patrick shows it done
  serve     until curl through the gateway gets the new answer (tns
            caches, the substrate fetching the new build)

Then a push that changes nothing the functions are built from: both are
reused from the build cache (the log says so), and its time is printed.

Baseline, in the same run: the same push to a bare repository over
file://, and wat2wasm on the function, outside any sandbox.  Figures are
medians; the machine is shared, so compare ratios.
"""

import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import treq
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater, react
from twisted.internet.utils import getProcessOutputAndValue

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tau.dream import startDream  # noqa: E402
from tau.dream.universe import SHAPE  # noqa: E402
from tau.githost.process import GIT  # noqa: E402
from tests.netclients import curl  # noqa: E402
from tests.services.auth.helpers import httpClient, request  # noqa: E402
from tests.test_e2e_deploy import DOMAIN, FIXTURES, configFiles, writeTree  # noqa: E402

POLL = 0.05
LIMIT = 300.0
STAGES = ("clone", "build", "store", "publish")


class Cloud:
    def __init__(self, reactor, dream, token, home):
        self.reactor = reactor
        self.dream = dream
        self.token = token
        self.home = home
        urls = dream.urls
        self.auth, self.patrick = urls["auth"], urls["patrick"]
        self.gateway = int(urls["gateway"].rpartition(":")[2])

    async def git(self, *args, cwd=None):
        env = {"PATH": os.environ["PATH"], "HOME": self.home, "GIT_CONFIG_NOSYSTEM": "1",
               "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0", "GIT_AUTHOR_NAME": "b",
               "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}
        out, err, code = await getProcessOutputAndValue(GIT, args, env=env, path=cwd or self.home,
                                                        reactor=self.reactor)
        if code:
            raise RuntimeError(f"git {' '.join(args)}: {err.decode()}")
        return out.decode().strip()

    async def repository(self, name):
        status, answer = await request("POST", f"{self.auth}/repositories/new/{name}", "tau " + self.token)
        assert status == 200, answer
        return answer["repository"]

    def pushURL(self, repo):
        return repo["clone_url"].replace("http://", f"http://b:{self.token}@", 1)

    async def commit(self, work, message):
        await self.git("add", "-A", cwd=work)
        await self.git("commit", "--quiet", "--allow-empty", "-m", message, cwd=work)
        return await self.git("rev-parse", "HEAD", cwd=work)

    async def jobs(self):
        status, answer = await request("GET", self.patrick + "/jobs", "tau " + self.token)
        assert status == 200, answer
        return answer["jobs"]

    async def until(self, check, what):
        began = self.reactor.seconds()
        while True:
            found = await check()
            if found:
                return found
            if self.reactor.seconds() - began > LIMIT:
                raise RuntimeError(f"timed out waiting for {what}")
            await deferLater(self.reactor, POLL, lambda: None)

    async def log(self, job):
        """
        The job's whole log (patrick's C{/logs/<cid>}).
        """
        cid = job["Logs"][job["Id"]]
        answer = await httpClient().request("GET", f"{self.patrick}/logs/{cid}",
                                            headers={"Authorization": "tau " + self.token})
        return (await treq.content(answer)).decode("utf-8", "replace")

    async def answers(self, path):
        try:
            status, _, body = await curl(self.reactor, f"http://{DOMAIN}{path}", via={DOMAIN: self.gateway})
        except Exception:
            return None
        return body if status == 200 else None

    async def deploy(self, repo, work, message, path, body):
        """
        Commit and push; the time of each stage (until C{path} answers
        C{body} through the gateway; None: until the job is done), and the
        job's log.
        """
        commit = await self.commit(work, message)
        marks = {"start": self.reactor.seconds()}
        await self.git("push", "--quiet", self.pushURL(repo), "main", cwd=work)

        async def job(status=None):
            for j in await self.jobs():
                if j["Meta"]["after"] == commit and (status is None or j["Status"] in status):
                    return j
        await self.until(job, "the job")
        marks["listed"] = self.reactor.seconds()
        await self.until(lambda: job({1, 2, -1}), "a monkey taking it")
        marks["taken"] = self.reactor.seconds()
        done = await self.until(lambda: job({2, -1}), "the job's end")
        marks["done"] = self.reactor.seconds()
        if done["Status"] != 2:
            raise RuntimeError(f"the job failed: {await self.log(done)}")

        async def served():
            return await self.answers(path) == body
        if body is not None:
            await self.until(served, f"{path} answering {body!r}")
        marks["served"] = self.reactor.seconds()
        log = await self.log(done)
        stages = dict((name, float(s)) for name, s in re.findall(r"(\w+) (\d+\.\d+) s", log.split("tau: stages", 1)[1]
                                                                    .splitlines()[0])) if "tau: stages" in log else {}
        split = {"push": marks["listed"] - marks["start"], "queue": marks["taken"] - marks["listed"]}
        split.update({s: stages.get(s, 0.0) for s in STAGES})
        split["report"] = max(0.0, marks["done"] - marks["taken"] - sum(stages.values()))
        split["serve"] = marks["served"] - marks["done"]
        split["total"] = marks["served"] - marks["start"]
        return split, log


async def baseline(reactor, home, work):
    """
    The same push to a bare repository over file://, and wat2wasm on the
    function: seconds.
    """
    bare = os.path.join(home, "bare.git")
    env = {"PATH": os.environ["PATH"], "HOME": home, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}
    await getProcessOutputAndValue(GIT, ["init", "--quiet", "--bare", bare], env=env, reactor=reactor)
    started = time.monotonic()
    await getProcessOutputAndValue(GIT, ["push", "--quiet", "file://" + bare, "main"], env=env, path=work,
                                   reactor=reactor)
    push = time.monotonic() - started
    wat = os.path.join(work, "functions", "hellowat", "main.wat")
    started = time.monotonic()
    await getProcessOutputAndValue(shutil.which("wat2wasm"), [wat, "-o", os.path.join(home, "b.wasm")], env=env,
                                   reactor=reactor)
    return {"push": push, "build": time.monotonic() - started}


def medians(runs):
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def show(title, figures):
    print(f"{title}: " + ", ".join(f"{k} {v:.3f} s" for k, v in figures.items()))


async def main(reactor, runs="3"):
    runs = int(runs)
    top = Path(tempfile.mkdtemp(prefix="tau-deploy-bench-"))
    dream = await startDream(reactor, top / "dream", name="deploy")
    try:
        [authNode] = [n for n in dream.nodes if "auth" in n.shape]
        admin = "admin " + (Path(authNode.root) / "storage" / SHAPE / "auth" / "admin-token").read_text().strip()
        status, answer = await request("POST", dream.urls["auth"] + "/tokens", admin, {"name": "b", "repositories": []})
        assert status == 200, answer
        home = str(top / "home")
        os.makedirs(home)
        cloud = Cloud(reactor, dream, answer["token"], home)
        config, code, site = [await cloud.repository(n) for n in ("config", "code", "site")]
        status, answer = await request("POST", f"{cloud.auth}/project/new/bench", "tau " + cloud.token,
                                       {"config": {"id": config["id"]}, "code": {"id": code["id"]}})
        assert status == 200, answer
        projectId = answer["project"]["id"]
        works = {}
        for name, repo in (("config", config), ("code", code)):
            works[name] = os.path.join(home, name)
            await cloud.git("init", "--quiet", "--initial-branch=main", works[name])
        writeTree(works["config"], configFiles(projectId, site))
        shutil.copytree(FIXTURES / "code", works["code"], dirs_exist_ok=True)
        await cloud.deploy(config, works["config"], "config", "/rust", None)
        await cloud.deploy(code, works["code"], "code", "/rust", b"hello from rust")

        configRuns, codeRuns = [], []
        wat = Path(works["code"]) / "functions" / "hellowat" / "main.wat"
        yaml = Path(works["config"]) / "functions" / "hellowat.yaml"
        current = b"hello from wat v1"
        for i in range(1, runs + 1):
            # a config change: the WAT function moves to /wat<i>
            yaml.write_text(re.sub(r"paths: \[/wat\d*\]", f"paths: [/wat{i}]", yaml.read_text()))
            split, _ = await cloud.deploy(config, works["config"], f"path {i}", f"/wat{i}", current)
            configRuns.append(split)
            # a code change: it answers v<i + 1>
            text = wat.read_text()
            current = f"hello from wat v{i + 1}".encode()
            wat.write_text(text.replace(f"hello from wat v{i}", current.decode()))
            split, _ = await cloud.deploy(code, works["code"], f"v{i + 1}", f"/wat{i}", current)
            codeRuns.append(split)
        split, log = await cloud.deploy(code, works["code"], "nothing changed", f"/wat{runs}", current)
        reused = log.count("source unchanged since it built")
        base = await baseline(reactor, home, works["code"])

        print(f"deploys in a dream cloud of {len(dream.nodes)} nodes; medians of {runs} runs")
        show("config change", medians(configRuns))
        show("code change  ", medians(codeRuns))
        show("unchanged    ", split)
        print(f"unchanged source: {reused} of 2 functions reused from the build cache")
        show("baseline     ", base)
        code = medians(codeRuns)
        print(f"code change push-to-serving / (git push file:// + wat2wasm): "
              f"{code['total'] / (base['push'] + base['build']):.1f}")
        print(json.dumps({"config": configRuns, "code": codeRuns, "unchanged": split, "baseline": base}))
    finally:
        await dream.stop()
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
