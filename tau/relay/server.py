"""
The relay (hop) side of circuit relay v2.

A peer reserves a slot (RESERVE) and gets a signed voucher, an expiry and
the limits of the connections relayed to it; another peer asks for a
connection to it (CONNECT), the relay opens a stop stream to the reserving
peer and, once both said OK, joins the hop stream and the stop stream into
one byte pipe (L{Circuit}) until a limit is reached.

What a peer can take is bounded: reservations in all, per address (an
IPv4 address or an IPv6 /64, L{tau.addrs.addressGroup}) and (one) per
peer, RESERVE requests per peer and minute, hop streams in progress per
peer, circuits in all and per peer, and each circuit's duration and bytes
per direction.  A peer that keeps asking past the rate
is disconnected.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from weakref import WeakSet

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tau.addrs import addressGroup, isLoopback
from tau.relay import messages as m
from tau.ratelog import PeerLog
from tau.streams import StreamClosed, StreamTooLong, withTimeout

log = Logger()
peerLog = PeerLog(log)

#: Seconds a hop or stop exchange may take (js waits 30 s).
HANDSHAKE_TIMEOUT = 30.0
#: RESERVE requests a peer may make per minute (the burst; one comes back
#: every 60/rate seconds).  A well-behaved client refreshes every few
#: minutes at most.
DEFAULT_RESERVE_RATE = 8
#: Refused requests past which a peer is disconnected.
MAX_STRIKES = 16
#: Peers whose request rate is remembered.
MAX_RATE_PEERS = 10_000


@dataclass(frozen=True)
class RelayLimits:
    """
    What the relay gives.  The defaults are go-libp2p's (ReservationTTL
    1 h, MaxReservations 128, MaxReservationsPerIP 8, MaxCircuits 16 per
    peer, a circuit limited to 2 min and 128 KiB per direction).

    Counts of 0 mean no limit.

    @ivar reservationTTL: seconds a reservation lasts unless refreshed.
    @ivar maxReservations: reservations held at once.
    @ivar maxReservationsPerIP: reservations from peers at one IPv4 address
        or IPv6 /64.
    @ivar reserveRate: RESERVE requests per peer and minute.
    @ivar maxCircuits: relayed connections per peer (as source or target).
    @ivar maxCircuitsTotal: relayed connections at once.
    @ivar maxHopStreams: hop streams in progress per peer.
    @ivar duration: seconds a circuit lasts (0: no limit).
    @ivar data: bytes per direction a circuit carries (0: no limit).
    """

    reservationTTL: float = 3600.0
    maxReservations: int = 128
    maxReservationsPerIP: int = 8
    reserveRate: int = DEFAULT_RESERVE_RATE
    maxCircuits: int = 16
    maxCircuitsTotal: int = 1024
    maxHopStreams: int = 16
    duration: int = 120
    data: int = 1 << 17

    @property
    def limit(self) -> m.Limit | None:
        limit = m.Limit(int(self.duration), int(self.data))
        return limit if limit else None

    @classmethod
    def fromConfig(cls, config: dict) -> "RelayLimits":
        """
        From the C{relay} mapping of the node config (Taubyte-style names).
        """
        names = {f.name: f.name for f in fields(cls)}
        names.update(
            {
                "reservation-ttl": "reservationTTL",
                "max-reservations": "maxReservations",
                "max-reservations-per-ip": "maxReservationsPerIP",
                "reserve-rate": "reserveRate",
                "max-circuits": "maxCircuits",
                "max-circuits-total": "maxCircuitsTotal",
                "max-hop-streams": "maxHopStreams",
            }
        )
        values = {names[k]: v for k, v in config.items() if k in names}
        return cls(**values)


@dataclass
class _Slot:
    peer: object
    ip: str | None
    expire: float  # clock seconds
    connection: object = None


class ReservationStore:
    """
    The reservations a relay holds (sans-IO: time is passed in).
    """

    def __init__(self, limits: RelayLimits):
        self.limits = limits
        self._slots: dict = {}
        # peer -> [tokens, last refill time, strikes]
        self._rates: dict = {}

    def __len__(self):
        return len(self._slots)

    def __contains__(self, peer):
        return peer in self._slots

    def peers(self):
        return list(self._slots)

    def allow(self, peer, now: float) -> bool:
        """
        Take one RESERVE token of C{peer} (C{reserveRate} per minute, as a
        burst); False when it has none left.
        """
        rate = self.limits.reserveRate
        if rate <= 0:
            return True
        state = self._rates.get(peer)
        if state is None:
            if len(self._rates) >= MAX_RATE_PEERS:
                self._rates.pop(next(iter(self._rates)))
            state = self._rates[peer] = [float(rate), now, 0]
        tokens = min(float(rate), state[0] + (now - state[1]) * rate / 60.0)
        state[1] = now
        if tokens < 1.0:
            state[0] = tokens
            state[2] += 1
            return False
        state[0] = tokens - 1.0
        state[2] = 0
        return True

    def strikes(self, peer) -> int:
        state = self._rates.get(peer)
        return 0 if state is None else state[2]

    def reserve(self, peer, ip: str | None, now: float, connection=None) -> tuple[int, float]:
        """
        Grant or refresh C{peer}'s reservation.

        @return: C{(status, expire)}: L{m.OK} and the new expiry (clock
            seconds), or L{m.RESERVATION_REFUSED} and 0.
        """
        self.expire(now)
        limits = self.limits
        slot = self._slots.get(peer)
        if slot is None:
            if limits.maxReservations and len(self._slots) >= limits.maxReservations:
                return m.RESERVATION_REFUSED, 0.0
            if ip is not None and limits.maxReservationsPerIP > 0:
                sameIP = sum(1 for s in self._slots.values() if s.ip == ip)
                if sameIP >= limits.maxReservationsPerIP:
                    return m.RESERVATION_REFUSED, 0.0
            slot = self._slots[peer] = _Slot(peer, ip, 0.0)
        slot.ip = ip
        slot.expire = now + limits.reservationTTL
        slot.connection = connection
        return m.OK, slot.expire

    def get(self, peer, now: float):
        """
        C{peer}'s live reservation, or None.
        """
        slot = self._slots.get(peer)
        if slot is not None and slot.expire <= now:
            del self._slots[peer]
            return None
        return slot

    def remove(self, peer) -> None:
        self._slots.pop(peer, None)

    def expire(self, now: float) -> int:
        """
        Drop the reservations past their expiry; how many went.
        """
        gone = [peer for peer, slot in self._slots.items() if slot.expire <= now]
        for peer in gone:
            del self._slots[peer]
        return len(gone)

    def clear(self) -> None:
        self._slots.clear()


@implementer(IHalfCloseableProtocol)
class _Half(Protocol):
    """
    One stream of a circuit: what it receives goes to the other stream.
    """

    def __init__(self, circuit, index):
        self.circuit = circuit
        self.index = index

    def dataReceived(self, data):
        self.circuit._forward(self.index, data)

    def readConnectionLost(self):
        self.circuit._ended(self.index)

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason=Failure(ConnectionDone())):
        self.circuit._lost(self.index, reason)


@implementer(IPushProducer)
class _Producer:
    """
    Stream C{index} as the producer of what is written to the other one:
    pausing and resuming reach the stream; C{stopProducing} (the other
    stream went away without a FIN) resets it.
    """

    def __init__(self, circuit, index):
        self.circuit = circuit
        self.index = index

    def pauseProducing(self):
        self.circuit.streams[self.index].pauseProducing()

    def resumeProducing(self):
        self.circuit.streams[self.index].resumeProducing()

    def stopProducing(self):
        self.circuit._consumerGone(1 - self.index)


class Circuit:
    """
    Two streams joined into one pipe, within C{limit}.

    Each stream is the producer of what is written to the other: when the
    other cannot send (its yamux window is used up), the first stops reading
    and stops granting window, so the sender stalls; nothing is buffered
    beyond one read.  A FIN is passed on as a FIN; a reset, the end of the
    duration, or a byte past the data limit resets both.
    """

    def __init__(self, streams, limit: m.Limit | None, clock, names=("?", "?")):
        self.streams = list(streams)
        self.limit = limit
        self.clock = clock
        self.names = names
        self.counts = [0, 0]
        self._eofs = [False, False]
        self._closed = [False, False]
        self._timer = None
        self._done = Deferred()
        self.reason = None

    def start(self, initial=((b"", False), (b"", False))):
        """
        Start piping.  C{initial}: per stream, the bytes already read from it
        and whether it had ended (L{tau.streams.StreamProtocol.detach}).
        """
        a, b = self.streams
        if self.limit is not None and self.limit.duration:
            self._timer = self.clock.callLater(self.limit.duration, self._timedOut)
        for i, stream in enumerate(self.streams):
            stream.setProtocol(_Half(self, i))
        self._producers = (_Producer(self, 0), _Producer(self, 1))
        b.registerProducer(self._producers[0], True)
        a.registerProducer(self._producers[1], True)
        for i, (data, eof) in enumerate(initial):
            if data:
                self._forward(i, data)
            if eof:
                self._ended(i)
        for stream in self.streams:
            if not stream.disconnected:
                stream.resumeProducing()
        return self

    def whenDone(self) -> Deferred:
        """
        Fires with None once both streams are gone.
        """
        d = Deferred()
        self._done.addBoth(lambda r: (d.callback(r), r)[1])
        return d

    def _forward(self, index, data):
        if self.reason is not None:
            return
        other = self.streams[1 - index]
        limit = self.limit.data if self.limit is not None else 0
        count = self.counts[index] + len(data)
        if limit and count > limit:
            allowed = limit - self.counts[index]
            if allowed > 0:
                other.write(data[:allowed])
            self.counts[index] = limit
            self._reset(f"data limit of {limit} bytes reached ({self.names[index]} -> {self.names[1 - index]})")
            return
        self.counts[index] = count
        other.write(data)

    def _ended(self, index):
        if self._eofs[index]:
            return
        self._eofs[index] = True
        other = self.streams[1 - index]
        if other.producer is self._producers[index]:
            other.unregisterProducer()
        other.loseConnection()

    def _consumerGone(self, index):
        """
        Stream C{index} ended while the other still had things to send it.
        """
        if self.reason is None:
            self.reason = f"{self.names[index]} reset"
        self.streams[1 - index].abortConnection()

    def _lost(self, index, reason):
        self._closed[index] = True
        other = self.streams[1 - index]
        if not reason.check(ConnectionDone) and not self._closed[1 - index]:
            if self.reason is None:
                self.reason = f"{self.names[index]} reset: {reason.getErrorMessage()}"
            other.abortConnection()
        if all(self._closed):
            self._finish()

    def _timedOut(self):
        self._timer = None
        self._reset(f"duration limit of {self.limit.duration} s reached")

    def _reset(self, why):
        if self.reason is None:
            self.reason = why
            log.info("relayed connection {a} <-> {b} cut: {why}", a=self.names[0], b=self.names[1], why=why)
        for stream in self.streams:
            stream.abortConnection()

    def _finish(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if not self._done.called:
            self._done.callback(None)


class RelayService(Service):
    """
    Circuit relay v2 hop service of a host.

    It serves C{/libp2p/circuit/relay/0.2.0/hop} only while enabled: call
    L{enable} / L{disable}, or L{setReachable} in C{auto} mode (the node's
    reachability decides; until it is known, C{auto} starts enabled when
    C{autoDefault} is true).

    @param host: the L{tau.host.Host}.
    @param mode: C{"on"}, C{"off"} or C{"auto"}.
    """

    name = "relay"

    def __init__(self, host, reactor, limits: RelayLimits | None = None, mode: str = "auto", autoDefault: bool = True):
        if mode not in ("auto", "on", "off"):
            raise ValueError(f"relay mode {mode!r}: expected auto, on or off")
        self.host = host
        self.clock = reactor
        self.limits = limits or RelayLimits()
        self.mode = mode
        self.autoDefault = autoDefault
        self.store = ReservationStore(self.limits)
        self.enabled = False
        self.circuits: set = set()
        self._circuitsPerPeer: dict = {}
        self._hopStreams: dict = {}
        self._watched = WeakSet()
        self._sweep = None

    # switching on and off

    def startService(self):
        super().startService()
        if self.mode == "on" or (self.mode == "auto" and self.autoDefault):
            self.enable()

    def stopService(self):
        super().stopService()
        self.disable()
        for circuit in list(self.circuits):
            circuit._reset("relay stopping")

    def enable(self):
        """
        Serve the hop protocol (and tell connected peers).
        """
        if self.enabled:
            return
        self.enabled = True
        # on a limited (relayed) connection too, to answer it properly
        self.host.setStreamHandler(m.HOP, self._handleHop, allowLimited=True)
        self._sweep = self.clock.callLater(60.0, self._expire)
        log.info("relay service on: {limits}", limits=self.limits)
        self.host.notifyChanged()

    def disable(self):
        """
        Stop serving the hop protocol and drop the reservations; circuits
        open now run to their limits.
        """
        if not self.enabled:
            return
        self.enabled = False
        self.host.removeHandler(m.HOP)
        self.store.clear()
        if self._sweep is not None and self._sweep.active():
            self._sweep.cancel()
        self._sweep = None
        log.info("relay service off")
        self.host.notifyChanged()

    def setReachable(self, reachable: bool):
        """
        The node found out whether others can dial it: in C{auto} mode the
        relay serves only while it can.  Ignored in C{on} and C{off} mode.
        """
        if self.mode != "auto":
            return
        if reachable:
            self.enable()
        else:
            self.disable()

    def _expire(self):
        self._sweep = self.clock.callLater(60.0, self._expire)
        self.store.expire(self.clock.seconds())

    # the hop protocol

    async def _handleHop(self, stream):
        peer = stream.remotePeer
        busy = self._hopStreams.get(peer, 0)
        if busy >= self.limits.maxHopStreams:
            peerLog.debug(self.clock, "too many hop streams", "relay: {peer} has {count} hop streams open; resetting another", peer=str(peer), count=busy)
            stream.reset()
            return
        self._hopStreams[peer] = busy + 1
        try:
            await self._hop(stream)
        finally:
            left = self._hopStreams.get(peer, 1) - 1
            if left > 0:
                self._hopStreams[peer] = left
            else:
                self._hopStreams.pop(peer, None)

    async def _hop(self, stream):
        try:
            data = await withTimeout(self.clock, HANDSHAKE_TIMEOUT, stream.readLP(m.MAX_MESSAGE_SIZE))
            request = m.decodeHop(data)
        except m.MessageError as e:
            peerLog.info(self.clock, "bad hop message", "relay: bad hop message from {peer}: {reason}", peer=str(stream.remotePeer), reason=str(e))
            self._answer(stream, e.status)
            return
        except (StreamTooLong, StreamClosed) as e:
            peerLog.info(self.clock, "bad hop stream", "relay: bad hop stream from {peer}: {reason}", peer=str(stream.remotePeer), reason=str(e))
            stream.reset()
            return
        if not isinstance(request, m.HopRequest):
            self._answer(stream, m.UNEXPECTED_MESSAGE)
            return
        if request.type == m.RESERVE:
            self._reserve(stream)
        else:
            await self._connect(stream, request)

    def _answer(self, stream, status, **kwargs):
        stream.writeLP(m.encodeHopStatus(status, **kwargs))
        stream.closeWrite()

    def _reserve(self, stream):
        peer = stream.remotePeer
        conn = stream.connection
        now = self.clock.seconds()
        if conn.relay is not None:
            peerLog.info(self.clock, "relayed reservation", "relay: refusing a reservation over a relayed connection from {peer}", peer=str(peer))
            self._answer(stream, m.PERMISSION_DENIED)
            return
        if not self.store.allow(peer, now):
            strikes = self.store.strikes(peer)
            self._answer(stream, m.RESERVATION_REFUSED)
            if strikes >= MAX_STRIKES:
                log.warn(
                    "relay: {peer} keeps asking for reservations ({strikes} refused in a row); disconnecting it",
                    peer=str(peer),
                    strikes=strikes,
                )
                self.store.remove(peer)
                for c in self.host.connections(peer):
                    c.close()
            return
        status, expire = self.store.reserve(peer, addressGroup(conn.remoteAddr), now, conn)
        if status != m.OK:
            peerLog.info(self.clock, "reservation refused", "relay: reservation of {peer} refused ({count} held)", peer=str(peer), count=len(self.store))
            self._answer(stream, status)
            return
        if conn not in self._watched:
            self._watched.add(conn)
            conn.whenClosed().addCallback(self._connectionClosed, peer, conn)
        expireUnix = int(expire)
        reservation = m.Reservation(
            self.host.peerID,
            expireUnix,
            tuple(self._relayAddrs(conn)),
            m.makeVoucher(self.host.key, peer, expireUnix),
        )
        log.debug("relay: reservation for {peer} until {expire}", peer=str(peer), expire=expireUnix)
        self._answer(stream, m.OK, reservation=reservation, limit=self.limits.limit)

    def _connectionClosed(self, _, peer, conn):
        slot = self.store.get(peer, self.clock.seconds())
        if slot is not None and slot.connection is conn:
            other = self.host.connectionTo(peer)
            if other is None or other is conn:
                self.store.remove(peer)
            else:
                slot.connection = other

    def _relayAddrs(self, conn):
        """
        Our addresses for the reserving peer to announce behind
        C{/p2p-circuit}: loopback ones only to a peer that reached us over
        loopback (nobody else can dial them).
        """
        local = isLoopback(conn.remoteAddr)
        out = []
        for addr in self.host.announcedAddresses():
            text = str(addr)
            if "/p2p-circuit" in text:
                continue
            if not local and isLoopback(text):
                continue
            out.append(f"{text}/p2p/{self.host.peerID}")
            if len(out) >= m.MAX_ADDRS:
                break
        return out

    def _countCircuit(self, peers, delta):
        for peer in peers:
            n = self._circuitsPerPeer.get(peer, 0) + delta
            if n > 0:
                self._circuitsPerPeer[peer] = n
            else:
                self._circuitsPerPeer.pop(peer, None)

    async def _connect(self, stream, request):
        src = stream.remotePeer
        dst = request.peer
        now = self.clock.seconds()
        if stream.connection.relay is not None:
            self._answer(stream, m.PERMISSION_DENIED)
            return
        if dst == src or dst == self.host.peerID:
            self._answer(stream, m.PERMISSION_DENIED)
            return
        if self.store.get(dst, now) is None:
            self._answer(stream, m.NO_RESERVATION)
            return
        target = self.host.connectionTo(dst)
        if target is None or target.relay is not None:
            self._answer(stream, m.NO_RESERVATION)
            return
        limits = self.limits
        if (
            (limits.maxCircuitsTotal and len(self.circuits) >= limits.maxCircuitsTotal)
            or (limits.maxCircuits and self._circuitsPerPeer.get(src, 0) >= limits.maxCircuits)
            or (limits.maxCircuits and self._circuitsPerPeer.get(dst, 0) >= limits.maxCircuits)
        ):
            log.info("relay: too many circuits to relay {src} -> {dst}", src=str(src), dst=str(dst))
            self._answer(stream, m.RESOURCE_LIMIT_EXCEEDED)
            return
        # count the circuit from here, so concurrent CONNECTs see it
        self._countCircuit((src, dst), +1)
        counted = True
        try:
            limit = limits.limit
            try:
                stop = await withTimeout(self.clock, HANDSHAKE_TIMEOUT, self._stop(dst, src, limit))
            except Exception as e:
                log.info("relay: stop to {dst} for {src} failed: {reason}", dst=str(dst), src=str(src), reason=str(e) or e.__class__.__name__)
                self._answer(stream, m.CONNECTION_FAILED)
                return
            if stream.transport is None or stream.transport.disconnected:
                stop.reset()
                return
            stream.writeLP(m.encodeHopStatus(m.OK, limit=limit))
            circuit = Circuit(
                (stream.transport, stop.transport), limit, self.clock, names=(str(src), str(dst))
            )
            initial = (stream.detach(), stop.detach())
            self.circuits.add(circuit)
            counted = False
            circuit.whenDone().addCallback(self._circuitDone, circuit, (src, dst))
            log.debug("relay: circuit {src} -> {dst} open", src=str(src), dst=str(dst))
            circuit.start(initial)
        finally:
            if counted:
                self._countCircuit((src, dst), -1)

    def _circuitDone(self, _, circuit, peers):
        self.circuits.discard(circuit)
        self._countCircuit(peers, -1)
        log.debug(
            "relay: circuit {src} -> {dst} closed after {up} / {down} bytes ({why})",
            src=str(peers[0]),
            dst=str(peers[1]),
            up=circuit.counts[0],
            down=circuit.counts[1],
            why=circuit.reason or "closed",
        )

    async def _stop(self, dst, src, limit):
        stop = await self.host.newStream(dst, [m.STOP], allowLimited=True)
        try:
            stop.writeLP(m.encodeStopConnect(src, limit))
            reply = m.decodeStop(await stop.readLP(m.MAX_MESSAGE_SIZE))
        except BaseException:
            stop.reset()
            raise
        if not isinstance(reply, m.StatusReply) or reply.status != m.OK:
            stop.reset()
            status = reply.status if isinstance(reply, m.StatusReply) else "not a STATUS"
            raise ConnectionError(f"target answered {m.statusName(status) if isinstance(status, int) else status}")
        return stop
