"""
The AutoNAT v1 server: dial a requester back and say whether it worked.

The spec's one hard rule: never dial an address whose IP is not the one the
request came from (else the server is a tool to make many nodes dial a
victim).  L{dialBackAddresses} enforces it by taking only the transport and
port of each requested address and putting the connection's observed IP in
front; requests over relayed connections are refused (their IP is the
relay's).  Public IPs only, unless C{allowPrivate} (a LAN or a test
network): a peer seen at a private IP is on our own network, where a
successful dial says nothing about reachability from the internet.

Dials go out from a separate host with a fresh key (L{EphemeralDialer}), as
go-libp2p does: a connection the requester already has with us can never
answer for its listener, and the requester does not mistake the dial-back
for a second connection from us.  Each requester gets
L{AutoNATServer.peerMax} dials and all of them together
L{AutoNATServer.globalMax} per L{AutoNATServer.resetPeriod}; a failed
dial-back is answered only when the dial timeout has run out, so the answer
time does not tell which ports are open.
"""

from __future__ import annotations

import ipaddress
import random

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

from tau.addrs import _parts
from tau.autonat.messages import (
    E_BAD_REQUEST,
    E_DIAL_ERROR,
    E_DIAL_REFUSED,
    MAX_MESSAGE_SIZE,
    OK,
    AutoNATProtocolError,
    DialRequest,
    decodeMessage,
    encodeResponse,
)
from tau.ratelog import PeerLog
from tau.streams import withTimeout

__all__ = ["Refused", "dialBackAddresses", "ipOf", "isPublicIP", "AutoNATServer", "EphemeralDialer"]

log = Logger()
peerLog = PeerLog(log)


class Refused(Exception):
    """
    A dial-back request we will not dial for; the message says why.
    """


def ipOf(addr) -> str | None:
    """
    The IP of a C{/ip4|ip6/IP/tcp/PORT} multiaddr (text), or None for any
    other kind of address.
    """
    try:
        parts = _parts(addr)
    except Exception:
        return None
    if len(parts) != 2 or parts[0][0] not in ("ip4", "ip6") or parts[1][0] != "tcp":
        return None
    return parts[0][1]


def isPublicIP(ip: str) -> bool:
    """
    Whether C{ip} is reachable on the internet (not private, loopback,
    link-local, reserved...).
    """
    try:
        return ipaddress.ip_address(ip).is_global
    except ValueError:
        return False


