"""
Idle sockets against a real node: one address opening hundreds of TCP
connections that never speak must not keep a js-libp2p peer at another
address from dialing and pinging the node.

The attacker binds its sockets to 127.0.0.2, the js peer dials from
127.0.0.1: two addresses on Linux loopback, no setup needed.
"""

import re
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase

from tests.interop.jspeer import startJsPeer
from tests.processes import TWISTD, spawn, stopped

ATTACKER = "127.0.0.2"
SOCKETS = 300


class _Idle(Protocol):
    """
    A socket that never sends a byte.
    """

    def __init__(self, flood):
        self.flood = flood

    def connectionMade(self):
        self.flood.open.add(self)
        self.flood._accepted()
        if not self.flood._running:
            self.transport.abortConnection()

    def connectionLost(self, reason):
        self.flood.open.discard(self)
        self.flood._lost()
        self.flood._checkSettled()


class Flood:
    """
    C{sockets} idle TCP connections from C{source} to C{port}; each one the
    node drops is opened again after C{redial} seconds, until L{stop} (the
    test's cleanup), or at most C{budget} connection attempts in all when
    given.  The attack goes on for the whole test: a budget spent before the
    js peer dials would let the node's slots empty (the sockets it holds are
    dropped after 3 or 10 s) and the test would prove nothing, or fail.

    @ivar connected: connections the node accepted (TCP handshake done).
    @ivar open: the connections open now.
    """

    def __init__(self, port, *, source=ATTACKER, sockets=SOCKETS, redial=1.0, budget=None):
        self.port = port
        self.source = source
        self.sockets = sockets
        self.redial = redial
        self.budget = budget
        self.connected = 0
        self.open = set()
        self._running = False
        self._attempts = 0
        self._timers = []
        self._pending = set()
        self._waiting = []
        self._settled = []

    def connectedAgain(self, count=1):
        """
        A Deferred that fires once the node accepted C{count} more of the
        attacker's connections (the attack is still going on).
        """
        d = Deferred()
        if count <= 0:
            d.callback(self.connected)
        else:
            self._waiting.append((self.connected + count, d))
        return d

    def _accepted(self):
        self.connected += 1
        reached = [(n, d) for n, d in self._waiting if self.connected >= n]
        self._waiting = [(n, d) for n, d in self._waiting if self.connected < n]
        for n, d in reached:
            d.callback(self.connected)

    def start(self):
        """
        Open the sockets; the Deferred fires once every first attempt is
        done (connected, maybe already dropped, or failed).
        """
        self._running = True
        first = [self._connect() for _ in range(self.sockets)]
        return Deferred.fromCoroutine(self._all(first))

    async def _all(self, attempts):
        for d in attempts:
            await d

    def _connect(self):
        self._attempts += 1
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, timeout=5, bindAddress=(self.source, 0))
        d = connectProtocol(endpoint, _Idle(self))
        self._pending.add(d)
        d.addBoth(self._attempted, d)
        return d

    def _attempted(self, result, d):
        self._pending.discard(d)
        if not isinstance(result, Protocol):
            self._lost()
        self._checkSettled()

    def _lost(self):
        self._timers = [t for t in self._timers if t.active()]
        if self._mayDial():
            self._timers.append(reactor.callLater(self.redial, self._again))

    def _mayDial(self):
        return self._running and (self.budget is None or self._attempts < self.budget)

    def _again(self):
        if self._mayDial():
            self._connect()

    def stop(self):
        """
        Stop dialing and drop every socket; the Deferred fires once the
        attempts in flight ended too (each connects and is dropped, or
        fails within its 5 s connect timeout).
        """
        self._running = False
        waiting, self._waiting = self._waiting, []
        for n, d in waiting:
            d.cancel()
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        for protocol in list(self.open):
            protocol.transport.abortConnection()
        d = Deferred()
        self._settled.append(d)
        self._checkSettled()
        return d

    def _checkSettled(self):
        if self._running or self._pending or self.open:
            return
        settled, self._settled = self._settled, []
        for d in settled:
            d.callback(None)


