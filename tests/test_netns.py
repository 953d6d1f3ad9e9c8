"""
Three real tau nodes in three network namespaces: a relay R with a leg in
each of two private networks, A in one and B in the other, and no route
between A and B.  A knows only B's PeerId and still reaches it, through R.

    A (10.1.0.2)  ---  10.1.0.1  R  10.2.0.1  ---  (10.2.0.2) B

A and B sit as if behind a NAT: they can dial out, but nothing outside
their namespace can open a connection to them, because they listen on an
address that only exists inside it (10.1.1.2 and 10.2.1.2 on their
loopback; the test machine's kernel may have no netfilter to build a real
NAT with).  R does not forward between its legs.

What happens, none of it told to the nodes: A and B dial R (their bootstrap
peer); AutoNAT asks R to dial them back at the IP R sees them at, which
fails, so they learn they are private; auto-relay then reserves a slot on R
and announces B's /p2p-circuit addresses by identify push; A dials B by
PeerId, finds those addresses through R's DHT and connects through R; then
10 MiB of random bytes go each way over bitswap, checked byte for byte.

Needs root and iproute2 (CI has both); fails without them.  The namespaces
are deleted when the test ends, passed or failed, and ones left by a test
process that died are deleted at the start.
"""

import base64
import os
import re
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import yaml
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tau.control.client import ControlError, call, stream
from tau.identity import PrivateKey
from tests.processes import TWISTD, run, spawn, stopped

PREFIX = "tauns-"
SIZE = 10 * 1024 * 1024
SHAPE = "netns"


async def ip(*args, check=True):
    status, out, err = await run(reactor, ["ip", *args], timeout=30)
    if check and status != 0:
        raise AssertionError(f"ip {' '.join(args)} failed ({status}): {err.strip()}")
    return status, out, err


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def namespaces():
    _, out, _ = await ip("netns", "list")
    return [line.split()[0] for line in out.splitlines() if line.strip()]


async def removeStale():
    """
    Delete namespaces of earlier runs whose test process is gone.
    """
    for name in await namespaces():
        match = re.match(rf"^{PREFIX}(\d+)-", name)
        if match and not _alive(int(match.group(1))):
            await ip("netns", "del", name, check=False)


async def until(check, what, limit=90.0):
    """
    Call C{async check()} every 200 ms until it returns something true.
    """
    deadline = reactor.seconds() + limit
    while True:
        result = await check()
        if result:
            return result
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.2, lambda: None)


class Node:
    """
    One tau node in a namespace: its root, config and control API.
    """

    def __init__(self, name, namespace, root, socket, **config):
        self.name = name
        self.namespace = namespace
        self.root = Path(root)
        self.key = PrivateKey.generate()
        self.peerID = self.key.peerID()
        self.api = SimpleNamespace(apiFile=self.root / "storage" / SHAPE / "api", apiTokenFile=self.root / "storage" / SHAPE / "api-token", shape=SHAPE, root=self.root)
        self.config = {
            "privatekey": base64.b64encode(self.key.toProtobuf()).decode("ascii"),
            "services": [],
            "api-listen": f"unix:{socket}",
            **config,
        }
        self.process = None

    def start(self, case):
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "netns.yaml"
        path.write_text(yaml.safe_dump(self.config), encoding="utf-8")
        self.process = spawn(
            reactor,
            ["ip", "netns", "exec", self.namespace]
            + TWISTD
            + ["-n", "--pidfile=", "taubyte", f"--root={self.root}", f"--shape={SHAPE}", f"--config={path}"],
        )
        case.addCleanup(stopped, self.process)
        return self.process.waitFor(b"ready, shape", timeout=60)

    async def call(self, command, args=(), **kwargs):
        return await call(reactor, self.api, command, args, **kwargs)

    async def cat(self, cid, timeout=120):
        chunks = []
        await stream(reactor, self.api, "cat", {"arg": cid}, chunks.append, timeout=timeout)
        return b"".join(chunks)


