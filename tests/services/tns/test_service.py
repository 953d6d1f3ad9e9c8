"""
The tns service on real hosts: its commands over p2p as the spec sheet has
them, what malformed input gets (an error to the caller, the service going
on, nothing stored changed), its limits at their edge, its config section,
and the announcement of replica changes.
"""

import struct

import cbor2
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from tau.errors import ConfigError
from tau.fakes import FakeKVDB, FakePubSub
from tau.project import compileProject
from tau.services import frames
from tau.services.commands import RemoteError
from tau.services.framework import call
from tau.services.tns import PROTOCOL
from tau.services.tns.config import TNSConfig
from tau.services.tns.service import TNSService
from tests.hosts import addressOf, startHost
from tests.project.helpers import PROJECT_ID
from tests.services.tns.helpers import shopProject
from twisted.internet import reactor


class ServiceTestCase(TestCase):
    config = TNSConfig()

    async def setUp(self):
        self.server = await startHost(self)
        self.peer = await startHost(self)       # a service of the cloud: trusted
        self.kvdb = FakeKVDB()
        self.pubsub = FakePubSub()
        self.service = TNSService(self.server, self.kvdb, self.pubsub, reactor, self.config,
                                  lambda peer: peer == self.peer.peerID)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        await self.service.whenReady()
        await self.peer.connect(addressOf(self.server))

    def command(self, name, body):
        return call(self.peer, self.server.peerID, PROTOCOL, name, body)

    async def raw(self, data):
        stream = await self.peer.newStream(self.server.peerID, [PROTOCOL])
        stream.write(data)
        [frame] = frames.FrameDecoder(1 << 23).feed(await stream.readToEnd(1 << 23))
        stream.reset()
        return cbor2.loads(frame.payload)


class P2PTests(ServiceTestCase):
    async def test_specVectors(self):
        """
        The spec sheet's bytes: C{fetch {path:["a","b"]}} and C{ping {}},
        as raw frames.
        """
        await self.command("push", {"path": ["a", "b"], "data": "x"})
        fetch = bytes.fromhex("01ec010000150000000000000000" "a2 10 65 6665746368 18 40 a1 64 70617468 82 6161 6162"
                              .replace(" ", ""))
        self.assertEqual(await self.raw(fetch), {"object": "x"})
        ping = bytes.fromhex("01ec0100000a0000000000000000" "a2 10 64 70696e67 18 40 a0".replace(" ", ""))
        self.assertEqual(set(await self.raw(ping)), {"time"})

    async def test_publishAndRead(self):
        compiled = compileProject(shopProject(self.mktemp()))
        for path, data in compiled.pushes("c1"):
            self.assertEqual(await self.command("push", {"path": path.split("/") if path else [], "data": data}),
                             {"pushed": True})
        self.assertEqual(await self.command("fetch", {"path": ["projects", PROJECT_ID, "branches", "main", "current"]}),
                         {"object": "c1"})
        keys = (await self.command("list", {"depth": 1}))["keys"]
        self.assertEqual(keys, [["branches"], ["domains"], ["http"], ["projects"], ["repositories"], ["wasm"]])


class MalformedTests(ServiceTestCase):
    config = TNSConfig(maxMessage=4096)

    async def test_badFramesAndBodies(self):
        await self.command("push", {"path": ["keep"], "data": {"a": 1}})
        before = self.kvdb.snapshot()
        header = b"\x01\xec\x01\x00\x00"
        push = lambda body: frames.encodeFrame(cbor2.dumps({16: "push", 64: body}), frames.DATA)  # noqa: E731
        cases = [
            (header + struct.pack("<q", -1) + b"\x00", "router: decoding command failed"),
            (header + struct.pack("<q", 1 << 40) + b"\x00", "router: decoding command failed"),
            (b"\x02\xfc" + b"\x00" * 12, "router: decoding command failed"),
            (frames.encodeFrame(b"\xa2\x10\x64pu", frames.DATA), "router: decoding command failed"),
            (frames.encodeFrame(b"\xff\xff", frames.DATA), "router: decoding command failed"),
            (frames.encodeFrame(cbor2.dumps({16: "delete", 64: {}}), frames.DATA), 'router: command "delete" not registered'),
            (push({"path": "keep", "data": 1}), 'failed: path: expected a list of text segments'),
            (push({"path": [1], "data": 1}), "failed: a path segment is non-empty text, found 1"),
            (push({"path": ["keep"], "data": {"../x": 1}}), "would escape its key"),
            (push({"path": ["keep"], "data": {1: 2}}), "a pushed map key is text, found 1"),
            (frames.encodeFrame(cbor2.dumps({16: "fetch", 64: {"path": None}}), frames.DATA),
             'router: executing command "fetch" failed: path: expected a list of text segments'),
            (frames.encodeFrame(cbor2.dumps({16: "lookup", 64: {"prefix": ["("], "regex": True}}), frames.DATA),
             'router: executing command "lookup" failed: prefix: not a regular expression'),
            (frames.encodeFrame(cbor2.dumps({16: "list", 64: {"depth": True}}), frames.DATA),
             'router: executing command "list" failed: depth: expected an integer'),
            (frames.encodeFrame(cbor2.dumps({16: "stats", 64: None}), frames.DATA),
             'router: executing command "stats" failed: stats action `None` not recognized'),
        ]
        for data, expected in cases:
            answer = await self.raw(data)
            self.assertIn(expected, answer.get("error", ""), data)
        # the service goes on, nothing stored changed
        self.assertIn("time", await self.command("ping", {}))
        self.assertEqual(self.kvdb.snapshot(), before)

    async def test_commandSizeLimit(self):
        """
        A command of exactly max-message bytes is served, one byte more is
        refused before it is read.
        """
        def padded(size):
            body = {"path": ["big"], "data": b""}
            payload = cbor2.dumps({16: "push", 64: body})
            body["data"] = b"\0" * (size - len(payload) - 2)  # a 2-byte length after the bytes head
            payload = cbor2.dumps({16: "push", 64: body})
            self.assertEqual(len(payload), size)
            return payload

        self.assertEqual(await self.raw(frames.encodeFrame(padded(4096), frames.DATA)), {"pushed": True})
        before = self.kvdb.snapshot()
        header = b"\x01\xec\x01\x00\x00" + struct.pack("<q", 4097) + b"\x00"
        self.assertEqual(await self.raw(header),
                         {"error": "router: decoding command failed: data frame of 4097 bytes, limit 4096"})
        self.assertEqual(self.kvdb.snapshot(), before)

    async def test_answerSizeLimit(self):
        """
        An answer past max-message is an error, not a cut frame.
        """
        await self.command("push", {"path": ["a"], "data": {"x": b"\0" * 2000, "y": b"\0" * 2000}})
        await self.command("push", {"path": ["a"], "data": {"z": b"\0" * 200}})
        answer = await self.raw(frames.encodeFrame(cbor2.dumps({16: "fetch", 64: {"path": ["a"]}}), frames.DATA))
        self.assertIn("answer of", answer["error"])


