"""
L{PubSubService}: gossipsub (and floodsub) on a host's streams, and the API
the rest of tau uses (C{node.pubsub}).

Streams, as the spec says: we open one long-lived outbound stream to every
pubsub peer and only write to it; we read the streams peers open to us,
length-prefixed RPC frames of at most L{MAX_RPC} bytes, until they end.  A
peer is a pubsub peer once identify says it speaks one of our protocols, or
once it opens a pubsub stream to us.  Each new outbound stream starts with
our whole subscription list.  A peer whose frames are oversized or not RPCs
is disconnected, with a log line.

Writes never wait: while a peer's stream has no room, frames queue up to
C{maxQueueBytes}, then the oldest are dropped (a slow peer only loses its
own messages).
"""

from __future__ import annotations

import inspect
from collections import deque

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from zope.interface import implementer

from tau.addrs import ipOf
from tau.connection import OUTBOUND
from tau.interfaces import IPubSub
from tau.oneshot import OneShot
from tau.protocols import varint
from tau.pubsub.message import (
    MAX_RPC,
    PROTOCOLS,
    RPC,
    RPCError,
    decodeRPC,
    encodeRPC,
    goMsgID,
    signMessage,
    topicName,
)
from tau.pubsub.router import GossipParams, GossipRouter, ValidationError
from tau.ratelog import PeerLog
from tau.streams import StreamTooLong

log = Logger()
peerLog = PeerLog(log)

#: Messages kept per subscription for a slow reader (then the oldest go).
SUBSCRIPTION_QUEUE = 1024
#: Bytes queued per peer while its stream is full (then the oldest go).
MAX_QUEUE_BYTES = 8 << 20
#: Seconds a validator may take; past that the message is rejected.
VALIDATE_TIMEOUT = 10.0
#: Seconds addresses learnt from peer exchange are kept.
PX_ADDR_TTL = 600.0


class SubscriptionCancelled(Exception):
    """
    The subscription was cancelled (or the service stopped).
    """


class Subscription:
    """
    The messages of one topic, as they arrive: C{async for message in sub},
    or C{await sub.next()}.  C{cancel()} ends it.

    @ivar dropped: messages lost because the reader was too slow.
    """

    def __init__(self, topic, service, maxQueue=SUBSCRIPTION_QUEUE):
        self.topic = topic
        self._service = service
        self._maxQueue = maxQueue
        self._queue = deque()
        self._waiter = None
        self.cancelled = False
        self.dropped = 0

    def _push(self, message):
        if self.cancelled:
            return
        if len(self._queue) >= self._maxQueue:
            self._queue.popleft()
            self.dropped += 1
            if self.dropped & (self.dropped - 1) == 0:  # 1, 2, 4, 8...: not a line per message
                log.warn(
                    "pubsub: a subscriber of {topic} is too slow, {dropped} messages dropped so far",
                    topic=self.topic,
                    dropped=self.dropped,
                )
        self._queue.append(message)
        self._wake()

    def _wake(self):
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.callback(None)

    async def next(self):
        """
        The next message.

        @raise SubscriptionCancelled: once cancelled.
        """
        while not self._queue:
            if self.cancelled:
                raise SubscriptionCancelled(self.topic)
            if self._waiter is not None:
                raise RuntimeError("one reader at a time")
            self._waiter = Deferred(lambda d: setattr(self, "_waiter", None))
            await self._waiter
        if self.cancelled:
            raise SubscriptionCancelled(self.topic)
        return self._queue.popleft()

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return await self.next()
        except SubscriptionCancelled:
            raise StopAsyncIteration from None

    def cancel(self):
        """
        Stop receiving; the topic is left when its last local subscription
        is cancelled.
        """
        if self.cancelled:
            return
        self.cancelled = True
        self._queue.clear()
        self._service._unsubscribe(self)
        self._wake()


