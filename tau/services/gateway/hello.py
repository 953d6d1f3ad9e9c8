"""
The server name (SNI) of a TLS ClientHello, read before the handshake
(RFC 8446 4.1.2, RFC 6066 3), sans-IO and bounded: the gateway peeks at
it to fetch the certificate for that name before it starts TLS.

L{serverName} takes the bytes a client sent so far and says: more bytes
needed (L{INCOMPLETE}), the name (or None when the hello names none), or
L{HelloError} when they are not a ClientHello.  The handshake message may
span several TLS records; at most L{MAX_HELLO} bytes of it are read.
"""

import re

#: the largest ClientHello read (bytes of the handshake message)
MAX_HELLO = 16 * 1024

INCOMPLETE = object()

_HANDSHAKE = 22
_CLIENT_HELLO = 1
_SERVER_NAME = 0
_HOST_NAME = 0
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\Z")


class HelloError(ValueError):
    """
    Bytes that are not a TLS ClientHello this parser accepts.
    """


def _records(data):
    """
    The handshake bytes in the records at the start of C{data}.
    """
    out = bytearray()
    offset = 0
    while offset + 5 <= len(data):
        kind, major, length = data[offset], data[offset + 1], int.from_bytes(data[offset + 3:offset + 5], "big")
        if kind != _HANDSHAKE:
            raise HelloError(f"record type {kind}, expected a handshake (22)")
        if major != 3:
            raise HelloError(f"record version {major}.{data[offset + 2]}, expected 3.x")
        if length == 0 or length > 16384:
            raise HelloError(f"record of {length} bytes")
        if offset + 5 + length > len(data):
            # a record still coming: its first bytes are the message's too
            out += data[offset + 5:]
            break
        out += data[offset + 5:offset + 5 + length]
        offset += 5 + length
        if len(out) > MAX_HELLO + 4:
            raise HelloError(f"ClientHello longer than {MAX_HELLO} bytes")
    return out


class _Reader:
    def __init__(self, data):
        self.data = data
        self.offset = 0

    def take(self, n, what):
        if self.offset + n > len(self.data):
            raise HelloError(f"{what} runs past the end of the ClientHello")
        part = self.data[self.offset:self.offset + n]
        self.offset += n
        return part

    def number(self, n, what):
        return int.from_bytes(self.take(n, what), "big")

    def vector(self, n, what):
        return self.take(self.number(n, what + " length"), what)


def _checkName(raw):
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        raise HelloError("server name is not ASCII") from None
    name = name.lower().rstrip(".")
    if not 0 < len(name) <= 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise HelloError(f"server name {name[:64]!r} is not a host name")
    return name


def _parse(hello):
    reader = _Reader(hello)
    reader.take(2, "client version")
    reader.take(32, "random")
    reader.vector(1, "session id")
    reader.vector(2, "cipher suites")
    reader.vector(1, "compression methods")
    if reader.offset == len(hello):
        return None  # no extensions
    extensions = _Reader(reader.vector(2, "extensions"))
    name = None
    seen = set()
    while extensions.offset < len(extensions.data):
        kind = extensions.number(2, "extension type")
        data = extensions.vector(2, "extension")
        if kind in seen:
            raise HelloError(f"extension {kind} twice")
        seen.add(kind)
        if kind != _SERVER_NAME:
            continue
        names = _Reader(_Reader(data).vector(2, "server name list"))
        while names.offset < len(names.data):
            nameType = names.number(1, "name type")
            raw = names.vector(2, "host name")
            if nameType == _HOST_NAME and name is None:
                name = _checkName(raw)
        if name is None:
            raise HelloError("a server name extension without a host name")
    return name


def serverName(data):
    """
    The server name the ClientHello at the start of C{data} asks for.

    @return: L{INCOMPLETE} when more bytes are needed, the name (lower
        case, no final dot), or None when the hello names none.
    @raise HelloError: when C{data} does not start with a ClientHello.
    """
    handshake = _records(bytes(data))
    if len(handshake) >= 1 and handshake[0] != _CLIENT_HELLO:
        raise HelloError(f"handshake message {handshake[0]}, expected a ClientHello (1)")
    if len(handshake) < 4:
        return INCOMPLETE
    length = int.from_bytes(handshake[1:4], "big")
    if length > MAX_HELLO:
        raise HelloError(f"ClientHello of {length} bytes, limit {MAX_HELLO}")
    if len(handshake) < 4 + length:
        return INCOMPLETE
    return _parse(bytes(handshake[4:4 + length]))