def _dialable(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return not (address.is_unspecified or address.is_multicast)


def dialBackAddresses(observed, requested, *, peerID=None, allowPrivate=False, maxAddrs=16) -> list:
    """
    The addresses to dial for a request that came over a connection whose
    remote end is C{observed}.

    Each requested TCP address (C{/ip4|ip6/ANY/tcp/PORT}, optionally ending
    in C{/p2p/<peerID>}) gives C{/ip4|ip6/OBSERVED-IP/tcp/PORT}: only the
    port is taken from the requester.  Other addresses (DNS names, circuit,
    other transports) are skipped.

    @param observed: the connection's remote multiaddr (text).
    @param requested: the multiaddrs (text) in the request.
    @param peerID: the requester; a C{/p2p/} suffix naming another peer
        disqualifies an address.
    @raise Refused: when the connection is not a direct TCP one, its IP is
        private and C{allowPrivate} is false, or no address is left.
    """
    if not observed or "/p2p-circuit" in str(observed):
        raise Refused("refusing to dial back over a relayed connection")
    ip = ipOf(observed)
    if ip is None:
        raise Refused(f"cannot tell the IP of {observed}")
    if not _dialable(ip):
        raise Refused(f"refusing to dial {ip}")
    if not allowPrivate and not isPublicIP(ip):
        raise Refused(f"refusing to dial the non-public address {ip}")
    family = "ip6" if ":" in ip else "ip4"
    out = []
    for addr in requested:
        try:
            parts = _parts(addr)
        except Exception:
            continue
        if len(parts) == 3 and parts[2][0] == "p2p":
            if peerID is not None and parts[2][1] != str(peerID):
                continue
            parts = parts[:2]
        if len(parts) != 2 or parts[0][0] not in ("ip4", "ip6") or parts[1][0] != "tcp":
            continue
        port = int(parts[1][1])
        if not 0 < port < 65536:
            continue
        candidate = f"/{family}/{ip}/tcp/{port}"
        if candidate not in out:
            out.append(candidate)
        if len(out) >= maxAddrs:
            break
    if not out:
        raise Refused("no dialable addresses")
    return out


class AutoNATServer:
    """
    Answers C{/libp2p/autonat/1.0.0} requests; serve it with
    C{host.setStreamHandler(PROTOCOL_ID, server.handle)} between L{start}
    and L{stop}.

    @param clock: an C{IReactorTime}.
    @param dialer: has C{async probe(addr, peerID, timeout)} returning the
        address reached (text) or raising; see L{EphemeralDialer}.
    @param allowPrivate: also dial back peers seen at private or loopback
        IPs.
    @param dialTimeout: seconds for all the dials of one request.
    @param streamTimeout: seconds for the whole exchange.
    @param maxAddrs: most addresses dialed for one request.
    @param peerMax: dial-backs per requester per period.
    @param globalMax: dial-backs for everyone per period.
    @param resetPeriod: the rate-limit period, in seconds, plus up to
        C{resetJitter} seconds.
    """

    log = log

    def __init__(
        self,
        clock,
        dialer,
        *,
        allowPrivate=False,
        dialTimeout=15.0,
        streamTimeout=60.0,
        maxAddrs=16,
        peerMax=3,
        globalMax=30,
        resetPeriod=60.0,
        resetJitter=15.0,
        hideTiming=True,
        rng=None,
    ):
        self.clock = clock
        self.dialer = dialer
        self.allowPrivate = allowPrivate
        self.dialTimeout = dialTimeout
        self.streamTimeout = streamTimeout
        self.maxAddrs = maxAddrs
        self.peerMax = peerMax
        self.globalMax = globalMax
        self.resetPeriod = resetPeriod
        self.resetJitter = resetJitter
        self.hideTiming = hideTiming
        self.rng = rng or random.Random()
        self.counts = {}
        self.total = 0
        self.answered = {}
        self._reset = None
        self._active = set()

    def start(self):
        self._scheduleReset()

    def stop(self):
        """
        Stop the rate-limit timer and cancel the dial-backs in progress.
        """
        if self._reset is not None and self._reset.active():
            self._reset.cancel()
        self._reset = None
        for d in list(self._active):
            d.cancel()

    def _scheduleReset(self):
        delay = self.resetPeriod + self.rng.random() * self.resetJitter
        self._reset = self.clock.callLater(delay, self._resetCounts)

    def _resetCounts(self):
        self.counts = {}
        self.total = 0
        self._scheduleReset()

    async def handle(self, stream):
        """
        Serve one request on C{stream} (a L{tau.streams.StreamProtocol}).

        @raise AutoNATProtocolError: on a malformed request; the host then
            resets the stream and logs it.
        """
        d = Deferred.fromCoroutine(withTimeout(self.clock, self.streamTimeout, self._handle(stream)))
        self._active.add(d)
        try:
            await d
        finally:
            self._active.discard(d)

    async def _handle(self, stream):
        data = await stream.readLP(MAX_MESSAGE_SIZE)
        request = decodeMessage(data)
        if not isinstance(request, DialRequest):
            raise AutoNATProtocolError("expected a DIAL request")
        status, text, addr = await self.answer(stream.remotePeer, stream.connection, request)
        self.answered[status] = self.answered.get(status, 0) + 1
        stream.writeLP(encodeResponse(status, text, addr))
        stream.closeWrite()

    async def answer(self, peerID, connection, request):
        """
        What to answer C{peerID}'s C{request} that came over C{connection}:
        C{(status, text, addr or None)}.
        """
        if request.peerID is not None and request.peerID != peerID:
            return E_BAD_REQUEST, "peer id mismatch", None
        if getattr(connection, "relay", None) is not None:
            return E_DIAL_REFUSED, "refusing to dial back over a relayed connection", None
        observed = getattr(connection, "remoteAddr", None)
        try:
            addrs = dialBackAddresses(
                observed, request.addrs, peerID=peerID, allowPrivate=self.allowPrivate, maxAddrs=self.maxAddrs
            )
        except Refused as e:
            self.log.debug("autonat: not dialing {peer} back: {why}", peer=str(peerID), why=str(e))
            return E_DIAL_REFUSED, str(e), None
        count = self.counts.get(peerID, 0)
        if count >= self.peerMax or self.total >= self.globalMax:
            peerLog.info(self.clock, "too many dials", "autonat: too many dial-back requests, refusing {peer}", peer=str(peerID))
            return E_DIAL_REFUSED, "too many dials", None
        self.counts[peerID] = count + 1
        self.total += 1
        started = self.clock.seconds()
        reached = await self._dial(peerID, addrs)
        if reached is None:
            if self.hideTiming:
                left = started + self.dialTimeout - self.clock.seconds()
                if left > 0:
                    await deferLater(self.clock, left, lambda: None)
            return E_DIAL_ERROR, "dial failed", None
        return OK, "", reached

    async def _dial(self, peerID, addrs):
        deadline = self.clock.seconds() + self.dialTimeout
        for addr in addrs:
            left = deadline - self.clock.seconds()
            if left <= 0:
                break
            try:
                reached = await self.dialer.probe(addr, peerID, left)
            except Exception as e:
                self.log.debug("autonat: dial-back of {peer} at {addr} failed: {why}", peer=str(peerID), addr=addr, why=str(e))
                continue
            self.log.debug("autonat: dialed {peer} back at {addr}", peer=str(peerID), addr=addr)
            return reached or addr
        return None


class EphemeralDialer:
    """
    Dial-backs from a host of our own with a fresh identity and no
    listeners; it serves identify only.

    @param reactor: for the host.
    @param swarmKey: the private network key, as the node's host has it.
    """

    def __init__(self, reactor, swarmKey=None):
        self.reactor = reactor
        self.swarmKey = swarmKey
        self.host = None

    def start(self):
        from tau.host import Host
        from tau.identity import PrivateKey
        from tau.protocols import identify

        self.host = Host(
            PrivateKey.generate(),
            self.reactor,
            swarmKey=self.swarmKey,
            connections={"low": 0, "high": 64, "grace": 1.0, "idle": 30.0},
        )
        identify.install(self.host, identifyConnections=False)
        self.host.startService()

    def stop(self):
        host, self.host = self.host, None
        if host is not None and host.running:
            return host.stopService()
        return None

    async def probe(self, addr, peerID, timeout):
        """
        Connect to C{peerID} at C{addr}; C{timeout} seconds.

        @return: the address reached.
        @raise tau.host.DialError: when it cannot.
        """
        from tau.host import DialError

        if self.host is None:
            raise DialError("the dial-back host is not running")
        conn = await self.host.connect(f"{addr}/p2p/{peerID}", timeout=timeout)
        remote = conn.remoteAddr
        d = conn.close()
        if isinstance(d, Deferred):
            d.addErrback(lambda f: None)
        return remote