@implementer(IPushProducer, IHalfCloseableProtocol)
class _PeerWriter(Protocol):
    """
    Our outbound stream to one peer: writes frames, reads nothing, queues
    (bounded) while the stream has no room.
    """

    def __init__(self, peer, maxQueueBytes):
        self.peer = peer
        self.maxQueueBytes = maxQueueBytes
        self.ready = OneShot()
        self.connection = None
        self.opened = False
        self.paused = False
        self.lost = False
        self._queue = deque()
        self._queued = 0
        self.dropped = 0

    def connectionMade(self):
        self.transport.registerProducer(self, True)

    def dataReceived(self, data):
        pass

    def readConnectionLost(self):
        pass

    def writeConnectionLost(self):
        self.lost = True

    def connectionLost(self, reason=None):
        self.lost = True
        self._queue.clear()
        self._queued = 0

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        while self._queue and not self.paused and not self.lost:
            frame = self._queue.popleft()
            self._queued -= len(frame)
            self.transport.write(frame)

    def stopProducing(self):
        self.lost = True

    def send(self, payload):
        if self.lost:
            return
        frame = varint.encode(len(payload)) + payload
        if not self.paused and not self._queue:
            self.transport.write(frame)
            return
        self._queue.append(frame)
        self._queued += len(frame)
        while self._queued > self.maxQueueBytes and len(self._queue) > 1:
            self._queued -= len(self._queue.popleft())
            self.dropped += 1
            if self.dropped & (self.dropped - 1) == 0:
                log.warn("pubsub: {peer} reads too slowly, {dropped} frames dropped so far", peer=str(self.peer), dropped=self.dropped)

    def close(self):
        if not self.lost and self.transport is not None:
            self.lost = True
            self.transport.loseConnection()


