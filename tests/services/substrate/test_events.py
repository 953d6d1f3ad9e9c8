"""
The pubsub and p2p events, the C{self*} functions and C{cryptoRead} of
the wasm runtime (L{tau.services.substrate.wasm.events},
L{tau.services.substrate.wasm.selfabi}), with a guest written here in WAT.

The guest records what the host functions answer in a log at 8192 (an
errno byte, then, when it is 0, a u32 length and the bytes); a p2p call
answers the log with C{writeP2PResponse}, an HTTP call (C{report}) with
its body, so what a pubsub call saw is read by the next HTTP call on the
same warm instance.
"""

import json
import struct

from cid import make_cid
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tau.identity import PrivateKey
from tau.services.substrate.wasm import HttpRequest, Limits, Runtime
from tau.services.substrate.wasm.context import FunctionContext
from tau.services.substrate.wasm.events import goJsonMarshal
from tau.services.substrate.wasm.runtime import FunctionFailed

SDK = "taubyte/sdk"

_TWO = ["getMessageDataSize", "getMessageData", "getMessageChannelSize", "getMessageChannel",
        "getP2PEventCommandSize", "getP2PEventCommand", "getP2PEventDataSize", "getP2PEventData",
        "getP2PEventProtocolSize", "getP2PEventProtocol", "getP2PEventFrom", "getP2PEventFromSize",
        "getP2PEventTo", "getP2PEventToSize", "getHttpEventMethodSize"]
_ONE = [f"self{n}{s}" for n in ("Project", "Application", "Id", "Commit", "Branch") for s in ("Size", "")]

IMPORTS = "\n".join(
    [f' (import "{SDK}" "{n}" (func ${n} (param i32 i32) (result i32)))' for n in _TWO]
    + [f' (import "{SDK}" "{n}" (func ${n} (param i32) (result i32)))' for n in _ONE]
    + [f' (import "{SDK}" "writeP2PResponse" (func $writeP2PResponse (param i32 i32 i32) (result i32)))',
       f' (import "{SDK}" "cryptoRead" (func $cryptoRead (param i32 i32 i32) (result i32)))',
       f' (import "{SDK}" "getEventType" (func $getEventType (param i32 i32)))',
       f' (import "{SDK}" "eventHttpWrite" (func $eventHttpWrite (param i32 i32 i32 i32) (result i32)))']
)


def sized(size, value, ev="(local.get $ev)"):
    """
    WAT: C{size(ev, 4)}; when it fails log its errno, else log C{value(ev,
    1024)} and the bytes.
    """
    return f"""
   (local.set $e (call ${size} {ev} (i32.const 4)))
   (if (local.get $e) (then (call $byte (local.get $e)))
     (else (call $field (call ${value} {ev} (i32.const 1024)) (i32.const 1024) (i32.load (i32.const 4)))))"""


def selfSized(name):
    return f"""
   (local.set $e (call $self{name}Size (i32.const 4)))
   (if (local.get $e) (then (call $byte (local.get $e)))
     (else (call $field (call $self{name} (i32.const 1024)) (i32.const 1024) (i32.load (i32.const 4)))))"""


def errnoOf(call):
    return f"\n   (call $byte {call})"


def export(name, body):
    return f' (func (export "{name}") (param $ev i32) (local $e i32)\n   (call $u32 (local.get $ev)){body}\n   (call $end (local.get $ev)))\n'


