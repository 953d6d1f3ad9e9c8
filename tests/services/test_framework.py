"""
Command streams between two real hosts on loopback: a router and calls.
"""

import cbor2
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.trial.unittest import TestCase

from tau.services import frames
from tau.services.commands import RemoteError
from tau.services.framework import CommandRouter, ServiceError, call
from tests.hosts import addressOf, startHost

PROTOCOL = "/test/v1"


class FrameworkTests(TestCase):
    async def pair(self, **routerArgs):
        server = await startHost(self)
        client = await startHost(self)
        router = CommandRouter(PROTOCOL, reactor, **routerArgs)
        router.install(server)
        await client.connect(addressOf(server))
        return server, client, router

    async def rawExchange(self, client, server, data, close=False):
        stream = await client.newStream(server.peerID, [PROTOCOL])
        stream.write(data)
        if close:
            stream.closeWrite()
        [frame] = frames.FrameDecoder(1 << 20).feed(await stream.readToEnd(1 << 20))
        return cbor2.loads(frame.payload)

    async def test_pingAndCommand(self):
        server, client, router = await self.pair()

        async def add(peer, body):
            self.assertEqual(peer, client.peerID)
            return {"sum": body["a"] + body["b"]}

        router.define("add", add)
        self.assertEqual(await call(client, server.peerID, PROTOCOL, "add", {"a": 2, "b": 3}), {"sum": 5})
        answer = await call(client, server.peerID, PROTOCOL, "ping")
        self.assertLess(abs(answer["time"] - reactor.seconds()), 5)

    async def test_nullAnswer(self):
        server, client, router = await self.pair()

        async def nothing(peer, body):
            return None

        router.define("nothing", nothing)
        self.assertIsNone(await call(client, server.peerID, PROTOCOL, "nothing", {}))

    async def test_unknownCommand(self):
        server, client, router = await self.pair()
        e = await self.assertFailure(Deferred.fromCoroutine(call(client, server.peerID, PROTOCOL, "nope")), RemoteError)
        self.assertEqual(str(e), 'router: command "nope" not registered')

    async def test_defineAny(self):
        """
        A router with C{defineAny} serves every command name with it,
        C{ping} included.
        """
        server, client, router = await self.pair()

        async def every(peer, body):
            return {"seen": body["n"]}

        router.defineAny(every)
        self.assertEqual(await call(client, server.peerID, PROTOCOL, "ping", {"n": 1}), {"seen": 1})
        self.assertEqual(await call(client, server.peerID, PROTOCOL, "anything", {"n": 2}), {"seen": 2})

    async def test_handlerFailsServiceGoesOn(self):
        server, client, router = await self.pair()

        async def broken(peer, body):
            raise KeyError("gone")

        router.define("broken", broken)
        e = await self.assertFailure(Deferred.fromCoroutine(call(client, server.peerID, PROTOCOL, "broken")), RemoteError)
        self.assertEqual(str(e), "router: executing command \"broken\" failed: 'gone'")
        self.assertIn("time", await call(client, server.peerID, PROTOCOL, "ping"))

    async def test_commandAtAndPastLimit(self):
        server, client, router = await self.pair(maxMessage=64)

        async def size(peer, body):
            return {"n": len(body["x"])}

        router.define("size", size)
        # {16: "size", 64: {"x": bytes}}: 14 bytes of CBOR around the bytes
        fits = b"x" * 50
        self.assertEqual(len(cbor2.dumps({16: "size", 64: {"x": fits}})), 64)
        self.assertEqual(await call(client, server.peerID, PROTOCOL, "size", {"x": fits}), {"n": 50})
        e = await self.assertFailure(
            Deferred.fromCoroutine(call(client, server.peerID, PROTOCOL, "size", {"x": fits + b"x"})), RemoteError)
        self.assertIn("data frame of 65 bytes, limit 64", str(e))

    async def test_garbageAnsweredAsDecodingError(self):
        server, client, router = await self.pair()
        for data, why in ((b"\x00" * 14, "bad magic 0000"),
                          (frames.encodeFrame(b"\xff"), "not CBOR"),
                          (frames.encodeFrame(b"", frames.CLOSE), "a close frame instead of a command")):
            answer = await self.rawExchange(client, server, data, close=True)
            self.assertTrue(answer["error"].startswith("router: decoding command failed: "), answer)
            self.assertIn(why, answer["error"])
        self.assertIn("time", await call(client, server.peerID, PROTOCOL, "ping"))

    async def test_stalledCommandTimesOut(self):
        server, client, router = await self.pair(timeout=0.3)
        answer = await self.rawExchange(client, server, frames.encodeFrame(b"\xa0" * 10)[:20])
        self.assertIn("no answer in 0.3 seconds", answer["error"])

    async def test_exchangesPerPeerBounded(self):
        server, client, router = await self.pair(maxPerPeer=2)
        release = Deferred()
        entered = []

        async def hold(peer, body):
            entered.append(peer)
            await release
            return {"ok": True}

        router.define("hold", hold)
        held = [Deferred.fromCoroutine(call(client, server.peerID, PROTOCOL, "hold")) for _ in range(2)]
        while len(entered) < 2:
            d = Deferred()
            reactor.callLater(0.01, d.callback, None)
            await d
        e = await self.assertFailure(Deferred.fromCoroutine(call(client, server.peerID, PROTOCOL, "hold")), RemoteError)
        self.assertEqual(str(e), "too many exchanges at once (limit 2)")
        release.callback(None)
        for d in held:
            self.assertEqual(await d, {"ok": True})
        # the slots are free again
        self.assertEqual(await call(client, server.peerID, PROTOCOL, "hold"), {"ok": True})

    async def test_callTimesOut(self):
        server, client, router = await self.pair()

        cancelled = Deferred()

        async def never(peer, body):
            try:
                await Deferred()
            except CancelledError:
                cancelled.callback(None)
                raise

        router.define("never", never)
        e = await self.assertFailure(
            Deferred.fromCoroutine(call(client, server.peerID, PROTOCOL, "never", timeout=0.3)), ServiceError)
        self.assertIn("no answer in 0.3 seconds", str(e))
        # the caller reset its stream: the handler is cancelled, not left running
        await cancelled

    async def test_noSuchProtocol(self):
        server, client, router = await self.pair()
        await self.assertFailure(Deferred.fromCoroutine(call(client, server.peerID, "/other/v1", "ping")), ServiceError)
