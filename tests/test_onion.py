"""
Onion services on a private Tor network (L{tests.torNetwork}): node A,
reachable only through its onion service on a tor it launches, is dialed
by node B through B's own running tor, answers pings and serves a block
over Bitswap; restarted from its root it keeps its onion address.
"""

import hashlib
import os
import stat
import sys
import time
from pathlib import Path

import cid as pycid
import multihash
import yaml
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SkipTest, TestCase

from tau.config import loadConfig
from tau.dialer import DialError
from tau.node import makeNode
from tau.protocols.ping import ping
from tau.tor.service import KEY_FILE
from tau.tor.transport import parseOnion
from tests.torNetwork import TorNetwork, torAvailable

#: Seconds the launched tor of a node may take to bootstrap and publish.
NODE_TOR_TIMEOUT = 120


def report(what, **figures):
    """
    Print measured figures with the test's output (reported, not checked).
    """
    print(f"[onion] {what}: " + ", ".join(f"{k}={v}" for k, v in figures.items()), file=sys.stderr)


def nodeConfig(root, shape, tor, listen=("/ip4/127.0.0.1/tcp/0",)):
    """
    The config of a node with no services, C{tor} as its tor section.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{shape}-extra.yaml"
    path.write_text(yaml.safe_dump({"services": [], "p2p-listen": list(listen), "tor": tor}), encoding="utf-8")
    return loadConfig(shape=shape, root=root, configFile=path)


async def connectOnion(host, addr, attempts=3):
    """
    C{host.connect(addr)}, tried again (C{attempts} in all) when it fails:
    A's tor returns once its descriptor reached one directory, and B's tor
    may ask another that is still receiving it.
    """
    for attempt in range(attempts):
        try:
            return await host.connect(addr, timeout=60)
        except DialError as e:
            if attempt == attempts - 1:
                raise
            report("onion dial failed, trying again", reason=str(e))


class OnionNetworkTests(TestCase):
    """
    One private Tor network for the whole scenario (starting one takes
    some 15-30 s).
    """

    timeout = 420

    def setUp(self):
        missing = torAvailable()
        if missing:
            raise SkipTest(missing)

    async def startNode(self, config):
        node = makeNode(config, reactor)
        node.startService()
        self.addCleanup(lambda: node.stopService() if node.running else None)
        await node.whenReady()
        return node

    async def test_onionOnlyNode(self):
        began = time.monotonic()
        net = TorNetwork(reactor, self.mktemp())
        self.addCleanup(net.stop)
        await net.start()
        clientB = await net.startClient("clientB")
        report("private network", clientBootstrapSeconds=round(time.monotonic() - began, 1))

        rootA = Path(self.mktemp())
        torA = {"enabled": True, "launch": True, "only": True, "onion": True, "port": 4242,
                "timeout": NODE_TOR_TIMEOUT, "options": net.clientOptionsMapping()}
        started = time.monotonic()
        a = await self.startNode(nodeConfig(rootA, "onion-a", torA))
        # only through Tor: no clear-net listener, nothing announced yet
        self.assertEqual(a.host.listenAddresses(), [])
        self.assertEqual(a.host.announcedAddresses(), [])
        await a.tor.whenReady()
        report("node A", torBootstrapSeconds=round(a.tor.bootstrapSeconds, 1),
               readySeconds=round(time.monotonic() - started, 1))
        onion = a.tor.onionAddress
        hostname, port = parseOnion(onion)
        self.assertEqual((len(hostname), port), (56 + len(".onion"), 4242))
        self.assertEqual(a.host.announcedAddresses(), [onion])
        self.assertEqual(a.announcedAddresses(), [f"{onion}/p2p/{a.config.peerID}"])
        keyFile = a.config.dataDir / KEY_FILE
        self.assertEqual(stat.S_IMODE(os.stat(keyFile).st_mode), 0o600)

        torB = {"enabled": True, "launch": False, "control": clientB.control, "onion": False, "timeout": NODE_TOR_TIMEOUT}
        b = await self.startNode(nodeConfig(self.mktemp(), "onion-b", torB))
        await b.tor.whenReady()
        self.assertIsNone(b.tor.onionAddress)

        started = time.monotonic()
        conn = await connectOnion(b.host, f"{onion}/p2p/{a.config.peerID}")
        report("B dials A's onion", seconds=round(time.monotonic() - started, 2))
        self.assertEqual(conn.remotePeer, a.config.peerID)
        self.assertEqual(conn.remoteAddr, onion)
        rtts = await ping(b.host, a.config.peerID, count=5, timeout=30)
        report("ping over the onion circuit", rttMs=[round(r * 1000, 1) for r in rtts])
        self.assertEqual(len(rtts), 5)

        data = os.urandom(50_000)
        c = pycid.make_cid(1, "raw", multihash.encode(hashlib.sha256(data).digest(), 0x12))
        await a.store.blocks.putMany([(c, data)], verified=True)
        started = time.monotonic()
        got = await b.bitswap.fetch(c, timeout=60)
        report("bitswap fetch of 50 kB over the onion", seconds=round(time.monotonic() - started, 2))
        self.assertEqual(got, data)

        # restarted from its root, A keeps its onion address
        await a.stopService()
        # B learns the circuit is gone when its tor tears it down (or at
        # the latest from yamux's keepalive); until then a dial would
        # reuse the dead connection
        started = time.monotonic()
        await conn.whenClosed().addTimeout(60, reactor)
        report("B sees stopped A's connection close", seconds=round(time.monotonic() - started, 2))
        self.assertIsNone(a.tor.tor)
        self.assertEqual(a.host.announcedAddresses(), [])
        again = await self.startNode(nodeConfig(rootA, "onion-a", torA))
        await again.tor.whenReady()
        self.assertEqual(again.tor.onionAddress, onion)
        self.assertEqual(again.config.peerID, a.config.peerID)
        # and B reaches it there again
        started = time.monotonic()
        conn = await connectOnion(b.host, f"{onion}/p2p/{a.config.peerID}")
        report("B dials restarted A's onion", seconds=round(time.monotonic() - started, 2))
        self.assertEqual(conn.remotePeer, a.config.peerID)
        self.assertEqual(len(await ping(b.host, a.config.peerID, count=1, timeout=30)), 1)

        # A's tor dies: A says so, withdraws its onion address, keeps running
        changes = []
        again.host.addChangeObserver(lambda: changes and not changes[-1].called and changes[-1].callback(None))
        again.tor._process.transport.signalProcess("KILL")
        while again.host.announcedAddresses():
            changes.append(Deferred().addTimeout(30, reactor))
            await changes[-1]
        self.assertEqual(again.host.announcedAddresses(), [])
        self.assertIsNone(again.tor.tor)
        self.assertIn("tor went away", str(again.tor.error))
        self.assertTrue(again.running)
