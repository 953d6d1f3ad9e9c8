"""
Bitswap on a host's streams.

Bitswap is message based, not request/response: each side reads the
streams its peer opens and writes on streams it opens itself.  helia never
reads its outbound streams and kubo keeps one stream open for good, so:

  - every inbound stream is read, message after message, until EOF
    (L{MessageReader});
  - everything we send a peer (our wantlist changes and the engine's
    answers) goes through one L{PeerQueue}: one long-lived outbound stream,
    reopened when it breaks; the first message on each new stream carries
    our whole wantlist for that peer with C{full=true}.

Wantlist changes are coalesced: changes made in one reactor turn leave in
one message.  Writes wait while the stream's send window is full, so a
slow peer holds back only its own queue.
"""

from collections import OrderedDict
from inspect import iscoroutine

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from zope.interface import implementer

from tau.bitswap import message as bsmessage
from tau.bitswap.message import MAX_ENTRIES, MAX_MESSAGE, Message, MessageError
from tau.oneshot import OneShot
from tau.protocols import varint
from tau.ratelog import PeerLog

log = Logger()
peerLog = PeerLog(log)


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

    def send(self, parts):
        """
        Write one length-prefixed message given as a list of byte strings
        (L{bsmessage.encodeParts}), each as it is: the big ones, blocks,
        are not joined into a copy of the message.
        """
        write = self.transport.write
        length = varint.encode(sum(len(part) for part in parts))
        if len(parts[0]) < bsmessage.PASS_THROUGH:
            write(length + parts[0])
        else:
            write(length)
            write(parts[0])
        for part in parts[1:]:
            write(part)

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
                    data = bsmessage.encodeParts(part, self._protocolID)
                    if sum(len(d) for d in data) > MAX_MESSAGE and (part.entries or part.full):
                        # the wantlist pushed the blocks over the limit: two messages
                        wants = Message(entries=part.entries, full=part.full)
                        part.entries, part.full = [], False
                        writer.send(bsmessage.encodeParts(wants, self._protocolID))
                        self.messagesSent += 1
                        data = bsmessage.encodeParts(part, self._protocolID)
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


@implementer(IHalfCloseableProtocol)
class MessageReader(Protocol):
    """
    Our end of an inbound bitswap stream: length-prefixed messages, read
    until EOF (a plain protocol rather than a L{tau.streams.StreamProtocol},
    for speed).

    The bytes of a message are copied once, into a buffer of the message's
    size made when its length has arrived, and the blocks of the decoded
    message are views of that buffer (L{bsmessage.decode}).
    C{handle(peer, message)} gets the messages in order; while the Deferred
    or coroutine it returns has not finished, the stream is paused (the
    peer is held back by the window of the muxer) and what still arrives
    is kept for later.  A malformed or oversized message, or an error from
    C{handle}, calls C{onError(peer, exception)} and aborts the stream.
    C{clock} paces the log lines about streams that end inside a message.

    The message being filled (its whole announced size, from when its
    length arrived) and what is kept for later count in the receive budget
    of the connection (L{tau.resources}), through the transport's C{reserve}
    and C{release} when it has them: a stream that would exceed it is
    reset before the buffer is made.
    """

    def __init__(self, peer, handle, onError, maxMessage=MAX_MESSAGE, clock=None):
        self.peer = peer
        self.clock = clock
        self.handle = handle
        self.onError = onError
        self.maxMessage = maxMessage
        self._length = bytearray()  # the varint of the next message, so far
        self._body = None  # the message being filled
        self._filled = 0
        self._held = []  # bytes received while a message was being handled
        self._busy = None  # the Deferred of the message being handled
        self._inHandle = False
        self._eof = False
        self._done = False
        self._reserve = None
        self._release = None

    def connectionMade(self):
        self._reserve = getattr(self.transport, "reserve", None)
        self._release = getattr(self.transport, "release", None)

    def _charge(self, n):
        return self._reserve is None or self._reserve(n)

    def _uncharge(self, n):
        if self._release is not None:
            self._release(n)

    def dataReceived(self, data):
        if self._done:
            return
        if self._busy is not None or self._held:
            if self._charge(len(data)):
                self._held.append(data)
            return
        self._feed(data)

    def _feed(self, data):
        """
        Take in C{data}; False once a message is being handled (then the
        rest of C{data} is held) or the stream is over.
        """
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end:
            body = self._body
            if body is None:
                length = self._length
                length.append(view[pos])
                pos += 1
                try:
                    decoded = varint.decode(length, 0, self.maxMessage)
                except varint.VarintError as e:
                    self._fail(MessageError(f"bad message length (limit {self.maxMessage} bytes): {e}"))
                    return False
                if decoded is None:
                    continue
                length.clear()
                if not self._charge(decoded[0]):
                    return False
                body = self._body = bytearray(decoded[0])
                self._filled = 0
            filled = self._filled
            take = min(end - pos, len(body) - filled)
            if take:
                body[filled : filled + take] = view[pos : pos + take]
                pos += take
                filled = self._filled = filled + take
            if filled == len(body):
                self._body = None
                self._uncharge(len(body))
                if not self._message(body):
                    if not self._done and pos < end and self._charge(end - pos):
                        self._held.insert(0, view[pos:])  # before what came later
                    return False
        return True

    def _message(self, body):
        """
        Decode and hand on one message; False if handling it goes on (the
        stream is paused until it is over) or failed.
        """
        try:
            message = bsmessage.decode(body)
            d = self.handle(self.peer, message)
            if iscoroutine(d):
                d = Deferred.fromCoroutine(d)
        except Exception as e:
            self._fail(e)
            return False
        if isinstance(d, Deferred):
            self._busy = d
            self._inHandle = True
            try:
                d.addCallbacks(self._handled, self._handleFailed)
            finally:
                self._inHandle = False
            if self._busy is not None:
                self.transport.pauseProducing()
                return False
        return not self._done

    def _handled(self, result):
        self._busy = None
        if self._inHandle or self._done:
            return
        self.transport.resumeProducing()
        while self._held and self._busy is None and not self._done:
            data = self._held.pop(0)
            self._uncharge(len(data))
            if not self._feed(data):
                break
        if self._eof:
            self._maybeEnded()

    def _handleFailed(self, failure):
        self._busy = None
        self._fail(failure.value)

    def _fail(self, error):
        if self._done:
            return
        self._done = True
        self._held = []
        self._body = None
        try:
            self.onError(self.peer, error)
        finally:
            if self.transport is not None:
                self.transport.abortConnection()

    def _maybeEnded(self):
        if self._done or self._busy is not None or self._held:
            return
        self._done = True
        if self._body is not None or self._length:
            peerLog.info(self.clock, "ended inside a message", "bitswap: stream from {peer} ended inside a message", peer=str(self.peer))
            self.transport.abortConnection()
            return
        self.transport.loseConnection()  # our side: we never write on it

    def readConnectionLost(self):
        self._eof = True
        self._maybeEnded()

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason=None):
        self._done = True
        self._held = []
        self._body = None
