"""
The js-libp2p harness proved against itself (js <-> js), on loopback.

These are the templates for the tau <-> js tests: replace one of the two js
peers by a tau node and keep the assertions.
"""

from __future__ import annotations


from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tests.interop.jspeer import (
    ECHO_PROTOCOL,
    PERF_PROTOCOL,
    JsPeer,
    JsPeerError,
    startJsPeer,
    writeSwarmKey,
)

MiB = 1024 * 1024
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58decode(text: str) -> bytes:
    n = 0
    for ch in text:
        n = n * 58 + _B58.index(ch)
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def stripP2p(addr: str) -> str:
    return addr.split("/p2p/")[0]


class JsHarnessTests(TestCase):
    timeout = 300

    async def startPeer(self, **kwargs) -> JsPeer:
        peer = await startJsPeer(reactor, **kwargs)
        self.addCleanup(lambda: Deferred.fromCoroutine(peer.stop()))
        return peer

    async def twoPeers(self, **kwargs) -> tuple[JsPeer, JsPeer]:
        a = await self.startPeer(**kwargs)
        b = await self.startPeer(**kwargs)
        return a, b

    async def test_ready(self) -> None:
        """
        A started peer reports its id, a loopback TCP address ending in its
        id, and serves identify, ping, echo and perf.
        """
        a = await self.startPeer()
        self.assertTrue(a.peerId.startswith("12D3KooW"), a.peerId)
        self.assertEqual(len(a.addrs), 1)
        self.assertTrue(a.addrs[0].startswith("/ip4/127.0.0.1/tcp/"), a.addrs)
        self.assertTrue(a.addrs[0].endswith("/p2p/" + a.peerId))
        for proto in ["/ipfs/id/1.0.0", "/ipfs/id/push/1.0.0", "/ipfs/ping/1.0.0", ECHO_PROTOCOL, PERF_PROTOCOL]:
            self.assertIn(proto, a.protocols)

    async def test_dial(self) -> None:
        """
        dial returns the remote peer and the negotiated TLS and yamux; both
        sides then list the connection.
        """
        a, b = await self.twoPeers()
        conn = await a.command("dial", addr=b.addrs[0])
        self.assertEqual(conn["peer"], b.peerId)
        self.assertEqual(conn["encryption"], "/tls/1.0.0")
        self.assertEqual(conn["multiplexer"], "/yamux/1.0.0")
        self.assertEqual(conn["direction"], "outbound")
        self.assertGreater(conn["identifyMs"], 0)
        theirs = await b.command("connections")
        self.assertEqual([c["peer"] for c in theirs["connections"]], [a.peerId])
        self.assertEqual(theirs["connections"][0]["direction"], "inbound")
        await b.waitEvent(lambda e: e["event"] == "identify" and e["peer"] == a.peerId)

    async def test_noise(self) -> None:
        """
        With noise as the only encrypter the connection uses /noise.
        """
        a, b = await self.twoPeers(encrypter="noise")
        conn = await a.command("dial", addr=b.addrs[0])
        self.assertEqual(conn["encryption"], "/noise")

    async def test_ping(self) -> None:
        """
        ping by address and then by peer id on the open connection.
        """
        a, b = await self.twoPeers()
        first = await a.command("ping", addr=b.addrs[0])
        second = await a.command("ping", peer=b.peerId)
        for reply in (first, second):
            self.assertGreaterEqual(reply["rtt"], 0)
            self.assertLess(reply["rtt"], 5000)
        conns = await a.command("connections")
        self.assertEqual(len(conns["connections"]), 1)

    async def test_peerInfo(self) -> None:
        """
        After a dial, identify told js the remote's protocols, listen address,
        agent version and a public key that hashes to its peer id.
        """
        a, b = await self.twoPeers()
        before = await a.command("peerInfo", peer=b.peerId)
        self.assertFalse(before["known"])
        await a.command("dial", addr=b.addrs[0])
        info = await a.command("peerInfo", peer=b.peerId)
        self.assertTrue(info["known"])
        self.assertEqual(info["peer"], b.peerId)
        for proto in b.protocols:
            self.assertIn(proto, info["protocols"])
        self.assertIn(stripP2p(b.addrs[0]), info["addrs"])
        self.assertTrue(info["hasPeerRecord"])
        self.assertIn("libp2p", info["agentVersion"])
        self.assertEqual(info["keyType"], "Ed25519")
        # Ed25519 peer ids are the identity multihash of the protobuf key
        self.assertEqual(b58decode(b.peerId), bytes([0x00, 36]) + bytes.fromhex(info["publicKey"]))

    async def test_echo(self) -> None:
        """
        100 concurrent streams of 512 KiB each (two yamux initial windows:
        flow control is needed) come back byte-exact (js checks), and the
        echo streams are gone afterwards.
        """
        a, b = await self.twoPeers()
        reply = await a.command("echo", addr=b.addrs[0], streams=100, bytes=MiB // 2, timeout=240)
        self.assertEqual(reply["totalBytes"], 100 * MiB // 2)
        self.assertGreater(reply["elapsedMs"], 0)
        conns = await a.command("connections")
        self.assertEqual(len(conns["connections"]), 1)
        self.assertNotIn(ECHO_PROTOCOL, [s["protocol"] for s in conns["connections"][0]["streams"]])

    async def test_echoEmpty(self) -> None:
        """
        A stream that is half-closed at once is answered by an empty echo.
        """
        a, b = await self.twoPeers()
        reply = await a.command("echo", addr=b.addrs[0], streams=3, bytes=0)
        self.assertEqual(reply["totalBytes"], 0)

    async def test_perf(self) -> None:
        """
        The perf protocol moves 10 MiB each way.
        """
        a, b = await self.twoPeers()
        reply = await a.command("perf", addr=b.addrs[0], upload=10 * MiB, download=10 * MiB, timeout=120)
        self.assertEqual(reply["uploadBytes"], 10 * MiB)
        self.assertEqual(reply["downloadBytes"], 10 * MiB)
        self.assertGreater(reply["uploadSeconds"], 0)
        self.assertGreater(reply["downloadSeconds"], 0)

    async def test_hangup(self) -> None:
        """
        hangup closes the connection on both sides.
        """
        a, b = await self.twoPeers()
        conn = await a.command("dial", addr=b.addrs[0])
        await a.command("hangup", peer=b.peerId)
        self.assertEqual((await a.command("connections"))["connections"], [])
        await b.waitEvent(lambda e: e["event"] == "connection:close" and e["peer"] == a.peerId)
        self.assertEqual((await b.command("connections"))["connections"], [])
        self.assertTrue(conn["connection"])

    async def test_fixedKey(self) -> None:
        """
        A peer started with another's private key has the same peer id.
        """
        a = await self.startPeer()
        key = (await a.command("info"))["privateKey"]
        await a.stop()
        again = await self.startPeer(privateKey=key)
        self.assertEqual(again.peerId, a.peerId)

    async def test_secp256k1(self) -> None:
        """
        Key types other than Ed25519 connect over TLS too.
        """
        a = await self.startPeer(keyType="secp256k1")
        b = await self.startPeer()
        conn = await a.command("dial", addr=b.addrs[0])
        self.assertEqual(conn["encryption"], "/tls/1.0.0")
        info = await b.command("peerInfo", peer=a.peerId)
        self.assertEqual(info["keyType"], "secp256k1")

    async def test_errors(self) -> None:
        """
        A failed command raises JsPeerError with the js message, and the peer
        goes on answering.
        """
        a = await self.startPeer()
        with self.assertRaises(JsPeerError) as caught:
            await a.command("frobnicate")
        self.assertIn("unknown command", str(caught.exception))
        with self.assertRaises(JsPeerError):
            # nothing listens on port 1
            await a.command("dial", addr="/ip4/127.0.0.1/tcp/1", timeout=5)
        self.assertEqual((await a.command("connections"))["connections"], [])

    async def test_pnetSameKey(self) -> None:
        """
        Two peers sharing a swarm key connect and talk.
        """
        path = self.mktemp()
        writeSwarmKey(path)
        a, b = await self.twoPeers(swarmKeyPath=path)
        conn = await a.command("dial", addr=b.addrs[0])
        self.assertEqual(conn["peer"], b.peerId)
        reply = await a.command("echo", peer=b.peerId, streams=4, bytes=64 * 1024)
        self.assertEqual(reply["totalBytes"], 4 * 64 * 1024)

    async def test_pnetDifferentKeys(self) -> None:
        """
        Peers with different swarm keys, or one with none, cannot connect.
        """
        path1, path2 = self.mktemp(), self.mktemp()
        writeSwarmKey(path1)
        writeSwarmKey(path2)
        a = await self.startPeer(swarmKeyPath=path1)
        b = await self.startPeer(swarmKeyPath=path2)
        c = await self.startPeer()
        for dialer, listener in [(a, b), (b, a), (a, c), (c, a)]:
            with self.assertRaises(JsPeerError):
                await dialer.command("dial", addr=listener.addrs[0], timeout=10)
        for peer in (a, b, c):
            self.assertEqual((await peer.command("connections"))["connections"], [])