class NetnsTests(TestCase):
    timeout = 300

    async def setUp(self):
        # No skip: CI runs as root with iproute2 (.ci/run installs it), and a
        # skipped test would hide a relay path nobody checked.
        if os.geteuid() != 0:
            self.fail("needs root to create network namespaces (CI runs as root)")
        if shutil.which("ip") is None:
            self.fail("needs iproute2 (the ip command; .ci/run installs it)")
        await removeStale()
        self.tag = f"{PREFIX}{os.getpid()}-{os.urandom(3).hex()}"
        self.ns = {n: f"{self.tag}-{n}" for n in "arb"}
        self.addCleanup(self.deleteNamespaces)
        status, _, err = await ip("netns", "add", self.ns["r"], check=False)
        if status != 0:
            self.fail(f"cannot create a network namespace: {err.strip()}")
        await ip("netns", "add", self.ns["a"])
        await ip("netns", "add", self.ns["b"])
        a, r, b = self.ns["a"], self.ns["r"], self.ns["b"]
        # R's legs, each paired with eth0 of A or B
        await ip("-n", r, "link", "add", "to-a", "type", "veth", "peer", "name", "eth0", "netns", a)
        await ip("-n", r, "link", "add", "to-b", "type", "veth", "peer", "name", "eth0", "netns", b)
        await ip("-n", r, "addr", "add", "10.1.0.1/24", "dev", "to-a")
        await ip("-n", r, "addr", "add", "10.2.0.1/24", "dev", "to-b")
        await ip("-n", a, "addr", "add", "10.1.0.2/24", "dev", "eth0")
        await ip("-n", b, "addr", "add", "10.2.0.2/24", "dev", "eth0")
        # where A and B listen: reachable from inside their namespace only
        await ip("-n", a, "addr", "add", "10.1.1.2/32", "dev", "lo")
        await ip("-n", b, "addr", "add", "10.2.1.2/32", "dev", "lo")
        for ns, links in ((r, ("lo", "to-a", "to-b")), (a, ("lo", "eth0")), (b, ("lo", "eth0"))):
            for link in links:
                await ip("-n", ns, "link", "set", link, "up")
        status, _, err = await run(
            reactor, ["ip", "netns", "exec", r, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"], timeout=30
        )
        self.assertEqual(status, 0, err)
        self.sockets = tempfile.mkdtemp(prefix="tau-netns-")
        self.addCleanup(shutil.rmtree, self.sockets, True)

    async def deleteNamespaces(self):
        for name in self.ns.values():
            if name in await namespaces():
                await ip("netns", "del", name, check=False)
        left = [n for n in await namespaces() if n.startswith(self.tag)]
        self.assertEqual(left, [])

    def node(self, name, **config):
        node = Node(name, self.ns[name], Path(self.mktemp()) / name, os.path.join(self.sockets, f"{name}.sock"), **config)
        self.nodes.append(node)
        return node

    async def test_peerIdAloneThroughRelay(self):
        """
        A reaches B by PeerId alone, through R, and 10 MiB go each way
        intact.  On failure the nodes' logs are part of the message.
        """
        self.nodes = []
        try:
            await self.scenario()
        except Exception as e:
            logs = "".join(f"\n--- {n.name} ({n.peerID}) ---\n{n.process.output()[-4000:]}" for n in self.nodes if n.process)
            raise AssertionError(f"{e.__class__.__name__}: {e}\n{logs}") from e

    async def scenario(self):
        relay = self.node(
            "r",
            **{
                "p2p-listen": ["/ip4/0.0.0.0/tcp/0"],
                "dht": {"mode": "server"},
                # no limits: relayed connections are then not "limited", so
                # bitswap and the DHT run on them (10 MiB each way)
                "relay": {"service": "on", "data": 0, "duration": 0},
                "autonat": {"allow-private": True},
            },
        )
        await relay.start(self)
        rid = await relay.call("id")
        self.assertEqual(rid["ID"], str(relay.peerID))
        bootstrap = {}
        for net in ("10.1.0.1", "10.2.0.1"):
            bootstrap[net] = [a for a in rid["Addresses"] if a.startswith(f"/ip4/{net}/tcp/")][0]

        a = self.node("a", **{"p2p-listen": ["/ip4/10.1.1.2/tcp/0"], "peers": [bootstrap["10.1.0.1"]]})
        b = self.node("b", **{"p2p-listen": ["/ip4/10.2.1.2/tcp/0"], "peers": [bootstrap["10.2.0.1"]]})
        await a.start(self)
        await b.start(self)

        # B learns it is private and announces a circuit address through R
        async def bCircuit():
            answer = await b.call("id")
            circuits = [x for x in answer["Addresses"] if "/p2p-circuit" in x]
            return (answer, circuits) if answer["Reachability"] == "private" and circuits else None

        bid, circuits = await until(bCircuit, "B to be private with a circuit address")
        self.assertTrue(all(f"/p2p/{relay.peerID}/p2p-circuit/p2p/{b.peerID}" in x for x in circuits), circuits)
        direct = [x for x in bid["Addresses"] if "/p2p-circuit" not in x]
        self.assertTrue(direct and all(x.startswith("/ip4/10.2.1.2/tcp/") for x in direct), direct)

        # R hands out B's circuit addresses (what a DHT query of B finds)
        async def rKnows():
            found = await relay.call("dht/findpeer", {"arg": str(b.peerID)})
            return any("/p2p-circuit" in x for x in found["Addrs"])

        await until(rKnows, "R to learn B's circuit address")

        # No route from A to B: direct dials fail
        port = direct[0].split("/tcp/")[1].split("/")[0]
        for target in (f"/ip4/10.2.1.2/tcp/{port}/p2p/{b.peerID}", f"/ip4/10.2.0.2/tcp/{port}/p2p/{b.peerID}"):
            with self.assertRaises(ControlError) as caught:
                await a.call("swarm/connect", {"arg": target})
            self.assertIn("unreachable", str(caught.exception).lower())

        # A dials B by PeerId alone
        answer = await a.call("swarm/connect", {"arg": str(b.peerID)}, timeout=120)
        self.assertEqual(answer["Peer"], str(b.peerID))
        self.assertIn(f"/p2p/{relay.peerID}/p2p-circuit", answer["Addr"])
        peers = await a.call("swarm/peers")
        viaRelay = [p for p in peers["Peers"] if p["Peer"] == str(b.peerID)]
        self.assertEqual(len(viaRelay), 1)
        self.assertIn("/p2p-circuit", viaRelay[0]["Addr"])
        pong = await a.call("ping", {"arg": str(b.peerID), "count": "2"})
        self.assertEqual(len(pong["RTTs"]), 2)

        # 10 MiB each way, byte for byte
        toB = os.urandom(SIZE)
        toA = os.urandom(SIZE)
        cidA = (await a.call("add", body=toB, timeout=120))["Hash"]
        cidB = (await b.call("add", body=toA, timeout=120))["Hash"]
        self.assertEqual(await b.cat(cidA), toB)
        self.assertEqual(await a.cat(cidB), toA)
        # still through R: there is no other way
        peers = await a.call("swarm/peers")
        self.assertEqual(
            [p["Addr"] for p in peers["Peers"] if p["Peer"] == str(b.peerID) and "/p2p-circuit" not in p["Addr"]], []
        )
