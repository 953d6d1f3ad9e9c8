"""
CID parity with helia, live: tests/interop/helia/cids.mjs runs
ipfs-unixfs-importer 17 (default options) and @helia/unixfs 8 (addByteStream /
addAll, default options) over deterministic bytes, and tau's importer must
give the same CIDs -- L{unixfs.DEFAULT} for the first, L{unixfs.HELIA_UNIXFS}
for the second.  Sharded directories helia built are read back through
tau's exporter (ls, path lookup, cat).

The bytes are the AES-128-CTR keystream under key sha256(seed)[:16], IV 0,
computed the same way on both sides.  L{RecordedVectorTests} checks tau
alone against the CIDs helia gave for the same cases, without node.
"""

import base64
import hashlib
import json

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tau.pb import unixfs_pb2
from tau.store import dagpb, unixfs, unixfsread
from tests.bitswap.fakes import MemoryBlockStore
from tests.bitswap.test_helia import HeliaMixin


def _keystream(seed: str):
    key = hashlib.sha256(seed.encode("utf-8")).digest()[:16]
    return Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()


def bytesOf(size: int, seed: str) -> bytes:
    return _keystream(seed).update(bytes(size))


class StreamOf:
    """A binary file object reading ``size`` keystream bytes, never all held."""

    def __init__(self, size: int, seed: str):
        self._left = size
        self._cipher = _keystream(seed)

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        self._left -= n
        return self._cipher.update(bytes(n))


def _pad(prefix: str, length: int) -> str:
    return prefix + "x" * (length - len(prefix))


FILES = [
    (0, "empty"),
    (1, "one"),
    (262144, "chunk"),
    (262145, "chunk+1"),
    (1 << 20, "mib"),
    ((1 << 20) + 1, "mib+1"),
    (10 << 20, "10mib"),
    (100 << 20, "100mib"),
]


def _flatShard():
    # 3006 links of 60 + 36 bytes: over 256 KiB, so a HAMT; a few empty
    # directories and a file of two chunks among them
    out = []
    for i in range(3000):
        path = _pad(f"f-{i:05d}-", 60)
        out.append((path, 300000 if i == 7 else (i * 37) % 2000, path))
    out += [(_pad(f"e-{i:05d}-", 60), None, "") for i in range(0, 3000, 500)]
    return out


def _threshold(extra: int):
    # 4096 links of exactly 64 bytes weigh 262144: not over the threshold;
    # one byte more is
    out = [(_pad(f"t-{i:04d}-", 28), 8, f"t{i}") for i in range(4096)]
    out[0] = (_pad("t-0000-", 28 + extra), 8, "t0")
    return out


def _nested():
    # 2000 subdirectories with long names under the root: were they counted
    # (they are not, having no CID while the tree is built) the root would
    # be a HAMT; and a sharded directory two levels down
    out = [(_pad(f"d-{i:04d}-", 100) + "/f", 4, f"d{i}") for i in range(2000)]
    out += [("zz/inner/" + _pad(f"g-{i:05d}-", 60), 4, f"g{i}") for i in range(3000)]
    out.append(("readme", 10, "readme"))   # the importer checks the root after this put
    return out


def _smallFanout(prefix):
    out = [(_pad(f"{prefix}-{i:04d}-", 20), i % 50, f"{prefix}{i}") for i in range(300)]
    out += [(f"sub/{prefix}-{i:03d}", 3, f"s{i}") for i in range(50)]
    return out


# name -> (entries, ipfs-unixfs-importer options, tau Params fields, read helia's blocks)
DIRS = {
    "flat-shard": (_flatShard(), {}, {}, True),
    "at-threshold": (_threshold(0), {}, {}, False),
    "over-threshold": (_threshold(1), {}, {}, False),
    "nested": (_nested(), {}, {}, False),
    "fanout16": (_smallFanout("h"), {"shardFanoutBits": 4, "shardSplitThresholdBytes": 1000},
                 {"shardFanout": 16, "shardThreshold": 1000}, True),
    "fanout8": (_smallFanout("k"), {"shardFanoutBits": 3, "shardSplitThresholdBytes": 1000},
                {"shardFanout": 8, "shardThreshold": 1000}, True),
}

PRESETS = {"importer": unixfs.DEFAULT, "helia": unixfs.HELIA_UNIXFS}

