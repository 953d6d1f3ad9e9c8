"""
The client side of circuit relay v2: reservations, the stop protocol and
the circuit transport.

- L{RelayClient.reserve} asks a relay for a slot once;
  L{RelayClient.listen} holds one: it announces the C{/p2p-circuit}
  addresses, refreshes the reservation before it expires and tells the
  observers when it is lost.
- The stop handler accepts connections a relay brings us and upgrades
  them (TLS, yamux) as inbound connections of the host.
- As a host transport (L{tau.host.Host.addTransport}), it dials
  C{<relay addr>/p2p/RELAY/p2p-circuit/p2p/TARGET}: a hop stream to the
  relay, CONNECT, then the host's upgrade over that stream.
"""

from __future__ import annotations

import multiaddr
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.logger import Logger

from tau.connection import RawConnection, UpgradeFailed
from tau.host import DialError
from tau.identity import PeerID
from tau.relay import messages as m
from tau.ratelog import PeerLog
from tau.relay.transport import attachStream, upgradeStream
from tau.streams import StreamClosed, StreamTooLong, withTimeout

log = Logger()
peerLog = PeerLog(log)

#: Seconds a hop exchange (RESERVE, CONNECT) may take.
HOP_TIMEOUT = 30.0
#: Seconds the relay may take to send a stop CONNECT after opening the stream.
STOP_TIMEOUT = 30.0
#: Refresh a held reservation this long before it expires (or halfway
#: through, for short ones).
REFRESH_MARGIN = 300.0
#: After a failed refresh, try again after this many seconds.
RETRY_DELAY = 30.0
#: The connection manager tag protecting connections to our relays.
PROTECT_TAG = "relay-reservation"


class RelayError(Exception):
    """
    A relay refused or failed a request.

    @ivar status: the relay's status code, or None when there was no answer.
    """

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


def splitCircuit(addr: str) -> tuple[str, PeerID, PeerID | None]:
    """
    C{(relay address, relay PeerID, target PeerID or None)} of
    C{<relay addr>/p2p/RELAY/p2p-circuit[/p2p/TARGET]}; the relay address
    ends in C{/p2p/RELAY}.

    @raise ValueError: for anything else (nested circuits included).
    """
    text = str(addr)
    if text.count("/p2p-circuit") != 1:
        raise ValueError(f"{text}: expected exactly one /p2p-circuit")
    before, after = text.split("/p2p-circuit", 1)
    parts = list(multiaddr.Multiaddr(before).items())
    if not parts or parts[-1][0].name != "p2p":
        raise ValueError(f"{text}: no /p2p/RELAY before /p2p-circuit")
    relay = PeerID.fromString(parts[-1][1])
    target = None
    if after:
        tail = list(multiaddr.Multiaddr(after).items())
        if len(tail) != 1 or tail[0][0].name != "p2p":
            raise ValueError(f"{text}: expected /p2p/TARGET after /p2p-circuit")
        target = PeerID.fromString(tail[0][1])
    return before, relay, target


