"""
What one peer can make a real node process hold (issue 13, item 1): an
attacker host in the test process against a twistd node on loopback, the
node's memory read from /proc.
"""

import re
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tau.bitswap.message import MAX_MESSAGE, PROTOCOL_120
from tau.bitswap.service import BitswapService
from tau.kad.messages import MAX_MESSAGE_SIZE
from tau.kad.messages import PROTOCOL_ID as KAD
from tau.kad.network import DHTService
from tau.kad.wire import MESSAGE_TIMEOUT
from tau.protocols import varint
from tests.hosts import startHost
from tests.processes import TWISTD, spawn, stopped

MiB = 1 << 20
#: what "memory returned" allows for the allocator's own keeping
SLACK = 8 * MiB


def rss(pid):
    """
    The resident memory of process C{pid}, in bytes.
    """
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def pause(seconds):
    return deferLater(reactor, seconds, lambda: None)


class MemoryAttackTests(TestCase):
    timeout = 120

    async def startNode(self):
        root = Path(self.mktemp()).resolve()
        node = spawn(reactor, TWISTD + ["-n", "--pidfile=", "taubyte", f"--root={root}", "--listen=/ip4/127.0.0.1/tcp/0"])
        self.addCleanup(stopped, node)
        await node.waitFor(b"reachable at")
        return node, re.search(r"reachable at (\S+)", node.output()).group(1)

    async def settled(self, pid):
        """
        The node's RSS once two readings a second apart agree within 1 MiB
        (at most 10 tries).
        """
        last = rss(pid)
        for _ in range(10):
            await pause(1.0)
            now = rss(pid)
            if abs(now - last) < MiB:
                return now
            last = now
        return last

    async def test_unfinishedMessagesPinLittle(self):
        """
        64 streams (32 kad, 32 bitswap: each protocol's cap) each holding a
        message of 4 MiB - 1 bytes but its last byte: the node's RSS grows
        by less than 64 MiB (the connection's receive budget resets the
        streams holding the most) and returns to within a few MiB of where
        it was within 5 s of the peer going away.
        """
        node, address = await self.startNode()
        pid = node.transport.pid
        attacker = await startHost(self)
        conn = await attacker.connect(address)
        peerID = conn.remotePeer
        before = await self.settled(pid)

        streams = []
        caps = (KAD, MAX_MESSAGE_SIZE, DHTService.maxInboundStreams), (PROTOCOL_120, MAX_MESSAGE, BitswapService.maxInboundStreams)
        for protocol, maximum, cap in caps:
            body = bytes(maximum - 2)  # one object shared by the streams
            for _ in range(cap):
                stream = await attacker.newStream(peerID, [protocol])
                stream.write(varint.encode(maximum - 1))
                stream.write(body)
                streams.append(stream)
        done = gatherResults([s.transport.whenDrained() for s in streams])
        peak = rss(pid)
        for _ in range(300):  # 30 s at most
            if done.called:
                break
            await pause(0.1)
            peak = max(peak, rss(pid))
        self.assertTrue(done.called, "the node neither took nor refused the messages in 30 s")
        for _ in range(10):
            await pause(0.1)
            peak = max(peak, rss(pid))
        reset = [s for s in streams if s.transport.disconnected]
        self.assertEqual(len(streams), 64)
        self.assertLess(peak - before, 64 * MiB, f"RSS {before / MiB:.1f} MiB before, {len(reset)} of 64 streams reset")
        self.assertTrue(0 < len(reset) < len(streams), f"{len(reset)} streams reset")

        await conn.close()
        after = rss(pid)
        for _ in range(50):  # 5 s at most
            if after - before < SLACK:
                break
            await pause(0.1)
            after = rss(pid)
        self.assertLess(after - before, SLACK, f"RSS {before / MiB:.1f} MiB before, peak +{(peak - before) / MiB:.1f} MiB")

    async def test_kadStreamsCapped(self):
        """
        A peer may have L{DHTService.maxInboundStreams} kad streams open on
        the node; the next one is reset, the open ones still work.
        """
        node, address = await self.startNode()
        attacker = await startHost(self)
        peerID = (await attacker.connect(address)).remotePeer
        cap = DHTService.maxInboundStreams
        streams = [await attacker.newStream(peerID, [KAD]) for _ in range(cap + 1)]
        for _ in range(50):
            if streams[-1].transport.disconnected:
                break
            await pause(0.1)
        self.assertEqual([s.transport.disconnected for s in streams], [False] * cap + [True])

    async def test_stalledKadRequestsReset(self):
        """
        Kad streams each holding a request that never ends are reset by the
        node once L{MESSAGE_TIMEOUT} seconds passed since its length (they
        used to stay open for good).
        """
        node, address = await self.startNode()
        attacker = await startHost(self)
        peerID = (await attacker.connect(address)).remotePeer
        streams = []
        for _ in range(DHTService.maxInboundStreams):
            stream = await attacker.newStream(peerID, [KAD])
            stream.write(varint.encode(100) + bytes(50))
            streams.append(stream)
        await pause(1.0)
        self.assertEqual([s.transport.disconnected for s in streams], [False] * len(streams))
        for _ in range(int(MESSAGE_TIMEOUT + 5) * 10):
            if all(s.transport.disconnected for s in streams):
                break
            await pause(0.1)
        self.assertEqual([s.transport.disconnected for s in streams], [True] * len(streams))