# What cids.mjs printed (ipfs-unixfs-importer 17.1.1, @helia/unixfs 8.0.5).
# size or name: (ipfs-unixfs-importer, @helia/unixfs)
RECORDED_FILES = {
    0: ("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
         "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"),
    1: ("bafkreiemev2isidd7gk7352wxtqh6rwbuumt4vgnkkbx5wi6giaizt2bvq",
         "bafkreiemev2isidd7gk7352wxtqh6rwbuumt4vgnkkbx5wi6giaizt2bvq"),
    262144: ("bafkreid7a6a4bbawvmtzgo3vbn4mwd7vpmdl5gb4tvxx5iq4nfeyj6uwqu",
              "bafkreid7a6a4bbawvmtzgo3vbn4mwd7vpmdl5gb4tvxx5iq4nfeyj6uwqu"),
    262145: ("bafybeicvqn3phmijzxjrgimndzngzbs5twqqtmnvz2yxjvgjpxndv5nqnm",
              "bafkreicmw5nvgfq5b4f3fpnqws5rlys2jyivpscrbllcitgorvlbewij5m"),
    1048576: ("bafybeig4bw7nngrataapkznh7foyqkjdvh5q3rxfd5d73ht34ab7r5qggu",
               "bafkreicleon2tdbholfilgruhjy3ckdw33cikkdwfipjauthrnkty6kxpy"),
    1048577: ("bafybeido7fpcwfyy6oqju7souudbeattzwr3dzwb23vhy54wcacxoh25ju",
               "bafybeig7uqz553bi4yelig5nxhlpm2qqe6e3i7ytu4ajcgyoe7mlexanyu"),
    10485760: ("bafybeicehpl45skzyqbgbnxwdrqbazqtien6bfs5lkm74sd6aqa3dpevxy",
                "bafybeiddwz6fqnhuswj32shlb3ftvdufjlmzghan65zhtoxpnd6dtdhegq"),
    104857600: ("bafybeidu7rppelezshhfhzcrgp4buuglnwkhzm7cmfc3upv5qwlwuz6xoy",
                 "bafybeiflcvpfttiswrvsivsunprysa5igpeedizpg3qtc2fh3wq7kahhx4"),
}
RECORDED_DIRS = {
    "flat-shard": ("bafybeia6blhvbppeolmeg3l7m4vkvqpytaakz4ennc4hu6dcjrpdmojkie",
                    "bafybeicznhoo3t7nqj5dvyskdfvpron5z5d5mwra3i3mstamfrgrxvtitq"),
    "at-threshold": ("bafybeiex5jiabd44nzj2dveypdndbdgrtbbfhcrdtzyfovm5vejpqhwy5q",
                      "bafybeiex5jiabd44nzj2dveypdndbdgrtbbfhcrdtzyfovm5vejpqhwy5q"),
    "over-threshold": ("bafybeih2omh6dp6wldw3h2eu5vwobb4r5txcnqsng7d3p4l7ocwzxf3364",
                        "bafybeih2omh6dp6wldw3h2eu5vwobb4r5txcnqsng7d3p4l7ocwzxf3364"),
    "nested": ("bafybeic2havqdolrsk3joicthjkt6zhbjpmpehttjptduhnm42djsn7i7y",
                "bafybeic2havqdolrsk3joicthjkt6zhbjpmpehttjptduhnm42djsn7i7y"),
    "fanout16": ("bafybeidq4epozmtcdzrvk22axv7ybmissmfdyfht2vh4y7rbaxgfomagwi",
                  "bafybeidq4epozmtcdzrvk22axv7ybmissmfdyfht2vh4y7rbaxgfomagwi"),
    "fanout8": ("bafybeiexle6jdxoiboudpsnl65nzkhmji63fkgs5gud3b4aqiynmg7ujem",
                 "bafybeiexle6jdxoiboudpsnl65nzkhmji63fkgs5gud3b4aqiynmg7ujem"),
}


def _params(preset, fields):
    from dataclasses import replace
    return replace(PRESETS[preset], **fields)


class _Discard:
    """A block store that keeps nothing (only CIDs are compared)."""

    async def putMany(self, blocks, verified=False):
        pass


async def tauFile(size, seed, preset):
    e = await unixfs.importFile(_Discard(), StreamOf(size, seed), reactor, params=PRESETS[preset])
    return unixfs.cidText(e.cid)


async def tauDir(name, preset, store=None):
    entries, _, fields, _ = DIRS[name]
    source = [(path, None if size is None else bytesOf(size, seed)) for path, size, seed in entries]
    e = await unixfs.importDirectory(store or MemoryBlockStore(), source, reactor, params=_params(preset, fields))
    return e


def _isShard(store, c):
    _, data = dagpb.decodeNode(store.blocks[c.multihash])
    u = unixfs_pb2.Data()
    u.ParseFromString(data)
    return u.Type == unixfs_pb2.Data.HAMTShard


