"""
L{LimitedSite}: a quiet C{twisted.web} site whose requests stop keeping
their body past C{maxBody} bytes (L{LimitedRequest.tooLarge} then tells
the resource to answer 413).  auth's API, patrick's and substrate's direct
listener use it.
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