# every export logs its event id first; $end answers the log (p2p, HTTP)
# or keeps it (pubsub); "report" answers it over HTTP
GUEST = f"""
(module
{IMPORTS}
 (memory (export "memory") 1)
 (global $n (mut i32) (i32.const 0))
 (func $byte (param $b i32)
   (i32.store8 (i32.add (i32.const 8192) (global.get $n)) (local.get $b))
   (global.set $n (i32.add (global.get $n) (i32.const 1))))
 (func $u32 (param $v i32)
   (i32.store (i32.add (i32.const 8192) (global.get $n)) (local.get $v))
   (global.set $n (i32.add (global.get $n) (i32.const 4))))
 (func $field (param $e i32) (param $p i32) (param $l i32)
   (call $byte (local.get $e))
   (if (i32.eqz (local.get $e)) (then
     (call $u32 (local.get $l))
     (memory.copy (i32.add (i32.const 8192) (global.get $n)) (local.get $p) (local.get $l))
     (global.set $n (i32.add (global.get $n) (local.get $l))))))
 (func $type (param $ev i32)
   (i32.store (i32.const 0) (i32.const 99))
   (call $getEventType (local.get $ev) (i32.const 0))
   (call $byte (i32.load (i32.const 0))))
 (func $end (param $ev i32)
   (if (i32.eqz (call $writeP2PResponse (local.get $ev) (i32.const 8192) (global.get $n)))
     (then (global.set $n (i32.const 0)) (return)))
   (if (i32.eqz (call $eventHttpWrite (local.get $ev) (i32.const 8192) (global.get $n) (i32.const 8)))
     (then (global.set $n (i32.const 0)))))
 (func (export "report") (param $ev i32)
   (drop (call $eventHttpWrite (local.get $ev) (i32.const 8192) (global.get $n) (i32.const 8)))
   (global.set $n (i32.const 0)))
{export("message", "(call $type (local.get $ev))" + sized("getMessageDataSize", "getMessageData")
        + sized("getMessageChannelSize", "getMessageChannel"))}
{export("command", "(call $type (local.get $ev))" + sized("getP2PEventCommandSize", "getP2PEventCommand")
        + sized("getP2PEventProtocolSize", "getP2PEventProtocol") + sized("getP2PEventDataSize", "getP2PEventData")
        + sized("getP2PEventFromSize", "getP2PEventFrom") + sized("getP2PEventToSize", "getP2PEventTo"))}
{export("valueFirst", "(i32.store8 (i32.const 1024) (i32.const 170))" + errnoOf("(call $getP2PEventProtocol (local.get $ev) (i32.const 1024))")
        + errnoOf("(call $getP2PEventData (local.get $ev) (i32.const 1024))")
        + "(call $byte (i32.load8_u (i32.const 1024)))"
        + sized("getP2PEventProtocolSize", "getP2PEventProtocol") + sized("getP2PEventDataSize", "getP2PEventData"))}
{export("wrongType", errnoOf("(call $getMessageDataSize (local.get $ev) (i32.const 4))")
        + errnoOf("(call $getMessageChannel (local.get $ev) (i32.const 1024))")
        + errnoOf("(call $getP2PEventCommandSize (local.get $ev) (i32.const 4))")
        + errnoOf("(call $getP2PEventFrom (local.get $ev) (i32.const 1024))")
        + errnoOf("(call $getHttpEventMethodSize (local.get $ev) (i32.const 4))"))}
{export("unknownEvent", errnoOf("(call $getMessageDataSize (i32.add (local.get $ev) (i32.const 1000)) (i32.const 4))")
        + errnoOf("(call $getP2PEventDataSize (i32.const -1) (i32.const 4))")
        + errnoOf("(call $getP2PEventTo (i32.add (local.get $ev) (i32.const 1)) (i32.const 1024))"))}
{export("bounds", errnoOf("(call $getMessageDataSize (local.get $ev) (i32.const 65532))")
        + errnoOf("(call $getMessageDataSize (local.get $ev) (i32.const 65533))")
        + errnoOf("(call $getMessageDataSize (local.get $ev) (i32.const -4))")
        + errnoOf("(call $getMessageData (local.get $ev) (i32.const 65530))")
        + errnoOf("(call $getMessageData (local.get $ev) (i32.const 65531))")
        + errnoOf("(call $getMessageData (local.get $ev) (i32.const -1))"))}
{export("p2pBounds", errnoOf("(call $getP2PEventDataSize (local.get $ev) (i32.const 65533))")
        + errnoOf("(call $getP2PEventData (local.get $ev) (i32.const 65530))")
        + errnoOf("(call $getP2PEventData (local.get $ev) (i32.const 65531))")
        + errnoOf("(call $getP2PEventFrom (local.get $ev) (i32.const 65496))")
        + errnoOf("(call $getP2PEventFrom (local.get $ev) (i32.const 65497))")
        + errnoOf("(call $writeP2PResponse (local.get $ev) (i32.const 65530) (i32.const 7))")
        + errnoOf("(call $writeP2PResponse (local.get $ev) (i32.const -1) (i32.const 2))"))}
{export("write65530", errnoOf("(call $writeP2PResponse (local.get $ev) (i32.const 65530) (i32.const 6))")
        + " (return)")}
{export("self", selfSized("Project") + selfSized("Application") + selfSized("Id") + selfSized("Commit")
        + selfSized("Branch") + errnoOf("(call $selfProjectSize (i32.const 65533))")
        + errnoOf("(call $selfProject (i32.const 65535))"))}
{export("random", errnoOf("(call $cryptoRead (i32.const 1024) (i32.const 64) (i32.const 16))")
        + "(call $field (i32.const 0) (i32.const 16) (i32.const 8)) (call $field (i32.const 0) (i32.const 1024) (i32.const 64))"
        + errnoOf("(call $cryptoRead (i32.const 65472) (i32.const 64) (i32.const 16))")
        + errnoOf("(call $cryptoRead (i32.const 65472) (i32.const 65) (i32.const 16))")
        + errnoOf("(call $cryptoRead (i32.const 1024) (i32.const -1) (i32.const 16))")
        + errnoOf("(call $cryptoRead (i32.const 1024) (i32.const 8) (i32.const 65528))")
        + errnoOf("(call $cryptoRead (i32.const 1024) (i32.const 8) (i32.const 65529))"))}
 (func (export "boom") (param $ev i32) unreachable)
 (func (export "spin") (param $ev i32) (loop $forever (br $forever)))
)
"""


