"""
Bitswap on a host's streams.

Bitswap is message based, not request/response: each side reads the
streams its peer opens and writes on streams it opens itself.  helia never
reads its outbound streams and kubo keeps one stream open for good, so:

  - every inbound stream is read, message after message, until EOF
    (L{readMessages});
  - everything we send a peer (our wantlist changes and the engine's
    answers) goes through one L{PeerQueue}: one long-lived outbound stream,
    reopened when it breaks; the first message on each new stream carries
    our whole wantlist for that peer with C{full=true}.

Wantlist changes are coalesced: changes made in one reactor turn leave in
one message.  Writes wait while the stream's send window is full, so a
slow peer holds back only its own queue.
"""

from collections import OrderedDict

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from zope.interface import implementer

from tau.bitswap import message as bsmessage
from tau.bitswap.message import MAX_ENTRIES, MAX_MESSAGE, Message, MessageError
from tau.oneshot import OneShot
from tau.protocols import varint

log = Logger()


class QueueClosed(Exception):
    """
    The peer's queue was closed (the peer went away or the service stopped).
    """


@implementer(IPushProducer, IHalfCloseableProtocol)
class _Writer(Protocol):
    """
    Our end of an outbound bitswap stream: writes, ignores whatever the peer
    sends, and knows when the stream has room.
    """

    def __init__(self):
        self.paused = False
        self.lost = False
        self._resumed = None
        self.closed = OneShot()

    def connectionMade(self):
        self.transport.registerProducer(self, True)

    def dataReceived(self, data):
        pass

    def readConnectionLost(self):
        pass

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason=None):
        self.lost = True
        self._wake()
        self.closed.fire(None)

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        self._wake()

    def stopProducing(self):
        self.lost = True
        self._wake()

    def _wake(self):
        d, self._resumed = self._resumed, None
        if d is not None:
            d.callback(None)

    async def drained(self):
        while self.paused and not self.lost:
            if self._resumed is None:
                self._resumed = Deferred()
            await self._resumed

    def send(self, data):
        self.transport.writeSequence([varint.encode(len(data)), data])

    def close(self):
        if not self.lost and self.transport is not None:
            self.transport.loseConnection()


class PeerQueue:
    """
    Everything we send one peer.

    @ivar wants: our current wantlist for this peer, C{cid -> Entry}.
    """

    def __init__(self, host, peer, clock, *, protocols=bsmessage.PROTOCOLS, onError=None):
        self.host = host
        self.onError = onError
        self.peer = peer
        self.clock = clock
        self.protocols = protocols
        self.wants = OrderedDict()
        self._changes = OrderedDict()
        self._writer = None
        self._lastWriter = None
        self._protocolID = None
        self._opening = None
        self._flushCall = None
        self._sending = False
        self._sendQueue = []
        self._closed = False
        self.messagesSent = 0

    # the wantlist

    def want(self, entries):
        """
        Add or cancel wants (L{bsmessage.Entry}); sent on the next turn.
        """
        if self._closed:
            return
        for e in entries:
            if e.cancel:
                if self.wants.pop(e.cid, None) is None and e.cid not in self._changes:
                    continue
            else:
                self.wants[e.cid] = e
            self._changes[e.cid] = e
        if self._changes and self._flushCall is None:
            self._flushCall = self.clock.callLater(0, self._flushWants)

    def _flushWants(self):
        self._flushCall = None
        if not self._changes or self._closed:
            return
        d = Deferred.fromCoroutine(self.send(Message()))
        d.addErrback(self._wantsFailed)

    def _wantsFailed(self, failure):
        log.debug("bitswap: wants to {peer} not sent: {why}", peer=str(self.peer), why=failure.getErrorMessage())
        if self.onError is not None and not self._closed:
            self.onError(self, failure.value)

    # sending

    async def send(self, message):
        """
        Send C{message} with the pending wantlist changes; returns once it
        is written and the stream has room again.

        @raise QueueClosed: after L{close}.
        @raise Exception: the stream could not be opened.
        """
        if self._closed:
            raise QueueClosed(str(self.peer))
        if self._sending:
            waiter = Deferred()
            self._sendQueue.append(waiter)
            await waiter
            if self._closed:
                raise QueueClosed(str(self.peer))
        self._sending = True
        try:
            writer = await self._stream()
            fresh = writer is not self._lastWriter
            self._lastWriter = writer
            self._attachWants(message, full=fresh)
            if not message.empty() or fresh:
                for part in _split(message):
                    data = bsmessage.encode(part, self._protocolID)
                    if len(data) > MAX_MESSAGE and (part.entries or part.full):
                        # the wantlist pushed the blocks over the limit: two messages
                        wants = Message(entries=part.entries, full=part.full)
                        part.entries, part.full = [], False
                        writer.send(bsmessage.encode(wants, self._protocolID))
                        self.messagesSent += 1
                        data = bsmessage.encode(part, self._protocolID)
                    writer.send(data)
                    self.messagesSent += 1
                await writer.drained()
                if writer.lost:
                    raise QueueClosed(f"stream to {self.peer} lost")
        finally:
            self._sending = False
            if self._sendQueue:
                self._sendQueue.pop(0).callback(None)

    def _attachWants(self, message, full):
        if full:
            message.full = True
            message.entries = list(self.wants.values()) + message.entries
        else:
            message.entries = list(self._changes.values()) + message.entries
        self._changes.clear()

    async def _stream(self):
        writer = self._writer
        if writer is not None and not writer.lost:
            return writer
        writer = _Writer()
        await self.host.newRawStream(self.peer, self.protocols, writer)
        if self._closed:
            writer.close()
            raise QueueClosed(str(self.peer))
        self._protocolID = getattr(writer.transport, "protocolID", bsmessage.PROTOCOL_120)
        self._writer = writer
        return writer

    def close(self):
        self._closed = True
        if self._flushCall is not None and self._flushCall.active():
            self._flushCall.cancel()
        self._flushCall = None
        if self._writer is not None:
            self._writer.close()
        for waiter in self._sendQueue:
            waiter.callback(None)
        self._sendQueue = []


def _split(message):
    """
    Split a message whose wantlist is longer than L{MAX_ENTRIES} (only the
    first part keeps C{full}).
    """
    if len(message.entries) <= MAX_ENTRIES:
        return [message]
    parts = []
    entries = message.entries
    first = Message(entries=entries[:MAX_ENTRIES], full=message.full, blocks=message.blocks, presences=message.presences)
    parts.append(first)
    for i in range(MAX_ENTRIES, len(entries), MAX_ENTRIES):
        parts.append(Message(entries=entries[i : i + MAX_ENTRIES]))
    return parts


async def readMessages(stream, handle, maxMessage=MAX_MESSAGE):
    """
    Read length-prefixed bitswap messages from C{stream} until EOF, calling
    C{await handle(message)} for each.

    @raise MessageError: on an oversized or malformed message.
    """
    while True:
        try:
            data = await stream.readLP(maxMessage, allowEOF=True)
        except varint.VarintError as e:
            raise MessageError(str(e)) from None
        except ValueError as e:  # StreamTooLong
            raise MessageError(str(e)) from None
        if data is None:
            return
        await handle(bsmessage.decode(data))
