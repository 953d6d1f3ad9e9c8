"""
perf (C{/perf/1.0.0}, libp2p/specs perf/perf.md): a throughput benchmark.

Client: open a stream, write the number of bytes it wants back as a
big-endian uint64, upload any number of bytes, close its write side, read
until the end of the stream.  Server: read the number, drain the upload
until the end of stream, then send the requested bytes and close.

Both sides are raw protocols: received bytes are only counted, and bytes
are sent by a push producer registered on the stream, in chunks of one
preallocated buffer, as fast as the stream's window allows.

The spec advises against enabling perf on public nodes: L{install} it only
when configured.  The server refuses (resets) requests for more than
C{maxDownload} bytes.
"""

from __future__ import annotations

import os
import struct

from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone, TimeoutError
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = [
    "ID",
    "CHUNK_SIZE",
    "MAX_DOWNLOAD",
    "PerfError",
    "PerfServer",
    "PerfService",
    "PerfClient",
    "perf",
    "install",
]

ID = "/perf/1.0.0"
#: Bytes per write.  Larger than a yamux frame: the stream splits it into
#: frames without copying (measured on loopback: 256 KiB beats 64 KiB).
CHUNK_SIZE = 256 * 1024
MIN_CHUNK_SIZE = 1024
MAX_CHUNK_SIZE = 256 * 1024
#: The most bytes the server sends for one request, by default.
MAX_DOWNLOAD = 1 << 30

_HEADER = struct.Struct(">Q")

log = Logger()

_buffers: dict = {}


def _buffer(size: int) -> bytes:
    """
    A random buffer of C{size} bytes, made once and reused for every chunk.
    """
    buf = _buffers.get(size)
    if buf is None:
        if not MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE:
            raise ValueError(f"perf chunk size must be {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE} bytes")
        buf = _buffers[size] = os.urandom(size)
    return buf


class PerfError(Exception):
    """
    The perf server sent another number of bytes than requested.
    """


@implementer(IPushProducer)
class _Sender:
    """
    Write C{total} bytes to C{transport} as a push producer, then call
    C{done()}.
    """

    def __init__(self, transport, total: int, chunkSize: int, done) -> None:
        self._transport = transport
        self._remaining = total
        self._chunk = _buffer(chunkSize)
        self._done = done
        self._paused = False
        self._stopped = False
        self._running = False

    def start(self) -> None:
        if self._remaining:
            self._transport.registerProducer(self, True)
        self._run()

    def _run(self) -> None:
        if self._running or self._stopped:
            return
        self._running = True
        try:
            chunk = self._chunk
            size = len(chunk)
            write = self._transport.write
            while self._remaining >= size and not self._paused and not self._stopped:
                self._remaining -= size
                write(chunk)
            if 0 < self._remaining < size and not self._paused and not self._stopped:
                n, self._remaining = self._remaining, 0
                write(chunk[:n])
        finally:
            self._running = False
        if not self._remaining and not self._stopped:
            self._stopped = True
            if getattr(self._transport, "producer", None) is self:
                self._transport.unregisterProducer()
            self._done()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._run()

    def stopProducing(self) -> None:
        self._stopped = True


@implementer(IHalfCloseableProtocol)
class PerfServer(Protocol):
    """
    The server side of one perf stream.

    @ivar requested: the number of bytes asked for (None until known).
    @ivar received: the bytes uploaded so far, after the 8-byte header.
    """

    def __init__(self, maxDownload: int = MAX_DOWNLOAD, chunkSize: int = CHUNK_SIZE) -> None:
        self.maxDownload = maxDownload
        self.chunkSize = chunkSize
        self.requested: int | None = None
        self.received = 0
        self._header = b""
        self._sender: _Sender | None = None

    def dataReceived(self, data: bytes) -> None:
        if self.requested is not None:
            self.received += len(data)
            return
        header = self._header + data
        if len(header) < 8:
            self._header = header
            return
        self._header = b""
        (self.requested,) = _HEADER.unpack_from(header)
        self.received = len(header) - 8
        if self.requested > self.maxDownload:
            log.info(
                "perf request for {requested} bytes from {peer} exceeds {limit}; resetting",
                requested=self.requested,
                peer=str(getattr(self.transport, "remotePeer", None)),
                limit=self.maxDownload,
            )
            self.transport.abortConnection()

    def readConnectionLost(self) -> None:
        if self.requested is None:
            log.info("perf stream closed before its 8-byte header; resetting")
            self.transport.abortConnection()
            return
        self._sender = _Sender(self.transport, self.requested, self.chunkSize,
                               self.transport.loseConnection)
        self._sender.start()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        if self._sender is not None:
            self._sender.stopProducing()


