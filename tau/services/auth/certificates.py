"""
TLS certificates by SNI name, for the gateway's HTTPS listener.

The certificates auth stores (C{acme set}/C{set-static}: a PEM chain and
its private key) are loaded into OpenSSL contexts held in memory, since
OpenSSL asks for one synchronously during the handshake: at start, every
L{REFRESH} seconds (certificates set on other nodes arrive through the
replicated store), and at once when this node stores one.  A name is
served its own certificate, else the wildcard of its parent
(C{*.example.com}); for the same name a static certificate is preferred to an
ACME one.
"""

from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from tau.tlspem import contextFromPEM

#: seconds between two loads of every stored certificate
REFRESH = 60.0
#: certificates loaded at most
MAX_CERTIFICATES = 10_000

log = Logger()


def _loadAll(entries):
    """
    C{({name: context}, [(name, why)])}.  Runs in a thread.
    """
    contexts, failed = {}, []
    for name, pem in entries:
        try:
            contexts[name] = contextFromPEM(pem)
        except ValueError as e:
            failed.append((name, str(e)))
    return contexts, failed


class Certificates:
    """
    @param load: C{async load() -> [((fqdn, static), pem)]}, every stored
        certificate (opened).
    """

    def __init__(self, load, reactor, refresh=REFRESH):
        self._load = load
        self.reactor = reactor
        self.refresh = refresh
        self._contexts = {}
        self._loop = None

    def start(self):
        self._loop = LoopingCall(lambda: Deferred.fromCoroutine(self.reload()))
        self._loop.clock = self.reactor
        self._loop.start(self.refresh, now=True).addErrback(
            lambda f: log.failure("TLS certificates no longer reloaded", f))

    def stop(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    async def _build(self, entries):
        contexts, failed = await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), _loadAll, entries)
        for (fqdn, static), why in failed:
            log.warn("TLS certificate of {fqdn} (static: {static}) not served: {why}", fqdn=fqdn, static=static, why=why)
        return contexts

    async def reload(self):
        try:
            self._contexts = await self._build(await self._load())
        except Exception:
            if self._loop is None:
                # stopped meanwhile: the store it read from is going away
                return
            log.failure("loading TLS certificates failed")

    async def stored(self, fqdn, static, pem):
        """
        This node stored C{pem} for C{fqdn}: serve it now.
        """
        self._contexts.update(await self._build([((fqdn, static), pem)]))

    def contextFor(self, name):
        """
        The L{SSL.Context} to serve C{name} with, or None.
        """
        if not name:
            return None
        name = name.lower().rstrip(".")
        wildcard = "*." + name.partition(".")[2]
        for candidate in ((name, True), (name, False), (wildcard, True), (wildcard, False)):
            context = self._contexts.get(candidate)
            if context is not None:
                return context
        return None

    def serverContextFactory(self):
        """
        A Twisted context factory (C{getContext()}) choosing the certificate
        by the client's SNI name; a name without one fails the handshake.
        """
        return _SNIContextFactory(self)


class _SNIContextFactory:
    def __init__(self, certificates):
        self._certificates = certificates
        self._context = None

    def getContext(self):
        if self._context is None:
            context = SSL.Context(SSL.TLS_SERVER_METHOD)
            context.set_min_proto_version(SSL.TLS1_2_VERSION)
            context.set_tlsext_servername_callback(self._choose)
            self._context = context
        return self._context

    def _choose(self, connection):
        name = connection.get_servername()
        context = self._certificates.contextFor(name.decode("ascii", "replace") if name else None)
        if context is not None:
            connection.set_context(context)
