"""
Bitswap interop with helia (tests/interop/helia, installed with
C{npm ci --prefix tests/interop/helia}): helia fetches blocks from tau, and
tau fetches blocks from helia.  Skipped when node or the packages are missing.
"""

import hashlib
import json
import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

from tau import cids
from tau.bitswap import BitswapService
from tests.bitswap.fakes import MemoryBlockStore
from tests.hosts import addressOf, startHost
from tests.interop.jspeer import JS_DIR, JsPeerUnavailable, findNode

HELIA_DIR = JS_DIR.parent / "helia"


class _Node(ProcessProtocol):
    """
    A node process whose stdout is read line by line.
    """

    def __init__(self):
        self.lines = []
        self.err = b""
        self.exitCode = None
        self._buffer = b""
        self._waiter = None
        self.ended = Deferred()

    def outReceived(self, data):
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self.lines.append(line)
        self._wake()

    def errReceived(self, data):
        self.err = (self.err + data)[-20000:]

    def processEnded(self, reason):
        self.exitCode = reason.value.exitCode
        self.ended.callback(self.exitCode)
        self._wake()

    def _wake(self):
        d, self._waiter = self._waiter, None
        if d is not None:
            d.callback(None)

    async def line(self):
        while not self.lines:
            if self.exitCode is not None:
                raise RuntimeError(f"node exited ({self.exitCode}): {self.err.decode(errors='replace')[-2000:]}")
            self._waiter = Deferred()
            await self._waiter
        return self.lines.pop(0)


class HeliaMixin:
    """
    Start the helia scripts of tests/interop/helia; C{package} is the npm
    package the script needs.  No skip: CI installs node and the packages.
    """

    package = "@helia/bitswap"

    def setUp(self):
        self.node = findNode()
        if not (HELIA_DIR / "node_modules" / self.package).is_dir():
            raise JsPeerUnavailable(f"npm packages missing: npm ci --prefix {HELIA_DIR}")

    def spawn(self, script, *args):
        proto = _Node()
        transport = reactor.spawnProcess(
            proto,
            self.node,
            [self.node, "--import", "./polyfill.mjs", script, *args],
            env=dict(os.environ),
            path=str(HELIA_DIR),
        )

        def cleanup():
            if proto.ended.called:
                return None
            try:
                transport.signalProcess("KILL")
            except Exception:
                return None
            return proto.ended

        self.addCleanup(cleanup)
        return proto, transport


class HeliaInteropTests(HeliaMixin, TestCase):
    timeout = 90

    async def tauNode(self):
        host = await startHost(self)
        store = MemoryBlockStore()
        service = BitswapService(host, store, reactor=reactor, fetchTimeout=30.0)
        service.startService()
        self.addCleanup(service.stopService)
        return host, store, service

    async def test_heliaFetchesFromTau(self):
        """
        helia fetches a tiny, a 256 KiB and a 2 MiB block from tau and gets
        the same bytes.
        """
        host, store, service = await self.tauNode()
        blocks = [os.urandom(n) for n in (100, 256 * 1024, 2 * 1024 * 1024)]
        wanted = [store.add(b) for b in blocks]
        proto, _ = self.spawn("bitswap.mjs", "fetch", addressOf(host), *[cids.cidText(c) for c in wanted])
        result = json.loads(await proto.line())
        self.assertTrue(result["ok"], result.get("error"))
        self.assertEqual([b["sha256"] for b in result["blocks"]], [hashlib.sha256(b).hexdigest() for b in blocks])
        self.assertEqual(await proto.ended, 0)

    async def test_tauFetchesFromHelia(self):
        """
        tau fetches blocks helia stored, verifying each.
        """
        host, store, service = await self.tauNode()
        proto, transport = self.spawn("bitswap.mjs", "serve", str(300 * 1024), "3")
        info = json.loads(await proto.line())
        await host.connect(info["addr"])
        for text in info["cids"]:
            data = await service.fetch(text)
            self.assertEqual(len(data), 300 * 1024)
            self.assertTrue(cids.verifyBlock(cids.parseCID(text), data))
        transport.closeStdin()
        await proto.ended
