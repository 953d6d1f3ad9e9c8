"""
The yamux frame codec, sans-IO.

A frame is a 12-byte big-endian header C{version u8 | type u8 | flags u16 |
streamID u32 | length u32}, followed by C{length} payload bytes for Data
frames only.  L{FrameDecoder} is fed bytes and calls a handler; Data
payloads are handed over in the chunks they arrived in, without waiting for
the whole frame, so a 64 KiB frame is never reassembled or copied.
"""

from __future__ import annotations

import struct
from typing import Protocol as TypingProtocol

from twisted.internet.error import ConnectionLost

__all__ = [
    "VERSION",
    "TYPE_DATA",
    "TYPE_WINDOW_UPDATE",
    "TYPE_PING",
    "TYPE_GO_AWAY",
    "FLAG_SYN",
    "FLAG_ACK",
    "FLAG_FIN",
    "FLAG_RST",
    "GO_AWAY_NORMAL",
    "GO_AWAY_PROTOCOL_ERROR",
    "GO_AWAY_INTERNAL_ERROR",
    "HEADER",
    "HEADER_SIZE",
    "INITIAL_WINDOW",
    "MAX_UINT32",
    "YamuxError",
    "YamuxProtocolError",
    "SessionClosed",
    "SessionGoingAway",
    "StreamLimitExceeded",
    "StreamReset",
    "IFrameHandler",
    "FrameDecoder",
    "encodeHeader",
    "dataFrame",
    "windowUpdateFrame",
    "pingFrame",
    "goAwayFrame",
]

VERSION = 0

TYPE_DATA = 0
TYPE_WINDOW_UPDATE = 1
TYPE_PING = 2
TYPE_GO_AWAY = 3

FLAG_SYN = 0x1
FLAG_ACK = 0x2
FLAG_FIN = 0x4
FLAG_RST = 0x8

GO_AWAY_NORMAL = 0
GO_AWAY_PROTOCOL_ERROR = 1
GO_AWAY_INTERNAL_ERROR = 2

HEADER = struct.Struct(">BBHII")
HEADER_SIZE = HEADER.size

#: The window every stream starts with, in each direction, by the spec.
INITIAL_WINDOW = 256 * 1024

MAX_UINT32 = 0xFFFFFFFF

_pack = HEADER.pack
_unpack_from = HEADER.unpack_from


class YamuxError(Exception):
    """
    Base class for yamux errors.
    """


class YamuxProtocolError(YamuxError):
    """
    The peer broke the yamux protocol; the session must send
    GoAway(protocol error) and close.
    """


class SessionClosed(YamuxError):
    """
    The session is closed or closing; no stream can be opened.
    """


class SessionGoingAway(YamuxError):
    """
    A GoAway was sent or received; no new stream can be opened.
    """


class StreamLimitExceeded(YamuxError):
    """
    Opening another stream would exceed the outbound stream limit, or the
    stream IDs are exhausted.
    """


class StreamReset(ConnectionLost):
    """
    The peer reset the stream (RST).
    """


class IFrameHandler(TypingProtocol):
    """
    What L{FrameDecoder} calls.
    """

    def frameReceived(self, type: int, flags: int, streamID: int, length: int) -> None:
        """
        A header arrived.  For a Data frame this is the start of the frame:
        its payload follows through L{payloadReceived} and L{payloadFinished}.
        """

    def payloadReceived(self, streamID: int, data: bytes) -> None:
        """
        Part of the payload of the current Data frame (never empty).
        """

    def payloadFinished(self, flags: int, streamID: int) -> None:
        """
        The current Data frame is complete (also called for empty frames).
        """


def encodeHeader(type: int, flags: int, streamID: int, length: int) -> bytes:
    return _pack(VERSION, type, flags, streamID, length)


def dataFrame(flags: int, streamID: int, payload: bytes) -> bytes:
    """
    A whole Data frame, header and payload, as one C{bytes}.
    """
    return _pack(VERSION, TYPE_DATA, flags, streamID, len(payload)) + payload


def windowUpdateFrame(flags: int, streamID: int, delta: int) -> bytes:
    return _pack(VERSION, TYPE_WINDOW_UPDATE, flags, streamID, delta)


def pingFrame(flags: int, opaque: int) -> bytes:
    return _pack(VERSION, TYPE_PING, flags, 0, opaque)


def goAwayFrame(code: int) -> bytes:
    return _pack(VERSION, TYPE_GO_AWAY, 0, 0, code)


class FrameDecoder:
    """
    Push decoder for yamux frames.

    @param handler: an L{IFrameHandler}.
    @param maxDataLength: the largest Data payload accepted at all (the
        session checks the per-stream window on top of this).
    """

    def __init__(self, handler: IFrameHandler, maxDataLength: int) -> None:
        self._frameReceived = handler.frameReceived
        self._dataReceived = handler.payloadReceived
        self._dataFinished = handler.payloadFinished
        self._maxDataLength = maxDataLength
        self._partial = bytearray()
        self._remaining = 0
        self._streamID = 0
        self._flags = 0
        self._stopped = False
        self._failed = False

    def stop(self) -> None:
        """
        Ignore everything from now on (the session is closing).  May be
        called from inside a handler callback.
        """
        self._stopped = True

    def _header(self, buf: bytes, pos: int) -> None:
        version, type, flags, streamID, length = _unpack_from(buf, pos)
        if version != VERSION:
            raise YamuxProtocolError(f"unsupported yamux version {version}")
        if type == TYPE_DATA:
            if length > self._maxDataLength:
                raise YamuxProtocolError(
                    f"data frame of {length} bytes exceeds the limit of "
                    f"{self._maxDataLength}"
                )
            self._streamID = streamID
            self._flags = flags
            self._remaining = length
            self._frameReceived(type, flags, streamID, length)
            if length == 0 and not self._stopped:
                self._dataFinished(flags, streamID)
        elif type <= TYPE_GO_AWAY:
            self._frameReceived(type, flags, streamID, length)
        else:
            raise YamuxProtocolError(f"unknown frame type {type}")

    def feed(self, data: bytes) -> None:
        """
        Decode C{data}, calling the handler for every header and payload
        chunk it completes.

        @raise YamuxProtocolError: on a bad version, unknown type or
            oversized Data frame; the decoder is stopped afterwards.
        """
        if self._stopped:
            return
        if self._failed:
            raise YamuxProtocolError("decoder already failed")
        if type(data) is not bytes:
            data = bytes(data)
        try:
            self._feed(data)
        except YamuxProtocolError:
            self._failed = True
            raise

    def _feed(self, data: bytes) -> None:
        n = len(data)
        pos = 0
        partial = self._partial
        if partial:
            need = HEADER_SIZE - len(partial)
            partial += data[:need]
            if len(partial) < HEADER_SIZE:
                return
            pos = need
            header = bytes(partial)
            partial.clear()
            self._header(header, 0)
        while not self._stopped:
            remaining = self._remaining
            if remaining:
                available = n - pos
                if not available:
                    return
                if pos == 0 and available <= remaining:
                    chunk = data
                else:
                    chunk = data[pos : pos + remaining]
                taken = len(chunk)
                pos += taken
                remaining -= taken
                self._remaining = remaining
                self._dataReceived(self._streamID, chunk)
                if not remaining and not self._stopped:
                    self._dataFinished(self._flags, self._streamID)
                continue
            if n - pos < HEADER_SIZE:
                if pos < n:
                    partial += data[pos:]
                return
            self._header(data, pos)
            pos += HEADER_SIZE
