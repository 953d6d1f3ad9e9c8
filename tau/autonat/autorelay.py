"""
Auto-relay: while the node cannot be dialed (AutoNAT says private), hold
reservations on relays among its peers so that others reach it through
them.

The relays are connected peers that serve C{/libp2p/circuit/relay/0.2.0/hop}
over a direct connection.  L{AutoRelay} asks up to L{AutoRelay.desired} of
them through L{tau.relay.RelayClient.listen}, which announces the
C{/p2p-circuit} addresses (identify push tells connected peers; the DHT
hands them out with our other addresses) and refreshes the reservation
before it expires.  When a reservation is lost (the relay went away or
refused a refresh) another relay is tried; a relay that refused us is left
alone for L{AutoRelay.backoff} seconds.  When the node becomes reachable
again the reservations are released.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from tau.autonat.peers import directPeers, onIdentified

__all__ = ["AutoRelay", "HOP"]

HOP = "/libp2p/circuit/relay/0.2.0/hop"


class AutoRelay(Service):
    """
    @param host: the L{tau.host.Host}.
    @param client: the host's L{tau.relay.RelayClient} (C{listen},
        C{unlisten}, C{reservations}, C{addObserver}).
    @param clock: an C{IReactorTime}.
    """

    log = Logger()
    name = "autorelay"

    #: Reservations to hold while private (go-libp2p's autorelay keeps 2).
    desired = 2
    #: Seconds before a relay that failed us is asked again.
    backoff = 300.0
    #: Seconds between looks for relays while short of them.
    interval = 30.0

    def __init__(self, host, client, clock, *, desired=None, backoff=None, interval=None):
        self.host = host
        self.client = client
        self.clock = clock
        if desired is not None:
            self.desired = desired
        if backoff is not None:
            self.backoff = backoff
        if interval is not None:
            self.interval = interval
        self.active = False
        self.relays = set()
        self._pending = {}
        self._failed = {}
        self._timer = None
        self._observing = False

    # life cycle

    def startService(self):
        super().startService()
        if not self._observing:
            self._observing = True
            self.client.addObserver(self._relayEvent)
            self.host.addConnectionObserver(self._connected)
        if self.active:
            self._fill()

    def stopService(self):
        super().stopService()
        self._cancelTimer()
        for d in list(self._pending.values()):
            d.cancel()
        self._pending.clear()

    def setActive(self, active):
        """
        Hold reservations (the node is private) or release them.
        """
        active = bool(active)
        if active == self.active:
            return
        self.active = active
        if active:
            self.log.info("auto-relay: the node is not reachable; looking for relays")
            self._fill()
        else:
            self._cancelTimer()
            for d in list(self._pending.values()):
                d.cancel()
            self._pending.clear()
            for relay in list(self.relays):
                self.log.info("auto-relay: releasing the reservation on {relay}", relay=str(relay))
                self.relays.discard(relay)
                self.client.unlisten(relay)

    # choosing relays

    def candidates(self):
        """
        Connected peers that relay, reached directly, not already used or
        asked, and not in back-off.
        """
        now = self.clock.seconds()
        self._failed = {p: t for p, t in self._failed.items() if t > now}
        held = set(self.client.reservations())
        return [p for p in directPeers(self.host, HOP) if p not in held and p not in self._pending and p not in self._failed]

    def _fill(self):
        self._cancelTimer()
        if not (self.running and self.active):
            return
        held = set(self.client.reservations()) & self.relays
        wanted = self.desired - len(held) - len(self._pending)
        for peer in self.candidates()[: max(wanted, 0)]:
            d = Deferred.fromCoroutine(self._reserve(peer))
            if not d.called:
                self._pending[peer] = d
        if len(held) + len(self._pending) < self.desired:
            self._timer = self.clock.callLater(self.interval, self._fill)

    async def _reserve(self, relay):
        try:
            reservation = await self.client.listen(relay)
        except Exception as e:
            self._pending.pop(relay, None)
            if not self.active:
                return
            self.log.info("auto-relay: no reservation on {relay}: {why}", relay=str(relay), why=str(e) or e.__class__.__name__)
            self._failed[relay] = self.clock.seconds() + self.backoff
            return
        self._pending.pop(relay, None)
        if not (self.active and self.running):
            self.client.unlisten(relay)
            return
        self.relays.add(relay)
        self.log.info(
            "auto-relay: reachable through {relay} at {addrs}",
            relay=str(relay),
            addrs=" ".join(reservation.circuitAddrs()),
        )

    def _cancelTimer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # events

    def _relayEvent(self, event, relay, reservation):
        if event not in ("lost", "released") or relay not in self.relays:
            return
        self.relays.discard(relay)
        if event == "lost" and self.active:
            self.log.info("auto-relay: lost the reservation on {relay}; looking for another", relay=str(relay))
            self._failed[relay] = self.clock.seconds() + self.interval
            self._fill()

    def _connected(self, connection):
        if not (self.active and self.running):
            return
        onIdentified(self.host, connection, self._identified, self.log, "auto-relay")

    def _identified(self, result):
        if self.active and self.running and HOP in (result.protocols or ()):
            self._fill()
