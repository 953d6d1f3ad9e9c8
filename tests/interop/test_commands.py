"""
Taubyte command streams between a js-libp2p client of our own
(tests/interop/js/taubyte.mjs, framing written from the spec sheet) and a
tau host serving a CommandRouter.
"""

import cbor2
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tau.services import frames
from tau.services.framework import CommandRouter, call
from tests.hosts import addressOf, startHost
from tests.interop.jspeer import startJsPeer

PROTOCOL = "/tns/v1"


class JsCommandTests(TestCase):
    timeout = 120

    async def setUp(self):
        self.tau = await startHost(self)
        self.router = CommandRouter(PROTOCOL, reactor)

        async def fetch(peer, body):
            return {"object": {"path": body["path"], "from": str(peer)}}

        self.router.define("fetch", fetch)
        self.router.install(self.tau)
        self.js = await startJsPeer(reactor)
        self.addCleanup(lambda: Deferred.fromCoroutine(self.js.stop()))
        await self.js.command("dial", addr=addressOf(self.tau))

    def send(self, name, body=None, **kwargs):
        return self.js.command("command", peer=str(self.tau.peerID), protocol=PROTOCOL, command=name, body=body, **kwargs)

    async def test_ping(self):
        result = await self.send("ping", {})
        self.assertLess(abs(result["answer"]["time"] - reactor.seconds()), 5)

    async def test_fetch(self):
        result = await self.send("fetch", {"path": ["projects", "P"]})
        self.assertEqual(result["answer"], {"object": {"path": ["projects", "P"], "from": self.js.peerId}})

    async def test_unknownCommand(self):
        result = await self.send("nope", {})
        self.assertEqual(result["error"], 'router: command "nope" not registered')

    async def test_badFrame(self):
        raw = frames.encodeFrame(cbor2.dumps({16: "ping"}), version=2)
        result = await self.send("ping", rawHex=raw.hex())
        self.assertIn("router: decoding command failed: bad version 2", result["error"])
        # the service goes on
        self.assertIn("time", (await self.send("ping", {}))["answer"])

    async def test_jsFramesAsGoDoes(self):
        # what js writes for ping {} is the spec sheet's hex, byte for byte:
        # a router that records the raw frame it read
        seen = []
        original = frames.FrameDecoder.feed

        def recording(decoder, data):
            seen.append(bytes(data))
            return original(decoder, data)

        self.patch(frames.FrameDecoder, "feed", recording)
        await self.send("ping", {})
        self.assertEqual(b"".join(seen).hex(), "01ec0100000a0000000000000000" "a2106470696e671840a0")
