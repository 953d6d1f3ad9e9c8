"""
Bad HTTP against the real gateway of a serving cloud (issue 15, item 6):
huge headers and bodies, slow clients, unknown hosts, many connections
from one address.  The gateway's limits are set small in its config (the
C{gateway} section) so their edges are cheap to reach; after each attack a
normal request through the gateway still gets the e2e function's answer,
quickly.  (tests/services/gateway/test_limits.py proves the same limits on
an in-process gateway; this is the twistd node, its config file and its
real substrate behind it.)

Loopback has every 127/8 address: the attackers send from 127.0.1.x and
127.0.2.x, the normal requests from 127.0.0.1.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from tests import e2e
from tests.attacks.servingcloud import (
    GATEWAY_NODE, MiB, connect, exchange, openFiles, pause, request, rss, startAttackCloud, stillServes)
from tests.cloud import NETWORK

log = Logger()

MAX_HEADER_BYTES = 2048
MAX_HEADERS = 20
MAX_BODY = 1 * MiB
HEADER_TIMEOUT = 2.0
MAX_PER_CLIENT = 16

GATEWAY = {
    "max-header-bytes": MAX_HEADER_BYTES,
    "max-headers": MAX_HEADERS,
    "max-body": MAX_BODY,
    "header-timeout": HEADER_TIMEOUT,
    "max-per-client": MAX_PER_CLIENT,
}

#: slowloris: connections, from this many source addresses (fewer each
#: than max-per-client, so the header timeout is what drops them)
SLOW_CONNECTIONS = 200
SLOW_SOURCES = 20


class GatewayAttackTests(TestCase):
    timeout = 120

    async def setUp(self):
        self.cloud, self.ports = await startAttackCloud(self, gateway=GATEWAY)
        self.gateway = self.ports["gateway"]

    async def status(self, data, source=None):
        return (await exchange(self.gateway, data, source=source)).status()

    async def test_badRequests(self):
        """
        Header bytes and lines, body sizes (by Content-Length and chunked),
        unknown hosts and connections from one address, each at the edge:
        exactly the limit is served, one past it refused with its status
        (431, 413, 404, 429); a 1 MiB header line, a body of 100 GiB
        announced, a foreign host.  The gateway's memory stays put and it
        keeps serving.
        """
        pid = self.cloud.pid(GATEWAY_NODE)
        before = rss(pid)
        self.assertEqual(await self.status(request(padTo=MAX_HEADER_BYTES)), 200)
        raw = await exchange(self.gateway, request(padTo=MAX_HEADER_BYTES + 1))
        self.assertEqual(raw.status(), 431)
        self.assertIn(b"over 2048 bytes", raw.body())
        # Host and Connection are two of the lines
        lines = [b"X-H%d: v" % i for i in range(MAX_HEADERS - 2)]
        self.assertEqual(await self.status(request(headers=lines)), 200)
        raw = await exchange(self.gateway, request(headers=lines + [b"X-One: more"]))
        self.assertEqual(raw.status(), 431)
        self.assertIn(b"more than 20 header lines", raw.body())
        self.assertEqual(await self.status(request(headers=[b"X-Huge: " + b"h" * MiB])), 431)
        await stillServes(self, self.ports)

        # the function does not read the body; the substrate takes it whole
        self.assertEqual(await self.status(request(body=b"b" * MAX_BODY)), 200)
        raw = await exchange(self.gateway, request(body=b"b" * (MAX_BODY + 1)))
        self.assertEqual(raw.status(), 413)
        self.assertIn(b"a body of 1048577 bytes, limit 1048576", raw.body())
        self.assertEqual(await self.status(request(headers=[b"Content-Length: %d" % (100 << 30)])), 413)
        chunked = b"".join(b"%x\r\n%s\r\n" % (64 << 10, b"c" * (64 << 10)) for _ in range(17)) + b"0\r\n\r\n"
        self.assertEqual(await self.status(request(headers=[b"Transfer-Encoding: chunked"]) + chunked), 413)
        await stillServes(self, self.ports)

        for host in (f"nothing-here.g.{NETWORK}", "example.org", "x" * 200 + ".example.org"):
            self.assertEqual(await self.status(request(host=host)), 404, host)
        self.assertEqual(await self.status(request(host=e2e.DOMAIN, path="/not-a-route")), 404)
        await stillServes(self, self.ports)
        # nothing of the refused requests is kept (the 1 MiB line, the
        # bodies were thrown away as they came)
        self.assertLess(rss(pid) - before, 32 * MiB)

        # one address holds max-per-client connections open: its next one
        # is answered 429 and closed, while other addresses are served;
        # once one of its connections ends, it is served again
        attacker = "127.0.2.1"
        held = [await connect(self.gateway, source=attacker) for _ in range(MAX_PER_CLIENT)]
        # each one counts once the gateway accepted it: it accepts in the
        # order they came, so a normal request answered makes sure (they
        # stay silent: idle-timeout is 30 s, header-timeout starts at the
        # first byte)
        await stillServes(self, self.ports)
        raw = await exchange(self.gateway, request(), source=attacker)
        self.assertEqual(raw.status(), 429)
        self.assertIn(b"too many connections from your address", raw.body())
        self.assertEqual([r.open for r in held], [True] * MAX_PER_CLIENT)
        await stillServes(self, self.ports, source="127.0.2.2")
        held[0].transport.loseConnection()
        await held[0].closed
        for _ in range(50):
            raw = await exchange(self.gateway, request(), source=attacker)
            if raw.status() != 429:
                break
            await pause(0.05)
        self.assertEqual(raw.status(), 200)
        for r in held[1:]:
            r.transport.abortConnection()

    async def test_slowloris(self):
        """
        200 connections (from 20 addresses) each sending its request a byte
        a second: a normal request is answered quickly while they are all
        open; each of them is answered 408 and closed once header-timeout
        passed since its first byte, and the gateway's open files come back
        to where they were.
        """
        pid = self.cloud.pid(GATEWAY_NODE)
        files = openFiles(pid)
        line = request()
        sources = [f"127.0.1.{1 + i % SLOW_SOURCES}" for i in range(SLOW_CONNECTIONS)]
        slow = await gatherResults([Deferred.fromCoroutine(connect(self.gateway, source=s)) for s in sources])
        started = reactor.seconds()
        closedAt = {}
        for raw in slow:
            raw.closed.addCallback(lambda _, raw=raw: closedAt.setdefault(id(raw), reactor.seconds()))

        # a byte a second each, for at most 2 x header-timeout
        async def drip():
            for i in range(int(2 * HEADER_TIMEOUT) + 1):
                for raw in slow:
                    if raw.open:
                        raw.transport.write(line[i:i + 1])
                if all(not raw.open for raw in slow):
                    return
                await pause(1.0)
        dripped = Deferred.fromCoroutine(drip())

        await pause(0.5)
        self.assertEqual(sum(raw.open for raw in slow), SLOW_CONNECTIONS)
        self.assertGreater(openFiles(pid), files + SLOW_CONNECTIONS // 2)
        elapsed = [await stillServes(self, self.ports) for _ in range(5)]
        self.assertEqual(sum(raw.open for raw in slow), SLOW_CONNECTIONS)
        await gatherResults([raw.closed for raw in slow])
        await dripped
        self.assertEqual({raw.status() for raw in slow}, {408})
        durations = sorted(closedAt[id(raw)] - started for raw in slow)
        self.assertGreaterEqual(durations[0], HEADER_TIMEOUT - 0.1)
        self.assertLess(durations[-1], HEADER_TIMEOUT + 2.0)
        for _ in range(50):
            if openFiles(pid) <= files + 2:
                break
            await pause(0.1)
        self.assertLessEqual(openFiles(pid), files + 2)
        await stillServes(self, self.ports)
        log.info("slowloris: normal requests took {ms} ms with {count} slow connections open; those were dropped "
                 "{first:.2f}-{last:.2f} s after connecting", ms=[round(e * 1000, 1) for e in sorted(elapsed)],
                 count=SLOW_CONNECTIONS, first=durations[0], last=durations[-1])
