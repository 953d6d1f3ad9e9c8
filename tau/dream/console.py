"""
The dream's read-only web console: a page (static HTML, JS and CSS shipped
in C{tau/dream/static/}, no build step, nothing from a CDN) that polls
C{/api/state} every 2 seconds and shows the nodes and their services, the
projects and their resources, and the jobs with their state and build logs.

L{Collector} gathers the state every C{interval} seconds, whatever the
number of viewers: the nodes from the supervisor's own knowledge (and
whether each answers its control API), the projects from tns and the jobs
from patrick, through the clients of the supervisor's own node (a
"simple": a member of the dream's swarm running no service).
"""

import json
from collections import OrderedDict
from pathlib import Path

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.static import File

from tau.services import available

log = Logger()

STATIC = Path(__file__).resolve().parent / "static"
#: The most projects, jobs and resources of a project the console shows.
MAX_PROJECTS = 200
MAX_JOBS = 100
MAX_RESOURCES = 500
#: The most of one build log shown (its start), and logs kept in memory.
MAX_LOG = 64 * 1024
MAX_CACHED_LOGS = 256
#: Seconds a whole refresh may take.
REFRESH_TIMEOUT = 10.0
#: What the console says of jobs when this build has no patrick client.
NO_PATRICK = "patrick not in this build"
NO_PATRICK_NODE = "no patrick node in this dream"
#: The resource kinds of a compiled project shown, as tns keeps them.
KINDS = ("functions", "websites", "libraries", "databases", "storages", "messaging", "domains", "smartops",
         "services")


def _patrickClient(host, routing):
    try:
        from tau.services.patrick.client import PatrickClient
    except ImportError:
        return None
    return PatrickClient(host, routing)


def resourcesOf(tree, application=None):
    """
    C{[{kind, id, name, application}]} of a compiled project's object tree
    (the project's own, then each application's).
    """
    out = []
    if not isinstance(tree, dict):
        return out
    for kind in KINDS:
        entries = tree.get(kind)
        if isinstance(entries, dict):
            for rid, config in sorted(entries.items()):
                name = config.get("name") if isinstance(config, dict) else None
                out.append({"kind": kind, "id": str(rid), "name": str(name or ""), "application": application})
    apps = tree.get("applications")
    if isinstance(apps, dict) and application is None:
        for aid, app in sorted(apps.items()):
            name = app.get("name") if isinstance(app, dict) else None
            out.extend(resourcesOf(app, str(name or aid)))
    return out[:MAX_RESOURCES]


class Collector(TimerService):
    """
    Keeps L{state}, refreshed every C{interval} seconds.

    @param dream: the L{tau.dream.Dream}.
    @param simple: the supervisor's node (C{tnsClient}, C{host}, C{dht},
        C{content}), or None.
    """

    def __init__(self, dream, simple, clock, interval=2.0):
        super().__init__(interval, self._refresh)
        self.clock = clock
        self.dream = dream
        self.simple = simple
        self.patrick = _patrickClient(simple.host, simple.dht) if simple is not None else None
        self._logs = OrderedDict()
        self.state = self._base()
        self.state.update(health={}, projects={"items": [], "error": "not read yet"},
                          jobs={"items": [], "error": "not read yet"})

    def _base(self):
        state = self.dream.state()
        state["dns"] = "{}:{}".format(*self.dream.dns) if self.dream.dns else None
        return state

    def _refresh(self):
        d = Deferred.fromCoroutine(self.refresh())
        d.addTimeout(REFRESH_TIMEOUT, self.clock)
        d.addErrback(lambda f: log.info("console: refresh failed: {why}", why=f.getErrorMessage()))
        return d

    async def refresh(self):
        """
        Read everything once more; L{state} is replaced as a whole.
        """
        state = self._base()
        state["health"] = await self.dream.health(timeout=3)
        state["projects"] = await self._guard(self._projects())
        state["jobs"] = await self._guard(self._jobs())
        state["updated"] = self.clock.seconds()
        self.state = state
        return state

    async def _guard(self, coroutine):
        try:
            return {"items": await coroutine, "error": None}
        except _Missing as e:
            return {"items": [], "error": str(e)}
        except Exception as e:
            return {"items": [], "error": f"{e.__class__.__name__}: {e}"}

    async def _projects(self):
        if self.simple is None:
            raise _Missing("no client node")
        tns = self.simple.tnsClient
        keys = await tns.list(2)
        ids = sorted({k[1] for k in keys if len(k) == 2 and k[0] == "projects"})[:MAX_PROJECTS]
        out = []
        for pid in ids:
            found = await tns.project(pid)
            tree = found["object"] if found else {}
            out.append({"id": pid, "name": str(tree.get("name") or "") if isinstance(tree, dict) else "",
                        "commit": found["commit"] if found else None, "resources": resourcesOf(tree)})
        return out

    async def _jobs(self):
        if self.patrick is None or "patrick" not in available():
            raise _Missing(NO_PATRICK)
        if not any("patrick" in node.shape for node in self.dream.nodes):
            raise _Missing(NO_PATRICK_NODE)
        ids = (await self.patrick.list())[-MAX_JOBS:]
        out = []
        for jid in ids:
            job = await self.patrick.info(jid)
            meta = getattr(job, "meta", None)
            repo = getattr(meta, "repository", None)
            status = getattr(job, "status", None)
            out.append({"id": str(jid), "status": str(getattr(status, "name", status)).lower(),
                        "repository": str(getattr(repo, "sshURL", "") or getattr(repo, "id", "") or ""),
                        "ref": str(getattr(meta, "ref", "") or ""), "commit": str(getattr(meta, "after", "") or ""),
                        "attempt": getattr(job, "attempt", 0),
                        "logs": [{"name": str(name), "cid": str(cid), "text": await self._log(cid)}
                                 for name, cid in sorted((getattr(job, "logs", None) or {}).items())]})
        return out

    async def _log(self, cid):
        cid = str(cid)
        if cid in self._logs:
            self._logs.move_to_end(cid)
            return self._logs[cid]
        try:
            chunks = await self.simple.content.cat(cid, 0, MAX_LOG, timeout=5)
            data = b""
            async for chunk in chunks:
                data += chunk
            text = data[:MAX_LOG].decode("utf-8", "replace")
        except Exception as e:
            return f"(log {cid} not fetched: {e.__class__.__name__})"
        self._logs[cid] = text
        while len(self._logs) > MAX_CACHED_LOGS:
            self._logs.popitem(last=False)
        return text


class _Missing(Exception):
    pass


class StateResource(Resource):
    isLeaf = True

    def __init__(self, collector):
        super().__init__()
        self.collector = collector

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(self.collector.state).encode("utf-8")


def consoleResource(collector):
    """
    The console's site root: the static page and C{/api/state}.
    """
    root = File(str(STATIC))
    root.indexNames = ["index.html"]
    api = Resource()
    api.putChild(b"state", StateResource(collector))
    root.putChild(b"api", api)
    return root
