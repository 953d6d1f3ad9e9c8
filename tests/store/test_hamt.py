"""
The HAMT of sharded UnixFS directories, without a store: hashing, layout,
reading, and what a broken shard gives.
"""

import hashlib

from hypothesis import given, strategies as st
from twisted.trial.unittest import TestCase

from tau.pb import unixfs_pb2
from tau.store import dagpb, hamt

DATA = unixfs_pb2.Data

# hamt-sharding 3.0.8's InfiniteHash over @multiformats/murmur3's murmur3-128
# (the hash ipfs-unixfs-importer 17 shards with), key "a": take(bits) again
# and again.  Past 64 bits it rehashes "a" + [1], "a" + [2]...
SLOTS_OF_A = {
    8: [133, 85, 85, 101, 246, 89, 120, 137, 151, 104, 28, 84, 126, 15, 233, 143, 36, 184, 124],
    4: [8, 5, 5, 5, 5, 5, 6, 5, 15, 6, 5, 9, 7, 8, 8, 9, 9, 7, 6, 8, 1, 12, 5, 4, 7, 14, 0, 15,
        14, 9, 8, 15, 2, 4, 11, 8, 7, 12],
    3: [4, 1, 2, 5, 2, 5, 2, 5, 3, 1, 3, 7, 3, 1, 3, 1, 3, 6, 1, 0, 4, 6, 2, 7, 3, 2, 0, 1, 6, 1,
        2, 4, 3, 7, 4, 0, 7, 7, 5, 1, 4, 3, 6, 2, 2, 2, 7, 0, 3, 7],
}


def cidFor(block: bytes) -> bytes:
    return b"\x01\x70\x12\x20" + hashlib.sha256(block).digest()


def rawCid(data: bytes) -> bytes:
    return b"\x01\x55\x12\x20" + hashlib.sha256(data).digest()


class MemoryNodes:
    def __init__(self, blocks):
        self.blocks = dict(blocks)
        self.loads = 0

    async def load(self, cid: bytes):
        self.loads += 1
        links, data = dagpb.decodeNode(self.blocks[cid])
        u = DATA()
        u.ParseFromString(data)
        return links, u