class RecordedVectorTests(TestCase):
    """tau's importer against the CIDs helia gave (no node needed)."""

    timeout = 120

    async def test_files(self):
        got = {size: (await tauFile(size, seed, "importer"), await tauFile(size, seed, "helia"))
               for size, seed in FILES}
        self.assertEqual(got, RECORDED_FILES)

    async def test_directories(self):
        got = {}
        for name in DIRS:
            got[name] = tuple([unixfs.cidText((await tauDir(name, p)).cid) for p in PRESETS])
        self.assertEqual(got, RECORDED_DIRS)

    async def test_thresholdIsStrict(self):
        """
        Links weighing exactly the threshold stay a plain directory, one
        byte more makes a HAMT; subdirectories weigh nothing.
        """
        for name, sharded in [("at-threshold", False), ("over-threshold", True), ("nested", False)]:
            store = MemoryBlockStore()
            e = await tauDir(name, "importer", store)
            self.assertEqual(_isShard(store, e.cid), sharded, name)
        store = MemoryBlockStore()
        e = await tauDir("nested", "importer", store)
        inner = await unixfsread.resolve(store, e.cid, "zz/inner")
        self.assertTrue(_isShard(store, inner))


class LiveHeliaCidTests(HeliaMixin, TestCase):
    """
    helia's importers run now, over the same bytes as tau's.
    """

    package = "ipfs-unixfs-importer"
    timeout = 180

    async def heliaCids(self, files, dirs, blocks):
        spec = {
            "files": [{"size": size, "seed": seed} for size, seed in files],
            "dirs": [{"name": name, "entries": [list(e) for e in DIRS[name][0]], "options": DIRS[name][1],
                      "blocks": blocks} for name in dirs],
        }
        proto, transport = self.spawn("cids.mjs")
        transport.write(json.dumps(spec).encode("utf-8"))
        transport.closeStdin()
        answer = json.loads(await proto.line())
        self.assertTrue(answer["ok"], answer.get("error"))
        self.assertEqual(await proto.ended, 0)
        return answer

    async def test_sameCids(self):
        """
        Files of 0 B to 100 MiB and directories plain and sharded (fanout
        256, 16 and 8; at and over the threshold; nested): helia's CID is
        tau's, for both of helia's defaults.
        """
        answer = await self.heliaCids(FILES, list(DIRS), blocks=False)
        helia, tau = {}, {}
        for (size, seed), got in zip(FILES, answer["files"]):
            for preset in PRESETS:
                helia[f"{size} B, {preset}"] = got[preset]
                tau[f"{size} B, {preset}"] = await tauFile(size, seed, preset)
        for name in DIRS:
            for preset in PRESETS:
                helia[f"{name}, {preset}"] = answer["dirs"][name][preset]
                tau[f"{name}, {preset}"] = unixfs.cidText((await tauDir(name, preset)).cid)
        self.assertEqual(tau, helia)
        # the two defaults differ where they should (1 MiB vs 256 KiB chunks)
        self.assertNotEqual(helia["262145 B, importer"], helia["262145 B, helia"])

    async def test_readHeliaShards(self):
        """
        The blocks helia's importer wrote for sharded directories (fanout
        256, 16, 8, and a sharded subdirectory): tau lists them, finds each
        path in them and reads each file back byte for byte.
        """
        names = [name for name, (_, _, _, blocks) in DIRS.items() if blocks]
        answer = await self.heliaCids([], names, blocks=True)
        for name in names:
            entries = DIRS[name][0]
            store = MemoryBlockStore()
            for text in answer["dirs"][name]["blocks"]:
                data = base64.b64decode(text)
                store.add(data)   # keyed by multihash, as helia's store
            root = answer["dirs"][name]["importer"]
            self.assertTrue(_isShard(store, unixfsread._parse(root)), name)
            top = {path.split("/")[0] for path, _, _ in entries}
            listed = await unixfsread.ls(store, root)
            self.assertEqual(sorted(n for n, _, _ in listed), sorted(top), name)
            for path, size, seed in entries:
                c = await unixfsread.resolve(store, root, path)
                if size is None:
                    self.assertEqual(await unixfsread.ls(store, c), [], path)
                    continue
                got = b"".join([p async for p in unixfsread.cat(store, c)])
                self.assertEqual(got, bytesOf(size, seed), path)
            self.assertIsNone(await unixfsread.lookup(store, root, "no such name"))
            walked = {c.multihash async for c in unixfsread.walkDag(store, root)}
            self.assertEqual(walked, set(store.blocks), name)
