"""
Async reading and writing on a negotiated libp2p stream.

Request/response protocols (identify, kad, relay, ...) read naturally as
coroutines: L{StreamProtocol} buffers what arrives and hands it out through
C{await readExactly(n)}, C{await readLP(maxLength)} and C{await
readToEnd(limit)}.  Past C{highWater} buffered bytes it pauses the transport,
so a fast peer is held back by the window of the muxer instead of filling
memory; what it buffers counts in the receive budget of the connection
(L{tau.resources}) when the transport keeps one (C{reserve}/C{release}, as a
yamux stream does), so many streams cannot pin more than that budget.  Bulk protocols that need every last bit of speed use a plain
L{Protocol} instead.
"""

import copy

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, TimeoutError
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from tau.protocols import varint


class StreamClosed(ConnectionDone):
    """
    The stream ended before the expected bytes arrived.
    """


class StreamTooLong(ValueError):
    """
    The peer sent more than the protocol allows.
    """


@implementer(IHalfCloseableProtocol)
class StreamProtocol(Protocol):
    """
    A stream with coroutine reads.  One reader at a time.

    @ivar protocolID: the negotiated protocol, set by the host.
    @ivar remotePeer: the remote L{tau.identity.PeerID}, set by the host.
    @ivar connection: the host's connection the stream belongs to.
    """

    highWater = 1 << 20

    def __init__(self, protocolID=None, remotePeer=None, connection=None):
        self.protocolID = protocolID
        self.remotePeer = remotePeer
        self.connection = connection
        self._buffer = bytearray()
        self._eof = False
        self._lost = None
        self._waiter = None
        # bytes the pending read needs before it can go on (0: any byte)
        self._wanted = 0
        self._paused = False
        self._closed = Deferred()
        self._reserve = None
        self._release = None

    # Protocol

    def connectionMade(self):
        self._reserve = getattr(self.transport, "reserve", None)
        self._release = getattr(self.transport, "release", None)

    def dataReceived(self, data):
        if self._reserve is not None and not self._reserve(len(data)):
            return  # over the receive budget: the stream was reset
        buffer = self._buffer
        buffer += data
        # A read of n bytes may buffer n bytes whatever highWater says (the
        # protocol bounded n); the reader wakes once its bytes are in, not
        # on every chunk of a long message.
        size = len(buffer)
        wanted = self._wanted
        if not self._paused and size > self.highWater and size > wanted:
            self._paused = True
            self.transport.pauseProducing()
        if size >= wanted:
            self._wake()

    def readConnectionLost(self):
        self._eof = True
        self._wake()

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason=Failure(ConnectionDone())):
        self._eof = True
        self._lost = reason
        if not reason.check(ConnectionDone):
            # reset or lost: what is buffered will never be read
            self._buffer = bytearray()
        self._wake()
        if not self._closed.called:
            self._closed.callback(None)

    # reading

    def _wake(self):
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.callback(None)

    async def _more(self, wanted=0):
        """
        Wait for more data: at least C{wanted} bytes buffered (any new byte
        if 0), or the end of the stream.
        """
        if self._waiter is not None:
            raise RuntimeError("one reader at a time")
        # The waiter exists before we resume: resuming may deliver buffered
        # data at once (and pause us again), and that data must wake us.
        waiter = self._waiter = Deferred(lambda d: setattr(self, "_waiter", None))
        self._wanted = wanted
        try:
            if self._paused:
                self._paused = False
                self.transport.resumeProducing()
            await waiter
        finally:
            self._wanted = 0

    def _ended(self, wanted):
        if self._lost is not None and not self._lost.check(ConnectionDone):
            self._raiseLost()
        raise StreamClosed(f"stream ended with {len(self._buffer)} of {wanted} bytes")

    def _raiseLost(self):
        # A new exception each time: raising the one the transport gave
        # (shared by every stream of a closed connection) would tie its
        # traceback, and the frames of whoever closed the stream with their
        # locals, to this protocol until a garbage collection.
        raise copy.copy(self._lost.value)

    def _take(self, n):
        # one copy (a slice of the bytearray would be a second one)
        with memoryview(self._buffer) as view, view[:n] as part:
            data = bytes(part)
        self._consumed(n)
        return data

    def _consumed(self, n):
        del self._buffer[:n]
        if self._release is not None:
            self._release(n)

    async def readExactly(self, n):
        """
        Exactly C{n} bytes.

        @raise StreamClosed: when the stream ends first.
        """
        while len(self._buffer) < n:
            if self._eof:
                self._ended(n)
            await self._more(n)
        return self._take(n)

    async def readSome(self, limit=65536):
        """
        Whatever is available (at least one byte), or C{b""} at the end.
        """
        while not self._buffer:
            if self._eof:
                if self._lost is not None and not self._lost.check(ConnectionDone):
                    self._raiseLost()
                return b""
            await self._more()
        return self._take(min(limit, len(self._buffer)))

    async def readVarint(self, maxValue=varint.MAX_VALUE, allowEOF=False):
        """
        One unsigned varint; None at a clean end of stream if C{allowEOF}.
        """
        while True:
            decoded = varint.decode(self._buffer, 0, maxValue)
            if decoded is not None:
                value, used = decoded
                self._consumed(used)
                return value
            if self._eof:
                if allowEOF and not self._buffer:
                    return None
                self._ended("a varint of")
            await self._more()

    async def readLP(self, maxLength, allowEOF=False):
        """
        One length-prefixed message of at most C{maxLength} bytes; None at a
        clean end of stream (between messages) when C{allowEOF}.

        @raise StreamTooLong: when the prefix announces more than C{maxLength}.
        """
        try:
            length = await self.readVarint(maxLength, allowEOF=allowEOF)
        except varint.VarintError as e:
            raise StreamTooLong(f"message longer than {maxLength} bytes ({e})") from None
        if length is None:
            return None
        return await self.readExactly(length)

    async def readToEnd(self, limit):
        """
        Everything until the peer closes its side.

        @raise StreamTooLong: past C{limit} bytes.
        """
        while not self._eof:
            if len(self._buffer) > limit:
                raise StreamTooLong(f"more than {limit} bytes")
            await self._more()
        if self._lost is not None and not self._lost.check(ConnectionDone):
            self._raiseLost()
        if len(self._buffer) > limit:
            raise StreamTooLong(f"more than {limit} bytes")
        return self._take(len(self._buffer))

    # writing and closing

    def write(self, data):
        self.transport.write(data)

    async def drain(self):
        """
        Wait until what was written has left (the peer's window took it),
        or the stream closed: a server that reads its next request only
        after that holds at most one window of replies for a peer that does
        not read them.  Returns at once on a transport without
        C{whenDrained} (as a yamux stream has).
        """
        whenDrained = getattr(self.transport, "whenDrained", None)
        if whenDrained is not None:
            await whenDrained()

    def writeLP(self, payload):
        self.transport.writeSequence([varint.encode(len(payload)), payload])

    def closeWrite(self):
        """
        Half-close: the peer reads the end of stream, we may still read.
        """
        self.transport.loseConnection()

    def reset(self):
        """
        Abort the stream in both directions.
        """
        if self.transport is not None:
            self.transport.abortConnection()

    def detach(self):
        """
        Stop using the stream, to hand its transport to another protocol
        (as circuit relay does once its handshake is done): return
        C{(buffered, eof)}, the bytes received and not read and whether the
        peer already closed its side.  The caller then connects the new
        protocol to C{self.transport}, feeds it C{buffered} first and calls
        C{self.transport.resumeProducing()} (reading may have been paused).
        """
        if self._waiter is not None:
            raise RuntimeError("cannot detach a stream while a read is pending")
        self._paused = False
        return self._take(len(self._buffer)), self._eof

    def whenClosed(self):
        """
        A Deferred that fires when the stream is fully closed.
        """
        d = Deferred()
        self._closed.addBoth(lambda r: (d.callback(None), r)[1])
        return d


async def withTimeout(clock, seconds, coroutine):
    """
    Await C{coroutine}, cancelled after C{seconds} (None: no limit).

    @raise twisted.internet.error.TimeoutError: when the time runs out.
    """
    d = Deferred.fromCoroutine(coroutine)
    if seconds is not None:
        d.addTimeout(seconds, clock)
    try:
        return await d
    except defer.TimeoutError:
        raise TimeoutError(f"no answer in {seconds} seconds") from None
