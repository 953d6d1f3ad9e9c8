"""
HAMT-sharded UnixFS directories (ipfs/specs, UnixFS "HAMTDirectory").

A sharded directory is a hash trie of dag-pb nodes of UnixFS type
``HAMTShard``.  Each node has ``fanout`` slots (256, 8 bits of hash per
level); an entry's slot at level ``k`` is the ``k``-th group of bits of the
hash of its name, most significant first.  The hash is murmur3-x64-64
(multihash 0x22): the first 64 bits (``h1``) of murmur3 x64 128, seed 0,
read big-endian; when a trie is deeper than 64 bits allow, the stream goes on
with the hash of ``name + bytes([1])``, then ``name + bytes([2])``...

In a node, a slot holds either one entry -- a link named ``"%02X" % slot +
name`` -- or a sub-shard holding every entry that shares the slot -- a link
named ``"%02X" % slot`` alone.  A slot turns into a sub-shard as soon as two
names share it, so the trie depends only on the set of names.  Links are in
slot order, the node's UnixFS ``Data`` is the bitmap of used slots
(big-endian, without leading zero bytes), ``hashType`` 0x22 and ``fanout``.
Tsize of a link is the cumulative size of what it points at; a node's own
cumulative size is its block length plus its links' Tsizes.

These are the layouts ``ipfs-unixfs-importer`` (helia) and boxo (kubo) write
and read, so a directory built here has their CID.  ``shouldShard`` holds the
rule of ipfs-unixfs-importer 17 for when a directory is sharded at all.

This module is pure: building returns blocks, reading works on decoded nodes
handed to it through a ``load`` callable.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Iterable, NamedTuple

import mmh3

from tau.pb import unixfs_pb2
from tau.store import dagpb
from tau.store.dagpb import Link

MURMUR3_X64_64 = 0x22
DEFAULT_FANOUT = 256
MIN_FANOUT, MAX_FANOUT = 8, 65536   # the spec's bounds; fanout is a power of two
MAX_DEPTH = 64                      # levels followed when reading (64 * 8 bits of hash)

# ipfs-unixfs-importer: DEFAULT_SHARD_SPLIT_THRESHOLD_BYTES, strategy 'links-bytes'
SHARD_SPLIT_THRESHOLD = 262144

DATA = unixfs_pb2.Data


class BadShard(ValueError):
    """A HAMT node breaks the format (hash type, fanout, link names, depth)."""


# -- hashing ----------------------------------------------------------------------

def _h1(value: bytes) -> int:
    """murmur3-x64-64 of ``value``: h1 of murmur3 x64 128, seed 0, unsigned."""
    return mmh3.hash64(value, 0, signed=False)[0]


class HashBits:
    """
    The bit stream of a name's hash, consumed from the most significant bit,
    extended with rehashes when 64 bits are not enough.
    """

    __slots__ = ("_value", "_words")

    def __init__(self, name: bytes):
        self._value = name
        self._words = [_h1(name)]

    def _word(self, i: int) -> int:
        while len(self._words) <= i:
            depth = len(self._words)
            self._words.append(_h1(self._value + bytes([depth & 0xFF])))
        return self._words[i]

    def slot(self, level: int, bits: int) -> int:
        """The slot index at ``level`` of a trie with ``bits`` bits per level."""
        start = level * bits
        out, taken = 0, 0
        while taken < bits:
            word, offset = divmod(start + taken, 64)
            n = min(bits - taken, 64 - offset)
            chunk = (self._word(word) >> (64 - offset - n)) & ((1 << n) - 1)
            out = (out << n) | chunk
            taken += n
        return out


def fanoutBits(fanout: int) -> int:
    if fanout < MIN_FANOUT or fanout > MAX_FANOUT or fanout & (fanout - 1):
        raise BadShard(f"fanout {fanout} is not a power of two in [{MIN_FANOUT}, {MAX_FANOUT}]")
    return fanout.bit_length() - 1


def prefixLength(fanout: int) -> int:
    """Hex digits of a link's slot prefix (2 for fanout 256)."""
    return len(f"{fanout - 1:X}")


# -- when to shard ---------------------------------------------------------------------

def linkWeight(name: str, cidBytes: int) -> int:
    """
    What one link adds to ipfs-unixfs-importer's 'links-bytes' estimate of a
    directory: UTF-8 length of the name plus the binary length of the CID.
    """
    return len(name.encode("utf-8")) + cidBytes


class ShardRule:
    """
    The rule of ipfs-unixfs-importer 17 (default 'links-bytes' strategy):
    after each entry put into a plain directory, the directory turns into a
    HAMT when the sum of L{linkWeight} over its children that already have a
    CID exceeds the threshold.  Children that already have a CID are the
    files and explicitly added directories; a subdirectory made implicitly
    by deeper paths counts nothing, since it has no CID before the final
    flush.  A directory that turned into a HAMT stays one.

    One instance per directory: L{put} and L{drop} keep the estimate.
    """

    __slots__ = ("threshold", "estimate", "sharded")

    def __init__(self, threshold: int = SHARD_SPLIT_THRESHOLD):
        self.threshold = threshold
        self.estimate = 0
        self.sharded = False

    def put(self, weight: int) -> None:
        self.estimate += weight

    def drop(self, weight: int) -> None:
        self.estimate -= weight

    def check(self) -> bool:
        if self.estimate > self.threshold:
            self.sharded = True
        return self.sharded


# -- building ----------------------------------------------------------------------------

class Child(NamedTuple):
    name: str
    cid: bytes      # binary CID
    tsize: int


