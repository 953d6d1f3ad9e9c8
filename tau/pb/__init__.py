"""
The protobuf messages of libp2p's specs: C{.proto} files and the modules
generated from them; L{decodeBounded} reads one from the network.
"""

from google.protobuf.message import DecodeError


def decodeBounded(messageType, data, limit, error, what):
    """
    One C{messageType} decoded from C{data}, a message read from a peer.

    @param limit: the most bytes it may have.
    @param error: the exception raised, saying C{what} was wrong, when
        C{data} is longer than C{limit} or is not such a message.
    """
    if len(data) > limit:
        raise error(f"{what} of {len(data)} bytes exceeds {limit}")
    message = messageType()
    try:
        message.ParseFromString(bytes(data))
    except DecodeError as e:
        raise error(f"malformed {what}: {e}") from None
    return message
