"""
Onion addresses as libp2p transport: dialing C{/onion3/<56 chars>:<port>}
through tor's SOCKS port, and taking the connections tor forwards from our
onion service to a local port.

Both run the host's ordinary upgrade (multistream-select, TLS, yamux) over
the stream tor gives; the remote must prove the PeerId dialed, as over TCP.
"""

from __future__ import annotations

import re

from twisted.internet.defer import CancelledError, TimeoutError
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from tau.addrs import UnsupportedAddress
from tau.connection import RawConnection, UpgradeFailed
from tau.dialer import DialError

log = Logger()

#: A v3 onion service's name: 56 base32 characters (RFC 4648, lower case).
ONION3 = re.compile(r"^[a-z2-7]{56}$")
#: Seconds one onion dial may take, at least (circuits to an onion service
#: take several seconds on the Tor network).
ONION_DIAL_TIMEOUT = 60.0
#: The address group all inbound onion connections count in (tor hands
#: them over from 127.0.0.1: peers behind it cannot be told apart).
ONION_GROUP = "onion"


def onionAddr(hostname, port):
    """
    The multiaddr of an onion service: C{/onion3/<name>:<port>}, from its
    hostname (with or without C{.onion}).

    @raise UnsupportedAddress: when C{hostname} is not a v3 onion name.
    """
    name = hostname[:-6] if hostname.endswith(".onion") else hostname
    if not ONION3.match(name):
        raise UnsupportedAddress(f"{hostname!r} is not a v3 onion service name")
    if not (isinstance(port, int) and 1 <= port <= 65535):
        raise UnsupportedAddress(f"onion port {port!r} is not 1-65535")
    return f"/onion3/{name}:{port}"


def parseOnion(addr):
    """
    C{(hostname, port)} of C{/onion3/<name>:<port>} (text, no C{/p2p/}),
    the hostname ending in C{.onion}.

    @raise UnsupportedAddress: when C{addr} is not one.
    """
    text = str(addr)
    parts = text.split("/")
    if len(parts) != 3 or parts[0] or parts[1] != "onion3":
        raise UnsupportedAddress(f"cannot dial {text}: expected /onion3/<56 characters>:<port>")
    name, _, port = parts[2].partition(":")
    if not ONION3.match(name) or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UnsupportedAddress(f"cannot dial {text}: expected /onion3/<56 characters>:<port 1-65535>")
    return f"{name}.onion", int(port)


class _OutboundFactory(Factory):
    noisy = False

    def __init__(self, host, expectedPeer):
        self.host = host
        self.expectedPeer = expectedPeer
        self.raw = None

    def buildProtocol(self, addr):
        self.raw = RawConnection(self.host, True, self.expectedPeer)
        return self.raw


class InboundFactory(Factory):
    """
    Builds the host's inbound connections for what tor forwards from our
    onion service; they count in the host's inbound limits as the group
    L{ONION_GROUP}.
    """

    noisy = False

    def __init__(self, host):
        self.host = host

    def buildProtocol(self, addr):
        raw = RawConnection(self.host, False, None)
        if not self.host.admitInbound(raw, ONION_GROUP):
            return None
        return raw


class OnionTransport:
    """
    Dials C{/onion3/...} addresses through a tor (see
    L{tau.host.Host.addTransport}).

    @param host: the L{tau.host.Host}.
    @param torOf: C{torOf()} returns the bootstrapped C{txtorcon.Tor}, or
        None while there is none (then dialing fails at once).
    @param clock: an L{IReactorTime}.
    """

    def __init__(self, host, torOf, clock):
        self.host = host
        self._torOf = torOf
        self.clock = clock

    def canDial(self, addr):
        text = str(addr)
        return text.startswith("/onion3/") and "/p2p-circuit" not in text

    async def dial(self, addr, peerID, timeout):
        """
        Connect to C{addr} through tor and upgrade the connection.

        @rtype: L{tau.connection.Connection}, its C{remoteAddr} C{addr}.
        @raise DialError: when tor is not running, or the onion service
            cannot be reached, or the upgrade fails.
        """
        try:
            hostname, port = parseOnion(addr)
        except UnsupportedAddress as e:
            raise DialError(str(e)) from None
        tor = self._torOf()
        if tor is None:
            raise DialError(f"{addr}: tor is not running (yet)")
        factory = _OutboundFactory(self.host, peerID)
        connecting = tor.stream_via(hostname, port).connect(factory)
        limit = max(timeout, ONION_DIAL_TIMEOUT)
        connecting.addTimeout(limit, self.clock)
        try:
            await connecting
        except TimeoutError:
            self._abort(factory)
            raise DialError(f"{addr}: no connection through tor in {limit}s") from None
        except CancelledError:
            self._abort(factory)
            raise
        except Exception as e:
            self._abort(factory)
            raise DialError(f"{addr}: {e.__class__.__name__}: {e}") from None
        raw = factory.raw
        try:
            conn = await raw.upgraded.whenFired()
        except UpgradeFailed as e:
            raise DialError(f"{addr}: {e}") from None
        except CancelledError:
            self._abort(factory)
            raise
        conn.remoteAddr = str(addr)
        return conn

    @staticmethod
    def _abort(factory):
        raw = factory.raw
        if raw is not None and raw.transport is not None:
            raw.transport.abortConnection()