class AnnounceTests(TestCase):
    async def test_replicaChanged(self):
        """
        Every change of the replica (a push here, a merge of others') is
        announced on /tns/updates, the changes of 50 ms together; a stopped
        service announces nothing.
        """
        clock = Clock()
        kvdb, pubsub = FakeKVDB(), FakePubSub()
        host = type("Host", (), {"peerID": "me", "setStreamHandler": lambda *a: None,
                                 "removeHandler": lambda *a: None})()
        service = TNSService(host, kvdb, pubsub, clock, TNSConfig(), lambda peer: False)
        service.startService()
        await service.whenReady()
        await kvdb.put("tns@service:tns", b"/tns/v1/a", b"\x51\x01")
        await kvdb.put("tns@service:tns", b"/tns/v1/b", b"\x51\x01")
        clock.advance(0.049)
        self.assertEqual(pubsub.published, [])
        clock.advance(0.001)
        self.assertEqual(pubsub.published, [("/tns/updates", b"")])
        service.stopService()
        await kvdb.put("tns@service:tns", b"/tns/v1/c", b"\x51\x01")
        clock.advance(1)
        self.assertEqual(len(pubsub.published), 1)


class LocalTests(TestCase):
    async def test_localCallWaitsForStorage(self):
        """
        A call through C{local()} (what a tns client on the same node
        uses) made before tns's database is open waits for it, and what it
        pushes lands in tns's database, where the node reads it later.
        """
        opened = Deferred()

        class SlowKVDB(FakeKVDB):
            def whenReady(self):
                return opened.addCallback(lambda _: self)

        kvdb = SlowKVDB()
        host = type("Host", (), {"peerID": "me", "setStreamHandler": lambda *a: None,
                                 "removeHandler": lambda *a: None})()
        service = TNSService(host, kvdb, None, Clock(), TNSConfig(), lambda peer: False)
        local = service.local()
        service.startService()
        self.addCleanup(service.stopService)
        pushed = Deferred.fromCoroutine(local.call("push", {"path": ["a"], "data": "x"}))
        self.assertFalse(pushed.called)
        opened.callback(None)
        self.assertEqual(await pushed, {"pushed": True})
        self.assertEqual(await local.call("fetch", {"path": ["a"]}), {"object": "x"})
        self.assertEqual(list(kvdb.stored), ["tns@service:tns"])

    async def test_localCallWhenStartFailed(self):
        """
        When tns cannot open its database, a local call answers the reason
        as an error instead of waiting.
        """

        class BrokenKVDB(FakeKVDB):
            def whenReady(self):
                return fail(OSError("disk gone"))

        host = type("Host", (), {"peerID": "me", "setStreamHandler": lambda *a: None,
                                 "removeHandler": lambda *a: None})()
        service = TNSService(host, BrokenKVDB(), None, Clock(), TNSConfig(), lambda peer: False)
        service.startService()
        self.addCleanup(service.stopService)
        with self.assertRaises(RemoteError) as e:
            await service.local().call("fetch", {"path": ["a"]})
        self.assertIn("disk gone", str(e.exception))
        self.flushLoggedErrors(OSError)


class ConfigTests(TestCase):
    def test_defaults(self):
        self.assertEqual(TNSConfig.check("n.yaml", None), TNSConfig())
        self.assertEqual(TNSConfig.check("n.yaml", {"max-keys": 5, "replicas": 3, "write-timeout": 2}),
                         TNSConfig(maxKeys=5, replicas=3, writeTimeout=2.0))

    def test_errors(self):
        for value, text in [
            ({"max-keys": 0}, "tns.max-keys: expected a whole number of keys above 0, found 0"),
            ({"replicas": True}, "tns.replicas: expected a whole number of nodes above 0, found True"),
            ({"write-timeout": -1}, "tns.write-timeout: expected a positive number of seconds, found -1"),
            ({"nope": 1}, "tns.nope: unknown field (expected: max-keys, max-message, replicas, write-timeout)"),
            ([], "tns: expected a mapping with max-keys, max-message, replicas, write-timeout"),
        ]:
            with self.assertRaises(ConfigError) as e:
                TNSConfig.check("n.yaml", value)
            self.assertIn(text, str(e.exception))