@implementer(IPubSub)
class PubSubService(Service):
    """
    The node's pubsub.

    @param host: the node's L{tau.host.Host} (its key signs our messages).
    @param protocols: what we speak, best first (C{[FLOODSUB]} makes a
        floodsub-only node).
    @param params: L{GossipParams}; C{scoreParams}, C{thresholds}: see
        L{tau.pubsub.score}; C{msgID}: the message id function (go's by
        default, L{tau.pubsub.message.jsMsgID} for js's).
    """

    #: streams of one pubsub protocol one peer may have open to us at once
    #: (it needs one; a second while a replaced one closes)
    maxInboundStreams = 2

    def __init__(
        self,
        host,
        reactor,
        *,
        protocols=PROTOCOLS,
        params=None,
        scoreParams=None,
        thresholds=None,
        msgID=goMsgID,
        rng=None,
        subscriptionQueue=SUBSCRIPTION_QUEUE,
        maxQueueBytes=MAX_QUEUE_BYTES,
        validateTimeout=VALIDATE_TIMEOUT,
    ):
        self.setName("pubsub")
        self.host = host
        self.reactor = reactor
        self.protocols = list(protocols)
        self.msgID = msgID
        self.subscriptionQueue = subscriptionQueue
        self.maxQueueBytes = maxQueueBytes
        self.validateTimeout = validateTimeout
        self.router = GossipRouter(
            host.peerID,
            reactor,
            self._sendRPC,
            self._deliver,
            validate=self._validate,
            connect=self._connectPX,
            params=params or GossipParams(),
            scoreParams=scoreParams,
            thresholds=thresholds,
            msgID=msgID,
            rng=rng,
        )
        self._subs = {}
        self._validators = {}
        self._writers = {}
        self._heartbeat = None
        self._seqno = None
        self._observing = False

    # Service

    def startService(self):
        super().startService()
        self._seqno = int(self.reactor.seconds() * 1e9)
        for pid in self.protocols:
            self.host.setStreamHandler(pid, self._serve, maxInbound=self.maxInboundStreams)
        if not self._observing:
            # the host has no removeConnectionObserver: the observer checks
            # self.running
            self._observing = True
            self.host.addConnectionObserver(self._connected)
        for conn in self.host.connections():
            self._connected(conn)
        self._heartbeat = self.reactor.callLater(self.router.params.heartbeatInitialDelay, self._beat)

    def stopService(self):
        super().stopService()
        for pid in self.protocols:
            self.host.removeHandler(pid)
        if self._heartbeat is not None and self._heartbeat.active():
            self._heartbeat.cancel()
        self._heartbeat = None
        for peer, writer in list(self._writers.items()):
            writer.close()
            self.router.removePeer(peer)
        self._writers.clear()
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.cancel()

    def _beat(self):
        self._heartbeat = self.reactor.callLater(self.router.params.heartbeatInterval, self._beat)
        try:
            self.router.heartbeat()
        except Exception:
            log.failure("pubsub heartbeat failed")

    # the API

    def subscribe(self, topic):
        """
        Receive the messages of C{topic}.

        @rtype: L{Subscription}
        @raise ValueError: for an empty or too long topic.
        """
        if topicName(topic) is None:
            raise ValueError(f"bad topic {topic!r}: text of 1 to 1024 characters")
        sub = Subscription(topic, self, self.subscriptionQueue)
        subs = self._subs.setdefault(topic, [])
        subs.append(sub)
        if len(subs) == 1:
            self.router.join(topic)
        return sub

    def _unsubscribe(self, sub):
        subs = self._subs.get(sub.topic)
        if subs is None or sub not in subs:
            return
        subs.remove(sub)
        if not subs:
            del self._subs[sub.topic]
            self.router.leave(sub.topic)

    async def publish(self, topic, data):
        """
        Sign and publish C{data} on C{topic}.

        @return: the L{tau.pubsub.message.Message} sent.
        @raise ValueError: for a bad topic or a payload over the limit.
        @raise ValidationError: when the topic's validator refuses it.
        """
        if not self.running:
            raise RuntimeError("pubsub is not running")
        if topicName(topic) is None:
            raise ValueError(f"bad topic {topic!r}: text of 1 to 1024 characters")
        data = bytes(data)
        limit = self.router.params.maxMessageData
        if len(data) > limit:
            raise ValueError(f"message of {len(data)} bytes (at most {limit})")
        self._seqno += 1
        message = signMessage(self.host.key, topic, data, self._seqno.to_bytes(8, "big"), self.msgID)
        return await self.router.publish(message)

    def topicPeers(self, topic):
        """
        The peers we know are subscribed to C{topic}.
        """
        return self.router.topicPeers(topic)

    def topics(self):
        """
        The topics we are subscribed to.
        """
        return sorted(self.router.joined)

    def peers(self):
        """
        The peers we speak pubsub with.
        """
        return list(self.router.peers)

    def addValidator(self, topic, fn):
        """
        Check every message of C{topic} (ours and others') with
        C{fn(message)}, which returns a bool, or a Deferred or coroutine of
        one: False rejects the message (and penalises the peer that sent
        it), None ignores it.
        """
        self._validators[topic] = fn

    def removeValidator(self, topic):
        self._validators.pop(topic, None)

    def stat(self):
        return {
            "peers": len(self.router.peers),
            "topics": self.topics(),
            "mesh": {t: len(p) for t, p in self.router.mesh.items()},
            **self.router.stats,
        }

    # the router's callbacks

    def _deliver(self, message):
        for sub in list(self._subs.get(message.topic, ())):
            sub._push(message)

    def _validate(self, message):
        fn = self._validators.get(message.topic)
        if fn is None:
            return True
        result = fn(message)
        if inspect.isawaitable(result):
            d = ensureDeferred(result) if not isinstance(result, Deferred) else result
            d.addTimeout(self.validateTimeout, self.reactor)
            return d
        return result

    def _sendRPC(self, peer, rpc):
        writer = self._writers.get(peer)
        if writer is None or not writer.opened:
            return
        if writer.lost:
            self._reopen(peer)
            return
        for frame in _frames(rpc):
            writer.send(frame)

    def _connectPX(self, offered):
        from tau.protocols.peerrecord import IdentifyError, openPeerRecord

        for peer, record in offered:
            if record is not None:
                try:
                    opened = openPeerRecord(record)
                except IdentifyError:
                    continue
                if opened.peerID == peer:
                    self.host.peerstore.addAddrs(peer, list(opened.addrs), ttl=PX_ADDR_TTL)
            if self.host.connectionTo(peer) is not None or not self.host.peerstore.addrs(peer):
                continue
            d = Deferred.fromCoroutine(self.host.dial(peer))
            d.addErrback(lambda f, p=peer: log.debug("pubsub: PX peer {peer} unreachable: {why}", peer=str(p), why=f.getErrorMessage()))

    # peers

    def _connected(self, conn):
        if not self.running:
            return
        from tau.protocols import identify

        peer = conn.remotePeer
        conn.whenClosed().addCallback(lambda _: self._connectionClosed(conn))
        d = identify.whenIdentified(self.host, conn)
        # a connection that closed before identify finished is no news; a
        # failure of ours is logged
        d.addCallbacks(lambda _: self._identified(peer), lambda f: None)
        d.addErrback(lambda f: log.failure("pubsub: adding identified peer {peer} failed", f, peer=str(peer)))

    def _identified(self, peer):
        if not self.running:
            return
        if any(self.host.peerstore.supports(peer, pid) for pid in self.protocols):
            self._openPeer(peer)

    def _connectionClosed(self, conn):
        peer = conn.remotePeer
        if self.host.connections(peer):
            writer = self._writers.get(peer)
            if self.running and writer is not None and writer.connection is conn:
                # our stream went with that connection; the peer is still here
                self._reopen(peer)
            return
        writer = self._writers.pop(peer, None)
        if writer is not None:
            writer.close()
            writer.ready.fire(None)
        self.router.removePeer(peer)

    def _openPeer(self, peer):
        if not self.running or peer == self.host.peerID:
            return None
        existing = self._writers.get(peer)
        if existing is not None:
            if existing.lost and existing.opened:
                # a new connection after the old one (and our stream) broke
                self._reopen(peer)
                return self._writers.get(peer)
            return existing
        writer = self._writers[peer] = _PeerWriter(peer, self.maxQueueBytes)
        d = Deferred.fromCoroutine(self._open(peer, writer, fresh=True))
        d.addErrback(lambda f: log.failure("pubsub: opening a stream to {peer} failed", f, peer=str(peer)))
        return writer

    def _reopen(self, peer):
        """
        Our stream to a connected peer broke: open another one, which starts
        with our subscriptions again.
        """
        old = self._writers.get(peer)
        writer = self._writers[peer] = _PeerWriter(peer, self.maxQueueBytes)
        if old is not None:
            old.ready.fire(None)
        d = Deferred.fromCoroutine(self._open(peer, writer, fresh=False))
        d.addErrback(lambda f: log.failure("pubsub: reopening a stream to {peer} failed", f, peer=str(peer)))

    async def _open(self, peer, writer, fresh):
        try:
            await self.host.newRawStream(peer, self.protocols, writer)
        except Exception as e:
            log.debug("pubsub: no pubsub stream to {peer}: {why}", peer=str(peer), why=str(e) or e.__class__.__name__)
            if self._writers.get(peer) is writer:
                del self._writers[peer]
                self.router.removePeer(peer)
            writer.ready.fire(None)
            return
        if not self.running or self._writers.get(peer) is not writer:
            writer.close()
            writer.ready.fire(None)
            return
        protocol = getattr(writer.transport, "protocolID", self.protocols[0])
        writer.connection = conn = getattr(writer.transport, "connection", None)
        writer.opened = True
        if fresh or peer not in self.router.peers:
            outbound = conn is not None and conn.direction == OUTBOUND
            ip = ipOf(conn.remoteAddr) if conn is not None else None
            self.router.addPeer(peer, protocol, outbound, [str(ip)] if ip is not None else [])
        else:
            hello = self.router.helloRPC()
            if not hello.empty():
                self._sendRPC(peer, hello)
        # the peer's RPCs wait for this: the router knows the peer now
        writer.ready.fire(None)

    # inbound

    async def _serve(self, stream):
        peer = stream.remotePeer
        writer = self._writers.get(peer) or self._openPeer(peer)
        if writer is not None:
            await writer.ready.whenFired()
        while True:
            try:
                data = await stream.readLP(MAX_RPC, allowEOF=True)
            except (StreamTooLong, varint.VarintError) as e:
                self._drop(peer, f"oversized frame ({e})")
                return
            if data is None:
                break
            try:
                rpc = decodeRPC(data)
            except RPCError as e:
                self._drop(peer, str(e))
                return
            if self.running:
                self.router.handleRPC(peer, rpc)
        stream.closeWrite()

    def _drop(self, peer, why):
        peerLog.warn(self.reactor, "dropped", "pubsub: dropping {peer}: {why}", peer=str(peer), why=why)
        for conn in self.host.connections(peer):
            conn.close()


