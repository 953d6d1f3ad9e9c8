"""
L{Serving}: how a substrate answers an HTTP request, whichever way it came
(a gateway's tunnel, L{tau.services.substrate.tunnel.serveTunnel}, or the
substrate's own HTTP listener, L{tau.services.substrate.web}).

A request is looked up in tns (host, path, method: Taubyte's rules, see
L{tau.project.lookups.http}); the resource's build CID is the tns
value at L{tau.project.indexes.assetKey}.

  - A function is run by the substrate's
    L{tau.services.substrate.runner.FunctionRunner} (which pubsub and p2p
    triggers share: loading its build, its limits and context, the calls
    under way at once).  The request body is read whole, at most
    C{maxRequestBody} bytes.
  - A website's build is a UnixFS folder, served by
    L{tau.services.substrate.website.Website} under the path it matched
    (a website on C{/docs} answers C{/docs/a} with its file C{a}).

Answers when nothing can run: 404 when nothing serves the host and path
(text beginning with L{NOT_SERVED}); 503 when the resource has no build
yet, its build cannot be fetched or tns cannot be reached (a later try may
work); 500 when the build is not what it should be (not a module, a zip
without one, too large, does not compile: remembered per CID, as a CID's
bytes never change); 413 for a body over the limit; a trap 500, a timeout
504 (the runtime's).
"""

import dataclasses
from collections import OrderedDict
from urllib.parse import unquote

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from tau.services.commands import RemoteError
from tau.services.framework import ServiceError
from tau.services.substrate import NOT_SERVED
from tau.services.substrate.assets import AssetError
from tau.services.substrate.metrics import FunctionMetrics, WebsiteMetrics
from tau.services.substrate.runner import FETCH_TIMEOUT, MAX_REMEMBERED, FunctionRunner, limitsOf
from tau.services.substrate.sniff import detectContentType
from tau.services.substrate.wasm import HttpRequest
from tau.services.substrate.website import Website
from tau.services.tns.client import PathError
from tau.services.substrate.tunnel import HOP_BY_HOP
from tau.store.content import BadInput, ContentError

#: calls after which the average run time becomes a moving average
AVERAGE_WINDOW = 100

log = Logger()


class RequestTooLarge(Exception):
    """
    A request body over the limit.
    """


def mountOf(paths, path):
    """
    The path of a website's C{paths} that C{path} matched (Taubyte's
    website match: equal, else the longest one C{path} is under, C{/} the
    weakest), or C{/}.
    """
    best, score = "/", 0
    for p in paths if isinstance(paths, list) else []:
        if not isinstance(p, str):
            continue
        if p == path:
            return p
        points = 1 if p == "/" else len(p) + 1 if path.startswith(p.rstrip("/") + "/") else 0
        if points > score:
            best, score = p, points
    return best


def underMount(url, mount):
    """
    C{url} (a path and query) as seen from inside a website on C{mount}:
    C{/docs/a?x} on C{/docs} is C{/a?x}; a trailing slash is kept.
    """
    if mount in ("", "/"):
        return url
    path, mark, query = url.partition("?")
    rest = path[len(mount.rstrip("/")):] if path.startswith(mount.rstrip("/")) else path
    if not rest.startswith("/"):
        rest = "/" + rest
    return rest + mark + query


async def readBody(body, declared, limit):
    """
    The whole request body, at most C{limit} bytes.

    @raise RequestTooLarge: when it announces or sends more.
    """
    if declared > limit:
        raise RequestTooLarge(f"a body of {declared} bytes, limit {limit}")
    chunks, size = [], 0
    while True:
        data = await body.read()
        if not data:
            return b"".join(chunks)
        size += len(data)
        if size > limit:
            raise RequestTooLarge(f"a body over {limit} bytes")
        chunks.append(data)


@dataclasses.dataclass
class Measures:
    """
    What was measured of one function build: its last cold start (fetching
    and compiling or loading included when that call did it) and its
    average run time, in nanoseconds.
    """

    coldStart: int = 0
    avgRunTime: int = 0
    calls: int = 0

    def ran(self, seconds):
        self.calls += 1
        weight = 1 / min(self.calls, AVERAGE_WINDOW)
        self.avgRunTime = int(self.avgRunTime + (seconds * 1e9 - self.avgRunTime) * weight)


