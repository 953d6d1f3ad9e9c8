"""
L{SubstrateClient}: how a gateway finds the substrate that serves a
request (what other services use; they never import the substrate's
server code).

A gateway asks up to L{FANOUT} substrates at once C{proxy-http {host,
path, method}} on C{/substrate/v1}, each on a stream of its own.  A
substrate answers one command frame: an error (C{NOT_SERVED} when nothing
it knows serves that host and path) or its metrics for the website or the
function that does (L{tau.services.substrate.metrics}); after such an
answer the same stream carries the HTTP tunnel (L{tau.services.substrate.tunnel}),
whose caller's side (L{forward}, L{answerError}, L{Unanswered}) this
module hands the gateway.

Unlike go (a 10 ms timeout, the first answer wins or a bad pick) every
exchange has a real timeout, the answers that came are ranked (L{rank}),
and the gateway keeps the others' streams as fallbacks for a substrate that
fails before its answer's head.
"""

from dataclasses import dataclass, field

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import TimeoutError
from twisted.logger import Logger

from tau.services.commands import CommandError, RemoteError, decodeResponse, encodeCommand
from tau.services.discovery import ServiceClient
from tau.services.frames import CLOSE, FrameDecoder, FrameError
from tau.services.framework import readFrame
from tau.services.substrate import NOT_SERVED, PROTOCOL
from tau.services.substrate.metrics import FunctionMetrics, MetricsError, decodeAnswer
from tau.services.substrate.tunnel import Unanswered, answerError, forward
from tau.streams import withTimeout

#: substrates asked at once (go: 3)
FANOUT = 3
#: seconds one substrate has to open its stream and answer (go: 10 ms)
TIMEOUT = 5.0
#: seconds the other substrates still have once one offered to serve
GRACE = 0.02
#: the largest C{proxy-http} answer (bytes); metrics are a few bytes
MAX_ANSWER = 64 * 1024
#: seconds a substrate that failed is asked after the others
BACKOFF = 10.0
#: substrates remembered as failed at most
MAX_FAILED = 1024

__all__ = ["Choice", "NoSubstrate", "NotServed", "Offer", "SubstrateClient", "Unanswered", "answerError",
           "forward", "rank"]

log = Logger()


class NotServed(Exception):
    """
    Every substrate that answered said nothing serves that host and path
    (the gateway answers 404).
    """


class NoSubstrate(Exception):
    """
    No substrate could answer: none found, or each failed (502).  C{timedOut}
    when a substrate was silent past the timeout and none answered (504).
    """

    def __init__(self, message, timedOut=False):
        super().__init__(message)
        self.timedOut = timedOut


@dataclass
class Offer:
    """
    A substrate that offered to serve: its C{peer}, its open C{stream}
    (the tunnel goes on it), its C{metrics} and the rank of its answer's
    arrival (C{order}, 0 first).
    """

    peer: object
    stream: object
    metrics: object
    order: int = 0


def rank(offers):
    """
    C{offers} best first.  Go's rule for the kind: functions, unless more
    substrates offered a website than a function; within the kind, a
    substrate that has it cached first (higher C{cached}), then for a
    function the lower cold start, then the lower average run time, then
    the lower memory; ties go to the one that answered first.  Offers of the
    other kind follow (the same host and path cannot be both; they are
    kept as fallbacks all the same).
    """
    functions = [o for o in offers if isinstance(o.metrics, FunctionMetrics)]
    websites = [o for o in offers if not isinstance(o.metrics, FunctionMetrics)]

    def key(o):
        m = o.metrics
        if isinstance(m, FunctionMetrics):
            return (-m.cached, m.coldStart, m.avgRunTime, m.memory, o.order)
        return (-m.cached, 0, 0, 0, o.order)

    first, second = (websites, functions) if len(websites) > len(functions) else (functions, websites)
    return sorted(first, key=key) + sorted(second, key=key)


@dataclass
class Choice:
    """
    The substrates that offered to serve a request, best first (L{rank}).
    L{take} hands out the next one, whose stream is the caller's to use
    and reset; L{close} resets the streams not taken.
    """

    offers: list = field(default_factory=list)

    def take(self):
        """
        The best L{Offer} not yet taken, or None.
        """
        return self.offers.pop(0) if self.offers else None

    def close(self):
        offers, self.offers = self.offers, []
        for offer in offers:
            offer.stream.reset()


