"""
Pubsub and p2p functions run by the substrate service
(L{tau.services.substrate.service} wiring L{tau.services.substrate.triggers}
to its L{tau.services.substrate.runner.FunctionRunner}): a WAT module
published in a project with messagings, a database, a p2p service and
functions of every trigger; tns on a fake kvdb, builds in a
L{FakeContent}, the node's pubsub a L{FakePubSub}, the functions'
databases in a L{FakeKVDB}; p2p commands from another real host.
"""

import cbor2
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool
from wasmtime import wat2wasm

from tau.cids import cidText
from tau.fakes import FakeContent, FakeKVDB, FakePubSub
from tau.project import compileProject
from tau.project.indexes import assetKey, multihash
from tau.services.commands import RemoteError
from tau.services.framework import call
from tau.services.substrate.config import SubstrateConfig
from tau.services.substrate.service import SubstrateService
from tau.services.substrate.triggers import P2P_PROTOCOL, decodeEnvelope, encodeEnvelope, topicOf
from tau.services.substrate.wasm import errno
from tau.services.tns.client import TNSClient
from tests.hosts import addressOf, startHost
from tests.project.helpers import IDS, PROJECT_ID, write
from tests.services.tns.helpers import calls, makeCommands

SDK = "taubyte/sdk"
HOST = "shop.example.com"
ON_ORDER, ON_REPLY, PING, BOOM, SUBSCRIBE, PUBLISH, NOTHING, DB, ORDERS, REPLIES = IDS
DOMAIN, SHOP = multihash("d-shop"), multihash("s-shop")

# 0 a size, 4 a channel's size, 8 a database id, 12 an errno byte; 16 "store",
# 32 "orders", 48 "replies", 64 "nothing"; 1024 a channel; 4091 "echo:"
# followed by the data at 4096
GUEST = f"""
(module
 (import "{SDK}" "getMessageDataSize" (func $dataSize (param i32 i32) (result i32)))
 (import "{SDK}" "getMessageData" (func $data (param i32 i32) (result i32)))
 (import "{SDK}" "getMessageChannelSize" (func $channelSize (param i32 i32) (result i32)))
 (import "{SDK}" "getMessageChannel" (func $channel (param i32 i32) (result i32)))
 (import "{SDK}" "newDatabase" (func $newDatabase (param i32 i32 i32) (result i32)))
 (import "{SDK}" "databasePut" (func $put (param i32 i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "setSubscriptionChannel" (func $subscribe (param i32 i32) (result i32)))
 (import "{SDK}" "publishToChannel" (func $publish (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "getP2PEventDataSize" (func $p2pSize (param i32 i32) (result i32)))
 (import "{SDK}" "getP2PEventData" (func $p2pData (param i32 i32) (result i32)))
 (import "{SDK}" "writeP2PResponse" (func $respond (param i32 i32 i32) (result i32)))
 (import "{SDK}" "readHttpEventBody" (func $read (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "eventHttpWrite" (func $write (param i32 i32 i32 i32) (result i32)))
 (memory (export "memory") 1)
 (data (i32.const 16) "store")
 (data (i32.const 32) "orders")
 (data (i32.const 48) "replies")
 (data (i32.const 64) "nothing")
 (data (i32.const 4091) "echo:")

 ;; a pubsub message: its data put in database "store" under its channel's
 ;; name; a message on "orders" is published again on "replies"
 (func (export "record") (param $ev i32)
   (drop (call $dataSize (local.get $ev) (i32.const 0)))
   (drop (call $data (local.get $ev) (i32.const 4096)))
   (drop (call $channelSize (local.get $ev) (i32.const 4)))
   (drop (call $channel (local.get $ev) (i32.const 1024)))
   (if (i32.eqz (call $newDatabase (i32.const 16) (i32.const 5) (i32.const 8))) (then
     (drop (call $put (i32.load (i32.const 8)) (i32.const 1024) (i32.load (i32.const 4))
                      (i32.const 4096) (i32.load (i32.const 0))))))
   (if (i32.eq (i32.load (i32.const 4)) (i32.const 6)) (then
     (drop (call $publish (i32.const 48) (i32.const 7) (i32.const 4096) (i32.load (i32.const 0)))))))

 ;; a p2p command: "echo:" and its data
 (func (export "ping") (param $ev i32)
   (drop (call $p2pSize (local.get $ev) (i32.const 0)))
   (drop (call $p2pData (local.get $ev) (i32.const 4096)))
   (drop (call $respond (local.get $ev) (i32.const 4091) (i32.add (i32.const 5) (i32.load (i32.const 0))))))

 (func (export "boom") (param $ev i32) unreachable)

 (func $answer (param $ev i32) (param $e i32)
   (i32.store8 (i32.const 12) (local.get $e))
   (drop (call $write (local.get $ev) (i32.const 12) (i32.const 1) (i32.const 0))))

 ;; HTTP: setSubscriptionChannel("orders"), ("nothing"); publishToChannel("orders", body)
 (func (export "subscribe") (param $ev i32)
   (call $answer (local.get $ev) (call $subscribe (i32.const 32) (i32.const 6))))
 (func (export "subscribeNothing") (param $ev i32)
   (call $answer (local.get $ev) (call $subscribe (i32.const 64) (i32.const 7))))
 (func (export "publish") (param $ev i32)
   (drop (call $read (local.get $ev) (i32.const 4096) (i32.const 4096) (i32.const 0)))
   (call $answer (local.get $ev) (call $publish (i32.const 32) (i32.const 6) (i32.const 4096) (i32.load (i32.const 0)))))
)
"""

