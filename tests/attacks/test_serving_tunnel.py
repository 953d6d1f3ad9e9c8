"""
Malformed HTTP-tunnel frames against the real substrate node of a serving
cloud (issue 15, item 6): a rogue peer, a tau L{Host} admitted to the
cloud as a gateway (the cloud's key signed its admission), asks the
substrate C{proxy-http} for the e2e function on C{/substrate/v1} as a
gateway does, then sends bad bytes where the tunnelled request goes: a
frame with a huge length, a negative or overflowing length field, an
unknown channel, garbage CBOR in the request head, a head with 10,000
headers.  Each is refused with a framed error answer (or the stream is
reset), and the substrate still serves the real gateway.  It also holds
as many tunnels open as the substrate lets one peer hold, and one more.

tests/services/substrate/test_tunnel*.py prove the decoder and L{serveTunnel}
between two in-process hosts; this is the twistd node's own substrate
service, its router and its limits per peer.
"""

import struct

import cbor2
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from tau.cloud import makeAdmission
from tau.members import CloudMembers
from tau.services.commands import RemoteError, decodeResponse, encodeCommand
from tau.services.frames import DATA, TUNNEL_MAGIC, TUNNEL_VERSION, FrameDecoder, encodeFrame
from tau.services.framework import readFrame
from tau.services.substrate import PROTOCOL
from tau.services.substrate.metrics import FunctionMetrics, decodeAnswer
from tau.services.substrate.service import MAX_TUNNELS
from tau.services.substrate.tunnel import (
    BODY, HEAD, MAX_CHUNK, MAX_HEAD, REQUEST, TunnelDecoder, TunnelError, TunnelRequest, encodeEnd, encodeRequest)
from tests import e2e
from tests.attacks.servingcloud import MiB, openFiles, pause, rss, startAttackCloud, stillServes
from tests.cloud import CLOUD_KEY
from tests.hosts import startHost
from tests.test_e2e_serving import SUBSTRATE_NODE

_HEADER = struct.Struct("<2sHBqB")


def header(length, channel, type=DATA):
    """
    A tunnel frame header announcing C{length} bytes (any int64) on
    C{channel}, with nothing after it.
    """
    return _HEADER.pack(TUNNEL_MAGIC, TUNNEL_VERSION, type, length, channel)


def requestFrame(**headers):
    return encodeRequest(TunnelRequest("GET", e2e.FUNCTION_PATH, headers=headers, host=e2e.DOMAIN))


def headFrame(payload):
    return encodeFrame(payload, DATA, REQUEST, TUNNEL_MAGIC, TUNNEL_VERSION)


