"""
The content service: adding, reading, pinning and providing UnixFS data,
the one place that does it for the control API and the services (as kubo's
coreapi does for its commands).  Adding a file or a folder stores it in one
write batch, then tells the peers waiting for it (Bitswap) and provides it
in the DHT.  Every failure is one of the typed errors below (or
L{StoreFull}), whoever calls.
"""

import json
import tarfile

from google.protobuf.message import DecodeError
from twisted.internet.defer import succeed
from twisted.internet.error import TimeoutError
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from zope.interface import implementer

from tau import tarstream
from tau.bitswap.client import FetchTimeout
from tau.diskfull import StoreFull
from tau.interfaces import IContent
from tau.store import unixfs, unixfsread
from tau.store.blockstore import BadBlock
from tau.store.chunker import Buzhash, FixedSize
from tau.store.service import NetworkBlocks
from tau.streams import withTimeout

__all__ = ["ContentService", "ContentError", "BadInput", "NotFound", "NotInTime", "NotPinned", "StoreFull",
           "MAX_DIRECTORY_ENTRIES", "params", "parse", "typed", "typedItems"]

#: Most entries in one folder added (a tar stream, an add/dir body).
MAX_DIRECTORY_ENTRIES = 100_000
#: How long a read waits for its first block by default, in seconds.
DEFAULT_TIMEOUT = 60.0

log = Logger()


class ContentError(Exception):
    """What went wrong with content; C{str()} says it."""


class BadInput(ContentError, ValueError):
    """Not a CID, not UnixFS, an unsafe path, not a tar stream, a bad chunker..."""


class NotPinned(BadInput):
    """Unpinning what is not pinned."""


class NotFound(ContentError):
    """A block the DAG needs is neither here nor (for a local-only operation) fetched."""


class NotInTime(ContentError):
    """No peer sent what was asked for in time."""


def parse(value):
    """
    A CID from a CID object, its text or bytes, or an C{/ipfs/CID} path.

    @raise BadInput: when it is none of these.
    """
    if not isinstance(value, (str, bytes)):
        return value
    text = value.split("/ipfs/")[-1].strip("/") if isinstance(value, str) else value
    try:
        return unixfsread._parse(text)
    except Exception:
        raise BadInput(f"{value!r} is not a CID") from None


def params(chunker=None):
    """
    The import parameters for a chunker named as kubo names it:
    C{size-N} (1024 <= N <= 1048576; C{size-262144} by default) or
    C{buzhash}.
    """
    chunker = chunker or "size-262144"
    if chunker == "buzhash":
        return unixfs.Params(chunker=Buzhash())
    if chunker.startswith("size-") and chunker[5:].isdigit() and 1024 <= int(chunker[5:]) <= 1 << 20:
        return unixfs.Params(chunker=FixedSize(int(chunker[5:])))
    raise BadInput("chunker must be size-N (1024 <= N <= 1048576) or buzhash")


async def typed(coroutine):
    """Await C{coroutine}, its failures as the content service's errors."""
    try:
        return await coroutine
    except (ContentError, StoreFull):
        raise
    except unixfsread.BlockMissing as e:
        raise NotFound(f"block {e} not found") from None
    except TimeoutError:
        raise NotInTime("not found in time (no peer sent it)") from None
    except FetchTimeout as e:
        raise NotInTime(str(e)) from None
    except (tarfile.TarError, EOFError) as e:   # a tar stream cut inside a file
        raise BadInput(f"not a valid tar stream: {e}") from None
    except (unixfsread.NotAFile, BadBlock, ValueError) as e:   # BadShard and BadTar are ValueErrors
        raise BadInput(str(e)) from None
    except DecodeError:
        raise BadInput("not a UnixFS node") from None


async def typedItems(iterator):
    """The items of the async iterator C{iterator}, its failures as in L{typed}."""
    iterator = iterator.__aiter__()
    while True:
        try:
            item = await typed(anext(iterator))
        except StopAsyncIteration:
            return
        yield item


