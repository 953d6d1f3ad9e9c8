"""
The substrate's pubsub and p2p triggers (L{tau.services.substrate.triggers})
on a project compiled and published to tns's commands (on a fake kvdb),
read through the tns client, with a fake pubsub and a recording runner;
and one p2p command over real loopback hosts into the wasm runtime.
"""

import cbor2
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tau.fakes import FakePubSub
from tau.project import compileProject
from tau.project.indexes import multihash
from tau.services.commands import RemoteError
from tau.services.framework import call
from tau.services.substrate.triggers import (
    P2P_PROTOCOL,
    NoMatch,
    P2PTriggers,
    PubsubTriggers,
    decodeEnvelope,
    encodeEnvelope,
    topicOf,
)
from tau.services.substrate.wasm import Limits, Runtime
from tau.services.tns.client import TNSClient
from tests.hosts import addressOf, startHost
from tests.project.helpers import APP_ID, PROJECT_ID, write
from tests.services.tns.helpers import calls, makeCommands

ORDERS, EVENTS, CHAT = multihash("m-orders"), multihash("m-events"), multihash("m-chat")
ON_ORDER, ON_EVENT, LONELY, ON_CHAT = multihash("f-order"), multihash("f-event"), multihash("f-lonely"), multihash("f-chat")
SHOP, ADMIN, PING, STATS, GET = multihash("s-shop"), multihash("s-admin"), multihash("f-ping"), multihash("f-stats"), multihash("f-get")

EXECUTION = "execution: {timeout: 1s, memory: 1MB, call: handle}\nsource: .\n"


def project(root):
    """
    Messagings C{orders} and C{^ev-} (regex) with a pubsub function each, a
    pubsub function no messaging serves, a service C{/shop/v1} with a p2p
    function C{ping}; an application with a messaging C{chat} and its
    function, and a service C{/admin/v1} with a p2p function C{stats}.
    """
    return write(root, {
        "config.yaml": f"id: {PROJECT_ID}\nname: shop\n",
        "messaging/orders.yaml": f"id: {ORDERS}\nchannel: {{match: orders}}\n",
        "messaging/events.yaml": f"id: {EVENTS}\nchannel: {{match: '^ev-', regex: true}}\n",
        "functions/on_order.yaml": f"id: {ON_ORDER}\ntrigger: {{type: pubsub, channel: orders}}\n" + EXECUTION,
        "functions/on_event.yaml": f"id: {ON_EVENT}\ntrigger: {{type: pubsub, channel: ev-any}}\n" + EXECUTION,
        "functions/lonely.yaml": f"id: {LONELY}\ntrigger: {{type: pubsub, channel: nobody}}\n" + EXECUTION,
        "functions/get.yaml": f"id: {GET}\ntrigger: {{type: p2p, protocol: /shop/v1, command: get}}\n" + EXECUTION,
        "services/shop.yaml": f"id: {SHOP}\nprotocol: /shop/v1\n",
        "functions/ping.yaml": f"id: {PING}\ntrigger: {{type: p2p, protocol: /shop/v1, command: ping}}\n" + EXECUTION,
        "applications/back/config.yaml": f"id: {APP_ID}\n",
        "applications/back/messaging/chat.yaml": f"id: {CHAT}\nchannel: {{match: chat}}\n",
        "applications/back/functions/on_chat.yaml": f"id: {ON_CHAT}\ntrigger: {{type: pubsub, channel: chat}}\n" + EXECUTION,
        "applications/back/services/admin.yaml": f"id: {ADMIN}\nprotocol: /admin/v1\n",
        "applications/back/functions/stats.yaml": f"id: {STATS}\ntrigger: {{type: p2p, protocol: /admin/v1, command: stats}}\n" + EXECUTION,
    })


class Published(TestCase):
    async def setUp(self):
        commands, _, _ = makeCommands()
        self.tns = TNSClient(None, None, None, Clock(), calls=calls(commands))
        await self.tns.publish(compileProject(project(self.mktemp())), "c1")


class Runs:
    """
    A pubsub runner that records C{(function id, topic, data)}; with
    C{hold}, each run waits until L{release}.
    """

    def __init__(self, hold=False):
        self.calls = []
        self.hold = hold
        self.waiting = []
        self.running = 0
        self.most = 0
        self.fail = set()

    async def __call__(self, function, topic, data):
        self.calls.append((function["id"], topic, data))
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if self.hold:
                d = Deferred()
                self.waiting.append(d)
                await d
            if function["id"] in self.fail:
                raise RuntimeError("the function trapped")
        finally:
            self.running -= 1

    def release(self):
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(None)


