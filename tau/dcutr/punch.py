"""
The dials of a hole punch.

Both peers dial each other's public addresses at about the same time, each
from the local port of its own connection to the relay: a NAT that keeps
one mapping per internal address and port (what Linux masquerading and most
home routers do) then sends the dial out from the public address and port
the relay saw, which is what the other peer was told (the C{CONNECT}'s
observed addresses) and is dialing.  Each outgoing SYN opens the sender's
NAT for the other's; the first one may be dropped by the other NAT, its
retransmission gets through, and the two dials meet as one TCP connection
(a simultaneous open) or as an ordinary connect.

Either way both ends "connected", so the upgrade's roles do not follow who
dialed: the peer that received the DCUtR stream (A, the one that dialed
through the relay) is the client of multistream-select, TLS and yamux, the
peer that opened it (B) the server (go-libp2p and js-libp2p do the same).

Binding a port another socket holds (the relay connection) needs
C{SO_REUSEADDR} on both sockets; L{allowReuse} sets it on the relay
connection's socket, the dial sets it on its own.
"""

from __future__ import annotations

import socket

from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet import tcp
from twisted.internet.protocol import ClientFactory
from twisted.logger import Logger

from tau.addrs import ipOf
from tau.connection import RawConnection, UpgradeFailed
from tau.dialer import PUBLIC, addrRank

__all__ = ["PunchFailed", "allowReuse", "dialable", "localPortOf", "punch", "punchAny", "tcpTransportOf"]

log = Logger()

#: Most of the peer's addresses dialed in one attempt.
MAX_DIALS = 4


class PunchFailed(Exception):
    """
    No direct connection came out of a hole punch attempt; the message says
    why.
    """


def tcpTransportOf(connection):
    """
    The TCP transport under C{connection} (a L{tau.connection.Connection}),
    through the TLS and pnet layers; None when it runs over something else
    (a relayed stream).
    """
    layer = getattr(connection.session, "transport", None)
    for _ in range(8):
        if layer is None:
            return None
        # the TLS layer says ITCPTransport too: look for the socket's own
        if isinstance(layer, tcp.Connection):
            return layer
        layer = getattr(layer, "transport", None)
    return None


def localPortOf(connection):
    """
    The local TCP port of C{connection}, or None.
    """
    transport = tcpTransportOf(connection)
    if transport is None:
        return None
    try:
        return transport.getHost().port
    except Exception:
        return None


def allowReuse(connection) -> bool:
    """
    Let another socket bind the local port of C{connection} (its TCP
    socket gets C{SO_REUSEADDR}; on Linux that may be set at any time).

    @return: True when it was set.
    """
    transport = tcpTransportOf(connection)
    handle = getattr(transport, "getHandle", lambda: None)() if transport is not None else None
    if handle is None or not hasattr(handle, "setsockopt"):
        return False
    try:
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    except OSError:
        return False
    return True


def dialable(addrs, limit=MAX_DIALS) -> list:
    """
    The addresses of a C{CONNECT} worth dialing: C{/ip4} or C{/ip6} TCP
    addresses with a public IP (a private one is another network's), the
    C{/p2p/...} suffix dropped; at most C{limit}, in order.
    """
    out = []
    for addr in addrs:
        text = str(addr)
        if "/p2p-circuit" in text:
            continue
        head = text.split("/p2p/")[0]
        parts = head.split("/")
        if len(parts) != 5 or parts[1] not in ("ip4", "ip6") or parts[3] != "tcp":
            continue
        if ipOf(head) is None or addrRank(head) != PUBLIC or head in out:
            continue
        out.append(head)
        if len(out) >= limit:
            break
    return out


class _PunchFactory(ClientFactory):
    noisy = False

    def __init__(self, host, isClient, peerID, timeout):
        self.host = host
        self.isClient = isClient
        self.peerID = peerID
        self.timeout = timeout
        self.connected = Deferred()

    def buildProtocol(self, addr):
        raw = RawConnection(self.host, self.isClient, self.peerID, timeout=self.timeout)
        self.connected.callback(raw)
        return raw

    def clientConnectionFailed(self, connector, reason):
        if not self.connected.called:
            self.connected.errback(reason)


async def punch(host, addr, peerID, *, isClient, localPort=None, timeout=5.0, reactor=None):
    """
    Dial C{addr} (C{/ip4|ip6/IP/tcp/PORT}) from C{localPort} and upgrade
    the connection as client (C{isClient}) or server, expecting
    C{peerID}.  The host keeps the connection (L{tau.host.Host.addConnection}).

    @return: the L{tau.connection.Connection}.
    @raise PunchFailed: when no connection was made or upgraded in time.
    """
    reactor = reactor or host.reactor
    parts = addr.split("/")
    ip, port = parts[2], int(parts[4])
    factory = _PunchFactory(host, isClient, peerID, timeout)
    interface = "::" if parts[1] == "ip6" else "0.0.0.0"
    binding = tcp.makeBinding(interface, localPort, reuseAddress=True) if localPort else None
    connector = reactor.connectTCP(ip, port, factory, timeout=timeout, bindAddress=binding)
    try:
        raw = await factory.connected
    except CancelledError:
        try:
            connector.stopConnecting()
        except Exception:
            pass  # it connected meanwhile; the RawConnection times out alone
        raise
    except Exception as e:
        raise PunchFailed(f"{addr}: {getattr(e, 'value', e)}") from None
    try:
        conn = await raw.upgraded.whenFired()
    except UpgradeFailed as e:
        raise PunchFailed(f"{addr}: {e}") from None
    except CancelledError:
        if raw.transport is not None:
            raw.transport.abortConnection()
        raise
    host.addConnection(conn)
    return conn


async def punchAny(host, addrs, peerID, *, isClient, localPort=None, timeout=5.0, reactor=None):
    """
    L{punch} every address of C{addrs} at once; the first connection wins
    and the other dials are cancelled.

    @raise PunchFailed: when none worked (the message has every reason).
    """
    if not addrs:
        raise PunchFailed("no public address to dial")
    dials = [
        Deferred.fromCoroutine(
            punch(host, addr, peerID, isClient=isClient, localPort=localPort, timeout=timeout, reactor=reactor)
        )
        for addr in addrs
    ]
    won = Deferred()
    errors = []

    def succeeded(conn):
        if not won.called:
            won.callback(conn)
            for other in dials:
                if not other.called:
                    other.cancel()
        return None

    def failed(failure):
        if not failure.check(CancelledError):
            errors.append(failure.getErrorMessage())
        return None

    for d in dials:
        d.addCallbacks(succeeded, failed)
    done = DeferredList(dials, consumeErrors=True)
    done.addCallback(lambda _: None if won.called else won.errback(PunchFailed("; ".join(errors) or "cancelled")))

    def cancelled(d):
        for other in dials:
            if not other.called:
                other.cancel()

    outer = Deferred(cancelled)
    won.chainDeferred(outer)
    return await outer