class _Mounted:
    """
    A response of a website on a mount: its redirects (to paths inside the
    site) are made absolute again.
    """

    def __init__(self, response, mount):
        self._response = response
        self._mount = mount.rstrip("/")

    def head(self, status, headers=None):
        headers = dict(headers or {})
        if "Location" in headers:
            headers["Location"] = [self._mount + v if v.startswith("/") else v for v in headers["Location"]]
        self._response.head(status, headers)

    async def write(self, data):
        await self._response.write(data)


async def answerText(response, status, text, extra=None):
    """
    Answer C{status} with C{text} (and headers C{extra}).
    """
    data = (text + "\n").encode("utf-8")
    headers = {"Content-Type": ["text/plain; charset=utf-8"], "Content-Length": [str(len(data))]}
    headers.update(extra or {})
    response.head(status, headers)
    await response.write(data)


class Serving:
    """
    @param tns: a L{tau.services.tns.client.TNSClient} (C{http}, C{fetch}).
    @param content: L{tau.interfaces.IContent}.
    @param runtime: a started L{tau.services.substrate.wasm.Runtime}; at
        most its C{workers} calls are made at once (the others wait), so a
        pool of that many warm instances per function keeps it warm.
    @param reactor: IReactorTime and IReactorThreads (unzipping runs in
        its thread pool).
    @param maxRequestBody: bytes of request body a function is given.
    @param maxModule: bytes of a function build, and of its module.
    @param services: the node-backed services of the functions' host
        calls (L{FunctionContext.services}), or None.
    @param runner: the substrate's L{FunctionRunner} (then C{maxModule}
        and C{services} are its); None: one of its own.
    """

    def __init__(self, tns, content, runtime, reactor, *, maxRequestBody, maxModule=None, services=None, runner=None):
        self.tns = tns
        self.content = content
        self.runtime = runtime
        self.reactor = reactor
        self.maxRequestBody = maxRequestBody
        if runner is None:
            runner = FunctionRunner(tns, content, runtime, reactor, maxModule=maxModule, services=services)
        self.runner = runner
        self._folders = set()
        self._measures = OrderedDict()

    # finding

    async def find(self, host, path, method):
        """
        What serves C{method path} on C{host} (L{tau.project.lookups.http}),
        or None.

        @raise ServiceError: tns could not be asked, or answered an error.
        """
        try:
            return await self.tns.http(host, unquote(path.partition("?")[0]), method)
        except PathError:
            # a host tns cannot hold (an empty label, a slash): nothing serves it
            return None
        except RemoteError as e:
            raise ServiceError(f"tns: {e}") from None

    async def assetOf(self, found):
        """
        The build CID (text) of the resource C{found}, or None.
        """
        return await self.runner.assetOf(found)

    async def metrics(self, found):
        """
        The L{WebsiteMetrics} or L{FunctionMetrics} of C{found}.
        """
        cid = await self.assetOf(found)
        if found["kind"] == "website":
            held = cid is not None and await self.content.has(cid)
            return WebsiteMetrics(cached=1.0 if held else 0.0)
        compiled = cid is not None and self.runner.isLoaded(cid)
        measured = self._measures.get(cid) or Measures()
        return FunctionMetrics(cached=1.0 if compiled else 0.0, coldStart=measured.coldStart,
                               memory=float(limitsOf(found["config"]).memory), avgRunTime=measured.avgRunTime)

    # answering

    async def handle(self, request, body, response):
        """
        Answer C{request} (a L{tau.services.substrate.tunnel.TunnelRequest}): a
        L{tau.services.substrate.tunnel.serveTunnel} handler; C{body} has C{await
        read()}, C{response} C{head(status, headers)} and C{await
        write(data)}.
        """
        host = request.host or next((v[0] for k, v in request.headers.items() if k.lower() == "host" and v), "")
        path = request.url.partition("?")[0]
        try:
            found = await self.find(host, path, request.method)
        except ServiceError as e:
            log.info("substrate: tns lookup of {host}{path} failed: {error}", host=host, path=path, error=str(e))
            return await answerText(response, 503, "the project registry (tns) cannot be reached")
        if found is None:
            return await answerText(response, 404, f"{NOT_SERVED} {host}{path}")
        try:
            cid = await self.assetOf(found)
            if cid is None:
                raise AssetError(f"{found['kind']} {found['id']} of project {found['project']} has no build yet", 503)
            if found["kind"] == "website":
                return await self._website(found, cid, request, body, response)
            return await self._function(found, cid, host, request, body, response)
        except ServiceError as e:
            log.info("substrate: tns failed for {host}{path}: {error}", host=host, path=path, error=str(e))
            return await answerText(response, 503, "the project registry (tns) cannot be reached")
        except AssetError as e:
            log.info("substrate: {host}{path}: {error}", host=host, path=path, error=str(e))
            return await answerText(response, e.status, str(e))
        except RequestTooLarge as e:
            return await answerText(response, 413, f"request body too large: {e}")

    async def _website(self, found, cid, request, body, response):
        await self._checkFolder(cid)
        mount = mountOf(found["config"].get("paths"), unquote(request.url.partition("?")[0]))
        inside = dataclasses.replace(request, url=underMount(request.url, mount))
        await Website(self.content, cid).handle(inside, body, _Mounted(response, mount) if mount != "/" else response)

    async def _function(self, found, cid, host, request, body, response):
        started = self.reactor.seconds()
        p = await self.runner.prepare(found, cid)
        data = await readBody(body, request.contentLength, self.maxRequestBody)
        headers = [(name, v) for name, values in request.headers.items() if name.lower() != "host" for v in values]
        call = HttpRequest(request.method, request.url, host, headers, data)
        timing = {}

        async def run():
            before = self.runtime.coldStarts
            timing["called"] = self.reactor.seconds()
            running = Deferred.fromCoroutine(self.runtime.call(p.cid, p.export, call, p.limits, p.context))
            timing["cold"] = self.runtime.coldStarts != before
            answer = await running
            timing["ended"] = self.reactor.seconds()
            return answer

        status, answerHeaders, out = await self.runner.invoke(run)
        called, ended, cold, loaded = timing["called"], timing["ended"], timing["cold"], p.loaded
        measured = self._measured(cid)
        measured.ran(ended - called)
        if cold:
            measured.coldStart = int(((ended - started) if loaded else (ended - called)) * 1e9)
        grouped = {}
        for name, value in answerHeaders:
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                grouped.setdefault(name, []).append(value)
        if status >= 200 and status not in (204, 304):
            grouped["Content-Length"] = [str(len(out))]
            if out and not any(name.lower() == "content-type" for name in grouped):
                # Go's server sniffs what a handler did not say
                grouped["Content-Type"] = [detectContentType(out)]
        else:
            out = b""
        response.head(status, grouped)
        if out:
            await response.write(out)

    def _measured(self, cid):
        measured = self._measures.get(cid)
        if measured is None:
            measured = self._measures[cid] = Measures()
            while len(self._measures) > MAX_REMEMBERED:
                self._measures.popitem(last=False)
        return measured

    async def _checkFolder(self, cid):
        """
        @raise AssetError: the website's build is not a folder (500, kept)
            or cannot be had (503).
        """
        if cid in self._folders:
            return
        broken = self.runner.brokenWhy(cid)
        if broken is not None:
            raise AssetError(broken, 500)
        try:
            await self.content.ls(cid, timeout=FETCH_TIMEOUT)
        except BadInput as e:
            why = f"the website build {cid} is not a folder: {e}"
            self.runner.remember(cid, why)
            raise AssetError(why, 500) from None
        except ContentError as e:
            raise AssetError(f"the website build {cid} is not available: {e}", 503) from None
        self._folders.add(cid)
        while len(self._folders) > MAX_REMEMBERED:
            self._folders.pop()

    async def load(self, cid):
        """
        Have the module of build C{cid} ready (L{FunctionRunner.load}).
        """
        return await self.runner.load(cid)