def shardData(bitmap: int, fanout: int) -> bytes:
    """The UnixFS Data of a HAMT node with the used-slot ``bitmap``."""
    d = DATA(Type=DATA.HAMTShard, hashType=MURMUR3_X64_64, fanout=fanout)
    d.Data = bitmap.to_bytes(max(1, (bitmap.bit_length() + 7) // 8), "big")
    return d.SerializeToString()


def buildShard(children: Iterable[Child], cidFor: Callable[[bytes], bytes],
               fanout: int = DEFAULT_FANOUT):
    """
    The HAMT of ``children`` (distinct names).  ``cidFor(block)`` gives the
    binary CID of a node.  Returns ``(rootCid, rootBlock, tsize, blocks)``,
    ``blocks`` every node as ``(cid, block)``, sub-shards first.
    """
    bits = fanoutBits(fanout)
    pad = prefixLength(fanout)
    items = [(c, HashBits(c.name.encode("utf-8"))) for c in children]
    blocks: list[tuple[bytes, bytes]] = []

    def node(group, level):
        if level > MAX_DEPTH:
            raise BadShard("names whose hashes agree on every level")
        slots: dict[int, list] = {}
        for item in group:
            slots.setdefault(item[1].slot(level, bits), []).append(item)
        links, bitmap, total = [], 0, 0
        for slot in sorted(slots):
            members = slots[slot]
            bitmap |= 1 << slot
            label = f"{slot:0{pad}X}"
            if len(members) == 1:
                child = members[0][0]
                links.append(Link(child.cid, label + child.name, child.tsize))
                total += child.tsize
            else:
                cid, _, size = node(members, level + 1)
                links.append(Link(cid, label, size))
                total += size
        block = dagpb.encodeNode(links, shardData(bitmap, fanout))
        cid = cidFor(block)
        blocks.append((cid, block))
        return cid, block, len(block) + total

    cid, block, size = node(items, 0)
    return cid, block, size, blocks


# -- reading -------------------------------------------------------------------------------

# load(binary CID) -> (links, UnixFS Data) of that node
Loader = Callable[[bytes], Awaitable[tuple[list[Link], object]]]


def checkNode(u) -> tuple[int, int]:
    """(bits, prefix length) of a HAMT node, after checking its header."""
    if u.Type != DATA.HAMTShard:
        raise BadShard("a sub-shard link points at a node that is not a HAMT shard")
    if u.hashType != MURMUR3_X64_64:
        raise BadShard(f"hash type {u.hashType:#x} (only murmur3-x64-64, 0x22, is defined)")
    return fanoutBits(u.fanout), prefixLength(u.fanout)


def _slotOf(label: str, pad: int, fanout: int) -> int:
    prefix = label[:pad]
    if len(prefix) != pad or not all(c in "0123456789ABCDEF" for c in prefix):
        raise BadShard(f"link name {label!r} has no {pad}-digit slot prefix")
    slot = int(prefix, 16)
    if slot >= fanout:
        raise BadShard(f"link name {label!r}: slot beyond fanout {fanout}")
    return slot


async def entries(load: Loader, links: list[Link], u, level: int = 0,
                  concurrency: Callable | None = None):
    """
    Every entry ``(name, binary CID, tsize)`` of the HAMT whose root node is
    ``(links, u)``, in trie order.  Sub-shards are loaded with ``load``; the
    sub-shards of one node are loaded together through ``concurrency``
    (a callable taking a list of awaitables, returning their results in order),
    else one after another.

    A sub-shard linked twice is refused (a real HAMT never has one twice,
    since its entries would hash to two slots at once), so listing costs
    one load per distinct block, however the DAG was crafted.
    """
    out: list[tuple[str, bytes, int | None]] = []
    await _collect(load, links, u, level, concurrency, out, set())
    return out


async def _collect(load, links, u, level, concurrency, out, seen):
    if level > MAX_DEPTH:
        raise BadShard("sub-shards nested deeper than any hash allows")
    _, pad = checkNode(u)
    subs = []
    for link in links:
        label = link.name or ""
        _slotOf(label, pad, u.fanout)
        if len(label) == pad:
            if link.hash in seen:
                raise BadShard("the same sub-shard linked twice")
            seen.add(link.hash)
            subs.append((len(out), link))
            out.append(None)   # placeholder: keep trie order
        else:
            out.append((label[pad:], link.hash, link.tsize))
    if not subs:
        return
    loads = [load(link.hash) for _, link in subs]
    nodes = await concurrency(loads) if concurrency is not None else [await x for x in loads]
    parts = []
    for (i, _), (subLinks, subU) in zip(subs, nodes):
        part: list = []
        await _collect(load, subLinks, subU, level + 1, concurrency, part, seen)
        parts.append((i, part))
    # splice the sub-shards' entries in at their placeholders
    merged, at = [], 0
    for i, part in parts:
        merged.extend(out[at:i])
        merged.extend(part)
        at = i + 1
    merged.extend(out[at:])
    out[:] = merged


async def find(load: Loader, links: list[Link], u, name: str):
    """
    The entry ``(binary CID, tsize)`` called ``name`` in the HAMT whose root
    node is ``(links, u)``, loading only the nodes on its path; None if it
    is not there.
    """
    bits = None
    hashed = HashBits(name.encode("utf-8"))
    for level in range(MAX_DEPTH + 1):
        bits, pad = checkNode(u)
        label = f"{hashed.slot(level, bits):0{pad}X}"
        sub, found = None, None
        for link in links:
            got = link.name or ""
            if not got.startswith(label):
                continue
            if got == label:
                sub = link
            elif got[pad:] == name:
                if found is not None:
                    raise BadShard(f"the name {name!r} twice in one shard")
                found = link
        if found is not None:
            return found.hash, found.tsize
        if sub is None:
            return None
        links, u = await load(sub.hash)
    raise BadShard("sub-shards nested deeper than any hash allows")
