"""
A website: a UnixFS folder, by CID, served over HTTP.

C{GET /a/b} is the file C{a/b} of the folder (C{index.html} for a folder;
a folder asked without its trailing slash is redirected to it), with a
Content-Type from its name, C{ETag: "<the file's CID>"}, C{If-None-Match}
(304), one byte range (206, 416), HEAD, and a 404 page (the site's own
C{/404.html} when it has one).  A path that tries to leave the folder
(C{..}, C{.}, an encoded slash, backslash or NUL) is refused with 400.

L{Website.respond} is the answer, independent of any transport; the same
site is served through the tunnel (L{Website.handle}, a
L{tau.services.substrate.tunnel.serveTunnel} handler) and as a C{twisted.web}
resource (L{WebsiteResource}).
"""

import mimetypes
from dataclasses import dataclass, field
from urllib.parse import unquote

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from tau.cids import cidText
from tau.store.content import BadInput, ContentError
from tau.webflow import WriteGate

#: the most path segments a request may name
MAX_DEPTH = 64

log = Logger()

# the built-in table only: the same answer on every machine, no files read
_TYPES = mimetypes.MimeTypes(filenames=())
# RFC 9239, and what older Pythons lack
for _kind, _ext in [("text/javascript", ".js"), ("text/javascript", ".mjs"), ("application/wasm", ".wasm"),
                    ("font/woff2", ".woff2"), ("image/webp", ".webp")]:
    _TYPES.add_type(_kind, _ext)


def contentType(name):
    """
    The Content-Type of a file called C{name}.
    """
    kind, encoding = _TYPES.guess_type(name, strict=False)
    if kind is None or encoding is not None:
        return "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/json", "image/svg+xml"):
        return f"{kind}; charset=utf-8"
    return kind


@dataclass
class Answer:
    """
    An HTTP answer: C{body} an async iterator of bytes, or None.
    """

    status: int
    headers: dict = field(default_factory=dict)
    body: object = None


def _text(status, text, extra=None):
    data = text.encode("utf-8")

    async def body():
        yield data
    headers = {"Content-Type": ["text/plain; charset=utf-8"], "Content-Length": [str(len(data))]}
    headers.update(extra or {})
    return Answer(status, headers, body())


class BadPath(ValueError):
    """
    A request path that tries to leave the folder or is not a path.
    """


def segments(path):
    """
    The decoded segments of a URL path (no query), and whether it names a
    folder (a trailing slash).

    @raise BadPath: for C{.} and C{..} (plain or encoded), an encoded
        slash, a backslash, a NUL, or more than L{MAX_DEPTH} segments.
    """
    if not path.startswith("/"):
        raise BadPath(f"{path[:100]!r} is not a path")
    raw = path[1:].split("/")
    if len(raw) > MAX_DEPTH:
        raise BadPath(f"more than {MAX_DEPTH} segments")
    names = []
    for part in raw:
        name = unquote(part, errors="strict") if "%" in part else part
        if name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
            raise BadPath(f"segment {part[:100]!r} is refused")
        if name:
            names.append(name)
    return names, path.endswith("/")


def parseRange(value, size):
    """
    C{(start, end)} (end excluded) of a single C{bytes=} range of a file of
    C{size} bytes; None when the header is to be ignored (not bytes, more
    than one range, malformed); C{"unsatisfiable"} when it asks nothing
    the file has.
    """
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == "") or first == last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - suffix), size
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if last != "" and int(last) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, end


def _etagMatches(header, etag):
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag in tags or f"W/{etag}" in tags


