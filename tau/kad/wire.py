"""
The stream side of C{/ipfs/kad/1.0.0}, for the network layer to bind.

Both functions take a stream with the L{tau.streams.StreamProtocol} methods
C{readLP(max, allowEOF)}, C{writeLP(bytes)}, C{closeWrite()} and C{reset()};
they are tested with an in-memory stream.

The binding, roughly::

    host.setStreamHandler(PROTOCOL_ID, lambda s: serveStream(s, core, s.remotePeer))

    class HostKadTransport:                      # implements IKadTransport
        def request(self, peerID, message, addrs=()):
            return Deferred.fromCoroutine(self._request(peerID, message, addrs))
        async def _request(self, peerID, message, addrs):
            peerstore.addAddrs(peerID, addrs, ttl=...)   # temporary TTL
            stream = await host.newStream(peerID, [PROTOCOL_ID])
            return await requestOverStream(stream, message)
        def send(self, peerID, message, addrs=()):   # ADD_PROVIDER
            d = Deferred.fromCoroutine(...requestOverStream(stream, message, expectResponse=False))
            d.addErrback(log it)
"""

from twisted.logger import Logger

from tau.kad.messages import MAX_MESSAGE_SIZE, KadProtocolError, decodeMessage, encodeMessage
from tau.ratelog import PeerLog
from tau.protocols import varint
from tau.streams import StreamTooLong, withTimeout

__all__ = ["serveStream", "requestOverStream", "IDLE_TIMEOUT", "MESSAGE_TIMEOUT"]

#: Seconds an inbound stream may wait for the start (the length) of its
#: next request; go resets a kad stream idle for a minute too.
IDLE_TIMEOUT = 60.0
#: Seconds the rest of a request may take once its length arrived.
MESSAGE_TIMEOUT = 10.0

log = Logger()
peerLog = PeerLog(log)


async def serveStream(stream, core, remotePeer, maxMessageSize=MAX_MESSAGE_SIZE, source=None, idleTimeout=IDLE_TIMEOUT, messageTimeout=MESSAGE_TIMEOUT):
    """
    Answer requests on an inbound kad stream until the peer closes it (go
    reuses streams; js opens one per request).  A request the core refuses
    or an undecodable one resets the stream, with a log line; so does a
    request that does not start within C{idleTimeout} seconds or does not
    end C{messageTimeout} seconds after its length (on C{core.clock}).
    The next request is read once the answer to the last one has left (the
    peer's window took it): a peer that does not read its answers is
    reset after C{idleTimeout}, with at most one window of them queued.
    C{source} goes to L{tau.kad.dht.KademliaCore.handle}.

    @return: the number of requests answered.
    """
    answered = 0
    clock = core.clock
    try:
        while True:
            try:
                length = await withTimeout(clock, idleTimeout, stream.readVarint(maxMessageSize, allowEOF=True))
            except varint.VarintError as e:
                raise StreamTooLong(f"message longer than {maxMessageSize} bytes ({e})") from None
            if length is None:
                break
            data = await withTimeout(clock, messageTimeout, stream.readExactly(length))
            message = decodeMessage(data, maxMessageSize)
            response = core.handle(remotePeer, message, source)
            answered += 1
            if response is not None:
                stream.writeLP(encodeMessage(response))
                await withTimeout(clock, idleTimeout, stream.drain())
    except KadProtocolError as e:
        peerLog.info(core.clock, "refused", "kad: resetting stream from {peer}: {why}", peer=remotePeer, why=str(e))
        stream.reset()
        return answered
    except Exception as e:
        peerLog.info(core.clock, "failed", "kad: stream from {peer} failed: {why}", peer=remotePeer, why=str(e))
        stream.reset()
        return answered
    stream.closeWrite()
    return answered


async def requestOverStream(stream, message, expectResponse=True, maxMessageSize=MAX_MESSAGE_SIZE):
    """
    Write one request on a fresh outbound stream and read its answer.

    @return: the decoded response, or L{None} when C{expectResponse} is
        false (ADD_PROVIDER): the stream is then closed right away.
    @raise KadProtocolError: on an undecodable answer (the stream is reset).
    """
    stream.writeLP(encodeMessage(message))
    if not expectResponse:
        stream.closeWrite()
        return None
    try:
        data = await stream.readLP(maxMessageSize)
        response = decodeMessage(data, maxMessageSize)
    except BaseException:
        stream.reset()
        raise
    stream.closeWrite()
    return response
