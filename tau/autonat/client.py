"""
The AutoNAT v1 client: ask one peer to dial us back.
"""

from __future__ import annotations

from tau.autonat.messages import (
    MAX_MESSAGE_SIZE,
    PROTOCOL_ID,
    AutoNATProtocolError,
    DialResponse,
    decodeMessage,
    encodeDial,
)
from tau.streams import withTimeout

__all__ = ["dialBack"]


async def dialBack(host, peerID, addrs, timeout=30.0) -> DialResponse:
    """
    Ask C{peerID} to dial us back at C{addrs} (multiaddr text).

    @return: the peer's L{DialResponse}.
    @raise AutoNATProtocolError: when the answer is malformed (the stream
        is reset).
    @raise Exception: whatever opening the stream raised, or
        L{twisted.internet.error.TimeoutError} after C{timeout} seconds.
    """
    stream = await host.newStream(peerID, [PROTOCOL_ID])
    try:
        stream.writeLP(encodeDial(host.peerID, addrs))
        stream.closeWrite()
        data = await withTimeout(host.clock, timeout, stream.readLP(MAX_MESSAGE_SIZE))
        response = decodeMessage(data)
        if not isinstance(response, DialResponse):
            raise AutoNATProtocolError("expected a DIAL_RESPONSE")
    except BaseException:
        stream.reset()
        raise
    return response
