"""
What one peer may make a host hold, on real loopback TCP: inbound streams
per protocol, and the memory of its streams once it is gone.
"""

import gc
import weakref

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tau.protocols import varint
from tau.protocols.yamux import StreamReset
from tests.hosts import addressOf, roundTrip, startHost

HOLD = "/test/hold/1.0.0"


async def hold(stream):
    """
    Keep the stream until the peer closes its side, then close ours.
    """
    await stream.readToEnd(10)
    stream.closeWrite()


async def until(condition, what):
    """
    Wait (a second at most) for C{condition()}.
    """
    for _ in range(100):
        if condition():
            return
        await deferLater(reactor, 0.01, lambda: None)
    raise AssertionError(f"still not {what} after a second")


class InboundStreamCapTests(TestCase):
    async def test_capPerProtocolPerPeer(self):
        """
        A peer may have exactly C{maxInbound} streams of a protocol open;
        the next one is reset, other protocols carry on, and once one
        closes there is room again.
        """
        a, b = await startHost(self), await startHost(self)
        b.setStreamHandler(HOLD, hold, maxInbound=2)
        await a.connect(addressOf(b))
        first, second, third = [await a.newStream(b.peerID, [HOLD]) for _ in range(3)]
        with self.assertRaises(StreamReset):
            await third.readToEnd(10)
        self.assertEqual(await roundTrip(a, b.peerID, b"echo"), b"echo")
        first.closeWrite()
        self.assertEqual(await first.readToEnd(10), b"")
        await until(lambda: first.transport.disconnected, "closed")
        fourth = await a.newStream(b.peerID, [HOLD])
        for stream in (second, fourth):
            stream.closeWrite()
            self.assertEqual(await stream.readToEnd(10), b"")


class ClosedConnectionTests(TestCase):
    async def test_streamsFreedByRefcount(self):
        """
        Once a peer's connection closes, the streams it had open, their
        protocols and what they buffered (an unfinished message) are freed
        without a garbage collection.
        """
        a, b = await startHost(self), await startHost(self)
        held = []

        async def swallow(stream):
            held.append((weakref.ref(stream), weakref.ref(stream.transport)))
            await stream.readLP(1 << 20)

        b.setStreamHandler(HOLD, swallow)
        conn = await a.connect(addressOf(b))
        for _ in range(3):
            stream = await a.newStream(b.peerID, [HOLD])
            stream.write(varint.encode(1 << 20) + bytes(100_000))
        await until(lambda: len(held) == 3 and all(len(ref()._buffer) == 100_000 for ref, _ in held), "buffered")
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)
        del stream
        await conn.close()
        await until(lambda: not b.connections(), "closed on the other side")
        self.assertEqual([(protocol(), transport()) for protocol, transport in held], [(None, None)] * 3)