class RelayClient(Service):
    """
    Reservations, the stop handler and the circuit transport of C{host}.
    Call L{install} once; stopping the service drops the reservations held.
    """

    name = "relay-client"

    def __init__(self, host, reactor):
        self.host = host
        self.clock = reactor
        self._held = {}  # relay PeerID -> Reservation
        self._timers = {}  # relay PeerID -> IDelayedCall
        self._watched = set()  # relays whose connection close we watch
        self._observers = []

    def install(self):
        """
        Serve the stop protocol and dial circuit addresses for the host.
        """
        self.host.setStreamHandler(m.STOP, self._handleStop, allowLimited=True)
        self.host.addTransport(self)

    def stopService(self):
        """
        Forget every held reservation.
        """
        super().stopService()
        for relay in list(self._held):
            self._drop(relay, "stopping", notify=False)

    # -- reservations ----------------------------------------------------------

    async def reserve(self, relay: PeerID, addr: str | None = None, timeout: float = HOP_TIMEOUT) -> m.Reservation:
        """
        Ask C{relay} for a reservation once (dialing it at C{addr}, a
        multiaddr ending in C{/p2p/RELAY}, if not connected).

        @raise RelayError: when it refuses or does not answer properly.
        """
        if addr is not None:
            conn = await self.host.connect(addr)
        else:
            conn = await self.host.dial(relay)
        if conn.relay is not None:
            raise RelayError(f"connected to {relay} through a relay only; cannot reserve over it")
        try:
            stream = await self.host.newStream(relay, [m.HOP], timeout, allowLimited=True)
        except Exception as e:
            raise RelayError(f"{relay} does not relay: {e.__class__.__name__}: {e}") from None
        try:
            stream.writeLP(m.encodeReserve())
            data = await withTimeout(self.clock, timeout, stream.readLP(m.MAX_MESSAGE_SIZE))
            reply = m.decodeHop(data)
            if not isinstance(reply, m.StatusReply):
                raise RelayError(f"{relay} answered RESERVE with a request", m.UNEXPECTED_MESSAGE)
            if reply.status != m.OK:
                raise RelayError(f"{relay} refused the reservation: {m.statusName(reply.status)}", reply.status)
            reservation = m.parseReservation(relay, self.host.peerID, reply.reservation, reply.limit)
        except m.MessageError as e:
            stream.reset()
            raise RelayError(f"bad answer from {relay}: {e}") from None
        except (StreamClosed, StreamTooLong, TimeoutError, ConnectionError) as e:
            stream.reset()
            raise RelayError(f"no answer from {relay}: {e}") from None
        except BaseException:
            stream.reset()
            raise
        stream.closeWrite()
        if not reservation.addrs:
            # The relay told no public address: use the one we reached it at.
            reservation = m.Reservation(
                relay,
                reservation.expire,
                (f"{conn.remoteAddr}/p2p/{relay}",),
                reservation.voucher,
                reservation.limit,
            )
        return reservation

    async def listen(self, relay: PeerID, addr: str | None = None) -> m.Reservation:
        """
        Hold a reservation on C{relay}: reserve, announce our
        C{/p2p/RELAY/p2p-circuit} addresses (identify push tells connected
        peers), keep the connection to the relay from being trimmed, and
        refresh before the reservation expires.  If a refresh fails or the
        connection to the relay closes, the addresses are withdrawn and the
        observers get C{("lost", relay, reservation)}.

        @raise RelayError: when the first reservation fails.
        """
        reservation = await self.reserve(relay, addr)
        self._hold(reservation)
        return reservation

    def unlisten(self, relay: PeerID) -> None:
        """
        Stop holding the reservation on C{relay} (it lapses at the relay).
        """
        self._drop(relay, "released", notify=True, event="released")

    def reservations(self) -> dict:
        """
        The reservations held now: C{{relay PeerID: Reservation}}.
        """
        return dict(self._held)

    def circuitAddrs(self) -> list[str]:
        """
        The circuit addresses announced for the held reservations.
        """
        out = []
        for reservation in self._held.values():
            out.extend(a for a in reservation.circuitAddrs() if a not in out)
        return out

    def addObserver(self, observer) -> None:
        """
        Call C{observer(event, relay, reservation)} with C{event} one of
        C{"reserved"}, C{"refreshed"}, C{"lost"}, C{"released"}.
        """
        self._observers.append(observer)

    def _notify(self, event, relay, reservation):
        for observer in list(self._observers):
            try:
                observer(event, relay, reservation)
            except Exception:
                log.failure("relay observer failed")

    def _hold(self, reservation):
        relay = reservation.relay
        previous = self._held.get(relay)
        self._held[relay] = reservation
        if previous is not None:
            gone = [a for a in previous.circuitAddrs() if a not in reservation.circuitAddrs()]
            if gone:
                self.host.removeAnnouncedAddrs(gone)
        self.host.addAnnouncedAddrs(reservation.circuitAddrs())
        self.host.connmgr.protect(relay, PROTECT_TAG)
        if relay not in self._watched:
            conn = self.host.connectionTo(relay)
            if conn is not None:
                self._watched.add(relay)
                conn.whenClosed().addCallback(self._relayClosed, relay, conn)
        self._schedule(relay, reservation)
        log.info(
            "relay {relay} holds a reservation for us until {expire}: {addrs}",
            relay=str(relay),
            expire=reservation.expire,
            addrs=" ".join(reservation.circuitAddrs()),
        )
        self._notify("refreshed" if previous is not None else "reserved", relay, reservation)

    def _schedule(self, relay, reservation, delay=None):
        timer = self._timers.pop(relay, None)
        if timer is not None and timer.active():
            timer.cancel()
        if delay is None:
            remaining = reservation.expire - self.clock.seconds()
            delay = max(1.0, remaining - REFRESH_MARGIN if remaining > 2 * REFRESH_MARGIN else remaining / 2)
        self._timers[relay] = self.clock.callLater(delay, self._refresh, relay)

    def _refresh(self, relay):
        self._timers.pop(relay, None)
        current = self._held.get(relay)
        if current is None:
            return
        d = Deferred.fromCoroutine(self.reserve(relay))

        def failed(failure):
            if relay not in self._held:
                return None
            if current.expire - self.clock.seconds() > RETRY_DELAY + 1:
                log.info("refreshing the reservation on {relay} failed ({reason}); retrying", relay=str(relay), reason=failure.getErrorMessage())
                self._schedule(relay, current, RETRY_DELAY)
            else:
                log.info("reservation on {relay} lost: {reason}", relay=str(relay), reason=failure.getErrorMessage())
                self._drop(relay, failure.getErrorMessage(), notify=True)
            return None

        def refreshed(reservation):
            if relay in self._held:
                self._hold(reservation)

        d.addCallbacks(refreshed, failed)

    def _relayClosed(self, _, relay, conn):
        self._watched.discard(relay)
        if relay not in self._held:
            return
        other = self.host.connectionTo(relay)
        if other is not None and other is not conn and other.relay is None:
            self._watched.add(relay)
            other.whenClosed().addCallback(self._relayClosed, relay, other)
            return
        log.info("connection to relay {relay} closed; reservation lost", relay=str(relay))
        self._drop(relay, "connection closed", notify=True)

    def _drop(self, relay, why, notify, event="lost"):
        reservation = self._held.pop(relay, None)
        timer = self._timers.pop(relay, None)
        if timer is not None and timer.active():
            timer.cancel()
        if reservation is None:
            return
        self.host.connmgr.unprotect(relay, PROTECT_TAG)
        self.host.removeAnnouncedAddrs(reservation.circuitAddrs())
        if notify:
            self._notify(event, relay, reservation)

    # -- dialing through a relay -----------------------------------------------

    def canDial(self, addr) -> bool:
        return "/p2p-circuit" in str(addr)

    async def dial(self, addr, peerID, timeout):
        """
        A relayed connection to the target of C{addr} (C{<relay
        addr>/p2p/RELAY/p2p-circuit}, the target C{peerID}; or the whole
        address ending in C{/p2p/TARGET}), upgraded but not yet registered
        with the host.

        @raise tau.host.DialError: when the relay or the target refuse, or
            the upgrade fails.
        """
        try:
            relayAddr, relay, target = splitCircuit(addr)
        except Exception as e:
            raise DialError(f"bad circuit address {addr}: {e}") from None
        target = target or peerID
        if target is None:
            raise DialError(f"{addr}: no target peer")
        if peerID is not None and target != peerID:
            raise DialError(f"{addr} leads to {target}, not {peerID}")
        if relay == self.host.peerID or target == self.host.peerID or relay == target:
            raise DialError(f"{addr}: a circuit through or to ourselves")
        try:
            if relayAddr.startswith("/p2p/"):
                relayConn = await self.host.dial(relay, timeout)
            else:
                relayConn = await self.host.connect(relayAddr, timeout)
        except DialError as e:
            raise DialError(f"relay {relay} not reached: {e}") from None
        if relayConn.relay is not None:
            raise DialError(f"relay {relay} is reachable only through another relay")
        try:
            stream = await self.host.newStream(relay, [m.HOP], timeout, allowLimited=True)
        except Exception as e:
            raise DialError(f"relay {relay} does not relay: {e}") from None
        try:
            stream.writeLP(m.encodeConnect(target))
            data = await withTimeout(self.clock, timeout, stream.readLP(m.MAX_MESSAGE_SIZE))
            reply = m.decodeHop(data)
            if not isinstance(reply, m.StatusReply):
                raise m.MessageError("CONNECT answered with a request")
        except (m.MessageError, StreamClosed, StreamTooLong, TimeoutError, ConnectionError) as e:
            stream.reset()
            raise DialError(f"relay {relay}: {e}") from None
        except BaseException:
            stream.reset()
            raise
        if reply.status != m.OK:
            stream.reset()
            raise DialError(f"relay {relay} could not connect us to {target}: {m.statusName(reply.status)}")
        initial, eof = stream.detach()
        relayText = f"{relayConn.remoteAddr}/p2p/{relay}" if relayAddr.startswith("/p2p/") else relayAddr
        raw = upgradeStream(
            self.host,
            stream.transport,
            initial,
            eof,
            isClient=True,
            expectedPeer=target,
            localAddr=f"{relayText}/p2p-circuit/p2p/{self.host.peerID}",
            remoteAddr=f"{relayText}/p2p-circuit",
        )
        try:
            conn = await raw.upgraded.whenFired()
        except UpgradeFailed as e:
            raise DialError(f"{addr}: {e}") from None
        except CancelledError:
            # another address of the target won the dial
            raw.transport.abortConnection()
            raise
        _mark(conn, relay, reply.limit)
        return conn

    # -- being dialed through a relay ------------------------------------------

    async def _handleStop(self, stream):
        relay = stream.remotePeer
        conn = stream.connection
        try:
            data = await withTimeout(self.clock, STOP_TIMEOUT, stream.readLP(m.MAX_MESSAGE_SIZE))
            request = m.decodeStop(data)
        except m.MessageError as e:
            peerLog.info(self.clock, "bad stop message", "bad stop message from relay {peer}: {reason}", peer=str(relay), reason=str(e))
            stream.writeLP(m.encodeStopStatus(e.status))
            stream.closeWrite()
            return
        if not isinstance(request, m.StopRequest):
            stream.writeLP(m.encodeStopStatus(m.UNEXPECTED_MESSAGE))
            stream.closeWrite()
            return
        if conn.relay is not None or request.peer == self.host.peerID:
            stream.writeLP(m.encodeStopStatus(m.PERMISSION_DENIED))
            stream.closeWrite()
            return
        relayText = f"{conn.remoteAddr}/p2p/{relay}"
        initial, eof = stream.detach()
        raw = RawConnection(self.host, False, request.peer)
        raw.upgraded.whenFired().addCallbacks(lambda c: _mark(c, relay, request.limit), lambda f: None)
        if not self.host.adoptInbound(raw, relay):
            peerLog.info(self.clock, "connection limits", "refusing a relayed connection from {peer}: at the connection limits", peer=str(request.peer))
            stream.writeLP(m.encodeStopStatus(m.CONNECTION_FAILED))
            stream.closeWrite()
            return
        stream.writeLP(m.encodeStopStatus(m.OK))
        attachStream(
            raw,
            stream.transport,
            self.clock,
            initial,
            eof,
            localAddr=f"{relayText}/p2p-circuit/p2p/{self.host.peerID}",
            remoteAddr=f"{relayText}/p2p-circuit",
        )
        log.debug("relayed connection from {peer} through {relay}", peer=str(request.peer), relay=str(relay))


def _mark(conn, relay, limit):
    conn.relay = relay
    conn.limit = limit
    conn.limited = bool(limit)
    return conn