#: what the rogue sends after proxy-http -> (status, a part of the error text)
ATTACKS = {
    "a request head of 2**40 bytes": (header(1 << 40, REQUEST), 431, f"data frame of {1 << 40} bytes, limit {MAX_HEAD}"),
    "a request head of 2**63-1 bytes": (header(2 ** 63 - 1, REQUEST), 431, f"limit {MAX_HEAD}"),
    "a negative length": (header(-5, REQUEST), 400, "negative frame length -5"),
    "a length field of all ones": (TUNNEL_MAGIC + struct.pack("<HB", TUNNEL_VERSION, DATA) + b"\xff" * 8 + bytes([REQUEST]),
                                   400, "negative frame length -1"),
    "an unknown channel": (encodeFrame(b"abc", DATA, 99, TUNNEL_MAGIC, TUNNEL_VERSION), 400,
                           "unexpected data frame on channel 99"),
    "garbage CBOR in the head": (headFrame(b"\xff\xfe\x00garbage\x9f"), 400, "the request"),
    "a head that is not a map": (headFrame(cbor2.dumps([1, 2, 3])), 400, "expected a map"),
    "10,000 values of one header": (requestFrame(X=[""] * 10_000), 431, "more than 100 header values"),
    "10,000 headers": (requestFrame(**{f"h{i}": ["v"] for i in range(10_000)}), 431, f"limit {MAX_HEAD}"),
    "a body frame of 2**40 bytes": (requestFrame() + header(1 << 40, BODY), 413,
                                    f"data frame of {1 << 40} bytes, limit {MAX_CHUNK}"),
    "HTTP instead of frames": (b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad magic"),
}


class Rogue:
    """
    A peer admitted to the cloud as a gateway, talking to the substrate
    node at C{address}.
    """

    def __init__(self, host, substrate):
        self.host = host
        self.substrate = substrate

    async def proxy(self, path=e2e.FUNCTION_PATH):
        """
        A stream on which the substrate answered C{proxy-http} for the
        e2e function: the stream and the metrics.
        """
        stream = await self.host.newStream(self.substrate, [PROTOCOL])
        stream.write(encodeCommand("proxy-http", {"host": e2e.DOMAIN, "path": path, "method": "GET"}))
        frame = await readFrame(stream, FrameDecoder(64 << 10))
        return stream, decodeAnswer(decodeResponse(frame.payload))

    async def answer(self, stream):
        """
        The substrate's answer on a tunnel: C{(status, body)}, or None when
        it reset the stream.
        """
        try:
            data = await stream.readToEnd(1 * MiB)
        except Exception:
            return None
        finally:
            stream.reset()
        events = TunnelDecoder(HEAD).feed(data)
        (kind, (status, _)), *rest = events
        self.assertEnded(rest)
        return status, b"".join(value for kind, value in rest if kind == "chunk")

    @staticmethod
    def assertEnded(rest):
        if not rest or rest[-1][0] != "end":
            raise TunnelError(f"the answer did not end with a close frame: {rest!r:.200}")


async def rogueHost(case, cloud):
    host = await startHost(case)
    members = CloudMembers(host, reactor, cloud=CLOUD_KEY.peerID(),
                           admission=makeAdmission(CLOUD_KEY, host.peerID, ["gateway"]))
    members.startService()
    case.addCleanup(members.stopService)
    conn = await host.connect(cloud.addresses[SUBSTRATE_NODE])
    return Rogue(host, conn.remotePeer)


class TunnelAttackTests(TestCase):
    timeout = 120

    async def test_malformedFrames(self):
        """
        Each of L{ATTACKS} on a tunnel the substrate opened is answered with
        its framed error, a stream reset mid-body is let go, 256 tunnels
        held open make the 257th proxy-http refused; meanwhile and after,
        the gateway gets the function's answer, and the substrate's open
        files and memory come back.
        """
        cloud, ports = await startAttackCloud(self)
        rogue = await rogueHost(self, cloud)
        pid = cloud.pid(SUBSTRATE_NODE)

        # a well-formed tunnel first: what the attacks depart from
        stream, metrics = await rogue.proxy()
        self.assertIsInstance(metrics, FunctionMetrics)
        stream.write(requestFrame() + encodeEnd())
        self.assertEqual(await rogue.answer(stream), (200, e2e.FUNCTION_BODY))
        before, files = rss(pid), openFiles(pid)

        for name, (data, status, text) in ATTACKS.items():
            stream, _ = await rogue.proxy()
            stream.write(data)
            answer = await rogue.answer(stream)
            self.assertIsNotNone(answer, f"{name}: the stream was reset, expected {status}")
            self.assertEqual(answer[0], status, f"{name}: {answer!r:.300}")
            self.assertIn(text.encode(), answer[1], name)
            await stillServes(self, ports)
        # a stream reset in the middle of a body: nothing to answer
        stream, _ = await rogue.proxy()
        stream.write(requestFrame() + encodeFrame(b"x" * 1000, DATA, BODY, TUNNEL_MAGIC, TUNNEL_VERSION))
        stream.reset()
        await stillServes(self, ports)
        self.assertIn(b"tunnel from " + str(rogue.host.peerID).encode() + b": negative frame length -5",
                      cloud.processes[SUBSTRATE_NODE].out)

        # as many tunnels open as one peer may hold, waiting for their
        # request: the next proxy-http is refused; the gateway is served
        # (asked 32 at once: a peer may have MAX_ASKING proxy-http under way)
        held = []
        for _ in range(MAX_TUNNELS // 32):
            held += await gatherResults([Deferred.fromCoroutine(rogue.proxy()) for _ in range(32)])
        with self.assertRaises(RemoteError) as refused:
            await rogue.proxy()
        self.assertIn(f"too many streams kept at once (limit {MAX_TUNNELS})", str(refused.exception))
        await stillServes(self, ports)
        # each still serves its request
        for stream, _ in held[:3]:
            stream.write(requestFrame() + encodeEnd())
            self.assertEqual(await rogue.answer(stream), (200, e2e.FUNCTION_BODY))
        for stream, _ in held[3:]:
            stream.reset()
        stream, _ = await rogue.proxy()
        stream.write(requestFrame() + encodeEnd())
        self.assertEqual(await rogue.answer(stream), (200, e2e.FUNCTION_BODY))

        # what the attacks took is given back
        for _ in range(50):
            if openFiles(pid) <= files:
                break
            await pause(0.1)
        self.assertLessEqual(openFiles(pid), files)
        self.assertLess(rss(pid) - before, 32 * MiB)
        await stillServes(self, ports)