class PubsubTests(Published):
    async def setUp(self):
        await super().setUp()
        self.pubsub = FakePubSub()
        self.runs = Runs()
        self.triggers = PubsubTriggers(self.pubsub, self.tns.fetch, self.runs, self.tns.lookup)
        self.addCleanup(lambda: Deferred.fromCoroutine(self.triggers.stop()))

    async def send(self, topic, data, source="elsewhere"):
        await self.pubsub.publish(topic, encodeEnvelope(1, source, data))

    async def test_subscribeProject(self):
        """
        Every pubsub function a messaging serves is subscribed on its
        channel's topic in its own scope; one no messaging serves is not.
        """
        topics = await self.triggers.subscribeProject(PROJECT_ID)
        expected = [topicOf(PROJECT_ID, None, "orders"), topicOf(PROJECT_ID, None, "ev-any"),
                    topicOf(PROJECT_ID, APP_ID, "chat")]
        self.assertEqual(sorted(topics), sorted(expected))
        self.assertEqual(sorted(self.pubsub.subscriptions), sorted(expected))
        self.assertEqual(topicOf(PROJECT_ID, None, "/orders"), multihash(PROJECT_ID) + "/orders")
        self.assertEqual(await self.triggers.subscribeProject("QmNoSuchProject"), [])

    async def test_subscribeAll(self):
        """
        The projects with a messaging are found through the
        C{p2p/pubsub/<mh>} index.
        """
        topics = await self.triggers.subscribeAll()
        self.assertEqual(len(topics), 3)
        self.assertEqual(self.triggers.topics(), sorted(topics))
        without = PubsubTriggers(self.pubsub, self.tns.fetch, self.runs)
        with self.assertRaises(RuntimeError):
            await without.subscribeAll()

    async def test_message(self):
        """
        A message runs the functions whose channel a messaging matching the
        message's channel also matches, with the envelope's data and the
        topic.
        """
        await self.triggers.subscribe(PROJECT_ID, None, "asker", "orders")
        topic = topicOf(PROJECT_ID, None, "orders")
        await self.send(topic, b"order 1")
        self.assertEqual(self.runs.calls, [(ON_ORDER, topic, b"order 1")])
        self.assertEqual(self.triggers.handled, 1)

    async def test_regex(self):
        """
        A channel a regex messaging matches runs the pubsub function whose
        channel that messaging also matches.
        """
        topic = await self.triggers.subscribe(PROJECT_ID, None, "asker", "ev-created")
        await self.send(topic, b"e")
        self.assertEqual(self.runs.calls, [(ON_EVENT, topic, b"e")])

    async def test_applicationScope(self):
        """
        In an application's scope, its messagings and functions count as
        well as the project's; its topic is C{mh(project + application)}.
        """
        chat = await self.triggers.subscribe(PROJECT_ID, APP_ID, "asker", "chat")
        orders = await self.triggers.subscribe(PROJECT_ID, APP_ID, "asker", "orders")
        self.assertEqual(chat, multihash(PROJECT_ID + APP_ID) + "/chat")
        await self.send(chat, b"hi")
        await self.send(orders, b"o")
        self.assertEqual(self.runs.calls, [(ON_CHAT, chat, b"hi"), (ON_ORDER, orders, b"o")])
        with self.assertRaises(NoMatch):
            await self.triggers.subscribe(PROJECT_ID, None, "asker", "chat")

    async def test_noMatch(self):
        """
        A channel no messaging serves, or one whose messaging serves no
        function, is refused; so is an empty or too long channel.
        """
        for channel in ("nobody", "unknown"):
            with self.assertRaises(NoMatch):
                await self.triggers.subscribe(PROJECT_ID, None, "asker", channel)
        for channel in ("", "/", "c" * 513):
            with self.assertRaises(ValueError):
                await self.triggers.subscribe(PROJECT_ID, None, "asker", channel)
        await self.triggers.subscribe(PROJECT_ID, None, "asker", "ev-" + "c" * 509)
        self.assertEqual(len(self.pubsub.subscriptions), 1)

    async def test_ownMessages(self):
        """
        A message whose source is the only resource that asked for the
        topic is not run; once another asked, it is; one that is not an
        envelope is dropped.
        """
        topic = await self.triggers.subscribe(PROJECT_ID, None, "asker", "orders")
        await self.send(topic, b"mine", source="asker")
        self.assertEqual((self.runs.calls, self.triggers.ignored), ([], 1))
        self.assertEqual(await self.triggers.subscribe(PROJECT_ID, None, "other", "orders"), topic)
        self.assertEqual(len(self.pubsub.subscriptions[topic]), 1)
        await self.send(topic, b"mine", source="asker")
        await self.pubsub.publish(topic, b"\xff not cbor")
        await self.pubsub.publish(topic, encodeEnvelope(2, 7, b"x")[:-1])
        self.assertEqual((len(self.runs.calls), self.triggers.ignored), (1, 3))

    async def test_publish(self):
        """
        C{publish} wraps the data in an envelope naming the resource, on the
        channel's topic; a channel nothing serves is refused.
        """
        await self.triggers.publish(PROJECT_ID, None, "fn1", "/orders", b"data")
        [(topic, raw)] = self.pubsub.published
        self.assertEqual((topic, decodeEnvelope(raw)), (topicOf(PROJECT_ID, None, "orders"), ("fn1", b"data")))
        with self.assertRaises(NoMatch):
            await self.triggers.publish(PROJECT_ID, None, "fn1", "nobody", b"data")

    async def test_maxTopics(self):
        """
        Exactly C{maxTopics} topics are subscribed; one more is refused,
        the same one again is not.
        """
        self.triggers.maxTopics = 2
        await self.triggers.subscribe(PROJECT_ID, None, "a", "orders")
        await self.triggers.subscribe(PROJECT_ID, None, "a", "ev-1")
        with self.assertRaises(ValueError):
            await self.triggers.subscribe(PROJECT_ID, None, "a", "ev-2")
        await self.triggers.subscribe(PROJECT_ID, None, "b", "orders")
        self.assertEqual(len(self.triggers.topics()), 2)

    async def test_maxRunning(self):
        """
        At most C{maxRunning} runs of one topic are under way; the other
        messages wait and run once one ends.  A run that fails is counted
        and the topic carries on.
        """
        self.runs.hold = True
        self.triggers.maxRunning = 2
        topic = await self.triggers.subscribe(PROJECT_ID, None, "a", "orders")
        for i in range(5):
            await self.send(topic, b"%d" % i)
        self.assertEqual((self.runs.running, len(self.runs.calls)), (2, 2))
        self.runs.fail.add(ON_ORDER)
        while len(self.runs.calls) < 5 or self.runs.running:
            self.runs.release()
        self.assertEqual(self.runs.most, 2)
        self.assertEqual([data for _, _, data in self.runs.calls], [b"0", b"1", b"2", b"3", b"4"])
        self.assertEqual(self.triggers.failed, 5)

    async def test_stop(self):
        """
        C{stop} cancels the subscriptions and waits for the runs under way.
        """
        self.runs.hold = True
        topic = await self.triggers.subscribe(PROJECT_ID, None, "a", "orders")
        await self.send(topic, b"x")
        stopped = Deferred.fromCoroutine(self.triggers.stop())
        self.assertFalse(stopped.called)
        self.assertEqual(self.pubsub.subscriptions[topic], [])
        self.runs.release()
        await stopped
        self.assertEqual(self.triggers.topics(), [])