EXECUTION = "source: .\nexecution: {{timeout: 2s, memory: 1MB, call: {call}}}\n"


def _http(id, path, call):
    return (f"id: {id}\ntrigger: {{type: https, method: GET, domains: [dom], paths: [{path}]}}\n"
            + EXECUTION.format(call=call))


def project(root):
    """
    Messagings C{orders} and C{replies}, a pubsub function on each
    (C{record}), a database C{store}, a service C{/shop/v1} with p2p
    commands C{ping} and C{boom} (traps), and HTTP functions that
    subscribe and publish.
    """
    return write(root, {
        "config.yaml": f"id: {PROJECT_ID}\nname: shop\n",
        "domains/dom.yaml": f"id: {DOMAIN}\nfqdn: {HOST}\n",
        "messaging/orders.yaml": f"id: {ORDERS}\nchannel: {{match: orders}}\n",
        "messaging/replies.yaml": f"id: {REPLIES}\nchannel: {{match: replies}}\n",
        "databases/store.yaml": f"id: {DB}\nmatch: store\nstorage: {{size: 1MB}}\n",
        "services/shop.yaml": f"id: {SHOP}\nprotocol: /shop/v1\n",
        "functions/on_order.yaml": f"id: {ON_ORDER}\ntrigger: {{type: pubsub, channel: orders}}\n"
        + EXECUTION.format(call="record"),
        "functions/on_reply.yaml": f"id: {ON_REPLY}\ntrigger: {{type: pubsub, channel: replies}}\n"
        + EXECUTION.format(call="record"),
        "functions/ping.yaml": f"id: {PING}\ntrigger: {{type: p2p, protocol: /shop/v1, command: ping}}\n"
        + EXECUTION.format(call="ping"),
        "functions/boom.yaml": f"id: {BOOM}\ntrigger: {{type: p2p, protocol: /shop/v1, command: boom}}\n"
        + EXECUTION.format(call="boom"),
        "functions/subscribe.yaml": _http(SUBSCRIBE, "/subscribe", "subscribe"),
        "functions/nothing.yaml": _http(NOTHING, "/nothing", "subscribeNothing"),
        "functions/publish.yaml": _http(PUBLISH, "/publish", "publish").replace("method: GET", "method: POST"),
    })


