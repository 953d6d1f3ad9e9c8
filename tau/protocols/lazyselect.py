"""
Lazy multistream-select on the dialer's side (go-multistream's
C{NewMSSelect}, what go-libp2p does when the peer store says the peer
speaks the protocol): the header and the one proposal go out with the
application's first bytes, without waiting for the listener's answer, which
is checked when it comes, before any byte of the protocol is handed up.

A stream opened this way costs no round trip of its own: a request and
response protocol gets its answer one round trip after it opens the
stream instead of two.  The listener's side needs nothing special: a
L{tau.protocols.multistream.Listener} hands the bytes that follow the
proposal to the protocol it selects (C{Selected.leftover}), as go's and
js's do.  If the listener refuses the proposal (C{na}) or breaks the
protocol, the stream is aborted and the application protocol's
C{connectionLost} gets the L{NegotiationFailed} or L{MultistreamError}.
"""

from twisted.internet.error import ConnectionDone, ConnectionLost, TimeoutError
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from tau.protocols.multistream import Dialer, MultistreamError
from tau.streams import StreamProtocol


@implementer(IHalfCloseableProtocol)
class LazyDialer(Protocol):
    """
    Propose C{protocolID} on the transport it is connected to and connect
    C{protocol} to the same transport at once: its writes follow the
    proposal.  What the listener sends goes through a L{Dialer} first; once
    it accepted, every event is forwarded to C{protocol}.

    @param clock: IReactorTime for C{timeout} (None: no timeout).
    @param timeout: seconds the listener has to accept.
    """

    def __init__(self, protocolID, protocol, clock=None, timeout=None):
        self.protocolID = protocolID
        self.protocol = protocol
        self._machine = Dialer([protocolID])
        self._clock = clock
        self._timeout = timeout
        self._timer = None
        self._negotiated = False
        self._failure = None

    def connectionMade(self):
        self.transport.write(self._machine.initialBytes())
        if self._clock is not None and self._timeout is not None:
            self._timer = self._clock.callLater(self._timeout, self._timedOut)
        self.protocol.makeConnection(self.transport)

    def dataReceived(self, data):
        if self._negotiated:
            self.protocol.dataReceived(data)
            return
        if self._failure is not None:
            return
        try:
            _, selected = self._machine.receive(data)
        except MultistreamError as e:
            self._fail(e)
            return
        if selected is not None:
            self._negotiated = True
            self._cancelTimer()
            if selected.leftover:
                self.protocol.dataReceived(selected.leftover)

    def readConnectionLost(self):
        if not self._negotiated:
            self._fail(ConnectionLost(f"the peer closed the stream before accepting {self.protocolID}"))
            return
        half = IHalfCloseableProtocol(self.protocol, None)
        if half is not None:
            half.readConnectionLost()
        else:
            self.transport.loseConnection()

    def writeConnectionLost(self):
        half = IHalfCloseableProtocol(self.protocol, None)
        if half is not None:
            half.writeConnectionLost()

    def connectionLost(self, reason=Failure(ConnectionDone())):
        self._cancelTimer()
        if self._failure is not None:
            reason = self._failure
        elif not self._negotiated and reason.check(ConnectionDone):
            reason = Failure(ConnectionLost(f"the stream ended before {self.protocolID} was accepted"))
        self.protocol.connectionLost(reason)

    def _timedOut(self):
        self._timer = None
        if not self._negotiated:
            self._fail(TimeoutError(f"{self.protocolID} not accepted within {self._timeout} seconds"))

    def _cancelTimer(self):
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _fail(self, error):
        if self._failure is not None:
            return
        self._failure = Failure(error)
        self._cancelTimer()
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            self.transport.loseConnection()


def lazyStream(conn, peerID, protocolID, clock, timeout):
    """
    A new stream on C{conn} to C{peerID} that proposes C{protocolID} with
    what is first written to it (L{LazyDialer}); its L{StreamProtocol}.
    """
    stream = conn.openStream()
    stream.remotePeer = peerID
    stream.connection = conn
    stream.protocolID = protocolID
    sp = StreamProtocol(protocolID, peerID, conn)
    stream.setProtocol(LazyDialer(protocolID, sp, clock, timeout))
    return sp