def field(value):
    return b"\0" + struct.pack("<I", len(value)) + value


def u32(value):
    return struct.pack("<I", value)


def peerCid(peer):
    return make_cid(1, "libp2p-key", peer.toBytes()).buffer


class EventTests(TestCase):
    timeout = 60

    def setUp(self):
        self.runtime = Runtime(reactor)
        self.runtime.start()
        self.addCleanup(lambda: Deferred.fromCoroutine(self.runtime.stop()))
        self.remote = PrivateKey.generate().peerID()
        self.local = PrivateKey.generate().peerID()

    async def cid(self):
        return await self.runtime.load(GUEST.encode())

    async def pubsub(self, export, topic="zHash/orders", data=b"hello", context=FunctionContext()):
        cid = await self.cid()
        await self.runtime.callPubsub(cid, export, topic, data, Limits(), context)
        status, _, log = await self.runtime.call(cid, "report", HttpRequest(), Limits(), context)
        self.assertEqual(status, 200)
        return log

    async def p2p(self, export, body, command="ping", fromPeer=None, toPeer=None, limits=Limits()):
        cid = await self.cid()
        return await self.runtime.callP2P(cid, export, command, body, fromPeer, toPeer, limits)

    def go(self, coroutine):
        return Deferred.fromCoroutine(coroutine)

    def test_message(self):
        """
        A pubsub event has type 2, its data and the channel (the topic's
        part after its one C{/}); the ids keep growing across the pubsub
        and HTTP calls on the one warm instance.
        """
        async def go():
            self.assertEqual(await self.pubsub("message"), u32(0) + b"\2" + field(b"hello") + field(b"orders"))
            log = await self.pubsub("message", data=b"")
            self.assertEqual(log, u32(2) + b"\2" + field(b"") + field(b"orders"))
            self.assertEqual(self.runtime.coldStarts, 1)
        return self.go(go())

    def test_channelNotTwoParts(self):
        """
        A topic that is not C{<hash>/<channel>} (no C{/}, or more than one)
        answers C{ErrorChannelNotFound} (40) for the channel.
        """
        async def go():
            for i, topic in enumerate(("nochannel", "a/b/c", "")):
                self.assertEqual(await self.pubsub("message", topic=topic), u32(2 * i) + b"\2" + field(b"hello") + b"\x28")
        return self.go(go())

    def test_command(self):
        """
        A p2p event has type 3, the command (the body's C{command} text
        overrides the name), the protocol, the data and the raw CIDs of the
        remote and local peers (CIDv1, libp2p-key; a peer may be given as
        text); the guest's response is what C{callP2P} answers.
        """
        async def go():
            body = {"data": b"\x00payload", "protocol": "/shop/v1", "command": "order"}
            log = await self.p2p("command", body, "ping", str(self.remote), self.local)
            self.assertEqual(log, u32(0) + b"\3" + field(b"order") + field(b"/shop/v1") + field(b"\x00payload")
                             + field(peerCid(self.remote)) + field(peerCid(self.local)))
            self.assertEqual(len(peerCid(self.remote)), 40)
        return self.go(go())

    def test_commandDefaults(self):
        """
        Without C{command} in the body the command's name is answered;
        without C{protocol}, C{ErrorP2PProtocolNotFound} (45); without
        C{data}, the body as go's C{json.Marshal} writes it; no peers, 46
        and 47.
        """
        async def go():
            body = {"n": 1, "b": b"\x01", "t": "<&>"}
            log = await self.p2p("command", body, "ping")
            data = b'{"b":"AQ==","n":1,"t":"\\u003c\\u0026\\u003e"}'
            self.assertEqual(log, u32(0) + b"\3" + field(b"ping") + b"\x2d" + field(data) + b"\x2e\x2f")
        return self.go(go())

    def test_commandBadValues(self):
        """
        A C{command} that is not text answers 44, C{data} that is not bytes
        49, a C{protocol} that is not text 45.
        """
        async def go():
            log = await self.p2p("command", {"command": 7, "data": "text", "protocol": 1}, "ping")
            self.assertEqual(log, u32(0) + b"\3" + b"\x2c" + b"\x2d" + b"\x31" + b"\x2e\x2f")
        return self.go(go())

    def test_sizeBeforeValue(self):
        """
        C{getP2PEventProtocol} before its Size call answers 45, and
        C{getP2PEventData} writes one zero byte (go's nil slice); after the
        Size calls both give their values.
        """
        async def go():
            log = await self.p2p("valueFirst", {"data": b"xyz", "protocol": "/p"}, "c")
            self.assertEqual(log, u32(0) + b"\x2d" + b"\0" + b"\0" + field(b"/p") + field(b"xyz"))
        return self.go(go())

    def test_wrongType(self):
        """
        Pubsub and p2p functions on an HTTP event, p2p ones on a pubsub
        event and HTTP ones on either answer C{ErrorNilAddress} (4); one warm
        instance serves them all, its ids growing.
        """
        async def go():
            cid = await self.cid()
            _, _, log = await self.runtime.call(cid, "wrongType", HttpRequest())
            self.assertEqual(log, u32(0) + b"\4\4\4\4\0")
            self.assertEqual(await self.pubsub("wrongType"), u32(1) + b"\0\0\4\4\4")
            self.assertEqual(await self.p2p("wrongType", {}), u32(3) + b"\4\4\0\x2e\4")
            # one warm instance served the HTTP, pubsub and p2p events: ids 0 to 3
            self.assertEqual(self.runtime.coldStarts, 1)
        return self.go(go())

    def test_unknownEvent(self):
        """
        An event id that names no event answers C{ErrorEventNotFound} (1).
        """
        async def go():
            self.assertEqual(await self.pubsub("unknownEvent"), u32(0) + b"\1\1\1")
            self.assertEqual(await self.p2p("unknownEvent", {}), u32(2) + b"\1\1\1")
        return self.go(go())

    def test_bounds(self):
        """
        A size written at the memory's last four bytes is accepted, one byte
        further (or wrapping) answers C{ErrorMemoryWriteFailed} (12); data
        ending at the memory's end is written, one byte further (or at a
        pointer past it) answers C{ErrorAddressOutOfMemory} (3).
        """
        async def go():
            log = await self.pubsub("bounds", data=b"sixsix")
            self.assertEqual(log, u32(0) + bytes([0, 12, 12, 0, 3, 3]))
        return self.go(go())

    def test_p2pBounds(self):
        """
        The same edges for the p2p data, a peer's CID (40 bytes) and
        C{writeP2PResponse}'s buffer; a response of exactly the last bytes
        of memory is answered.
        """
        async def go():
            log = await self.p2p("p2pBounds", {"data": b"sixsix"}, fromPeer=self.remote)
            self.assertEqual(log, u32(0) + bytes([12, 0, 3, 0, 3, 3, 3]))
            cid = await self.cid()
            # the remote's CID was written in the last 40 bytes
            self.assertEqual(await self.runtime.callP2P(cid, "write65530", "c", {}), peerCid(self.remote)[-6:])
        return self.go(go())

    def test_responseLimit(self):
        """
        C{writeP2PResponse} takes at most the function's C{maxBody} bytes:
        exactly that is answered, one byte more answers
        C{ErrorP2PSendFailed} (43) and nothing.
        """
        async def go():
            cid = await self.cid()
            self.assertEqual(await self.runtime.callP2P(cid, "write65530", "c", {}, limits=Limits(maxBody=6)), bytes(6))
            self.assertIsNone(await self.runtime.callP2P(cid, "write65530", "c", {}, limits=Limits(maxBody=5)))
        return self.go(go())

    def test_noResponse(self):
        """
        A guest that writes no response answers None.
        """
        async def go():
            cid = await self.cid()
            self.assertIsNone(await self.runtime.callP2P(cid, "report", "c", {}))
        return self.go(go())

    def test_failures(self):
        """
        A pubsub or p2p call that traps raises L{FunctionFailed}; one that
        loops past its timeout raises it with C{timeout} set; neither
        instance is reused.
        """
        async def go():
            cid = await self.cid()
            with self.assertRaises(FunctionFailed) as e:
                await self.runtime.callPubsub(cid, "boom", "h/c", b"")
            self.assertFalse(e.exception.timeout)
            with self.assertRaises(FunctionFailed) as e:
                await self.runtime.callP2P(cid, "spin", "c", {}, limits=Limits(timeout=0.1))
            self.assertTrue(e.exception.timeout)
            with self.assertRaises(FunctionFailed):
                await self.runtime.callPubsub(cid, "missing", "h/c", b"")
            self.assertEqual(self.runtime.coldStarts, 3)
        return self.go(go())

    def test_self(self):
        """
        The C{self*} functions answer the call's context; C{selfBranch}
        Taubyte's default branches whatever the branch; a size past the
        memory answers 12, a value past it 3.
        """
        async def go():
            context = FunctionContext("proj-123", "app-456", "res-789", "commit-abc", "dev")
            cid = await self.cid()
            status, _, log = await self.runtime.call(cid, "self", HttpRequest(), Limits(), context)
            self.assertEqual(log, u32(0) + field(b"proj-123") + field(b"app-456") + field(b"res-789")
                             + field(b"commit-abc") + field(b"main\0master\0") + b"\x0c\x03")
            _, _, log = await self.runtime.call(cid, "self", HttpRequest())
            self.assertEqual(log[:4 + 5 * 5], u32(0) + field(b"") * 4 + field(b"main\0master\0")[:5])
        return self.go(go())

    def test_cryptoRead(self):
        """
        C{cryptoRead} fills the buffer and writes its length as a u64;
        a buffer ending at the memory's end is filled, one byte more (or a
        huge length) answers 3; the count at the last 8 bytes is written,
        one byte further answers 12.
        """
        async def go():
            cid = await self.cid()
            _, _, log = await self.runtime.call(cid, "random", HttpRequest())
            self.assertEqual(log[:5], u32(0) + b"\0")
            self.assertEqual(log[5:18], field(struct.pack("<Q", 64)))
            buffer = log[18:18 + 69]
            self.assertEqual(buffer[:5], field(b"x" * 64)[:5])
            self.assertNotEqual(buffer[5:], bytes(64))
            self.assertEqual(log[87:], bytes([0, 3, 3, 0, 12]))
        return self.go(go())


class GoJsonTests(SynchronousTestCase):
    def test_marshal(self):
        """
        Keys sorted, no spaces, bytes as base64, HTML characters escaped,
        non-ASCII kept; a map with a non-text key is refused.
        """
        self.assertEqual(goJsonMarshal({"z": [1, None, True], "a": b"\xff", "é": "<\u2028>"}),
                         '{"a":"/w==","z":[1,null,true],"é":"\\u003c\\u2028\\u003e"}'.encode())
        self.assertEqual(json.loads(goJsonMarshal({"m": {"k": 1.5}})), {"m": {"k": 1.5}})
        with self.assertRaises(TypeError):
            goJsonMarshal({"m": {1: 2}})
