"""
Hole punching: upgrading a relayed connection to a direct one with DCUtR
(C{/libp2p/dcutr}, libp2p/specs relay/DCUtR.md).

Two peers behind NATs meet through a relay: A dials B's C{/p2p-circuit}
address, so B has an inbound relayed connection.  When B knows it is
private (AutoNAT), B opens a DCUtR stream to A over that connection:

    B -> A  CONNECT (B's public address, as the relay observed it)
    A -> B  CONNECT (A's)                   B measures the round trip
    B -> A  SYNC                            B waits half a round trip
    A dials B at once, B dials A after its wait (L{tau.dcutr.punch})

The direct connection, once upgraded, is preferred by the host for new
streams and the relayed one is closed when its streams are done.  B tries
L{HolePunchService.attempts} times (a new stream each time, as go-libp2p
and js-libp2p do); when all fail (a symmetric NAT maps each destination to
another port, so the addresses exchanged are wrong) both stay on the relay,
which is logged and kept in L{HolePunchService.outcomes}.  A public node
does not start hole punches: whoever wants it can dial it.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

from tau.autonat.reachability import PRIVATE
from tau.connection import INBOUND
from tau.dcutr import messages as m
from tau.dcutr.punch import PunchFailed, allowReuse, dialable, localPortOf, punchAny
from tau.identity import InvalidKey, PeerID
from tau.protocols import identify
from tau.streams import withTimeout

__all__ = ["HolePunchService", "Outcome", "ourAddrs", "relayOf"]

#: The most peers remembered in L{HolePunchService.outcomes}.
MAX_OUTCOMES = 1024


@dataclass
class Outcome:
    """
    How the last hole punch with one peer went.

    @ivar state: C{"punching"}, C{"direct"} (it worked) or C{"relayed"}
        (it did not: the peers stay on the relay).
    @ivar role: C{"initiator"} (we opened the DCUtR stream) or
        C{"responder"}.
    @ivar relay: the relay's PeerID (text).
    @ivar attempts: attempts made so far.
    @ivar addr: the direct connection's remote address, once made.
    @ivar reason: why it failed, when it did.
    @ivar seconds: from the first CONNECT to the end.
    """

    state: str
    role: str
    relay: str
    attempts: int = 0
    addr: str | None = None
    reason: str | None = None
    rtt: float | None = None
    seconds: float | None = None

    def asDict(self):
        return {
            "State": self.state,
            "Role": self.role,
            "Relay": self.relay,
            "Attempts": self.attempts,
            "Addr": self.addr,
            "Reason": self.reason,
            "RTT": None if self.rtt is None else round(self.rtt * 1000, 3),
            "Seconds": None if self.seconds is None else round(self.seconds, 3),
        }


def relayOf(connection):
    """
    The relay's PeerID of a relayed connection, else None.  Read from its
    address too: the relay transport marks the connection once its
    upgrade is done, and the first stream may come before.
    """
    if connection is None:
        return None
    if getattr(connection, "relay", None) is not None:
        return connection.relay
    text = str(getattr(connection, "remoteAddr", "") or "")
    if "/p2p-circuit" not in text:
        return None
    head = text.split("/p2p-circuit")[0]
    if "/p2p/" not in head:
        return None
    try:
        return PeerID.fromString(head.rsplit("/p2p/", 1)[1])
    except (InvalidKey, ValueError):
        return None


def ourAddrs(host, relay):
    """
    What we tell the peer to dial: our address as C{relay} observed it
    (identify), then our announced public TCP addresses (a private one is
    of no use behind a NAT).
    """
    record = host.peerstore.get(relay) if relay is not None else None
    observed = getattr(record, "observedAddr", None)
    candidates = ([observed] if observed else []) + [str(a) for a in host.announcedAddresses()]
    return dialable(candidates, limit=m.MAX_OBS_ADDRS)


class HolePunchService(Service):
    """
    @param host: the L{tau.host.Host}.
    @param reactor: provides C{IReactorTime} and C{IReactorTCP}.
    @param reachability: C{reachability()} returns the node's AutoNAT
        status; hole punches are started only while it is C{"private"}.
    @param attempts: how many times the initiator tries (the spec's 3).
    @param timeout: seconds for each message, and for each dial and its
        upgrade.
    @param punch: C{async punch(host, addrs, peerID, *, isClient,
        localPort, timeout)} making the direct connection (L{punchAny};
        tests give another).
    @ivar outcomes: the last L{Outcome} of each peer (PeerID -> Outcome).
    """

    log = Logger()
    name = "dcutr"

    def __init__(self, host, reactor, *, reachability=lambda: PRIVATE, attempts=3, timeout=5.0, punch=punchAny):
        self.host = host
        self._punch = punch
        self.reactor = reactor
        self.clock = reactor
        self.reachability = reachability
        self.attempts = attempts
        self.timeout = timeout
        self.outcomes = {}
        self._running = {}
        self._answering = set()
        self._observing = False

    # life cycle

    def startService(self):
        super().startService()
        self.host.setStreamHandler(m.PROTOCOL_ID, self._respond, allowLimited=True, maxInbound=2)
        if not self._observing:
            self._observing = True
            self.host.addConnectionObserver(self._connected)

    def stopService(self):
        super().stopService()
        self.host.removeHandler(m.PROTOCOL_ID)
        for d in list(self._running.values()) + list(self._answering):
            d.cancel()
        self._running.clear()
        self._answering.clear()

    def outcome(self, peerID):
        """
        The L{Outcome} of the last hole punch with C{peerID}, or None.
        """
        return self.outcomes.get(peerID)

    def _record(self, peerID, outcome):
        if peerID not in self.outcomes and len(self.outcomes) >= MAX_OUTCOMES:
            self.outcomes.pop(next(iter(self.outcomes)))
        self.outcomes[peerID] = outcome
        return outcome

    # B: the inbound side of a relayed connection starts

    def _connected(self, connection):
        if not self.running or relayOf(connection) is None or connection.direction != INBOUND:
            return
        peer = connection.remotePeer
        status = self.reachability()
        if status != PRIVATE:
            self.log.debug(
                "dcutr: not punching to {peer}: reachability is {status}", peer=str(peer), status=status
            )
            return
        if peer in self._running:
            return
        self.upgrade(connection)

    def upgrade(self, connection):
        """
        Start a hole punch over C{connection} (a relayed one) as its
        initiator.

        @return: a Deferred firing with the direct connection, or with None
            when the peers stay on the relay (L{outcomes} says why).
        """
        peer = connection.remotePeer
        d = Deferred.fromCoroutine(self._initiate(connection))
        self._running[peer] = d

        def done(result):
            if self._running.get(peer) is d:
                del self._running[peer]
            return result

        d.addBoth(done)
        d.addErrback(lambda f: None if f.check(CancelledError) else f)
        d.addErrback(lambda f: self.log.failure("dcutr: hole punch with {peer} failed", f, peer=str(peer)))
        return d

    def _relayPort(self, relay):
        """
        The local port of our direct connection to C{relay} (its socket
        made reusable), or None.
        """
        conn = self.host.connectionTo(relay)
        if conn is None or conn.relay is not None:
            return None
        port = localPortOf(conn)
        if port is not None and not allowReuse(conn):
            return None
        return port

    async def _initiate(self, connection):
        host = self.host
        peer = connection.remotePeer
        relay = relayOf(connection)
        identified = identify.whenIdentified(host, connection)
        identified.addTimeout(self.timeout, self.clock)
        try:
            await identified
        except Exception:
            pass  # not identified in time: ask anyway, a refusal says the same
        else:
            if not host.peerstore.supports(peer, m.PROTOCOL_ID):
                self.log.debug("dcutr: {peer} does not speak {protocol}", peer=str(peer), protocol=m.PROTOCOL_ID)
                return None
        started = self.clock.seconds()
        outcome = self._record(peer, Outcome("punching", "initiator", str(relay)))
        ours = ourAddrs(host, relay)
        if not ours:
            return self._failed(peer, outcome, started, "we know no public address of ours")
        reason = "no attempt made"
        for attempt in range(1, self.attempts + 1):
            direct = self._direct(peer)
            if direct is not None:
                # the peer's dial made it (or another way did)
                return self._succeeded(peer, outcome, started, direct)
            if not self.running or connection.closing:
                reason = "the relayed connection closed"
                break
            outcome.attempts = attempt
            try:
                stream = await host.newStream(peer, [m.PROTOCOL_ID], timeout=self.timeout, allowLimited=True)
            except Exception as e:
                reason = f"no dcutr stream: {e}"
                break
            try:
                sent = self.clock.seconds()
                stream.writeLP(m.encodeConnect(ours))
                answer = await self._read(stream)
                if answer.type != m.CONNECT:
                    raise m.DCUtRProtocolError(f"expected CONNECT, got {answer.typeName}")
                rtt = self.clock.seconds() - sent
                outcome.rtt = rtt
                theirs = dialable(answer.addrs)
                if not theirs:
                    reason = "the peer sent no public address"
                    stream.reset()
                    break
                stream.writeLP(m.encodeSync())
                stream.closeWrite()
                await deferLater(self.clock, rtt / 2, lambda: None)
                localPort = self._relayPort(relay)
                self.log.info(
                    "dcutr: punching to {peer} at {addrs} from port {port} (attempt {attempt}, rtt {rtt} ms)",
                    peer=str(peer),
                    addrs=" ".join(theirs),
                    port=localPort,
                    attempt=attempt,
                    rtt=round(rtt * 1000, 1),
                )
                direct = await self._punch(host, theirs, peer, isClient=False, localPort=localPort, timeout=self.timeout)
            except (PunchFailed, m.DCUtRProtocolError, TimeoutError, ConnectionError) as e:
                reason = str(e) or e.__class__.__name__
                self.log.info(
                    "dcutr: attempt {attempt} to punch to {peer} failed: {reason}",
                    attempt=attempt,
                    peer=str(peer),
                    reason=reason,
                )
                stream.reset()
                if isinstance(e, m.DCUtRProtocolError):
                    break
                continue
            except CancelledError:
                stream.reset()
                raise
            except Exception as e:
                stream.reset()
                reason = f"{e.__class__.__name__}: {e}"
                self.log.failure("dcutr: attempt {attempt} to punch to {peer} failed", attempt=attempt, peer=str(peer))
                continue
            return self._succeeded(peer, outcome, started, direct)
        return self._failed(peer, outcome, started, reason)

    def _direct(self, peer):
        for conn in self.host.connections(peer):
            if conn.relay is None and not conn.closing:
                return conn
        return None

    def _succeeded(self, peer, outcome, started, direct):
        outcome.state = "direct"
        outcome.addr = direct.remoteAddr
        outcome.seconds = self.clock.seconds() - started
        self.log.info(
            "dcutr: direct connection with {peer} at {addr} after {attempts} attempt(s) ({seconds} s); "
            "leaving the relay {relay}",
            peer=str(peer),
            addr=direct.remoteAddr,
            attempts=outcome.attempts,
            seconds=round(outcome.seconds, 3),
            relay=outcome.relay,
        )
        return direct

    def _failed(self, peer, outcome, started, reason):
        outcome.state = "relayed"
        outcome.reason = reason
        outcome.seconds = self.clock.seconds() - started
        self.log.warn(
            "dcutr: hole punch with {peer} failed after {attempts} attempt(s): {reason}; staying on the relay {relay}",
            peer=str(peer),
            attempts=outcome.attempts,
            reason=reason,
            relay=outcome.relay,
        )
        return None

    async def _read(self, stream):
        data = await withTimeout(self.clock, self.timeout, stream.readLP(m.MAX_MESSAGE_SIZE))
        return m.decodeMessage(data)

    # A: the side that dialed through the relay answers

    async def _respond(self, stream):
        connection = stream.connection
        peer = stream.remotePeer
        relay = relayOf(connection)
        if relay is None:
            self.log.info("dcutr: {peer} asked for a hole punch over a direct connection; refused", peer=str(peer))
            stream.reset()
            return
        ours = ourAddrs(self.host, relay)
        outcome = self.outcomes.get(peer)
        if outcome is None or outcome.state != "punching" or outcome.role != "responder":
            outcome = self._record(peer, Outcome("punching", "responder", str(relay)))
        started = self.clock.seconds()
        pending = None
        while True:
            data = await withTimeout(self.clock, self.timeout * 2, stream.readLP(m.MAX_MESSAGE_SIZE, allowEOF=True))
            if data is None:
                return
            if pending is not None and not pending.called:
                pending.cancel()  # the initiator gave up on it and tries again
            connect = m.decodeMessage(data)
            if connect.type != m.CONNECT:
                raise m.DCUtRProtocolError(f"expected CONNECT, got {connect.typeName}")
            stream.writeLP(m.encodeConnect(ours))
            sync = await self._read(stream)
            if sync.type != m.SYNC:
                raise m.DCUtRProtocolError(f"expected SYNC, got {sync.typeName}")
            outcome.attempts += 1
            theirs = dialable(connect.addrs)
            if not theirs:
                self.log.info("dcutr: {peer} sent no public address to dial", peer=str(peer))
                continue
            localPort = self._relayPort(relay)
            self.log.info(
                "dcutr: punching to {peer} at {addrs} from port {port} (answering)",
                peer=str(peer),
                addrs=" ".join(theirs),
                port=localPort,
            )
            d = pending = Deferred.fromCoroutine(
                self._punch(self.host, theirs, peer, isClient=True, localPort=localPort, timeout=self.timeout)
            )
            self._answering.add(d)
            d.addBoth(lambda result, d=d: (self._answering.discard(d), result)[1])
            d.addCallbacks(
                lambda direct: self._succeeded(peer, outcome, started, direct),
                lambda f: self._answerFailed(f, peer, outcome),
            )

    def _answerFailed(self, failure, peer, outcome):
        if failure.check(CancelledError):
            return None
        outcome.reason = failure.getErrorMessage()
        if self._direct(peer) is None:
            outcome.state = "relayed"
        self.log.info("dcutr: answering punch to {peer} failed: {reason}", peer=str(peer), reason=outcome.reason)
        return None