class EnvelopeTests(SynchronousTestCase):
    @given(st.binary(max_size=64) | st.builds(cbor2.dumps, st.dictionaries(
        st.sampled_from(["0", "1", "2", 2]), st.integers() | st.text(max_size=8) | st.binary(max_size=8), max_size=3)))
    def test_anyBytes(self, raw):
        """
        Any bytes decode to C{(text, bytes)} or raise L{ValueError}.
        """
        try:
            source, data = decodeEnvelope(raw)
        except ValueError:
            return
        self.assertIsInstance(source, str)
        self.assertIsInstance(data, bytes)

    def test_deep(self):
        """
        Deep nesting is refused, not a crash.
        """
        self.assertRaises(ValueError, decodeEnvelope, b"\x81" * 100_000 + b"\x00")

    def test_roundTrip(self):
        """
        The envelope is go's struct with text keys "0", "1", "2".
        """
        raw = encodeEnvelope(3, "src", b"\x00d")
        self.assertEqual(cbor2.loads(raw), {"0": 3, "1": "src", "2": b"\x00d"})
        self.assertEqual(decodeEnvelope(raw), ("src", b"\x00d"))
        for bad in (cbor2.dumps([1]), cbor2.dumps({"1": 1, "2": b""}), cbor2.dumps({"2": "text"}), b"\xff"):
            self.assertRaises(ValueError, decodeEnvelope, bad)


class P2PRuns:
    def __init__(self, answer=b"pong"):
        self.calls = []
        self.answer = answer

    async def __call__(self, function, command, body, fromPeer, toPeer):
        self.calls.append((function["id"], function["application"], command, body, fromPeer, toPeer))
        return self.answer