def _frames(rpc, limit=MAX_RPC):
    """
    The frames of an RPC: one when it fits in C{limit} bytes, else the
    subscriptions and control in one and the messages packed into as few
    frames as fit (a message over the limit on its own is dropped).  Sizes
    are added up before anything is encoded, so a large IWANT answer is
    never built as one huge buffer.
    """
    sizes = [_messageSize(m) for m in rpc.messages]
    if sum(sizes) + 64 <= limit:
        data = encodeRPC(rpc)
        if len(data) <= limit:
            return [data]
    out = []
    head = RPC(subscriptions=rpc.subscriptions, ihave=rpc.ihave, iwant=rpc.iwant, graft=rpc.graft, prune=rpc.prune)
    if not head.empty():
        out.append(encodeRPC(head))
    batch, used = [], 0
    for message, size in zip(rpc.messages, sizes):
        if size > limit:
            log.warn("pubsub: a message of {size} bytes does not fit in a frame; not sent", size=size)
            continue
        if batch and used + size > limit:
            out.append(encodeRPC(RPC(messages=batch)))
            batch, used = [], 0
        batch.append(message)
        used += size
    if batch:
        out.append(encodeRPC(RPC(messages=batch)))
    return out


def _messageSize(message):
    """
    The bytes C{message} takes in an RPC (field tag, length, body).
    """
    wire = message.wire() if hasattr(message, "wire") else message
    n = wire.ByteSize()
    return n + 1 + len(varint.encode(n))


__all__ = ["PubSubService", "Subscription", "SubscriptionCancelled", "ValidationError"]
