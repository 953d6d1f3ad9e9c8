"""
Taubyte's raw stash upgrade (C{clients/p2p/hoarder/stash.go}), for
Taubyte's clients:

1. the client sends command C{stash {}}, the hoarder answers
   C{{ready: true}} (to a node of this cloud only);
2. the client sends the command frame C{push {cid, target, owner,
   fanout}};
3. then the artefact's raw bytes, unframed, and half-closes;
4. the hoarder imports them as one UnixFS file (the node's default
   chunking: 256 KiB chunks, raw leaves, CIDv1), checks that the CID is
   the one declared (nothing is kept when it is not), claims it, fans it
   out when asked, and answers C{{cid}} or C{{error}}.

At most L{MAX_BYTES} bytes are taken, within the fetch timeout.
"""

from twisted.internet.error import TimeoutError
from twisted.logger import Logger

from tau.cids import cidText
from tau.services.commands import CommandError, decodeCommand, encodeErrorResponse, encodeResponse
from tau.services.frames import FrameDecoder, FrameError, HEADER_SIZE
from tau.services.framework import Upgrade
from tau.services.hoarder.stash import BadStash, StashFailed, canonicalCID, checkTarget
from tau.streams import withTimeout

#: the largest push header, and the largest artefact
MAX_HEADER = 64 << 10
MAX_BYTES = 256 << 20

log = Logger()


class RawStashError(Exception):
    pass


async def _read(stream, maxBytes):
    """
    The push frame's C{(name, body)} and the raw bytes after it.
    """
    buffer = bytearray()
    header = None
    while True:
        data = await stream.readSome()
        if not data:
            break
        buffer += data
        if header is None and len(buffer) >= HEADER_SIZE:
            length = int.from_bytes(buffer[5:13], "little", signed=True)
            if not 0 <= length <= MAX_HEADER:
                raise RawStashError(f"a push header of {length} bytes (limit {MAX_HEADER})")
            if len(buffer) >= HEADER_SIZE + length:
                frames = FrameDecoder(MAX_HEADER).feed(bytes(buffer[:HEADER_SIZE + length]))
                header = decodeCommand(frames[0].payload)
                del buffer[:HEADER_SIZE + length]
        if len(buffer) > maxBytes:
            raise RawStashError(f"more than {maxBytes} bytes")
    if header is None:
        raise RawStashError("the stream ended before the push header")
    return header, bytes(buffer)


class RawStash:
    """
    @param content: L{tau.interfaces.IContent}.
    @param stasher: L{tau.services.hoarder.stash.Stasher}.
    @param isMember: C{async isMember(peer)}.
    """

    maxBytes = MAX_BYTES

    def __init__(self, content, stasher, isMember, clock):
        self.content = content
        self.stasher = stasher
        self.isMember = isMember
        self.clock = clock

    async def handle(self, peer, body):
        if not await self.isMember(peer):
            raise ValueError(f"{peer} is not a node of this cloud")
        return Upgrade({"ready": True}, self._receive)

    async def _receive(self, stream):
        try:
            answer = encodeResponse(await withTimeout(self.clock, self.stasher.fetchTimeout, self._stash(stream)))
        except (RawStashError, BadStash, StashFailed, FrameError, CommandError, ValueError, TimeoutError) as e:
            log.info("hoarder: a raw stash from {peer} failed: {why}", peer=str(stream.remotePeer), why=str(e))
            answer = encodeErrorResponse(str(e))
        stream.write(answer)
        stream.closeWrite()

    async def _stash(self, stream):
        (name, body), data = await _read(stream, self.maxBytes)
        if name != "push":
            raise RawStashError(f"expected the command push, found {name[:64]!r}")
        cid = canonicalCID(body.get("cid"))
        target = checkTarget(body.get("target") or None)
        owner = body.get("owner") if isinstance(body.get("owner"), str) else ""
        fanout = body.get("fanout") is True
        entry = await self.content.add(data, pin=True)
        got = cidText(entry.cid)
        if got != cid:
            await self.content.unpin(entry.cid)
            raise RawStashError(f"cid mismatch: declared {cid}, imported {got}")
        await self.stasher.receive(cid, target, owner[:256], fanout)
        return {"cid": cid}
