"""
How services are found, as Taubyte finds them (go's C{p2p/streams}): a node
running a service provides, in the DHT, the key CIDv1(raw, sha2-256 of the
protocol id) and lists the protocol in identify; a client looks first at
the peers it knows speak the protocol, then asks the DHT for providers.

L{ServiceClient} calls one of those peers and, when it cannot answer (no
stream, a timeout, bad bytes), the next; an error the service answered is
the caller's to handle and is not retried elsewhere.  Calls are spread over
the peers by turns.
"""

from twisted.logger import Logger

from tau.cids import makeCID

from tau.services.framework import EXCHANGE_TIMEOUT, MAX_MESSAGE, ServiceError, call

#: seconds before a failed announcement is tried again (go: 2 minutes)
ANNOUNCE_RETRY = 120.0
#: seconds the DHT's answer for a service is kept (go: 60 s backoff)
PROVIDERS_TTL = 60.0
#: providers asked of the DHT, and peers a client keeps (go: 16 active)
MAX_PEERS = 16
#: peers one call tries before it gives up
ATTEMPTS = 3

log = Logger()


def serviceKey(protocolID):
    """
    The DHT key a service is provided under: CIDv1(raw, sha2-256 of the
    protocol id), e.g. for C{/tns/v1}.
    """
    return makeCID(protocolID.encode("utf-8"))


class Announcer:
    """
    Provides a service's key in the DHT once started, and again after
    L{ANNOUNCE_RETRY} while no peer was told (a node that starts alone);
    then the DHT's own republishing keeps the record alive.

    @param routing: has C{provide(cid) -> Deferred(number of peers told)}.
    """

    def __init__(self, routing, protocolID, clock):
        self.routing = routing
        self.protocolID = protocolID
        self.clock = clock
        self._retry = None
        self._running = False

    def start(self):
        self._running = True
        self._announce()

    def stop(self):
        self._running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    def _announce(self):
        self._retry = None
        d = self.routing.provide(serviceKey(self.protocolID))
        d.addCallbacks(self._told, self._failed)

    def _told(self, count):
        if not count:
            self._again("no peer to tell yet")

    def _failed(self, failure):
        self._again(failure.getErrorMessage())

    def _again(self, why):
        if not self._running:
            return
        log.debug("{protocol}: announcement to retry in {seconds}s: {why}", protocol=self.protocolID,
                  seconds=ANNOUNCE_RETRY, why=why)
        self._retry = self.clock.callLater(ANNOUNCE_RETRY, self._announce)


class ServiceClient:
    """
    Calls to a service wherever it runs.

    @param host: the local host (streams, C{peerstore}, C{connectedPeers}).
    @param routing: has C{findProviders(cid, count) -> Deferred([(PeerID,
        addrs)])}, or None (known peers only).
    """

    def __init__(self, host, routing, protocolID, *, timeout=EXCHANGE_TIMEOUT, maxMessage=MAX_MESSAGE,
                 attempts=ATTEMPTS):
        self.host = host
        self.routing = routing
        self.protocolID = protocolID
        self.timeout = timeout
        self.maxMessage = maxMessage
        self.attempts = attempts
        self._found = []
        self._foundAt = None
        self._turn = 0

    def _known(self):
        """
        The peers the host knows speak the protocol, connected ones first.
        """
        store = self.host.peerstore
        connected = set(self.host.connectedPeers())
        known = [p for p in store.peers() if p != self.host.peerID and store.supports(p, self.protocolID)]
        known.sort(key=lambda p: p not in connected)
        return known[:MAX_PEERS]

    async def peers(self):
        """
        Up to L{MAX_PEERS} peers that offer the service: known ones, else
        the DHT's providers (kept L{PROVIDERS_TTL} seconds).
        """
        known = self._known()
        if known or self.routing is None:
            return known
        now = self.host.clock.seconds()
        if self._foundAt is None or now - self._foundAt >= PROVIDERS_TTL:
            found = await self.routing.findProviders(serviceKey(self.protocolID), MAX_PEERS)
            self._found = [peer for peer, _addrs in found if peer != self.host.peerID]
            self._foundAt = now
        return list(self._found)

    async def call(self, name, body=None, *, peers=None):
        """
        The answer of command C{name} from one node of the service.

        @param peers: call these instead of finding nodes (go's C{To}).
        @raise tau.services.commands.RemoteError: the service answered an
            error.
        @raise ServiceError: no node answered (each failure is named).
        """
        candidates = list(peers) if peers is not None else await self.peers()
        if not candidates:
            raise ServiceError(f"no node offers {self.protocolID}")
        start = self._turn % len(candidates)
        self._turn += 1
        order = candidates[start:] + candidates[:start]
        errors = []
        for peer in order[: self.attempts]:
            try:
                return await call(self.host, peer, self.protocolID, name, body, timeout=self.timeout,
                                  maxMessage=self.maxMessage)
            except ServiceError as e:
                errors.append(str(e))
                self._drop(peer)
        raise ServiceError(f"{self.protocolID} {name}: no node answered: " + "; ".join(errors))

    def _drop(self, peer):
        if peer in self._found:
            self._found.remove(peer)

