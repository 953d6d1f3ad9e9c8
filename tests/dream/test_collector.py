"""
L{tau.dream.console.Collector}: what the console's C{/api/state} holds,
gathered from fakes of the dream, tns, patrick and the content store.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from tau.dream import console
from tau.dream.console import MAX_LOG, NO_PATRICK, NO_PATRICK_NODE, Collector, resourcesOf
from tau.services.patrick.job import Job, JobStatus


class FakeNode:
    def __init__(self, shape):
        self.shape = shape


class FakeDream:
    def __init__(self, shapes):
        self.nodes = [FakeNode(s) for s in shapes]
        self.dns = ("127.0.0.1", 5353)

    def state(self):
        return {"name": "t", "fqdn": "t.localtau", "nodes": [{"name": f"{i}-x"} for i in range(len(self.nodes))]}

    async def health(self, timeout=5):
        return {f"{i}-x": "up" for i in range(len(self.nodes))}


class FakeTNS:
    def __init__(self, projects):
        self.projects = projects

    async def list(self, depth):
        return [["projects"]] + [["projects", pid] for pid in self.projects] + [["http"]]

    async def project(self, pid, branch="main"):
        return {"project": pid, "commit": "c1", "object": self.projects[pid]}


class FakeContent:
    def __init__(self, blobs):
        self.blobs = blobs
        self.asked = []

    async def cat(self, cid, offset=0, length=None, timeout=None):
        self.asked.append(cid)
        if cid not in self.blobs:
            raise LookupError(cid)
        data = self.blobs[cid][offset:offset + length]

        async def chunks():
            for i in range(0, len(data), 1000):
                yield data[i:i + 1000]
        return chunks()


class FakeSimple:
    def __init__(self, tns, content):
        self.tnsClient = tns
        self.content = content
        self.host = self.dht = None


class FakePatrick:
    def __init__(self, jobs):
        self.jobs = {job.id: job for job in jobs}

    async def list(self):
        return list(self.jobs)

    async def info(self, jid):
        return self.jobs[jid]


TREE = {"name": "web", "functions": {"Qf": {"name": "hello"}}, "websites": {"Qw": {"name": "site"}},
        "applications": {"Qa": {"name": "app", "databases": {"Qd": {"name": "db"}}}}}


class CollectorTests(TestCase):
    def collector(self, shapes=(("tns",), ("patrick",)), patrick=None, blobs=None):
        content = FakeContent(blobs or {})
        collector = Collector(FakeDream(shapes), FakeSimple(FakeTNS({"Qp": TREE}), content), Clock())
        collector.patrick = patrick
        return collector, content

    def test_resources(self):
        """
        The resources of a project and of its applications, by kind.
        """
        self.assertEqual(resourcesOf(TREE), [
            {"kind": "functions", "id": "Qf", "name": "hello", "application": None},
            {"kind": "websites", "id": "Qw", "name": "site", "application": None},
            {"kind": "databases", "id": "Qd", "name": "db", "application": "app"}])
        self.assertEqual(resourcesOf(None), [])

    async def test_state(self):
        """
        One refresh: nodes with their health, the projects with their
        resources, the jobs with their state and logs (the start of each,
        at most L{MAX_LOG} bytes, fetched once per CID).
        """
        self.patch(console, "available", lambda: ["patrick", "tns"])
        jobs = [Job(id="j1", status=JobStatus.SUCCESS, logs={"2024-01-01T00:00:00Z": "bafylog1"}),
                Job(id="j2", status=JobStatus.FAILED, logs={"j2": "bafylog2", "j3": "missing"})]
        collector, content = self.collector(patrick=FakePatrick(jobs),
                                            blobs={"bafylog1": b"built ok\n", "bafylog2": b"x" * (MAX_LOG + 10)})
        state = await collector.refresh()
        self.assertIs(collector.state, state)
        self.assertEqual(state["health"], {"0-x": "up", "1-x": "up"})
        self.assertEqual(state["dns"], "127.0.0.1:5353")
        self.assertEqual(state["projects"]["error"], None)
        [project] = state["projects"]["items"]
        self.assertEqual((project["id"], project["name"], project["commit"], len(project["resources"])),
                         ("Qp", "web", "c1", 3))
        self.assertEqual(state["jobs"]["error"], None)
        j1, j2 = state["jobs"]["items"]
        self.assertEqual((j1["id"], j1["status"], j1["logs"][0]["text"]), ("j1", "success", "built ok\n"))
        self.assertEqual(j2["status"], "failed")
        self.assertEqual(len(j2["logs"][0]["text"]), MAX_LOG)
        self.assertIn("not fetched", j2["logs"][1]["text"])
        await collector.refresh()
        self.assertEqual(sorted(content.asked), ["bafylog1", "bafylog2", "missing", "missing"])

    async def test_noPatrick(self):
        """
        Without patrick in the build, or without a patrick node, the jobs
        say so; the rest of the state is there.
        """
        self.patch(console, "available", lambda: ["tns"])
        collector, _ = self.collector(patrick=FakePatrick([]))
        state = await collector.refresh()
        self.assertEqual(state["jobs"], {"items": [], "error": NO_PATRICK})
        self.assertEqual(len(state["projects"]["items"]), 1)
        self.patch(console, "available", lambda: ["patrick", "tns"])
        collector, _ = self.collector(shapes=(("tns",),), patrick=FakePatrick([]))
        state = await collector.refresh()
        self.assertEqual(state["jobs"], {"items": [], "error": NO_PATRICK_NODE})

    async def test_failure(self):
        """
        A client that fails leaves an error in its part of the state, not
        a console that stops refreshing.
        """
        collector, _ = self.collector()

        async def broken(depth):
            raise ConnectionError("tns is gone")
        collector.simple.tnsClient.list = broken
        state = await collector.refresh()
        self.assertEqual(state["projects"], {"items": [], "error": "ConnectionError: tns is gone"})
