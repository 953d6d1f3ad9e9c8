"""
What the JSON HTTP APIs of the services share: L{LimitedSite}, a quiet
C{twisted.web} site whose requests stop keeping their body past C{maxBody}
bytes (L{LimitedRequest.tooLarge} then tells the resource to answer 413),
used by auth's API, patrick's and substrate's direct listener; and
L{matchRoute}, the route table of auth's and patrick's APIs.
"""

from twisted.web.server import Request, Site


class LimitedRequest(Request):
    """
    A request whose body stops being kept past the site's C{maxBody}
    bytes; the resource then answers 413.
    """

    tooLarge = False
    _received = 0

    def gotLength(self, length):
        limit = self.channel.site.maxBody
        super().gotLength(min(length, limit + 1) if length is not None else None)
        if length is not None and length > limit:
            self.tooLarge = True

    def handleContentChunk(self, data):
        self._received += len(data)
        if self._received > self.channel.site.maxBody:
            self.tooLarge = True
            return
        super().handleContentChunk(data)


class LimitedSite(Site):
    """
    @param resource: the root resource.
    @param maxBody: bytes of a request body kept.
    """

    noisy = False
    requestFactory = LimitedRequest

    def __init__(self, resource, maxBody):
        super().__init__(resource)
        self.maxBody = maxBody

    def log(self, request):
        pass


class HTTPError(Exception):
    """
    An answer with status C{status} and an error C{message}.
    """

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def matchRoute(routes, method, path):
    """
    The route of C{routes} (tuples starting C{(method, pattern)}, a pattern
    such as C{/job/{jid}}) for C{method path}, and the pattern's
    arguments (C{{"jid": ...}}; an empty segment matches no argument).

    @raise HTTPError: 405 (the path is served for other methods, named) or
        404.
    """
    segments = path.split("/")
    allowed = []
    for route in routes:
        routeMethod, pattern = route[0], route[1]
        parts = pattern.split("/")
        if len(parts) != len(segments):
            continue
        args = {}
        for part, segment in zip(parts, segments):
            if part.startswith("{"):
                if not segment:
                    break
                args[part[1:-1]] = segment
            elif part != segment:
                break
        else:
            if routeMethod == method:
                return route, args
            allowed.append(routeMethod)
    if allowed:
        raise HTTPError(405, f"{method} not allowed here (use {', '.join(allowed)})")
    raise HTTPError(404, "no such route")
