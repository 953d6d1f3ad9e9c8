"""
The monkey end to end: jobs taken from a (test) patrick, repositories
cloned over real git from loopback hosting at the pushed commit, config
compiled and published to tns, functions built with real toolchains (wabt,
Rust for wasm32-wasi) and a website, in the bubblewrap sandbox; artefacts
and logs stored by CID; done reported with them.
"""

import io
import zipfile

import wasmtime
from twisted.trial.unittest import TestCase

from tau.project.indexes import assetKey
from tau.services.framework import LocalCalls
from tau.services.substrate.assets import moduleOf
from tau.store.unixfs import cidText
from tests.services.monkey.helpers import (
    CODE_FILES,
    CODE_REPO,
    CONFIG_FILES,
    CONFIG_REPO,
    FUNCTION_RUST,
    FUNCTION_WAT,
    LIBRARY,
    LIBRARY_REPO,
    PROJECT,
    WEBSITE,
    WEBSITE_FILES,
    WEBSITE_REPO,
    World,
    taubyteConfig,
)
from tests.build.test_taubyte import BUILD_SH, PING_WAT


class JobTests(TestCase):
    timeout = 180

    async def setUp(self):
        self.world = await World().start(self)

    async def publishConfig(self, files=CONFIG_FILES):
        after = await self.world.push(CONFIG_REPO, files)
        self.world.queue(self.world.job(CONFIG_REPO, after))
        return after

    async def test_configPublished(self):
        """
        A config repository's job compiles it and publishes it to tns as the
        pushed commit; done is reported with no assets, and with the job's
        logs stored by CID under an RFC 3339 time and the job id.
        """
        after = await self.publishConfig()
        await self.world.startMonkey()
        [report] = await self.world.patrick.wait(1)
        self.assertEqual(report["action"], "done", await self.world.logOf(report))
        self.assertEqual(report["assets"], {})
        found = await self.world.tns.project(PROJECT, "main")
        self.assertEqual(found["commit"], after)
        self.assertEqual(found["object"]["name"], "demo")
        self.assertEqual(sorted(found["object"]["functions"]), sorted([FUNCTION_WAT, FUNCTION_RUST]))
        jid = report["jid"]
        self.assertEqual(len(report["logs"]), 2)
        [stamp] = [k for k in report["logs"] if k != jid]
        self.assertRegex(stamp, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        whole = (await self.world.cat(report["logs"][jid])).decode()
        body = (await self.world.cat(report["logs"][stamp])).decode()
        self.assertIn(f"git: checked out {after} (the pushed commit)", whole)
        self.assertIn(f"config of project {PROJECT} published to tns", whole)
        self.assertTrue(whole.rstrip().endswith(f"Running job `{jid}` was successful"), whole)
        self.assertNotIn("was successful", body)
        self.assertIn(report["logs"][jid], [cidText(c) for c in self.world.content.pinned])
        status = await self.jobCommand({"action": "status", "jid": jid})
        self.assertEqual(status, {"jid": jid, "status": 2, "logs": report["logs"]})
        self.assertEqual(await self.jobCommand({"action": "list"}), {"ids": [jid]})

    async def jobCommand(self, body):
        return await LocalCalls(self.world.monkey.router._handlers, "caller").call("job", body)

    async def test_pushedCommitNotBranchHead(self):
        """
        The job builds the commit it names (C{after}), not the branch's
        head: a later push is not what an earlier job publishes.
        """
        first = await self.world.push(CONFIG_REPO, CONFIG_FILES)
        await self.world.push(CONFIG_REPO, {"config.yaml": f"id: {PROJECT}\nname: renamed\n"})
        self.world.queue(self.world.job(CONFIG_REPO, first))
        await self.world.startMonkey()
        [report] = await self.world.patrick.wait(1)
        self.assertEqual(report["action"], "done", await self.world.logOf(report))
        found = await self.world.tns.project(PROJECT, "main")
        self.assertEqual((found["commit"], found["object"]["name"]), (first, "demo"))

    async def test_codeFunctions(self):
        """
        A code repository's job builds every function of the project's
        config whose source is C{.} from C{functions/<name>} (WAT with
        wabt, Rust with rustc for wasm32-wasi), stores each as
        C{artifact.zip} holding C{main.wasm} and writes its CID at the
        function's asset key, which substrate reads back as the module.
        """
        await self.publishConfig()
        after = await self.world.push(CODE_REPO, CODE_FILES)
        self.world.queue(self.world.job(CODE_REPO, after))
        await self.world.startMonkey()
        reports = await self.world.patrick.wait(2)
        self.assertEqual([r["action"] for r in reports], ["done", "done"])
        assets = reports[1]["assets"]
        self.assertEqual(sorted(assets), sorted([FUNCTION_WAT, FUNCTION_RUST]))
        for resourceId, cid in assets.items():
            self.assertEqual(await self.world.tns.fetch(assetKey(PROJECT, resourceId, "main")), cid)
            data = await self.world.cat(cid)
            self.assertEqual(zipfile.ZipFile(io.BytesIO(data)).namelist(), ["main.wasm"])
            module = wasmtime.Module(wasmtime.Engine(), moduleOf(data, 64 << 20))
            self.assertIn("ping", [e.name for e in module.exports])
        log = (await self.world.cat(reports[1]["logs"][reports[1]["jid"]])).decode()
        self.assertIn("building function ping", log)
        self.assertIn("building function rping", log)
        self.assertIn("imports checked", log)

    async def test_unchangedSourceReused(self):
        """
        A push that changes one function rebuilds that one only: the
        other's source is unchanged, so its artefact is reused (no sandbox
        run); the log says how long each stage took.
        """
        await self.publishConfig()
        first = await self.world.push(CODE_REPO, CODE_FILES)
        self.world.queue(self.world.job(CODE_REPO, first))
        await self.world.startMonkey()
        reports = await self.world.patrick.wait(2)
        self.assertEqual(reports[1]["action"], "done", await self.world.logOf(reports[1]))
        log = await self.world.logOf(reports[1])
        self.assertRegex(log, r"tau: stages clone \d+\.\d{3} s, build \d+\.\d{3} s, store \d+\.\d{3} s, "
                              r"publish \d+\.\d{3} s")
        changed = PING_WAT.replace('"pong"', '"PONG"')
        self.assertNotEqual(changed, PING_WAT)
        second = await self.world.push(CODE_REPO, {"functions/ping/ping.wat": changed})
        self.world.queue(self.world.job(CODE_REPO, second))
        reports = await self.world.patrick.wait(3)
        self.assertEqual(reports[2]["action"], "done", await self.world.logOf(reports[2]))
        log = await self.world.logOf(reports[2])
        self.assertIn("building function ping", log)
        self.assertNotIn("building function rping", log)
        self.assertIn(f"function rping ({FUNCTION_RUST}): source unchanged since it built"
                      f" {reports[1]['assets'][FUNCTION_RUST]}: reused", log)
        self.assertEqual(reports[2]["assets"][FUNCTION_RUST], reports[1]["assets"][FUNCTION_RUST])
        self.assertNotEqual(reports[2]["assets"][FUNCTION_WAT], reports[1]["assets"][FUNCTION_WAT])

    async def test_website(self):
        """
        A website repository's job builds its root and stores the tree as a
        UnixFS folder whose CID is the website's asset.
        """
        await self.publishConfig()
        after = await self.world.push(WEBSITE_REPO, WEBSITE_FILES)
        self.world.queue(self.world.job(WEBSITE_REPO, after))
        await self.world.startMonkey()
        reports = await self.world.patrick.wait(2)
        self.assertEqual(reports[1]["action"], "done", reports[1])
        cid = reports[1]["assets"][WEBSITE]
        self.assertEqual(await self.world.tns.fetch(assetKey(PROJECT, WEBSITE, "main")), cid)
        names = sorted(name for name, _cid, _size in await self.world.content.ls(cid))
        self.assertEqual(names, ["about", "index.html"])

    async def test_websiteRepositoryOfNoProjectInAuth(self):
        """
        auth gives a hosted website repository its deploy key but no project
        (it knows a project's config and code repositories only): the job
        is the project's whose config names the repository in tns.
        """
        await self.publishConfig()
        self.world.auth.repositories[("github", WEBSITE_REPO)]["project"] = ""
        after = await self.world.push(WEBSITE_REPO, WEBSITE_FILES)
        self.world.queue(self.world.job(WEBSITE_REPO, after))
        await self.world.startMonkey()
        reports = await self.world.patrick.wait(2)
        self.assertEqual(reports[1]["action"], "done", await self.world.logOf(reports[1]))
        self.assertEqual(await self.world.tns.fetch(assetKey(PROJECT, WEBSITE, "main")), reports[1]["assets"][WEBSITE])

    async def test_library(self):
        """
        A library repository's job builds its root into an artifact.zip,
        published at the library's asset key.
        """
        await self.publishConfig()
        after = await self.world.push(LIBRARY_REPO, {**taubyteConfig("tau/wat"), ".taubyte/build.sh": BUILD_SH,
                                                     "lib.wat": PING_WAT})
        self.world.queue(self.world.job(LIBRARY_REPO, after))
        await self.world.startMonkey()
        reports = await self.world.patrick.wait(2)
        self.assertEqual(reports[1]["action"], "done", await self.world.logOf(reports[1]))
        cid = reports[1]["assets"][LIBRARY]
        self.assertEqual(await self.world.tns.fetch(assetKey(PROJECT, LIBRARY, "main")), cid)
        self.assertTrue(moduleOf(await self.world.cat(cid), 1 << 20).startswith(b"\0asm"))

    async def test_nothingToBuild(self):
        """
        Repository id 1 is a job with nothing to build: done at once.
        """
        self.world.queue(self.world.job(1, "a" * 40))
        await self.world.startMonkey()
        [report] = await self.world.patrick.wait(1)
        self.assertEqual((report["action"], report["assets"]), ("done", {}))