@implementer(IContent)
class ContentService:
    """
    L{IContent} over the node's store, Bitswap and DHT.

    @param store: the L{tau.store.service.StoreService} (its C{blocks}, and
        C{get} that fetches what it lacks).
    @param notify: called with the CIDs of new blocks (Bitswap's
        C{notifyNewBlocks}), or None.
    @param routing: an L{tau.interfaces.IRouting} to provide in, or None.
    """

    def __init__(self, store, reactor, notify=None, routing=None):
        self.store = store
        self.reactor = reactor
        self.notify = notify
        self.routing = routing

    @property
    def _blocks(self):
        return self.store.blocks

    def _inThread(self, f, *args):
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f, *args)

    # adding

    async def add(self, source, pin=True, chunker=None):
        entry = await typed(unixfs.importFile(self._blocks, source, self.reactor, params=params(chunker), pin=pin))
        self._announce(entry.cid)
        return entry

    async def addFolder(self, entries, pin=True, chunker=None, onFile=None):
        root = await typed(unixfs.importDirectory(
            self._blocks, entries, self.reactor, params=params(chunker), pin=pin, onFile=onFile))
        self._announce(root.cid)
        return root

    async def addTar(self, stream, pin=True, chunker=None, onFile=None, maxEntries=MAX_DIRECTORY_ENTRIES):
        entries = tarstream.entries(stream, self._inThread, maxEntries)
        return await self.addFolder(entries, pin=pin, chunker=chunker, onFile=onFile)

    async def addDirectory(self, entries, pin=True, maxEntries=MAX_DIRECTORY_ENTRIES):
        if not isinstance(entries, dict) or len(entries) > maxEntries:
            raise BadInput(f"expected at most {maxEntries} entries, as a mapping of paths to CIDs")
        found = {}
        for path, value in entries.items():
            if not isinstance(path, str) or not all(unixfsread.safeName(name) for name in path.split("/")):
                raise BadInput(f"refusing the path {str(path)[:200]!r}: every name must be a single path "
                               "component (not empty, '.' or '..', no NUL)")
            try:
                found[path] = await typed(unixfsread.entryOf(self._blocks, parse(value)))
            except ContentError as e:
                raise type(e)(f"{path}: {e}") from None
        root = await typed(unixfs.buildDirectory(self._blocks, found, reactor=self.reactor))
        if pin:
            await typed(unixfsread.pinRecursive(self._blocks, root.cid))
        self._announce(root.cid)
        return root

    async def addDirectoryJSON(self, body, pin=True, maxEntries=MAX_DIRECTORY_ENTRIES):
        """
        L{addDirectory} of a JSON document C{{"entries": {"path": "CID"}}}
        (bytes).
        """
        try:
            entries = json.loads(body)["entries"]
        except (ValueError, KeyError, TypeError):
            entries = None
        if not isinstance(entries, dict):
            raise BadInput('expected a JSON body {"entries": {"path": "CID", ...}}')
        return await self.addDirectory(entries, pin=pin, maxEntries=maxEntries)

    # reading

    async def _first(self, iterator, timeout):
        """The first item of C{iterator} (None at its end), within C{timeout} seconds."""
        async def first():
            return await anext(iterator, None)
        return await typed(withTimeout(self.reactor, timeout, first()))

    async def cat(self, cid, offset=0, length=None, timeout=DEFAULT_TIMEOUT):
        c = parse(cid)
        if offset < 0 or (length is not None and length < 0):
            raise BadInput("offset and length must not be negative")
        chunks = unixfsread.cat(NetworkBlocks(self.store), c, offset, length).__aiter__()
        head = await self._first(chunks, timeout)

        async def rest():
            if head:
                yield head
            async for chunk in chunks:
                yield chunk
        return rest()

    async def get(self, cid, timeout=DEFAULT_TIMEOUT):
        c = parse(cid)
        blocks = NetworkBlocks(self.store)
        name = unixfs.cidText(c)
        entries = unixfsread.tree(blocks, c).__aiter__()
        head = await self._first(entries, timeout)

        async def archive():
            entry = head
            while entry is not None:
                path, child, size = entry
                full = f"{name}/{path}" if path else name
                yield tarstream.header(full, size)
                if size is not None:
                    sent = 0
                    async for chunk in unixfsread.cat(blocks, child):
                        sent += len(chunk)
                        if sent > size:
                            break
                        yield chunk
                    if sent != size:
                        raise unixfsread.NotAFile(f"{full}: {sent} bytes where the file says {size}")
                    yield tarstream.padding(size)
                entry = await anext(entries, None)
            yield tarstream.END
        return archive()

    async def ls(self, cid, timeout=DEFAULT_TIMEOUT):
        c = parse(cid)
        return await typed(withTimeout(self.reactor, timeout, unixfsread.ls(NetworkBlocks(self.store), c)))

    async def entry(self, cid, timeout=DEFAULT_TIMEOUT):
        c = parse(cid)
        return await typed(withTimeout(self.reactor, timeout, unixfsread.entryOf(NetworkBlocks(self.store), c)))

    async def has(self, cid):
        return await self._blocks.has(parse(cid))

    # pins and the repository

    async def pin(self, cid):
        c = parse(cid)
        return await typed(unixfsread.pinRecursive(NetworkBlocks(self.store), c, fetch=True))

    async def unpin(self, cid):
        c = parse(cid)
        if c not in await self._blocks.pins():
            raise NotPinned(f"{unixfs.cidText(c)} is not pinned")
        await unixfsread.unpinRecursive(self._blocks, c)

    async def pins(self):
        return list(await self._blocks.pins())

    async def gc(self, budget=None):
        return await self._blocks.gc(budget)

    async def stat(self):
        return await self._blocks.stat()

    # telling others

    def provide(self, cid):
        c = parse(cid)
        if self.notify is not None:
            self.notify([c])
        if self.routing is None:
            return succeed(0)
        return self.routing.provide(bytes(c.multihash))

    def _announce(self, c):
        """L{provide} in the background: a slow DHT must not hold up an add."""
        d = self.provide(c)
        d.addErrback(lambda f: log.info("providing {cid} failed: {why}", cid=unixfs.cidText(c), why=f.getErrorMessage()))

