"""
Multiformats unsigned varints and varint-length-prefixed messages.

An unsigned varint is LEB128: seven bits per byte, least significant group
first, the high bit set on every byte but the last.  The multiformats spec
requires the minimal encoding and at most nine bytes (so at most 63 bits).

Everything here is sans-IO: plain functions and a push decoder that is fed
bytes and hands back complete messages.
"""

from __future__ import annotations

__all__ = [
    "MAX_VARINT_BYTES",
    "MAX_VALUE",
    "VarintError",
    "encode",
    "decode",
    "lpEncode",
    "LPDecoder",
]

#: The multiformats limit on the size of one varint.
MAX_VARINT_BYTES = 9

#: The largest value that fits in nine varint bytes.
MAX_VALUE = (1 << 63) - 1


class VarintError(ValueError):
    """
    A varint or a length-prefixed message broke the rules: non-minimal
    encoding, more than nine bytes, a value over the caller's limit, or a
    message longer than allowed.
    """


# Single-byte encodings are by far the most common; precompute them.
_SMALL = [bytes([i]) for i in range(0x80)]


def encode(n: int) -> bytes:
    """
    Encode a non-negative integer of at most 63 bits as a minimal varint.

    @raise VarintError: if C{n} is negative or too large.
    """
    if 0 <= n < 0x80:
        return _SMALL[n]
    if n < 0 or n > MAX_VALUE:
        raise VarintError(f"cannot encode {n!r} as an unsigned varint")
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def decode(
    buf: bytes | bytearray | memoryview, offset: int = 0, maxValue: int = MAX_VALUE
) -> tuple[int, int] | None:
    """
    Decode one varint from C{buf} starting at C{offset}.

    @return: C{(value, newOffset)} where C{newOffset} is the index just past
        the varint, or L{None} if C{buf} ends before the varint does.

    @raise VarintError: on a non-minimal encoding, more than nine bytes, or a
        value greater than C{maxValue}.  Over-long and over-limit varints are
        rejected as soon as enough bytes are seen, without waiting for the
        rest.
    """
    end = len(buf)
    if offset >= end:
        return None
    b = buf[offset]
    if b < 0x80:
        if b > maxValue:
            raise VarintError(f"varint value {b} exceeds limit {maxValue}")
        return b, offset + 1
    value = b & 0x7F
    shift = 7
    pos = offset + 1
    while True:
        if pos >= end:
            return None
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if value > maxValue:
            # Later bytes can only make the value larger.
            raise VarintError(f"varint value exceeds limit {maxValue}")
        if b < 0x80:
            if b == 0:
                raise VarintError("non-minimal varint encoding")
            return value, pos
        if pos - offset >= MAX_VARINT_BYTES:
            raise VarintError("varint longer than 9 bytes")
        shift += 7


def lpEncode(payload: bytes) -> bytes:
    """
    Frame C{payload} as a varint-length-prefixed message.
    """
    return encode(len(payload)) + payload


class LPDecoder:
    """
    A push decoder for varint-length-prefixed messages.

    Add bytes with L{push} and take messages one at a time with L{next}, or
    do both at once with L{feed}.  Bytes past the last message taken stay
    buffered (L{unconsumed}), so a caller can stop between two messages and
    hand the rest of the stream to another protocol.

    @ivar maxLength: the largest message accepted; a longer announced length
        raises L{VarintError} before its payload is buffered.
    """

    def __init__(self, maxLength: int) -> None:
        self.maxLength = maxLength
        self._buffer = bytearray()
        self._pos = 0
        self._failed = False

    def push(self, data: bytes) -> None:
        """
        Buffer C{data}.
        """
        if self._pos and self._pos * 2 >= len(self._buffer):
            del self._buffer[: self._pos]
            self._pos = 0
        self._buffer += data

    def next(self) -> bytes | None:
        """
        Return the next complete message, or L{None} if none is buffered.

        @raise VarintError: on a bad length prefix or an oversized message;
            the decoder stays failed afterwards.
        """
        if self._failed:
            raise VarintError("length-prefixed stream already failed")
        buf = self._buffer
        try:
            header = decode(buf, self._pos, self.maxLength)
        except VarintError:
            self._failed = True
            raise
        if header is None:
            return None
        length, start = header
        end = start + length
        if end > len(buf):
            return None
        self._pos = end
        return bytes(buf[start:end])

    def feed(self, data: bytes) -> list[bytes]:
        """
        Buffer C{data} and return every message now complete (possibly none).

        @raise VarintError: see L{next}.
        """
        self.push(data)
        messages = []
        while (message := self.next()) is not None:
            messages.append(message)
        return messages

    def unconsumed(self) -> bytes:
        """
        Return (and keep) the bytes buffered after the last message taken.
        """
        return bytes(self._buffer[self._pos :])

    def takeUnconsumed(self) -> bytes:
        """
        Return the bytes buffered after the last message taken and empty the
        buffer.
        """
        data = bytes(self._buffer[self._pos :])
        self._buffer.clear()
        self._pos = 0
        return data