class SubstrateClient:
    """
    Finds the substrates serving a host and path.

    @param host: the local host (C{newStream}, C{clock}, C{peerstore}...).
    @param routing: DHT routing (C{findProviders}), or None: known peers
        only.
    @param fanout: substrates asked at once.
    @param timeout: seconds one substrate has to answer.
    @param grace: seconds the others still have once one offered.
    @param services: what finds the substrates (C{async peers()}); a
        L{ServiceClient} on C{/substrate/v1} by default.
    """

    def __init__(self, host, routing, *, fanout=FANOUT, timeout=TIMEOUT, grace=GRACE, maxAnswer=MAX_ANSWER,
                 services=None):
        self.host = host
        self.clock = host.clock
        self.fanout = fanout
        self.timeout = timeout
        self.grace = grace
        self.maxAnswer = maxAnswer
        self.services = services or ServiceClient(host, routing, PROTOCOL)
        self._turn = 0
        self._failed = {}  # peer -> when it last failed

    async def _candidates(self):
        try:
            peers = await self.services.peers()
        except Exception as e:
            raise NoSubstrate(f"finding substrates failed: {e}") from None
        if not peers:
            return []
        # by turns: each request starts where the last one's fanout ended;
        # a substrate that failed in the last BACKOFF seconds comes last
        start = self._turn % len(peers)
        self._turn += self.fanout
        now = self.clock.seconds()
        for peer, when in list(self._failed.items()):
            if now - when >= BACKOFF:
                del self._failed[peer]
        order = peers[start:] + peers[:start]
        order.sort(key=lambda peer: peer in self._failed)
        return order[: self.fanout]

    async def proxyHTTP(self, hostname, path, method):
        """
        The substrates that serve C{method} C{hostname}C{path}, as a
        L{Choice} (never empty).

        @raise NotServed: every answer was C{NOT_SERVED} (and at least one
            came).
        @raise NoSubstrate: no substrate found, or none answered.
        """
        peers = await self._candidates()
        if not peers:
            raise NoSubstrate(f"no node offers {PROTOCOL}")
        body = {"host": hostname, "path": path, "method": method}
        command = encodeCommand("proxy-http", body)
        offers, notServed, errors = [], [], []
        everyone = Deferred()
        graceCall = []
        pending = []

        def settled(_=None):
            if not everyone.called and all(d.called for d in pending):
                everyone.callback(None)

        def offered(offer):
            offer.order = len(offers)
            offers.append(offer)
            if not graceCall and not everyone.called:
                graceCall.append(self.clock.callLater(self.grace, stopWaiting))

        def stopWaiting():
            for d in pending:
                if not d.called:
                    d.cancel()

        for peer in peers:
            d = Deferred.fromCoroutine(self._ask(peer, command))
            pending.append(d)

            def done(result, peer=peer):
                if isinstance(result, Offer):
                    offered(result)
                elif result is not None:
                    notServed.append(peer)
                return None

            def failed(failure, peer=peer):
                if failure.check(CancelledError):
                    errors.append((peer, "no answer within the grace after another's", False))
                else:
                    e = failure.value
                    errors.append((peer, str(e) or type(e).__name__, isinstance(e, TimeoutError)))
                    self.failedPeer(peer)
                return None

            d.addCallbacks(done, failed)
            d.addBoth(settled)
        settled()
        try:
            await everyone
        except BaseException:
            # the caller went away: nobody will use these streams
            Choice(offers).close()
            raise
        finally:
            for call in graceCall:
                if call.active():
                    call.cancel()
            stopWaiting()
        if offers:
            return Choice(rank(offers))
        if notServed:
            raise NotServed(f"{hostname}{path}: {NOT_SERVED} (asked {len(peers)} substrates)")
        why = "; ".join(f"{peer}: {text}" for peer, text, _ in errors)
        raise NoSubstrate(f"no substrate answered for {hostname}{path}: {why}",
                          timedOut=any(t for _, _, t in errors))

    def failedPeer(self, peer):
        """
        C{peer} failed (to answer, or in its tunnel before its answer's
        head): ask it after the others for L{BACKOFF} seconds.
        """
        if len(self._failed) >= MAX_FAILED:
            self._failed.clear()
        self._failed[peer] = self.clock.seconds()

    async def _ask(self, peer, command):
        """
        An L{Offer}, C{False} for a substrate that does not serve it.

        @raise Exception: any failure (a timeout is L{TimeoutError}).
        """
        opened = []

        async def exchange():
            stream = await self.host.newStream(peer, [PROTOCOL], timeout=self.timeout, lazy=True)
            opened.append(stream)
            stream.write(command)
            decoder = FrameDecoder(self.maxAnswer)
            frame = await readFrame(stream, decoder)
            if decoder.pending:
                raise FrameError(f"{decoder.pending} bytes after the answer")
            if frame.type == CLOSE:
                raise FrameError(f"the substrate closed the stream: {frame.closeText()!r}")
            return stream, frame

        try:
            stream, frame = await withTimeout(self.clock, self.timeout, exchange())
        except BaseException:
            for stream in opened:
                stream.reset()
            raise
        try:
            answer = decodeResponse(frame.payload)
        except RemoteError as e:
            stream.reset()
            if NOT_SERVED in str(e):
                return False
            raise
        except CommandError:
            stream.reset()
            raise
        try:
            metrics = decodeAnswer(answer)
        except MetricsError:
            stream.reset()
            raise
        return Offer(peer, stream, metrics)