class P2PTests(Published):
    async def setUp(self):
        await super().setUp()
        self.runs = P2PRuns()
        self.triggers = P2PTriggers(self.tns.fetch, self.runs, "local-peer")

    def body(self, command="ping", protocol="/shop/v1", application="", **extra):
        return {"matcher": {"Project": PROJECT_ID, "Application": application, "Protocol": protocol,
                            "Command": command}, "data": b"hi", **extra}

    async def test_command(self):
        """
        The function whose service and command are the matcher's runs with
        the body (matcher dropped, command and protocol set) and the peers;
        its answer is C{{data}}.
        """
        self.assertEqual(await self.triggers.handle("remote", self.body(extra=1)), {"data": b"pong"})
        self.assertEqual(self.runs.calls, [(PING, None, "ping",
                                            {"data": b"hi", "extra": 1, "command": "ping", "protocol": "/shop/v1"},
                                            "remote", "local-peer")])
        self.runs.answer = None
        self.assertEqual(await self.triggers.handle("remote", self.body("get")), {})

    async def test_application(self):
        """
        A service and function of an application are found with its id in
        the matcher (keys in any case), not without it.
        """
        body = self.body("stats", "/admin/v1", APP_ID)
        body["matcher"] = {k.lower(): v for k, v in body["matcher"].items()}
        self.assertEqual(await self.triggers.handle("remote", body), {"data": b"pong"})
        self.assertEqual(self.runs.calls[0][:2], (STATS, APP_ID))
        with self.assertRaises(NoMatch) as e:
            await self.triggers.handle("remote", self.body("stats", "/admin/v1"))
        self.assertEqual(str(e.exception), "no services found on protocol /admin/v1")

    async def test_refused(self):
        """
        No matcher, a bad one, no data, an unknown command or protocol, an
        unknown project: refused, nothing runs.
        """
        cases = [
            ({"data": b""}, ValueError, "matcher not found in command"),
            ({"matcher": {"Project": 1}, "data": b""}, ValueError, "decoding matcher failed: Project must be text"),
            ({"matcher": {"Command": "ping"}, "data": b""}, ValueError, "decoding matcher failed: no Project"),
            ({"matcher": self.body()["matcher"]}, ValueError, "missing data in body"),
            (self.body("nope"), NoMatch, "no P2P function serves command 'nope' on protocol /shop/v1"),
            (self.body(protocol="/other/v1"), NoMatch, "no services found on protocol /other/v1"),
        ]
        for body, error, why in cases:
            with self.assertRaises(error) as e:
                await self.triggers.handle("remote", body)
            self.assertTrue(str(e.exception).startswith(why), str(e.exception))
        other = self.body()
        other["matcher"]["Project"] = "QmNoSuchProject"
        with self.assertRaises(NoMatch):
            await self.triggers.handle("remote", other)
        self.assertEqual(self.runs.calls, [])


ECHO = """
(module
 (import "taubyte/sdk" "getP2PEventDataSize" (func $size (param i32 i32) (result i32)))
 (import "taubyte/sdk" "getP2PEventData" (func $data (param i32 i32) (result i32)))
 (import "taubyte/sdk" "writeP2PResponse" (func $respond (param i32 i32 i32) (result i32)))
 (memory (export "memory") 1)
 (data (i32.const 16) "echo:")
 (func (export "handle") (param $ev i32)
   (drop (call $size (local.get $ev) (i32.const 0)))
   (drop (call $data (local.get $ev) (i32.const 21)))
   (drop (call $respond (local.get $ev) (i32.const 16) (i32.add (i32.const 5) (i32.load (i32.const 0))))))
)
"""


class LoopbackTests(Published):
    async def test_p2pCommand(self):
        """
        A command (named as the user's command, C{ping} here) sent to
        C{/substrate/p2p/v1} of a real host runs the function in the wasm
        runtime and answers what it wrote; a refused one answers the
        router's error.
        """
        runtime = Runtime(reactor)
        runtime.start()
        self.addCleanup(lambda: Deferred.fromCoroutine(runtime.stop()))
        cid = await runtime.load(ECHO.encode())
        server, client = await startHost(self), await startHost(self)

        async def run(function, command, body, fromPeer, toPeer):
            self.assertEqual((fromPeer, toPeer), (client.peerID, server.peerID))
            return await runtime.callP2P(cid, function["config"]["call"], command, body, fromPeer, toPeer,
                                         Limits.ofFunction(function["config"]))

        P2PTriggers(self.tns.fetch, run, server.peerID).router(reactor).install(server)
        await client.connect(addressOf(server))
        matcher = {"Project": PROJECT_ID, "Application": "", "Protocol": "/shop/v1", "Command": "ping"}
        answer = await call(client, server.peerID, P2P_PROTOCOL, "ping", {"matcher": matcher, "data": b"hello"})
        self.assertEqual(answer, {"data": b"echo:hello"})
        e = await self.assertFailure(Deferred.fromCoroutine(
            call(client, server.peerID, P2P_PROTOCOL, "ping", {"data": b"hello"})), RemoteError)
        self.assertEqual(str(e), 'router: executing command "ping" failed: matcher not found in command')
