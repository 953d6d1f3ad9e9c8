"""
File interop with helia over Bitswap (tests/interop/helia/files.mjs, with
C{@helia/unixfs}): a helia node reads, by CID, a 20 MiB file a tau node
imported, and a tau node fetches a 20 MiB file helia added.  The tau side
is a real host and a real L{BlockStore} in a temp dir.
"""

import hashlib
import json
import os
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase

from tau.bitswap import BitswapService
from tau.store import unixfs, unixfsread
from tau.store.blockstore import BlockStore
from tests.bitswap.test_helia import HeliaMixin
from tests.hosts import addressOf, startHost

SIZE = 20 * 1024 * 1024
#: Seconds any single wait on the helia process may take.
WAIT = 60.0


def deterministicBytes(size, seed="tau"):
    """
    The bytes files.mjs serve-file makes: block i of 32 bytes is
    sha256(f"{seed}:{i}").
    """
    out = b"".join(hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range((size + 31) // 32))
    return out[:size]


def bounded(coro, seconds=WAIT):
    """
    Await C{coro} (a coroutine or a Deferred), failing with
    C{TimeoutError} after C{seconds}.
    """
    d = ensureDeferred(coro)
    d.addTimeout(seconds, reactor)
    return d


class HeliaFileInteropTests(HeliaMixin, TestCase):
    timeout = 180
    package = "@helia/unixfs"

    def setUp(self):
        super().setUp()
        self.pool = ThreadPool(2, 4, name="test-helia-files-io")
        self.pool.start()
        self.addCleanup(self.pool.stop)

    async def tauNode(self):
        store = BlockStore(Path(self.mktemp()), reactor, self.pool)
        await store.open()
        self.addCleanup(lambda: Deferred.fromCoroutine(store.close()))
        host = await startHost(self)
        service = BitswapService(host, store, reactor=reactor, fetchTimeout=WAIT)
        service.startService()
        self.addCleanup(service.stopService)
        return host, store, service

    async def test_heliaCatsFileFromTau(self):
        """
        tau imports 20 MiB with the UnixFS importer; helia, dialled to tau
        and nothing else, reads the file by CID with C{unixfsread.cat} and gets
        the same bytes.
        """
        host, store, service = await self.tauNode()
        data = os.urandom(SIZE)
        entry = await unixfs.importFile(store, data, reactor, self.pool)
        cid = unixfs.cidText(entry.cid)
        proto, _ = self.spawn("files.mjs", "cat-file", addressOf(host), cid, str(int(WAIT * 1000)))
        result = json.loads(await bounded(proto.line(), WAIT + 15))
        self.assertTrue(result["ok"], result.get("error"))
        self.assertEqual(result["size"], SIZE)
        self.assertEqual(result["sha256"], hashlib.sha256(data).hexdigest())
        self.assertEqual(await bounded(proto.ended), 0)
        self.assertGreaterEqual(service.stat()["bytesSent"], SIZE)

    async def test_tauFetchesFileHeliaAdded(self):
        """
        helia adds 20 MiB of known bytes with C{unixfs.addBytes}; tau, dialled
        to helia and nothing else, fetches the whole DAG by CID into its
        block store, and C{unixfsread.cat} then gives back exactly those bytes
        without the network.
        """
        host, store, service = await self.tauNode()
        proto, transport = self.spawn("files.mjs", "serve-file", str(SIZE), "tau")
        info = json.loads(await bounded(proto.line()))
        self.assertTrue(info["ok"], info.get("error"))
        expected = deterministicBytes(SIZE, "tau")
        self.assertEqual(info["sha256"], hashlib.sha256(expected).hexdigest())
        await bounded(host.connect(info["addr"]))
        fetched = await bounded(service.fetchDAG(info["cid"], timeout=WAIT))
        self.assertGreaterEqual(fetched["bytes"], SIZE)
        transport.closeStdin()
        self.assertEqual(await bounded(proto.ended), 0)
        got = []

        async def cat():
            async for piece in unixfsread.cat(store, info["cid"]):
                got.append(piece)

        await bounded(cat())
        self.assertEqual(b"".join(got), expected)
