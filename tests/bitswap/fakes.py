"""
An in-memory block store with the API of L{tau.store.blockstore.BlockStore}.
"""

from twisted.internet.defer import Deferred

from tau import cids


class CorruptBlock(Exception):
    pass


class MemoryBlockStore:
    def __init__(self):
        self.blocks = {}
        self.corrupt = set()
        self.puts = 0
        self.gets = 0

    async def put(self, c, data):
        if not cids.verifyBlock(c, data):
            raise ValueError("data does not match the CID")
        self.puts += 1
        self.blocks[c.multihash] = bytes(data)

    async def putMany(self, blocks, verified=False):
        for c, data in blocks:
            if not verified and not cids.verifyBlock(c, data):
                raise ValueError("data does not match the CID")
            self.puts += 1
            self.blocks[c.multihash] = bytes(data)

    async def get(self, c):
        self.gets += 1
        if c.multihash in self.corrupt:
            raise CorruptBlock(cids.cidText(c))
        return self.blocks.get(c.multihash)

    async def has(self, c):
        return c.multihash in self.blocks

    async def size(self, c):
        data = self.blocks.get(c.multihash)
        return None if data is None else len(data)

    async def delete(self, c):
        self.blocks.pop(c.multihash, None)

    def add(self, data, codec=cids.RAW, version=1):
        """
        Store C{data} synchronously (for tests); return its CID.
        """
        c = cids.makeCID(data, codec, version)
        self.blocks[c.multihash] = bytes(data)
        return c


def settle(value=None):
    d = Deferred()
    d.callback(value)
    return d


def dagPbNode(links, data=b""):
    """
    A dag-pb node linking to C{links} (CIDs), with UnixFS-ish C{data}.
    """
    from tau.protocols import varint

    out = bytearray()
    for c in links:
        h = cids.cidToBytes(c)
        link = b"\x0a" + varint.encode(len(h)) + h + b"\x12\x00" + b"\x18\x01"
        out += b"\x12" + varint.encode(len(link)) + link
    if data:
        out += b"\x0a" + varint.encode(len(data)) + data
    return bytes(out)


def buildDAG(store, leaves, fanout=8, leafSize=1000, seed=0):
    """
    A balanced dag-pb DAG of C{leaves} raw leaves of C{leafSize} random
    bytes, C{fanout} links per node, stored in C{store}.

    @return: C{(root, [all CIDs], {cid: data})}.
    """
    import random

    rnd = random.Random(seed)
    allBlocks = {}
    level = []
    for _ in range(leaves):
        data = rnd.randbytes(leafSize)
        c = store.add(data)
        allBlocks[c] = data
        level.append(c)
    while len(level) > 1 or not any(c.codec == "dag-pb" for c in level):
        parents = []
        for i in range(0, len(level), fanout):
            node = dagPbNode(level[i : i + fanout], b"\x08\x02")
            c = store.add(node, cids.DAG_PB)
            allBlocks[c] = node
            parents.append(c)
        level = parents
    return level[0], list(allBlocks), allBlocks