class TriggeredTestCase(TestCase):
    timeout = 60
    subscribeAll = False

    async def setUp(self):
        self.commands, _, tnsPubsub = makeCommands()
        self.tns = TNSClient(None, tnsPubsub, None, reactor, calls=calls(self.commands))
        self.addCleanup(self.tns.close)
        self.content = FakeContent()
        self.kvdb = FakeKVDB()
        self.pubsub = FakePubSub()
        await self.tns.publish(compileProject(project(self.mktemp())), "c1")
        cid = cidText((await self.content.add(wat2wasm(GUEST))).cid)
        for resource in (ON_ORDER, ON_REPLY, PING, BOOM, SUBSCRIBE, PUBLISH, NOTHING):
            await self.tns.push(assetKey(PROJECT_ID, resource, "main"), cid)
        self.server = await startHost(self)
        config = SubstrateConfig(httpListen="tcp:0:interface=127.0.0.1", subscribeAll=self.subscribeAll)
        self.service = SubstrateService(self.server, self.content, self.tns, reactor, config,
                                        FilePath(self.mktemp()).path, kvdb=self.kvdb, pubsub=self.pubsub)
        self.service.startService()
        self.addCleanup(lambda: self.service.stopService() if self.service.running else None)
        await self.service.whenReady()
        self.pool = HTTPConnectionPool(reactor)
        self.addCleanup(self.pool.closeCachedConnections)

    def topic(self, channel):
        return topicOf(PROJECT_ID, None, channel)

    async def stored(self, key):
        """
        What database C{store} holds under C{key}, read through the kvdb.
        """
        databases = self.service.runner.services.databases
        db = await databases.open(PROJECT_ID, DB, {"size": 1 << 20})
        return await databases.get(db, key)

    async def get(self, path, method="GET", body=None):
        url = f"http://127.0.0.1:{self.service.httpPort()}{path}"
        response = await treq.request(method, url, data=body, headers={"Host": HOST}, reactor=reactor, pool=self.pool)
        return response.code, await treq.content(response)

    async def order(self, data, source="QmSomeoneElse"):
        """
        Publish C{data} on C{orders} (as another node's function would) and
        wait for the C{replies} message its function publishes: that
        message's C{(source, data)}.
        """
        replies = self.pubsub.subscribe(self.topic("replies"))
        self.addCleanup(replies.cancel)
        await self.pubsub.publish(self.topic("orders"), encodeEnvelope(1, source, data))
        message = await replies.next()
        return decodeEnvelope(message.data)


class SubscribedAtStartTests(TriggeredTestCase):
    subscribeAll = True

    async def test_pubsubFunctionRuns(self):
        """
        With C{subscribe-all}, the channels of the project's pubsub
        functions are subscribed at start; a message on C{orders} runs its
        function, which writes the data into the project's database and
        publishes it on C{replies} (whose function, subscribed too, runs
        in turn); the service's stop cancels the subscriptions.
        """
        topics = await self.service.whenSubscribed()
        self.assertEqual(sorted(topics), sorted([self.topic("orders"), self.topic("replies")]))
        self.assertEqual(await self.order(b"order-1"), (ON_ORDER, b"order-1"))
        self.assertEqual(await self.stored(b"orders"), b"order-1")
        await self.service.stopService()
        # stopping waited for the runs under way: the replies function ran
        self.assertEqual(await self.stored(b"replies"), b"order-1")
        self.assertEqual(self.pubsub.subscriptions.get(self.topic("orders")), [])


