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

__all__ = ["serveStream", "requestOverStream"]

log = Logger()
peerLog = PeerLog(log)


async def serveStream(stream, core, remotePeer, maxMessageSize=MAX_MESSAGE_SIZE, source=None):
    """
    Answer requests on an inbound kad stream until the peer closes it (go
    reuses streams; js opens one per request).  A request the core refuses
    or an undecodable one resets the stream, with a log line.  C{source}
    goes to L{tau.kad.dht.KademliaCore.handle}.

    @return: the number of requests answered.
    """
    answered = 0
    try:
        while True:
            data = await stream.readLP(maxMessageSize, allowEOF=True)
            if data is None:
                break
            message = decodeMessage(data, maxMessageSize)
            response = core.handle(remotePeer, message, source)
            if response is not None:
                stream.writeLP(encodeMessage(response))
            answered += 1
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
