"""
patrick's HTTP API on loopback: a signed push makes a job once; a webhook
signed wrong, signed with SHA-1 only, unsigned, of an unknown hook, too
big or malformed is refused with a clear error, logged, and makes
nothing; the job routes want a token that reaches the job's project.
"""

import json

import treq
from twisted.internet import reactor
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from tau.fakes import FakeContent, FakeHost, FakeKVDB, fakeTNSClient
from tau.services.patrick.config import PatrickConfig
from tau.services.patrick.job import JobStatus
from tau.services.patrick.service import makePatrick
from tests.services.auth.helpers import httpClient
from tests.services.patrick.helpers import HOOK, PROJECT, FakeAuth, encoded, pushEvent, sign

MAX_BODY = 4096


class HTTPTests(TestCase):
    async def setUp(self):
        self.host = FakeHost(reactor)
        self.kvdb = FakeKVDB()
        self.auth = FakeAuth()
        self.content = FakeContent()
        config = PatrickConfig.check("test", {"http-listen": "tcp:0:interface=127.0.0.1", "max-body": MAX_BODY})
        self.service = makePatrick(self.host, self.kvdb, None, reactor, config, lambda peer: True,
                                   auth=self.auth, content=self.content)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        await self.service.whenReady()
        self.url = self.service.url
        self.logged = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    async def request(self, method, path, body=None, headers=None, token=None):
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = token
        response = await httpClient().request(method, self.url + path, headers=headers, data=body)
        content = await treq.content(response)
        try:
            return response.code, json.loads(content)
        except ValueError:
            return response.code, content

    async def push(self, body, headers=None, hook=HOOK):
        return await self.request("POST", f"/github/{hook}", body, sign(body) if headers is None else headers)

    def refusals(self):
        return [e for e in self.logged if e.get("log_format", "").startswith("patrick: webhook for hook")]

    async def test_pushMakesAJobOnce(self):
        body = encoded(pushEvent())
        status, job = await self.push(body)
        self.assertEqual(status, 200, job)
        self.assertEqual((job["Status"], job["Attempt"], job["Meta"]["ref"]), (0, 0, "refs/heads/main"))
        self.assertEqual(job["Meta"]["Repository"]["id"], 101)
        stored = await self.service.jobs.info(job["Id"])
        self.assertEqual(stored.meta.after, "a" * 40)
        # GitHub redelivers: the same job, no new run
        status, again = await self.push(body)
        self.assertEqual((status, again["Id"], again["Timestamp"]), (200, job["Id"], job["Timestamp"]))
        self.assertEqual(len(await self.service.jobs.all()), 1)
        status, answer = await self.request("GET", f"/jobs/{PROJECT}", token="github tokA")
        self.assertEqual((status, answer), (200, {"ProjectId": PROJECT, "JobIds": [job["Id"]]}))

    async def test_websiteRepositoryProjectFromTNS(self):
        """
        auth knows only a project's config and code repositories: a push of
        a website's (or library's) repository belongs to the project whose
        compiled config names it in tns (C{repositories/github/<id>/<P>}),
        as Taubyte's patrick asks; none, or two projects, are refused.
        """
        tns = fakeTNSClient(reactor)
        self.service.resource.tns = tns
        del self.auth.repositories[("github", "101")]
        body = encoded(pushEvent())
        status, answer = await self.push(body)
        self.assertEqual((status, answer["error"]), (400, "repository 101: repository not found"))
        tns.calls.leaves[("repositories", "github", "101", PROJECT, "type")] = 4
        status, job = await self.push(body)
        self.assertEqual(status, 200, job)
        self.assertEqual(await self.service.jobs.storage.projectOf(job["Id"]), PROJECT)
        tns.calls.leaves[("repositories", "github", "101", "QmOther", "type")] = 4
        status, answer = await self.push(encoded(pushEvent(after="b" * 40)))
        self.assertEqual((status, answer["error"]), (400, f"repository 101 is in several projects: QmOther, {PROJECT}"))

    async def test_signaturesRefused(self):
        body = encoded(pushEvent())
        good = sign(body)
        cases = [
            (sign(body, sha256=False), 401, "only an X-Hub-Signature (HMAC-SHA1) header"),
            (sign(body, sha1=False, sha256=False), 401, "no X-Hub-Signature-256 header"),
            (sign(body, secret="wrong"), 401, "does not match"),
            (dict(good, **{"X-GitHub-Event": "issues"}), 400, "this is not a push event"),
        ]
        for headers, code, why in cases:
            status, answer = await self.push(body, headers)
            self.assertEqual(status, code, answer)
            self.assertIn(why, answer["error"])
            self.assertEqual(answer["code"], code)
        status, answer = await self.push(body, hook="nope")
        self.assertEqual((status, answer["error"]), (404, "hook not found"))
        self.assertEqual(len(self.refusals()), len(cases) + 1)
        self.assertIn("only an X-Hub-Signature", self.refusals()[0]["why"])
        self.assertEqual(self.kvdb.stored, {"patrick@service:patrick": {}})

    async def test_malformedRefused(self):
        cases = [
            (b"{not json", "the payload is not JSON"),
            (encoded(pushEvent(ref=["x"])), "ref: expected text"),
            (encoded(pushEvent(repo=999)), "repository.id: 999 is not the hook's repository"),
            (encoded(pushEvent(ref="refs/heads/feature")), "only builds branches ['main', 'master'], got `feature`"),
        ]
        for body, why in cases:
            status, answer = await self.push(body)
            self.assertEqual(status, 400, answer)
            self.assertIn(why, answer["error"])
        # a repository in no project makes no job either
        self.auth.repositories.clear()
        status, answer = await self.push(encoded(pushEvent()))
        self.assertEqual(status, 400)
        self.assertIn("repository 101: repository not found", answer["error"])
        self.assertEqual(len(self.refusals()), len(cases) + 1)
        self.assertEqual(self.kvdb.stored, {"patrick@service:patrick": {}})

    async def test_bodyLimit(self):
        base = encoded(pushEvent(pad=""))
        exact = encoded(pushEvent(pad="x" * (MAX_BODY - len(base))))
        self.assertEqual(len(exact), MAX_BODY)
        status, answer = await self.push(exact)
        self.assertEqual(status, 200, answer)
        over = encoded(pushEvent(pad="x" * (MAX_BODY - len(base) + 1), after="b" * 40))
        status, answer = await self.push(over)
        self.assertEqual((status, answer["error"]), (413, f"the request body is over {MAX_BODY} bytes"))
        self.assertEqual(len(await self.service.jobs.all()), 1)

    async def test_routesWantAToken(self):
        status, job = await self.push(encoded(pushEvent()))
        jid = job["Id"]
        self.assertEqual(await self.request("GET", "/ping"), (200, {"ping": "pong"}))
        for method, path in (("GET", "/jobs"), ("GET", f"/job/{jid}"), ("POST", f"/cancel/{jid}"),
                             ("GET", f"/download/{jid}/res"), ("GET", "/logs/bafy")):
            status, answer = await self.request(method, path)
            self.assertEqual(status, 401, path)
            status, answer = await self.request(method, path, token="github nope")
            self.assertEqual((status, answer["error"]), (401, "not authorized: GitHub refused the token"), path)
        # a token that does not reach the project sees nothing of it
        self.assertEqual(await self.request("GET", "/jobs", token="github tokB"), (200, {"jobs": []}))
        for method, path in (("GET", f"/job/{jid}"), ("POST", f"/cancel/{jid}"), ("POST", f"/retry/{jid}"),
                             ("GET", f"/download/{jid}/res"), ("GET", f"/jobs/{PROJECT}")):
            status, answer = await self.request(method, path, token="github tokB")
            self.assertEqual(status, 404, path)

    async def test_jobRoutes(self):
        status, job = await self.push(encoded(pushEvent()))
        jid = job["Id"]
        status, answer = await self.request("GET", "/jobs", token="github tokA")
        self.assertEqual([(j["Id"], j["Status"], j["Project"]) for j in answer["jobs"]], [(jid, 0, PROJECT)])
        status, answer = await self.request("GET", f"/job/{jid}", token="github tokA")
        self.assertEqual((status, answer["job"]["Id"]), (200, jid))
        # a monkey builds it: its log and its asset are served
        log = await self.content.add(b"step 1\nstep 2\n")
        wasm = await self.content.add(b"\0asm\x01\0\0\0")
        from tau.store.unixfs import cidText

        monkey = self.host.peerID
        await self.service.jobs.dequeue(monkey)
        await self.service.jobs.done(monkey, jid, {jid: cidText(log.cid)}, {"res": cidText(wasm.cid)})
        status, text = await self.request("GET", f"/logs/{cidText(log.cid)}", token="github tokA")
        self.assertEqual((status, text), (200, b"step 1\nstep 2\n"))
        response = await httpClient().get(f"{self.url}/download/{jid}/res", headers={"Authorization": "github tokA"})
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/wasm"])
        self.assertEqual(await treq.content(response), b"\0asm\x01\0\0\0")
        status, answer = await self.request("GET", f"/download/{jid}/other", token="github tokA")
        self.assertEqual(status, 404)
        # cancel an ended job: refused; retry: open again
        status, answer = await self.request("POST", f"/cancel/{jid}", token="github tokA")
        self.assertEqual((status, answer["error"]), (400, f"job {jid} is not open"))
        self.assertEqual(await self.request("POST", f"/retry/{jid}", token="github tokA"), (200, {"retry": jid}))
        self.assertEqual((await self.service.jobs.info(jid)).status, JobStatus.OPEN)
        self.assertEqual(await self.request("POST", f"/cancel/{jid}", token="github tokA"), (200, {"cancelled": jid}))

    async def test_logLimit(self):
        from tau.store.unixfs import cidText

        limit = self.service.config.maxLog
        exact = await self.content.add(b"x" * limit)
        over = await self.content.add(b"x" * (limit + 1))
        status, job = await self.push(encoded(pushEvent()))
        monkey = self.host.peerID
        await self.service.jobs.dequeue(monkey)
        await self.service.jobs.failed(monkey, job["Id"], {"a": cidText(exact.cid), "b": cidText(over.cid)})
        # a token that does not reach the job's project reads none of its logs
        status, answer = await self.request("GET", f"/logs/{cidText(exact.cid)}", token="github tokB")
        self.assertEqual(status, 404)
        status, text = await self.request("GET", f"/logs/{cidText(exact.cid)}", token="github tokA")
        self.assertEqual((status, len(text)), (200, limit))
        status, answer = await self.request("GET", f"/logs/{cidText(over.cid)}", token="github tokA")
        self.assertEqual((status, answer["error"]), (413, f"the log is over {limit} bytes"))
        status, answer = await self.request("GET", "/logs/notacid", token="github tokA")
        self.assertEqual((status, answer["error"]), (404, "log notacid not found"))
        # a log of the job that is not in the store
        other = cidText((await FakeContent().add(b"elsewhere")).cid)
        await self.service.jobs.dequeue(monkey)
        await self.service.jobs.failed(monkey, job["Id"], {"c": other})
        status, answer = await self.request("GET", f"/logs/{other}", token="github tokA")
        self.assertEqual(status, 404)
