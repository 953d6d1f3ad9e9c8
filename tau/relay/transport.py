"""
A libp2p stream as the raw transport of a connection.

A relayed connection runs the whole upgrade (multistream-select, TLS,
multistream-select, yamux) over a hop stream (dialer side) or a stop stream
(listener side), exactly as over TCP.  L{StreamTransport} sits between the
two: it is the protocol of the yamux stream and the transport of a
L{tau.connection.RawConnection}, so the upgrade code is the TCP one.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IHalfCloseableProtocol,
    IProtocol,
    IPushProducer,
    ITransport,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from tau.connection import RawConnection


@implementer(IAddress)
class CircuitAddress:
    """
    The address of one end of a relayed connection; C{str()} is its
    multiaddr (e.g. C{/ip4/1.2.3.4/tcp/4001/p2p/RELAY/p2p-circuit}).
    """

    def __init__(self, multiaddr: str):
        self.multiaddr = multiaddr

    def __str__(self) -> str:
        return self.multiaddr

    def __repr__(self) -> str:
        return f"CircuitAddress({self.multiaddr!r})"

    def __eq__(self, other):
        return isinstance(other, CircuitAddress) and other.multiaddr == self.multiaddr

    def __hash__(self):
        return hash(self.multiaddr)


@implementer(IProtocol, IHalfCloseableProtocol, ITransport, IPushProducer, IConsumer)
class StreamTransport:
    """
    The protocol of a stream (facing down) and the transport of C{protocol}
    (facing up).

    Writes, closing and producers go to the stream: back-pressure from the
    yamux window reaches the upper protocol's producer, and pausing us
    pauses the stream (the remote then runs out of window).  A FIN from the
    remote ends the connection as a TCP close would: we close our side too.
    The end of the stream reaches C{protocol} in a later reactor turn, never
    from inside one of its own calls (TLS relies on that, as over TCP).

    @param clock: an L{IReactorTime}.

    @param initial: bytes read from the stream before we took it over,
        delivered first.
    @param eof: the remote had already closed its side.
    """

    def __init__(self, protocol, clock, local: IAddress, remote: IAddress, initial: bytes = b"", eof: bool = False):
        self.protocol = protocol
        self.clock = clock
        self.transport = None
        self.connected = False
        self.disconnecting = False
        self._local = local
        self._remote = remote
        self._initial = initial
        self._eof = eof

    # IProtocol, facing the stream

    def makeConnection(self, transport):
        self.transport = transport
        self.connected = True
        self.protocol.makeConnection(self)
        initial, self._initial = self._initial, b""
        if initial and self.connected:
            self.protocol.dataReceived(initial)
        if self._eof and self.connected:
            self.readConnectionLost()

    def connectionMade(self):
        pass

    def dataReceived(self, data):
        self.protocol.dataReceived(data)

    def readConnectionLost(self):
        # The layers above (TLS, yamux) have no half-close: the remote is
        # done, so are we.
        self.disconnecting = True
        if self.transport is not None:
            self.transport.loseConnection()

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason=Failure(ConnectionDone())):
        if not self.connected:
            return
        self.connected = False
        self.clock.callLater(0, self.protocol.connectionLost, reason)

    def logPrefix(self):
        return "relayed"

    # ITransport, facing the upper protocol

    def write(self, data):
        if self.connected:
            self.transport.write(data)

    def writeSequence(self, iovec):
        if self.connected:
            self.transport.writeSequence(iovec)

    def loseConnection(self):
        self.disconnecting = True
        if self.connected:
            self.transport.loseConnection()

    def abortConnection(self):
        self.disconnecting = True
        if self.connected:
            self.transport.abortConnection()

    def getPeer(self):
        return self._remote

    def getHost(self):
        return self._local

    # IConsumer

    def registerProducer(self, producer, streaming):
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self):
        self.transport.unregisterProducer()

    # IPushProducer: reading from the stream

    def pauseProducing(self):
        self.transport.pauseProducing()

    def resumeProducing(self):
        self.transport.resumeProducing()

    def stopProducing(self):
        self.abortConnection()


def attachStream(raw, stream, clock, initial=b"", eof=False, *, localAddr, remoteAddr):
    """
    Make C{stream} (a yamux stream whose relay handshake is done) the raw
    transport of C{raw}, a L{RawConnection} not connected yet: the upgrade
    starts.

    @param initial: bytes already read from the stream (see
        L{tau.streams.StreamProtocol.detach}); C{eof}: it had ended.
    @param localAddr: the multiaddr (text) of our end; C{remoteAddr}: of
        the remote end, which becomes the connection's C{remoteAddr}.
    """
    adapter = StreamTransport(raw, clock, CircuitAddress(localAddr), CircuitAddress(remoteAddr), initial, eof)
    stream.setProtocol(adapter)
    stream.resumeProducing()
    return raw


def upgradeStream(host, stream, initial=b"", eof=False, *, isClient, expectedPeer, localAddr, remoteAddr):
    """
    Run C{host}'s connection upgrade over C{stream} and return the
    L{RawConnection}; its C{upgraded} fires with the
    L{tau.connection.Connection}.

    @param isClient: True on the side that dialed (the TLS client).
    """
    raw = RawConnection(host, isClient, expectedPeer)
    return attachStream(raw, stream, host.clock, initial, eof, localAddr=localAddr, remoteAddr=remoteAddr)