class IdleSocketTests(TestCase):
    timeout = 180

    async def startNode(self, config=None):
        root = Path(self.mktemp()).resolve()
        extra = []
        if config is not None:
            path = Path(self.mktemp()).resolve()
            path.write_text(config)
            extra = [f"--config={path}"]
        node = spawn(reactor, TWISTD + ["-n", "--pidfile=", "taubyte", f"--root={root}", "--listen=/ip4/127.0.0.1/tcp/0", *extra])
        self.addCleanup(stopped, node)
        await node.waitFor(b"reachable at")
        address = re.search(r"reachable at (\S+)", node.output()).group(1)
        return node, address

    async def attackAndPing(self, config=None, evicts=None):
        """
        Flood a node started with C{config} from L{ATTACKER}; once the node
        refuses the attacker (its limit is reached), a js peer at 127.0.0.1
        dials and pings the node.  With C{evicts}, a line the node logs when
        the js peer's connection takes an attacker's upgrade slot, the js
        peer hangs up and dials again (at most 5 times) until that line is
        logged: the attacker's slots are dropped after the upgrade timeout
        and refilled by its redials, and a dial that lands in between gets
        in without taking anyone's slot.
        """
        node, address = await self.startNode(config)
        port = int(address.split("/")[4])
        js = await startJsPeer(reactor, listen=[])
        self.addCleanup(js.stop)
        flood = Flood(port)
        self.addCleanup(flood.stop)
        await flood.start()
        # as many sockets as the flood holds got through the TCP handshake
        # (the node accepts them from its backlog as it goes; on a loaded
        # machine some first attempts time out and are made again)
        await flood.connectedAgain(SOCKETS - flood.connected).addTimeout(60, reactor)
        self.assertGreaterEqual(flood.connected, SOCKETS)
        # the attacker holds all it may: the node refuses its newcomers
        # (this waits for the node, however slowly it gets through its backlog)
        await node.waitFor(f"refusing inbound connections from {ATTACKER}: ".encode(), timeout=60)
        for attempt in range(5):
            dialed = await js.command("dial", addr=address, timeout=20)
            self.assertEqual(dialed["remoteAddr"], address)
            pinged = await js.command("ping", addr=address, timeout=20)
            self.assertGreaterEqual(pinged["rtt"], 0)
            # the node wrote the line (if at all) when it accepted the js
            # peer's socket, before the handshake and the ping went through
            if evicts is None or evicts in node.output():
                break
            await js.command("hangup", peer=address.rsplit("/", 1)[1])
        # the attack was on before the js peer dialed (the refusal above)
        # and is still on after its ping: the node accepts another socket
        await flood.connectedAgain().addTimeout(30, reactor)
        return node

    async def test_perAddressLimit(self):
        """
        300 idle sockets from 127.0.0.2, kept open (each one dropped is
        opened again): the node holds only a few of them, so a js-libp2p
        peer at 127.0.0.1 dials and pings it; the node says why it refuses
        127.0.0.2, and drops the ones it held once they stayed silent for
        3 s (not at the end of the 10 s upgrade timeout).
        """
        node = await self.attackAndPing()
        self.assertIn(f"refusing inbound connections from {ATTACKER}: 8 upgrades in progress (", node.output())
        await node.waitFor(b"failed during the upgrade: nothing received in 3.0s", timeout=30)
        self.assertRegex(node.output(), rf"inbound connection with /ip4/{re.escape(ATTACKER)}/tcp/\d+ failed during the upgrade: nothing received in 3.0s")
        self.assertNotIn("upgrade not done after", node.output())

    async def test_busiestAddressGivesWay(self):
        """
        With no limit per address, 300 idle sockets from 127.0.0.2 fill all
        the node's upgrade slots (32 here, so that they are full however
        slowly the kernel hands the node its backlog): the js peer's connection from
        127.0.0.1 still gets in, in place of the newest one from 127.0.0.2,
        and the attacker's next sockets are refused.
        """
        # silent connections kept for the whole upgrade timeout (10 s), so
        # that the slots stay full while the js peer dials
        evicts = f"{ATTACKER} holds 32 of the 32 upgrade slots: its newest connection is dropped for one from 127.0.0.1"
        node = await self.attackAndPing("connections:\n  max-upgrades: 32\n  max-upgrades-per-ip: 0\n  max-per-ip: 0\n  first-bytes: 10\n", evicts)
        output = node.output()
        self.assertIn(evicts, output)
        # the busiest address's newcomers are the ones refused
        self.assertRegex(output, rf"refusing inbound connections from {ATTACKER}: 3[12] upgrades in progress, all 32 upgrade slots taken")