class PerfService:
    """
    The server's protocol factory: C{factory(stream) -> PerfServer}.
    """

    def __init__(self, maxDownload: int = MAX_DOWNLOAD, chunkSize: int = CHUNK_SIZE) -> None:
        _buffer(chunkSize)
        self.maxDownload = maxDownload
        self.chunkSize = chunkSize

    def __call__(self, stream) -> PerfServer:
        return PerfServer(self.maxDownload, self.chunkSize)


@implementer(IHalfCloseableProtocol)
class PerfClient(Protocol):
    """
    The client side of one perf run; L{done} fires with the result of
    L{perf}.

    Upload time runs from the start to the first byte of the answer (or its
    end, when nothing is downloaded): the server answers only once it has
    read the whole upload.  Download time runs from there to the end of
    the stream.
    """

    def __init__(self, clock, upload: int, download: int, chunkSize: int = CHUNK_SIZE) -> None:
        if upload < 0 or not 0 <= download < 1 << 64:
            raise ValueError("perf sizes must be non-negative (download < 2**64)")
        _buffer(chunkSize)
        self.clock = clock
        self.upload = upload
        self.download = download
        self.chunkSize = chunkSize
        self.received = 0
        self.done: Deferred = Deferred(self._cancel)
        self._start = None
        self._firstByte = None
        self._sender: _Sender | None = None

    def connectionMade(self) -> None:
        self._start = self.clock.seconds()
        self.transport.write(_HEADER.pack(self.download))
        self._sender = _Sender(self.transport, self.upload, self.chunkSize,
                               self.transport.loseConnection)
        self._sender.start()

    def dataReceived(self, data: bytes) -> None:
        if self._firstByte is None:
            self._firstByte = self.clock.seconds()
        self.received += len(data)
        if self.received > self.download:
            self._fail(PerfError(f"perf server sent more than the {self.download} bytes asked"))

    def readConnectionLost(self) -> None:
        end = self.clock.seconds()
        if self.received != self.download:
            self._fail(PerfError(f"perf server sent {self.received} of {self.download} bytes"))
            return
        uploaded = self._firstByte if self._firstByte is not None else end
        if not self.done.called:
            self.done.callback({
                "upload": (self.upload, uploaded - self._start),
                "download": (self.download, end - uploaded),
            })

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        if self._sender is not None:
            self._sender.stopProducing()
        if not self.done.called:
            self.done.errback(reason)

    def _fail(self, error: Exception) -> None:
        if not self.done.called:
            self.done.errback(Failure(error))
        self.transport.abortConnection()

    def _cancel(self, d: Deferred) -> None:
        d.errback(Failure(CancelledError("perf cancelled")))
        if self.transport is not None:
            self.transport.abortConnection()


async def perf(host, peerID, upload: int, download: int, chunkSize: int = CHUNK_SIZE,
               timeout: float | None = None) -> dict:
    """
    Run one perf exchange with C{peerID}: upload C{upload} bytes, download
    C{download}.

    @return: C{{"upload": (bytes, seconds), "download": (bytes, seconds)}},
        timed with C{host.clock}.
    @raise PerfError: if the server sends another number of bytes.
    @raise TimeoutError: after C{timeout} seconds, if given.
    """
    client = PerfClient(host.clock, upload, download, chunkSize)
    await host.newRawStream(peerID, [ID], client)
    d = client.done
    if timeout is not None:
        d.addTimeout(timeout, host.clock)
    try:
        return await d
    except defer.TimeoutError:
        raise TimeoutError(f"perf with {peerID} took more than {timeout} seconds") from None


def install(host, maxDownload: int = MAX_DOWNLOAD, chunkSize: int = CHUNK_SIZE) -> PerfService:
    """
    Serve perf on C{host} (opt-in: see the module docstring).
    """
    service = PerfService(maxDownload, chunkSize)
    host.setProtocolFactory(ID, service)
    return service
