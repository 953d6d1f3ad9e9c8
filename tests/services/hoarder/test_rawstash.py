"""
Taubyte's raw stash upgrade on a fleet's streams: C{stash {}} answered
C{{ready: true}}, then the C{push} frame and the raw bytes; the CID checked
against the bytes; the limits.
"""

from hypothesis import given, strategies as st
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tau.cids import cidText
from tau.services.commands import CommandError, decodeCBOR, encodeCommand
from tau.services.frames import FrameDecoder, FrameError
from tau.services.framework import readFrame
from tau.services.hoarder import PROTOCOL
from tau.services.hoarder.rawstash import MAX_HEADER, RawStashError, _read
from tests.services.hoarder.helpers import Fleet


class RawStashTests(TestCase):
    async def setUp(self):
        self.fleet = Fleet(self)
        self.nodes = await self.fleet.add(3)
        self.fleet.advance(1)
        self.monkey = self.fleet.plain()
        self.data = b"raw artefact bytes " * 5000
        self.cid = cidText((await self.fleet.plain().content.add(self.data)).cid)
        self.fleet.net[-1].down = True    # only the stream carries the bytes

    async def exchange(self, frames, raw=b"", caller=None):
        host = (caller or self.monkey).host
        stream = await host.newStream(self.nodes[0].peerID, [PROTOCOL])
        decoder = FrameDecoder(1 << 20)
        stream.write(encodeCommand("stash", {}))
        ready = decodeCBOR((await readFrame(stream, decoder)).payload)
        if ready != {"ready": True}:
            return ready
        for frame in frames:
            stream.write(frame)
        if raw:
            stream.write(raw)
        stream.closeWrite()
        answer = decodeCBOR((await readFrame(stream, decoder)).payload)
        stream.reset()
        return answer

    def holders(self):
        return sorted(n.me for n in self.fleet.running() if any(cidText(c) == self.cid for c in n.content.pinned))

    async def test_stashed(self):
        push = encodeCommand("push", {"cid": self.cid, "target": 2, "owner": "", "fanout": True})
        self.assertEqual(await self.exchange([push], self.data), {"cid": self.cid})
        self.assertEqual(len(self.holders()), 2)
        self.assertIn(self.nodes[0].me, self.holders())

    async def test_noFanout(self):
        push = encodeCommand("push", {"cid": self.cid, "fanout": False})
        self.assertEqual(await self.exchange([push], self.data), {"cid": self.cid})
        self.assertEqual(self.holders(), [self.nodes[0].me])

    async def test_cidMismatch(self):
        push = encodeCommand("push", {"cid": self.cid, "fanout": True})
        answer = await self.exchange([push], self.data + b"!")
        self.assertIn(f"cid mismatch: declared {self.cid}", answer["error"])
        self.assertEqual(self.holders(), [])
        self.assertEqual(self.nodes[0].content.pinned, [])

    async def test_noHeader(self):
        self.assertEqual(await self.exchange([]), {"error": "the stream ended before the push header"})

    async def test_headerLimit(self):
        frame = encodeCommand("push", {"cid": self.cid, "pad": "x" * MAX_HEADER})
        answer = await self.exchange([frame], self.data)
        self.assertIn(f"limit {MAX_HEADER}", answer["error"])

    async def test_bytesLimit(self):
        self.nodes[0].service.rawStash.maxBytes = len(self.data) - 1
        push = encodeCommand("push", {"cid": self.cid})
        self.assertIn(f"more than {len(self.data) - 1} bytes", (await self.exchange([push], self.data))["error"])
        self.nodes[0].service.rawStash.maxBytes = len(self.data)
        self.assertEqual(await self.exchange([push], self.data), {"cid": self.cid})

    async def test_outsider(self):
        answer = await self.exchange([], caller=self.fleet.plain(outsider=True))
        self.assertIn("is not a node of this cloud", answer["error"])


class _Bytes:
    def __init__(self, data, size=7):
        self.pieces = [data[i:i + size] for i in range(0, len(data), size)]

    async def readSome(self):
        return self.pieces.pop(0) if self.pieces else b""


class ReadTests(TestCase):
    @given(st.binary(max_size=300), st.integers(1, 40))
    def test_anyBytes(self, data, size):
        """
        Whatever comes on the stream, the reader answers a header and the
        bytes after it, or one of its errors.
        """
        d = Deferred.fromCoroutine(_read(_Bytes(data, size), 100))
        failures = []
        d.addErrback(lambda f: failures.append(f.trap(RawStashError, FrameError, CommandError)))
        self.assertTrue(d.called)

    def test_headerThenBytes(self):
        data = encodeCommand("push", {"cid": "x"}) + b"raw" * 10
        d = Deferred.fromCoroutine(_read(_Bytes(data, 5), 30))
        self.assertEqual(self.successResultOf(d), (("push", {"cid": "x"}), b"raw" * 10))
        d = Deferred.fromCoroutine(_read(_Bytes(data, 5), 29))
        self.failureResultOf(d, RawStashError)