def sync(coroutine):
    """Run a coroutine that never waits (the loaders here answer at once)."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the coroutine waited")


def children(names):
    return [hamt.Child(n, rawCid(n.encode()), len(n)) for n in names]


def build(names, fanout=256):
    root, block, size, blocks = hamt.buildShard(children(names), cidFor, fanout)
    nodes = MemoryNodes(blocks)
    links, u = dagpb.decodeNode(block)
    parsed = DATA()
    parsed.ParseFromString(u)
    return root, links, parsed, size, nodes


class HashTests(TestCase):
    def test_murmur3x64_64(self):
        """
        h1 of murmur3 x64 128, as @multiformats/murmur3 gives it (its first
        8 bytes, big-endian).
        """
        for name, h1 in [(b"a", 0x85555565F6597889), (b"file-00000", 0x150C58E9E6F17E92),
                         (b"", 0), ("h\u00e9llo".encode(), 0x4E317B1172855C8A)]:
            self.assertEqual(hamt.HashBits(name).slot(0, 64), h1)

    def test_slotsMatchHamtSharding(self):
        for bits, want in SLOTS_OF_A.items():
            h = hamt.HashBits(b"a")
            self.assertEqual([h.slot(i, bits) for i in range(len(want))], want, bits)

    def test_fanoutChecked(self):
        for bad in (0, 4, 12, 100, 1 << 17):
            self.assertRaises(hamt.BadShard, hamt.fanoutBits, bad)
        self.assertEqual(hamt.fanoutBits(256), 8)
        self.assertEqual(hamt.prefixLength(256), 2)
        self.assertEqual(hamt.prefixLength(16), 1)
        self.assertEqual(hamt.prefixLength(4096), 3)


class LayoutTests(TestCase):
    def test_nodeFormat(self):
        """
        Links in slot order named by 2 uppercase hex digits (+ the name of
        an entry); Data: HAMTShard, the used-slot bitmap big-endian,
        hashType 0x22, fanout 256; Tsize cumulative.
        """
        names = [f"n{i}" for i in range(40)]
        _, links, u, size, nodes = build(names)
        self.assertEqual(u.Type, DATA.HAMTShard)
        self.assertEqual((u.hashType, u.fanout), (0x22, 256))
        slots = [int(l.name[:2], 16) for l in links]
        self.assertEqual(slots, sorted(slots))
        self.assertTrue(all(l.name[:2] == l.name[:2].upper() for l in links))
        self.assertEqual(int.from_bytes(u.Data, "big"), sum(1 << s for s in set(slots)))
        self.assertNotEqual(u.Data[0], 0)
        for link in links:
            slot = int(link.name[:2], 16)
            if len(link.name) > 2:
                self.assertEqual(hamt.HashBits(link.name[2:].encode()).slot(0, 8), slot)

    def test_collisionMakesSubShard(self):
        """
        Two names sharing the first byte of hash share a sub-shard named by
        the slot alone, where they sit at their second byte.
        """
        byFirst = {}
        for i in range(2000):
            name = f"c{i}"
            byFirst.setdefault(hamt.HashBits(name.encode()).slot(0, 8), []).append(name)
        a, b = next(v for v in byFirst.values() if len(v) >= 2)[:2]
        root, links, u, size, nodes = build([a, b, "other"])
        subs = [l for l in links if len(l.name) == 2]
        self.assertEqual(len(subs), 1)
        sub = nodes.blocks[subs[0].hash]
        subLinks, _ = dagpb.decodeNode(sub)
        self.assertEqual(sorted(l.name[2:] for l in subLinks), sorted([a, b]))
        self.assertEqual(subs[0].tsize, len(sub) + len(a) + len(b))
        self.assertEqual(size, len(nodes.blocks[root]) + sum(l.tsize for l in links))

    def test_orderDoesNotMatter(self):
        names = [f"x{i}" for i in range(3000)]
        self.assertEqual(build(names)[0], build(list(reversed(names)))[0])


class ReadTests(TestCase):
    async def test_entriesAndFind(self):
        names = [f"entry-{i}" for i in range(5000)] + ["h\u00e9llo", "sp ace"]
        root, links, u, _, nodes = build(names)
        found = await hamt.entries(nodes.load, links, u)
        self.assertEqual(sorted(n for n, _, _ in found), sorted(names))
        self.assertTrue(all(h == rawCid(n.encode()) for n, h, _ in found))
        for name in ["entry-17", "entry-4999", "h\u00e9llo"]:
            before = nodes.loads
            self.assertEqual(await hamt.find(nodes.load, links, u, name), (rawCid(name.encode()), len(name)))
            self.assertLessEqual(nodes.loads - before, 3)   # only the path down
        self.assertIsNone(await hamt.find(nodes.load, links, u, "entry-5000"))

    async def test_smallFanouts(self):
        for fanout in (8, 16, 1024):
            names = [f"f{i}" for i in range(500)]
            _, links, u, _, nodes = build(names, fanout)
            self.assertEqual(u.fanout, fanout)
            self.assertEqual(sorted(n for n, _, _ in await hamt.entries(nodes.load, links, u)), sorted(names))
            self.assertIsNotNone(await hamt.find(nodes.load, links, u, "f321"))

    @given(st.sets(st.text(min_size=1, max_size=12).filter(lambda s: "/" not in s), min_size=1, max_size=300),
           st.sampled_from([8, 16, 256]))
    def test_roundTrip(self, names, fanout):
        _, links, u, _, nodes = build(sorted(names), fanout)
        found = sync(hamt.entries(nodes.load, links, u))
        self.assertEqual(sorted(n for n, _, _ in found), sorted(names))
        for name in sorted(names)[:20]:
            self.assertEqual(sync(hamt.find(nodes.load, links, u, name)), (rawCid(name.encode()), len(name)))

    async def test_badShards(self):
        def node(hashType=0x22, fanout=256, names=("00a",), typ=DATA.HAMTShard):
            d = DATA(Type=typ, hashType=hashType, fanout=fanout, Data=b"\x01")
            return [dagpb.Link(rawCid(b"x"), n, 1) for n in names], d

        async def noLoad(cid):
            raise AssertionError("nothing to load")

        for bad in [node(hashType=0x12), node(fanout=100), node(fanout=0), node(names=("zz",)),
                    node(names=("0",)), node(names=("1G",)), node(typ=DATA.Directory)]:
            with self.assertRaises(hamt.BadShard):
                await hamt.entries(noLoad, *bad)
        # a sub-shard link that points at a plain directory
        links, u = node(names=("00",))

        async def loadDir(cid):
            return [], DATA(Type=DATA.Directory)
        with self.assertRaises(hamt.BadShard):
            await hamt.entries(loadDir, links, u)

    async def test_loopingShardStops(self):
        """
        A loader handing back the same sub-shard forever (not possible with
        real hashes, possible with a lying store) ends in BadShard.
        """
        links = [dagpb.Link(rawCid(b"x"), f"{i:02X}", 1) for i in range(256)]
        u = DATA(Type=DATA.HAMTShard, hashType=0x22, fanout=256, Data=b"\xff" * 32)

        async def same(cid):
            return links, u
        with self.assertRaises(hamt.BadShard):
            await hamt.find(same, links, u, "anything")

    async def test_repeatedSubShardRefused(self):
        """
        A shard whose 256 slots all link one sub-shard, which does the same
        a level down, and so on: listing it would take 256 ** depth loads;
        it is refused at the first repeat.
        """
        levels = [hashlib.sha256(b"level %d" % depth).digest() for depth in range(10)]
        u = DATA(Type=DATA.HAMTShard, hashType=0x22, fanout=256, Data=b"\xff" * 32)

        def nodeLinking(target):
            return [dagpb.Link(target, f"{i:02X}", 1) for i in range(256)]
        loads = []

        async def load(cid):
            loads.append(cid)
            nxt = levels.index(cid) + 1
            return (nodeLinking(levels[nxt]) if nxt < len(levels) else []), u
        with self.assertRaises(hamt.BadShard):
            await hamt.entries(load, nodeLinking(levels[0]), u)
        self.assertLessEqual(len(loads), 1)


class FuzzTests(TestCase):
    @given(st.lists(st.tuples(st.text("0123456789ABCDEFa\u00e9", max_size=5),
                              st.binary(min_size=1, max_size=3)), max_size=40),
           st.one_of(st.sampled_from([8, 16, 256]), st.integers(0, 1 << 20)),
           st.one_of(st.just(0x22), st.integers(0, 0x30)),
           st.text("0123456789ABCDEFa", min_size=1, max_size=4))
    def test_anyShardNode(self, links, fanout, hashType, name):
        """
        Whatever a shard node holds, reading it ends in entries, None or
        BadShard -- never another error, never a loop.
        """
        u = DATA(Type=DATA.HAMTShard, hashType=hashType, fanout=fanout)
        pbLinks = [dagpb.Link(h, n, 1) for n, h in links]
        stored = {h: (pbLinks, u) for _, h in links}

        async def load(cid):
            return stored[cid]
        for coroutine in (hamt.entries(load, pbLinks, u), hamt.find(load, pbLinks, u, name)):
            try:
                sync(coroutine)
            except hamt.BadShard:
                pass
