"""
Taubyte's stream frames (go's C{p2p/streams/packer}), sans-IO.

A frame is a 14-byte little-endian header and a payload::

    @0  magic    2 raw bytes (command streams: 01 ec)
    @2  version  u16 (command streams: 1)
    @4  type     u8: 0 data, 1 close
    @5  length   int64 (negative: refused)
    @13 channel  u8

A close frame carries UTF-8 error text (empty: a clean end), at most 64
KiB.  Go leaves data frames uncapped; here every decoder has a maximum
payload, so a peer cannot make us buffer more than we chose.
"""

import struct
from dataclasses import dataclass

HEADER = struct.Struct("<2sHBqB")
HEADER_SIZE = HEADER.size  # 14

DATA = 0
CLOSE = 1

#: command streams (C{p2p/streams/command/framer})
COMMAND_MAGIC = b"\x01\xec"
COMMAND_VERSION = 1

#: Taubyte's HTTP tunnel (C{p2p/streams/tunnels/http}, L{tau.services.substrate.tunnel})
TUNNEL_MAGIC = b"\x02\xfc"
TUNNEL_VERSION = 1

#: the longest close text go accepts
MAX_CLOSE_TEXT = 64 * 1024


class FrameError(ValueError):
    """
    Bytes that are not a frame this decoder accepts; the message says why.
    C{channel} is the channel of a frame refused on its header's length
    (None otherwise).
    """

    def __init__(self, message, channel=None):
        super().__init__(message)
        self.channel = channel


@dataclass(frozen=True)
class Frame:
    type: int
    channel: int
    payload: bytes

    def closeText(self):
        """
        The error text of a close frame ("" for a clean end).

        @raise FrameError: when it is not UTF-8.
        """
        try:
            return self.payload.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError("close frame text is not UTF-8") from None


def encodeFrame(payload, type=DATA, channel=0, magic=COMMAND_MAGIC, version=COMMAND_VERSION):
    """
    The bytes of one frame.
    """
    if type not in (DATA, CLOSE):
        raise ValueError(f"frame type {type}: expected 0 (data) or 1 (close)")
    if type == CLOSE and len(payload) > MAX_CLOSE_TEXT:
        raise ValueError(f"close text of {len(payload)} bytes, limit {MAX_CLOSE_TEXT}")
    return HEADER.pack(magic, version, type, len(payload), channel) + bytes(payload)


class FrameDecoder:
    """
    Frames out of a byte stream: C{feed(data)} returns the frames completed
    by C{data}, in order.  After a L{FrameError} the decoder is spent.

    @param maxPayload: the largest data-frame payload accepted (bytes).
    @param channelLimits: a smaller or larger limit for some channels'
        data frames (channel -> bytes), checked on the header, before
        anything is buffered.
    """

    def __init__(self, maxPayload, magic=COMMAND_MAGIC, version=COMMAND_VERSION, channelLimits=None):
        self.maxPayload = maxPayload
        self.channelLimits = channelLimits or {}
        self.magic = magic
        self.version = version
        self._buffer = bytearray()
        self._header = None
        self._failed = None

    @property
    def pending(self):
        """
        Bytes received and not yet part of a whole frame.
        """
        return len(self._buffer)

    def feed(self, data):
        if self._failed is not None:
            raise FrameError(self._failed)
        self._buffer += data
        frames = []
        try:
            while True:
                if self._header is None:
                    if len(self._buffer) < HEADER_SIZE:
                        break
                    self._header = self._parseHeader(bytes(self._buffer[:HEADER_SIZE]))
                    del self._buffer[:HEADER_SIZE]
                type, length, channel = self._header
                if len(self._buffer) < length:
                    break
                payload = bytes(self._buffer[:length])
                del self._buffer[:length]
                self._header = None
                frames.append(Frame(type, channel, payload))
        except FrameError as e:
            self._failed = str(e)
            self._buffer = bytearray()
            raise
        return frames

    def _parseHeader(self, header):
        magic, version, type, length, channel = HEADER.unpack(header)
        if magic != self.magic:
            raise FrameError(f"bad magic {magic.hex()}, expected {self.magic.hex()}")
        if version != self.version:
            raise FrameError(f"bad version {version}, expected {self.version}")
        if type not in (DATA, CLOSE):
            raise FrameError(f"bad frame type {type}")
        if length < 0:
            raise FrameError(f"negative frame length {length}")
        limit = MAX_CLOSE_TEXT if type == CLOSE else self.channelLimits.get(channel, self.maxPayload)
        if length > limit:
            kind = "close" if type == CLOSE else "data"
            raise FrameError(f"{kind} frame of {length} bytes, limit {limit}", channel)
        return type, length, channel
