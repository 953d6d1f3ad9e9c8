"""
L{Serving}: how a substrate answers an HTTP request, whichever way it came
(a gateway's tunnel, L{tau.services.tunnel.serveTunnel}, or the
substrate's own HTTP listener, L{tau.services.substrate.web}).

A request is looked up in tns (host, path, method: Taubyte's rules, see
L{tau.services.tns.lookups.http}); the resource's build CID is the tns
value at L{tau.project.indexes.assetKey}.

  - A function's build is fetched through the node's content (over
    bitswap when elsewhere), unwrapped (L{tau.services.substrate.assets})
    and compiled once (the runtime's module cache, on disk, keyed by the
    build's CID, so a restart does not fetch or compile it again), then its
    C{call} export runs with the function's limits.  The request body is
    read whole, at most C{maxRequestBody} bytes.
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

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from wasmtime import WasmtimeError

from tau.oneshot import OneShot
from tau.project.indexes import assetKey
from tau.services.commands import RemoteError
from tau.services.framework import ServiceError
from tau.services.substrate import NOT_SERVED
from tau.services.substrate.assets import AssetError, assetCID, fetchBuild, moduleOf
from tau.services.substrate.metrics import FunctionMetrics, WebsiteMetrics
from tau.services.substrate.sniff import detectContentType
from tau.services.substrate.wasm import HttpRequest, Limits
from tau.services.substrate.wasm.context import FunctionContext
from tau.services.substrate.website import Website
from tau.services.tns.paths import PathError
from tau.services.tunnel import HOP_BY_HOP
from tau.store.content import BadInput, ContentError

#: the most CIDs whose broken build, or whose measures, are remembered
MAX_REMEMBERED = 10_000
#: calls after which the average run time becomes a moving average
AVERAGE_WINDOW = 100
#: seconds a build's blocks may take to come (a gateway waits 30 s at most)
FETCH_TIMEOUT = 20.0

log = Logger()


class RequestTooLarge(Exception):
    """
    A request body over the limit.
    """


class _NeedBytes(Exception):
    """
    The module is not compiled here: its bytes are needed.
    """


def _noBytes():
    raise _NeedBytes()


def limitsOf(config):
    """
    The L{Limits} of a function's tns config (C{memory} in bytes,
    C{timeout} in nanoseconds); the defaults for what it lacks.
    """
    given = {}
    memory, timeout = config.get("memory"), config.get("timeout")
    if isinstance(memory, int) and not isinstance(memory, bool) and memory > 0:
        given["memory"] = memory
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
        given["timeout"] = timeout / 1e9
    return Limits(**given)


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
    """

    def __init__(self, tns, content, runtime, reactor, *, maxRequestBody, maxModule, services=None):
        self.tns = tns
        self.content = content
        self.runtime = runtime
        self.reactor = reactor
        self.maxRequestBody = maxRequestBody
        self.maxModule = maxModule
        self.services = services
        self._loaded = set()
        self._loading = {}
        self._broken = OrderedDict()
        self._folders = set()
        # no more calls in flight than the runtime has workers: each holds an
        # instance, and more than the pool keeps would be cold ones
        self._calls = DeferredSemaphore(runtime.workers)
        self._measures = OrderedDict()

    # finding

    async def find(self, host, path, method):
        """
        What serves C{method path} on C{host} (L{tau.services.tns.lookups.http}),
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
        try:
            value = await self.tns.fetch(assetKey(found["project"], found["id"], found["branch"]))
        except RemoteError as e:
            raise ServiceError(f"tns: {e}") from None
        return assetCID(value)

    async def metrics(self, found):
        """
        The L{WebsiteMetrics} or L{FunctionMetrics} of C{found}.
        """
        cid = await self.assetOf(found)
        if found["kind"] == "website":
            held = cid is not None and await self.content.has(cid)
            return WebsiteMetrics(cached=1.0 if held else 0.0)
        compiled = cid is not None and (cid in self._loaded or self.runtime.cache.has(cid))
        measured = self._measures.get(cid) or Measures()
        return FunctionMetrics(cached=1.0 if compiled else 0.0, coldStart=measured.coldStart,
                               memory=float(limitsOf(found["config"]).memory), avgRunTime=measured.avgRunTime)

    # answering

    async def handle(self, request, body, response):
        """
        Answer C{request} (a L{tau.services.tunnel.TunnelRequest}): a
        L{tau.services.tunnel.serveTunnel} handler; C{body} has C{await
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
        config = found["config"]
        export = config.get("call")
        if not isinstance(export, str) or not export:
            raise AssetError(f"function {found['id']} names no export to call", 500)
        started = self.reactor.seconds()
        loaded = await self.load(cid)
        data = await readBody(body, request.contentLength, self.maxRequestBody)
        headers = [(name, v) for name, values in request.headers.items() if name.lower() != "host" for v in values]
        call = HttpRequest(request.method, request.url, host, headers, data)
        context = FunctionContext(project=found["project"], application=found.get("application") or "",
                                  resource=found["id"], commit=found["commit"], branch=found["branch"],
                                  services=self.services)
        await self._calls.acquire()
        try:
            before = self.runtime.coldStarts
            called = self.reactor.seconds()
            running = Deferred.fromCoroutine(self.runtime.call(cid, export, call, limitsOf(config), context))
            cold = self.runtime.coldStarts != before
            status, answerHeaders, out = await running
            ended = self.reactor.seconds()
        finally:
            self._calls.release()
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
        broken = self._broken.get(cid)
        if broken is not None:
            raise AssetError(broken, 500)
        try:
            await self.content.ls(cid, timeout=FETCH_TIMEOUT)
        except BadInput as e:
            self._remember(cid, f"the website build {cid} is not a folder: {e}")
            raise AssetError(self._broken[cid], 500) from None
        except ContentError as e:
            raise AssetError(f"the website build {cid} is not available: {e}", 503) from None
        self._folders.add(cid)
        while len(self._folders) > MAX_REMEMBERED:
            self._folders.pop()

    def _remember(self, cid, broken):
        self._broken[cid] = broken
        while len(self._broken) > MAX_REMEMBERED:
            self._broken.popitem(last=False)

    # loading

    async def load(self, cid):
        """
        Have the module of build C{cid} ready in the runtime (once, whoever
        asks meanwhile); whether this call loaded it.

        @raise AssetError: it cannot be had (503) or is not a module (500).
        """
        if cid in self._loaded:
            return False
        broken = self._broken.get(cid)
        if broken is not None:
            raise AssetError(broken, 500)
        shot = self._loading.get(cid)
        if shot is None:
            shot = self._loading[cid] = OneShot()
            d = Deferred.fromCoroutine(self._load(cid))
            d.addBoth(self._loadDone, cid, shot)
        await shot.whenFired()
        return True

    def _loadDone(self, result, cid, shot):
        del self._loading[cid]
        if not isinstance(result, Failure):
            self._loaded.add(cid)
        elif result.check(AssetError) and result.value.status == 500:
            self._remember(cid, str(result.value))
        shot.fire(result)

    async def _load(self, cid):
        if self.runtime.cache.has(cid):
            try:
                await self.runtime.load(_noBytes, cid)
                return
            except _NeedBytes:
                pass
        data = await fetchBuild(self.content, cid, self.maxModule, FETCH_TIMEOUT)
        module = await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), moduleOf, data, self.maxModule)
        try:
            await self.runtime.load(module, cid)
        except WasmtimeError as e:
            raise AssetError(f"the build {cid} does not compile: {e}", 500) from None
