"""
HTTPS with the certificates auth keeps, chosen by SNI.

OpenSSL asks for a certificate synchronously in the middle of the
handshake, and auth is a network call away, so the gateway reads the
ClientHello first (L{tau.services.gateway.hello}), fetches the certificate
for its name (L{Certificates}: auth's C{acme get-static}, then C{get}, for
the name and then for the wildcard of its parent, cached L{ttl} seconds; a
name auth has none for is not asked again for L{missTTL} seconds), then
starts TLS with it and feeds it the bytes it read.  A name with no
certificate (and no default one) closes the connection; that is logged at
most once every L{LOG_EVERY} seconds.
"""

from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from tau.tlspem import contextFromPEM
from tau.services.commands import RemoteError
from tau.services.gateway.hello import INCOMPLETE, MAX_HELLO, HelloError, serverName

#: what auth's error says when it has no certificate for a name
MISSING = "certificate not found"
#: seconds between two log lines about refused names
LOG_EVERY = 60.0
#: names whose certificate (or its absence) is cached at most
MAX_CACHED = 10_000

log = Logger()


class Certificates:
    """
    TLS contexts by server name, fetched from auth.

    @param fetch: C{async fetch(fqdn, static) -> PEM bytes} (L{AuthClient.certificate});
        fails with a L{RemoteError} saying L{MISSING} when auth has none.
    @param reactor: IReactorTime, IReactorThreads (contexts are built in a
        thread).
    @param default: an L{SSL.Context} for names auth has no certificate
        for (and clients that send no name), or None.
    """

    def __init__(self, fetch, reactor, *, ttl=300.0, missTTL=30.0, default=None, maxCached=MAX_CACHED):
        self.fetch = fetch
        self.reactor = reactor
        self.ttl = ttl
        self.missTTL = missTTL
        self.default = default
        self.maxCached = maxCached
        self._cache = {}  # name -> (expires, context or None)
        self._pending = {}  # name -> [waiting Deferreds]

    async def contextFor(self, name):
        """
        The L{SSL.Context} for C{name} (None: none, and no default).
        """
        if name is None:
            return self.default
        now = self.reactor.seconds()
        cached = self._cache.get(name)
        if cached is not None and cached[0] > now:
            return cached[1] or self.default
        if name in self._pending:
            waiter = Deferred()
            self._pending[name].append(waiter)
            return await waiter
        self._pending[name] = []
        try:
            context, ttl = await self._lookup(name)
        except Exception as e:
            log.info("gateway: no certificate for {name} from auth: {why}", name=name, why=str(e))
            context, ttl = None, min(self.missTTL, 5.0)
        if len(self._cache) >= self.maxCached:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= self.maxCached:
                self._cache.clear()
        self._cache[name] = (self.reactor.seconds() + ttl, context)
        answer = context or self.default
        for waiter in self._pending.pop(name):
            waiter.callback(answer)
        return answer

    async def _lookup(self, name):
        """
        C{(context or None, seconds to keep it)}.
        """
        candidates = [name]
        if "." in name:
            candidates.append("*." + name.partition(".")[2])
        for candidate in candidates:
            for static in (True, False):
                try:
                    pem = await self.fetch(candidate, static)
                except RemoteError as e:
                    if MISSING in str(e) or "not a domain name" in str(e):
                        continue
                    raise
                context = await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), contextFromPEM, pem)
                return context, self.ttl
        return None, self.missTTL


@implementer(IOpenSSLServerConnectionCreator)
class _Chosen:
    """
    TLS server connections with one chosen context.
    """

    def __init__(self, context):
        self._context = context

    def serverConnectionForTLS(self, tlsProtocol):
        return SSL.Connection(self._context, None)


class SNIProtocol(Protocol):
    """
    Reads a ClientHello, gets the certificate for its name, then hands
    the connection to TLS (and HTTP inside it) with the bytes it read.  It
    counts in its client address's connections (the site's
    C{maxPerClient}) from its first byte.
    """

    def __init__(self, factory, addr):
        self.factory = factory
        self.addr = addr
        self._buffer = bytearray()
        self._state = "hello"
        self._inner = None
        self._timer = None
        self._address = None

    def connectionMade(self):
        self._address = getattr(self.transport.getPeer(), "host", None)
        if not self.factory.site.enter(self._address):
            self._address = None
            self._refuse("too many connections from its address")
            return
        self._timer = self.factory.reactor.callLater(self.factory.helloTimeout, self._late)

    def _late(self):
        self._timer = None
        self.factory.refused("a ClientHello too slow", self.transport.getPeer())
        self.transport.abortConnection()

    def _disarm(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def dataReceived(self, data):
        if self._state == "tls":
            self._inner.dataReceived(data)
            return
        if self._state != "hello":
            return
        self._buffer += data
        try:
            name = serverName(self._buffer)
        except HelloError as e:
            self._refuse(f"not a ClientHello: {e}")
            return
        if name is INCOMPLETE:
            if len(self._buffer) > MAX_HELLO + 5 * 8:
                self._refuse("a ClientHello too long")
            return
        self._state = "fetching"
        self.transport.pauseProducing()
        d = Deferred.fromCoroutine(self.factory.certificates.contextFor(name))
        d.addCallbacks(self._start, self._failed, callbackArgs=(name,), errbackArgs=(name,))

    def _failed(self, failure, name):
        log.failure("gateway: finding the certificate of {name} failed", failure, name=name)
        self._start(None, name)

    def _refuse(self, why):
        self._state = "closed"
        self._disarm()
        self.factory.refused(why, self.transport.getPeer())
        self.transport.abortConnection()

    def _start(self, context, name):
        if self._state != "fetching":
            return
        if context is None:
            self._refuse(f"no certificate for {name!r}")
            return
        self._disarm()
        self._state = "tls"
        tls = TLSMemoryBIOFactory(_Chosen(context), False, self.factory.site)
        self._inner = tls.buildProtocol(self.addr)
        self._inner.makeConnection(self.transport)
        data, self._buffer = bytes(self._buffer), None
        self._inner.dataReceived(data)
        self.transport.resumeProducing()

    def connectionLost(self, reason):
        self._disarm()
        if self._address is not None:
            self.factory.site.leave(self._address)
            self._address = None
        if self._state != "tls":
            self._state = "closed"
        if self._inner is not None:
            self._inner.connectionLost(reason)


class SNIFactory(ServerFactory):
    """
    The HTTPS listener's factory: L{SNIProtocol}s that end in C{site}'s
    channels.
    """

    noisy = False

    def __init__(self, site, certificates, reactor, helloTimeout=10.0):
        self.site = site
        self.certificates = certificates
        self.reactor = reactor
        self.helloTimeout = helloTimeout
        self._lastLog = None
        self._quiet = 0

    def buildProtocol(self, addr):
        return SNIProtocol(self, addr)

    def refused(self, why, peer):
        now = self.reactor.seconds()
        if self._lastLog is None or now - self._lastLog >= LOG_EVERY:
            log.info("gateway: TLS connection from {peer} closed: {why} ({more} more since the last line)",
                     peer=str(peer), why=why, more=self._quiet)
            self._lastLog = now
            self._quiet = 0
        else:
            self._quiet += 1