class AskedTests(TriggeredTestCase):
    async def test_subscribeFromHttp(self):
        """
        Nothing is subscribed at start without C{subscribe-all}; an HTTP
        function's C{setSubscriptionChannel("orders")} answers 0 and
        subscribes the channel, and then a message runs the pubsub
        function.
        """
        self.assertEqual(self.service.pubsubTriggers.topics(), [])
        self.assertEqual(await self.get("/subscribe"), (200, bytes([errno.NONE])))
        self.assertEqual(self.service.pubsubTriggers.topics(), [self.topic("orders")])
        self.assertEqual(await self.order(b"order-2"), (ON_ORDER, b"order-2"))
        self.assertEqual(await self.stored(b"orders"), b"order-2")

    async def test_subscribeUnserved(self):
        """
        A channel no messaging serves is refused with
        C{ErrorSubscribeFailed} (20); nothing is subscribed.
        """
        self.assertEqual(await self.get("/nothing"), (200, bytes([20])))
        self.assertEqual(self.service.pubsubTriggers.topics(), [])

    async def test_publishFromHttp(self):
        """
        C{publishToChannel("orders", body)} publishes Taubyte's envelope on
        the channel's topic, naming the publishing function.
        """
        orders = self.pubsub.subscribe(self.topic("orders"))
        self.addCleanup(orders.cancel)
        self.assertEqual(await self.get("/publish", "POST", b"fresh"), (200, bytes([errno.NONE])))
        message = await orders.next()
        self.assertEqual(decodeEnvelope(message.data), (PUBLISH, b"fresh"))
        self.assertEqual(cbor2.loads(message.data)["1"], PUBLISH)

    async def test_ownMessagesNotRun(self):
        """
        A message whose source is the only function that asked for the
        topic is not run for it (Taubyte's rule); another source's is.
        """
        await self.get("/subscribe")
        triggers = self.service.pubsubTriggers
        await self.pubsub.publish(self.topic("orders"), encodeEnvelope(1, SUBSCRIBE, b"mine"))
        self.assertEqual((triggers.ignored, triggers.handled), (1, 0))
        self.assertEqual(await self.order(b"theirs"), (ON_ORDER, b"theirs"))


class P2PTests(TriggeredTestCase):
    async def setUp(self):
        await super().setUp()
        self.client = await startHost(self)
        await self.client.connect(addressOf(self.server))

    def command(self, command, data=b"hello", **matcher):
        body = {"matcher": {"Project": PROJECT_ID, "Application": "", "Protocol": "/shop/v1", "Command": command,
                            **matcher}, "data": data}
        return call(self.client, self.server.peerID, P2P_PROTOCOL, command, body)

    async def test_p2pFunctionAnswers(self):
        """
        A command on C{/substrate/p2p/v1} from another host runs the p2p
        function of its protocol and command, which answers C{{data}}.
        """
        self.assertEqual(await self.command("ping"), {"data": b"echo:hello"})
        self.assertEqual(await self.command("ping", b"again"), {"data": b"echo:again"})
        self.assertEqual(self.service.runtime.coldStarts, 1)

    async def test_errorsAnswered(self):
        """
        An unknown command, an unknown protocol and a function that traps
        answer clear errors; the node keeps serving.
        """
        e = await self.assertFailure(Deferred.fromCoroutine(self.command("nope")), RemoteError)
        self.assertIn("no P2P function serves command 'nope' on protocol /shop/v1", str(e))
        e = await self.assertFailure(Deferred.fromCoroutine(self.command("ping", Protocol="/other/v1")), RemoteError)
        self.assertIn("no services found on protocol /other/v1", str(e))
        e = await self.assertFailure(Deferred.fromCoroutine(self.command("boom")), RemoteError)
        self.assertIn("trapped", str(e))
        self.assertEqual(await self.command("ping"), {"data": b"echo:hello"})

    async def test_routerRemovedAtStop(self):
        """
        The p2p router is on the host while the service runs only.
        """
        self.assertIn(P2P_PROTOCOL, self.server.protocols())
        await self.service.stopService()
        self.assertNotIn(P2P_PROTOCOL, self.server.protocols())
