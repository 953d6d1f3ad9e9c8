"""
The pubsub node host functions (L{tau.services.substrate.wasm.messaging})
with a WAT guest and a recording stand-in for the substrate's
L{tau.services.substrate.triggers.PubsubTriggers}: what they hand over,
their errno, and the bounds on the lengths a guest gives.
"""

from tau.services.substrate.triggers import NoMatch
from tau.services.substrate.wasm import Limits
from tau.services.substrate.wasm.messaging import MAX_CHANNEL, MAX_DATA, PUBLISH_FAILED, SUBSCRIBE_FAILED
from tests.services.substrate.nodefixtures import APP, PRELUDE, PROJECT_A, SDK, HELPERS, NodeTestCase

PAGES = MAX_DATA // 65536 + 2

GUEST = f"""
(module
{PRELUDE}
 (import "{SDK}" "setSubscriptionChannel" (func $subscribe (param i32 i32) (result i32)))
 (import "{SDK}" "publishToChannel" (func $publish (param i32 i32 i32 i32) (result i32)))
{HELPERS.replace('(memory (export "memory") 2)', f'(memory (export "memory") {PAGES})')}
 (data (i32.const 16) "channel")
 (data (i32.const 24) "n")

 ;; the channel is the query's "channel" (at 256), the data the body (at 4096)
 (func (export "subscribe") (param $ev i32)
   (drop (call $err (local.get $ev)
     (call $subscribe (i32.const 256) (call $q (local.get $ev) (i32.const 16) (i32.const 7) (i32.const 256))))))
 (func (export "publish") (param $ev i32) (local $n i32)
   (local.set $n (call $q (local.get $ev) (i32.const 16) (i32.const 7) (i32.const 256)))
   (call $body (local.get $ev))
   (drop (call $err (local.get $ev) (call $publish (i32.const 256) (local.get $n) (i32.const 4096) (global.get $bodyLen)))))
 ;; lengths from the guest: a channel of LEN bytes at 0; data of LEN bytes at 0
 (func (export "subscribeLen") (param $ev i32)
   (drop (call $err (local.get $ev) (call $subscribe (i32.const 0) (call $len (local.get $ev))))))
 (func (export "publishLen") (param $ev i32)
   (drop (call $err (local.get $ev) (call $publish (i32.const 32) (i32.const 1) (i32.const 0) (call $len (local.get $ev))))))
 ;; the query's "n" as a decimal number
 (func $len (param $ev i32) (result i32) (local $i i32) (local $n i32) (local $v i32)
   (local.set $n (call $q (local.get $ev) (i32.const 24) (i32.const 1) (i32.const 512)))
   (block $done (loop $more
     (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
     (local.set $v (i32.add (i32.mul (local.get $v) (i32.const 10))
                            (i32.sub (i32.load8_u (i32.add (i32.const 512) (local.get $i))) (i32.const 48))))
     (local.set $i (i32.add (local.get $i) (i32.const 1)))
     (br $more)))
   (local.get $v))
)
"""


class Recorder:
    """
    The C{subscribe} and C{publish} of L{PubsubTriggers}, recorded;
    channel C{"nothing"} is served by nothing.
    """

    def __init__(self):
        self.calls = []

    async def subscribe(self, project, application, resource, channel):
        if channel == "nothing":
            raise NoMatch("no messaging")
        self.calls.append(("subscribe", project, application, resource, channel))
        return "topic"

    async def publish(self, project, application, resource, channel, data):
        if channel == "nothing":
            raise NoMatch("no messaging")
        self.calls.append(("publish", project, application, resource, channel, data))


class MessagingTests(NodeTestCase):
    guest = GUEST

    def setUp(self):
        super().setUp()
        self.recorder = Recorder()
        self.services.pubsub = self.recorder

    async def test_subscribe(self):
        """
        C{setSubscriptionChannel} subscribes the channel for the calling
        function's project and application (None at project level).
        """
        self.assertEqual(await self.body("subscribe", "/?channel=orders"), b"\0")
        self.assertEqual(await self.body("subscribe", "/?channel=chat", application=APP), b"\0")
        self.assertEqual(self.recorder.calls, [("subscribe", PROJECT_A, None, "QmFunction", "orders"),
                                               ("subscribe", PROJECT_A, APP, "QmFunction", "chat")])

    async def test_publish(self):
        """
        C{publishToChannel} hands the channel and the data over.
        """
        self.assertEqual(await self.body("publish", "/?channel=orders", b"data"), b"\0")
        self.assertEqual(self.recorder.calls, [("publish", PROJECT_A, None, "QmFunction", "orders", b"data")])

    async def test_unserved(self):
        """
        A channel nothing serves answers C{ErrorSubscribeFailed} (20) and
        C{ErrorPublishFailed} (21).
        """
        self.assertEqual(await self.body("subscribe", "/?channel=nothing"), bytes([SUBSCRIBE_FAILED]))
        self.assertEqual(await self.body("publish", "/?channel=nothing", b"x"), bytes([PUBLISH_FAILED]))

    async def test_withoutPubsub(self):
        """
        Without the substrate's triggers (no pubsub on the node) the calls
        answer their errno.
        """
        self.services.pubsub = None
        self.assertEqual(await self.body("subscribe", "/?channel=orders"), bytes([SUBSCRIBE_FAILED]))
        self.assertEqual(await self.body("publish", "/?channel=orders", b"x"), bytes([PUBLISH_FAILED]))

    async def test_channelLength(self):
        """
        A channel of exactly L{MAX_CHANNEL} bytes is handed over; one more
        is refused before it is read.
        """
        self.assertEqual(await self.body("subscribeLen", f"/?n={MAX_CHANNEL}"), b"\0")
        self.assertEqual(len(self.recorder.calls[0][4]), MAX_CHANNEL)
        self.assertEqual(await self.body("subscribeLen", f"/?n={MAX_CHANNEL + 1}"), bytes([SUBSCRIBE_FAILED]))
        self.assertEqual(len(self.recorder.calls), 1)

    async def test_dataLength(self):
        """
        Data of exactly L{MAX_DATA} bytes is published; one more byte, or
        a huge length, is refused before it is read.
        """
        limits = Limits(memory=PAGES * 65536)
        self.assertEqual(await self.body("publishLen", f"/?n={MAX_DATA}", limits=limits), b"\0")
        self.assertEqual(len(self.recorder.calls[0][5]), MAX_DATA)
        self.assertEqual(await self.body("publishLen", f"/?n={MAX_DATA + 1}", limits=limits), bytes([PUBLISH_FAILED]))
        self.assertEqual(await self.body("publishLen", "/?n=4294967280", limits=limits), bytes([PUBLISH_FAILED]))
        self.assertEqual(len(self.recorder.calls), 1)