class Website:
    """
    The folder C{root} (a CID) of C{content} (L{tau.interfaces.IContent}),
    answered as a website.
    """

    def __init__(self, content, root):
        self.content = content
        self.root = root

    async def respond(self, method, url, headers):
        """
        The L{Answer} to C{method url} with C{headers} (a dict of lower-case
        names to text).
        """
        if method not in ("GET", "HEAD"):
            return _text(405, "method not allowed\n", {"Allow": ["GET, HEAD"]})
        path = url.partition("?")[0]
        try:
            names, slash = segments(path)
        except (BadPath, UnicodeDecodeError) as e:
            return _text(400, f"bad path: {e}\n")
        try:
            answer = await self._respond(names, slash, url, headers)
        except ContentError as e:
            log.info("website {root}: {path}: {error}", root=str(self.root), path=path, error=str(e))
            answer = _text(503, "content unavailable\n")
        if method == "HEAD":
            answer.body = None
        return answer

    async def _folder(self, cid):
        """
        The entries of folder C{cid} by name, or None if it is a file.
        """
        try:
            entries = await self.content.ls(cid)
        except BadInput:
            return None
        return {name: child for name, child, size in entries}

    async def _find(self, names):
        """
        C{(cid, entries)} of the path C{names}: C{entries} None for a file;
        None when there is nothing there.
        """
        cid = self.root
        entries = await self._folder(cid)
        for name in names:
            if entries is None or name not in entries:
                return None
            cid = entries[name]
            entries = await self._folder(cid)
        return cid, entries

    async def _respond(self, names, slash, url, headers):
        found = await self._find(names)
        if found is None:
            return await self._notFound()
        cid, entries = found
        name = names[-1] if names else ""
        if entries is not None:
            if names and not slash:
                path, query = url.partition("?")[::2]
                location = path + "/" + (f"?{query}" if query else "")
                return _text(301, "moved\n", {"Location": [location]})
            if "index.html" not in entries:
                return await self._notFound()
            cid, name = entries["index.html"], "index.html"
        return await self._file(cid, name, headers)

    async def _notFound(self):
        page = await self._find(["404.html"])
        if page is None or page[1] is not None:
            return _text(404, "not found\n")
        answer = await self._file(page[0], "404.html", {})
        answer.status = 404
        del answer.headers["ETag"]
        return answer

    async def _file(self, cid, name, headers):
        etag = f"\"{cidText(cid)}\""
        size = (await self.content.entry(cid)).filesize
        common = {"ETag": [etag], "Accept-Ranges": ["bytes"], "Content-Type": [contentType(name)]}
        match = headers.get("if-none-match")
        if match is not None and _etagMatches(match, etag):
            return Answer(304, {"ETag": [etag]})
        wanted = headers.get("range")
        ifRange = headers.get("if-range")
        if wanted is not None and (ifRange is None or ifRange.strip() == etag):
            span = parseRange(wanted, size)
            if span == "unsatisfiable":
                return _text(416, "range not satisfiable\n", {"Content-Range": [f"bytes */{size}"]})
            if span is not None:
                start, end = span
                common["Content-Range"] = [f"bytes {start}-{end - 1}/{size}"]
                common["Content-Length"] = [str(end - start)]
                return Answer(206, common, await self.content.cat(cid, start, end - start))
        common["Content-Length"] = [str(size)]
        return Answer(200, common, await self.content.cat(cid))

    async def handle(self, request, body, response):
        """
        A L{tau.services.substrate.tunnel.serveTunnel} handler.
        """
        headers = {name.lower(): ", ".join(values) for name, values in request.headers.items()}
        answer = await self.respond(request.method, request.url, headers)
        response.head(answer.status, answer.headers)
        if answer.body is not None:
            async for chunk in answer.body:
                await response.write(chunk)


class WebsiteResource(Resource):
    """
    A L{Website} as a C{twisted.web} resource, streamed at the pace the
    client reads.
    """

    isLeaf = True

    def __init__(self, website):
        super().__init__()
        self.website = website

    def render(self, request):
        d = Deferred.fromCoroutine(self._render(request))
        d.addErrback(lambda f: log.failure("website answer failed", f))
        return NOT_DONE_YET

    async def _render(self, request):
        headers = {name.decode("latin-1").lower(): b", ".join(values).decode("latin-1")
                   for name, values in request.requestHeaders.getAllRawHeaders()}
        gone = []
        request.notifyFinish().addErrback(gone.append)
        answer = await self.website.respond(request.method.decode("latin-1"), request.uri.decode("latin-1"), headers)
        if gone:
            return
        request.setResponseCode(answer.status)
        for name, values in answer.headers.items():
            request.responseHeaders.setRawHeaders(name, values)
        if answer.body is not None:
            gate = WriteGate()
            request.registerProducer(gate, True)
            async for chunk in answer.body:
                request.write(chunk)
                await gate.wait()
                if gate.stopped or gone:
                    return
            request.unregisterProducer()
        elif request.method == b"HEAD" and "Content-Length" in answer.headers:
            # twisted.web would say 0 for a HEAD with no body written
            request.setHeader(b"content-length", answer.headers["Content-Length"][0].encode())
        request.finish()
