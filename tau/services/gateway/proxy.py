"""
What the gateway does with one request: ask the substrates which serves
it (L{tau.services.substrate.client.SubstrateClient}) and tunnel it to the
best (L{tau.services.substrate.tunnel.forward}).

 - Nothing serves the host and path (every substrate that answered said
   so): 404.  No substrate found or none answered: 502; one silent past the
   timeout and none answered: 504.
 - The chosen substrate fails before the head of its answer (its stream
   resets, it answers garbage, it stays silent C{idle} seconds): the
   request goes to the next substrate that offered, when its body can be
   sent again: at most C{replay-bytes} of it were read so far (they are
   kept for that); past that the client gets 502 (504 for silence), as it
   does when every substrate that offered failed.
 - Once the head of an answer was forwarded, a failure drops the client's
   connection (a status can no longer be sent).
 - The answer names the substrate that served it in L{PEER_HEADER} (as go
   sets it on the response).
"""

from twisted.logger import Logger

from tau.services.substrate.client import NoSubstrate, NotServed, Unanswered, answerError, forward

#: the response header naming the substrate that served (go's ProxyHeader)
PEER_HEADER = b"X-Substrate-Peer"

log = Logger()


def hostnameOf(request):
    """
    The host a request is for, from its Host header: lower case, without
    its port or a final dot; "" when it has none.
    """
    raw = (request.getHeader(b"host") or b"").decode("latin-1").strip()
    if raw.startswith("["):
        name = raw[1:].partition("]")[0]
    else:
        name = raw.rpartition(":")[0] if raw.count(":") == 1 else raw
    return name.rstrip(".").lower()


def plain(request, status, text):
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.write(text.encode("utf-8") + b"\n")
    request.finish()


class Proxy:
    """
    @param substrates: a L{SubstrateClient} (C{async proxyHTTP(host, path,
        method) -> Choice}).
    @param clock: IReactorTime.
    @param idle: seconds a substrate's answer may stay silent.
    """

    def __init__(self, substrates, clock, idle):
        self.substrates = substrates
        self.clock = clock
        self.idle = idle

    async def handle(self, request, body):
        """
        Answer C{request}, whose body comes from C{body} (a
        L{tau.services.gateway.http.BodyPipe}).
        """
        hostname = hostnameOf(request)
        if not hostname:
            plain(request, 400, "no Host header")
            return
        method = request.method.decode("latin-1")
        try:
            choice = await self.substrates.proxyHTTP(hostname, request.targetPath(), method)
        except NotServed:
            if not request.gone:
                plain(request, 404, f"nothing serves {hostname}{request.targetPath()}")
            return
        except NoSubstrate as e:
            log.info("gateway: {method} {host}{path}: {why}", method=method, host=hostname,
                     path=request.targetPath(), why=str(e))
            if not request.gone:
                answerError(request, 504 if e.timedOut else 502)
            return
        try:
            await self._tunnel(request, body, choice)
        finally:
            choice.close()

    async def _tunnel(self, request, body, choice):
        status = 502
        while (offer := choice.take()) is not None:
            if request.gone:
                offer.stream.reset()
                return
            request.responseHeaders.setRawHeaders(PEER_HEADER, [str(offer.peer).encode("ascii")])
            try:
                await forward(request, offer.stream, self.clock, idle=self.idle, body=body, failover=True)
                return
            except Unanswered as e:
                status = e.status
                failedPeer = getattr(self.substrates, "failedPeer", None)
                if failedPeer is not None:
                    failedPeer(offer.peer)
                if request.gone:
                    return
                if not body.rewind():
                    log.info("gateway: {peer} failed before answering and {count} bytes of the body are gone; "
                             "not sent again", peer=str(offer.peer), count=body.consumed)
                    break
                log.info("gateway: {peer} failed before answering ({why}); trying the next substrate",
                         peer=str(offer.peer), why=str(e))
        request.responseHeaders.removeHeader(PEER_HEADER)
        answerError(request, status)
