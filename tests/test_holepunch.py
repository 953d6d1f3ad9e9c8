"""
Hole punching between real tau nodes behind real (nftables) NATs.

Topology (tests/natnet.py): a relay R in the "public" namespace, which also
routes between the sites; node A behind home router NA, node B behind home
router NB.  Nothing tells the nodes where they stand: AutoNAT (asking R to
dial them back, which their routers drop) says they are private, auto-relay
reserves a slot on R, A dials B's C{/p2p-circuit} address, and B, private
and holding an inbound relayed connection, starts DCUtR.

 - cone routers (plain masquerade): the punch works, A and B are
   connected directly, and R's own byte counters stop growing while 4 MiB
   go each way (R still forwards them, as the internet's router);
 - a symmetric router (masquerade fully-random): the punch fails after
   three attempts, both stay on the relay and B says so (log line and
   C{swarm/holepunch}).

Needs root, iproute2 and nftables (.ci/run installs them); fails without.
"""

import os
import shutil
import tempfile
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tau.control.client import ControlError
from tests.natnet import NATNet
from tests.test_netns import Node, until

MiB = 1 << 20
SIZE = 4 * MiB


class HolePunchTests(TestCase):
    timeout = 300

    async def makeNet(self, sites):
        if os.geteuid() != 0:
            self.fail("needs root to create network namespaces (CI runs as root)")
        for tool in ("ip", "nft"):
            if shutil.which(tool) is None:
                self.fail(f"needs {tool} (.ci/run installs iproute2 and nftables)")
        await NATNet.removeStale(reactor)
        self.net = NATNet(reactor, sites)
        self.addCleanup(self.deleteNet)
        await self.net.build()
        self.sockets = tempfile.mkdtemp(prefix="tau-hp-")
        self.addCleanup(shutil.rmtree, self.sockets, True)
        self.nodes = []

    async def deleteNet(self):
        left = await self.net.delete()
        self.assertEqual(left, [])

    def node(self, name, namespace, **config):
        node = Node(name, self.net.ns[namespace], Path(self.mktemp()) / name, os.path.join(self.sockets, f"{name}.sock"), **config)
        self.nodes.append(node)
        return node

    async def withLogs(self, scenario):
        try:
            await scenario()
        except Exception as e:
            logs = "".join(
                f"\n--- {n.name} ({n.peerID}) ---\n{n.process.output()[-6000:]}" for n in self.nodes if n.process
            )
            raise AssertionError(f"{e.__class__.__name__}: {e}\n{logs}") from e

    async def meet(self):
        """
        Start R, A and B; wait until B is private with a circuit address
        on R; A dials it.  Returns C{(relay, a, b)}.
        """
        net = self.net
        relay = self.node(
            "r",
            "r",
            **{
                "p2p-listen": ["/ip4/0.0.0.0/tcp/0"],
                "dht": {"mode": "server"},
                # no limits: when the punch fails, bulk data may cross R
                "relay": {"service": "on", "data": 0, "duration": 0},
            },
        )
        await relay.start(self)
        rid = await relay.call("id")
        boot = {
            site: [x for x in rid["Addresses"] if x.startswith(f"/ip4/{net.relayIP(site)}/tcp/")][0]
            for site in ("a", "b")
        }
        common = {"p2p-listen": ["/ip4/0.0.0.0/tcp/0"], "autonat": {"boot-delay": 0.5}}
        a = self.node("a", "a", peers=[boot["a"]], **common)
        b = self.node("b", "b", peers=[boot["b"]], **common)
        await a.start(self)
        await b.start(self)

        async def circuit(node):
            answer = await node.call("id")
            circuits = [x for x in answer["Addresses"] if "/p2p-circuit" in x]
            return circuits if answer["Reachability"] == "private" and circuits else None

        circuits = await until(lambda: circuit(b), "B to be private with a circuit address")
        await until(lambda: circuit(a), "A to be private")
        target = [x for x in circuits if x.startswith(f"/ip4/{net.relayIP('a')}/")]
        target = target[0] if target else f"{boot['a']}/p2p-circuit/p2p/{b.peerID}"
        if "/p2p/" + str(b.peerID) not in target:
            target = f"{target}/p2p/{b.peerID}"
        answer = await a.call("swarm/connect", {"arg": target}, timeout=60)
        self.assertIn("/p2p-circuit", answer["Addr"])
        return relay, a, b

    async def transfer(self, a, b, size=SIZE):
        """
        C{size} random bytes each way (bitswap), checked byte for byte.
        """
        toB, toA = os.urandom(size), os.urandom(size)
        cidA = (await a.call("add", body=toB, timeout=120))["Hash"]
        cidB = (await b.call("add", body=toA, timeout=120))["Hash"]
        self.assertEqual(await b.cat(cidA), toB)
        self.assertEqual(await a.cat(cidB), toA)

    async def outcome(self, node, peer, state):
        async def check():
            try:
                answer = await node.call("swarm/holepunch", {"arg": str(peer)})
            except ControlError:
                return None
            return answer if answer["State"] == state else None

        return await until(check, f"{node.name}'s hole punch with {peer} to be {state}", limit=60)

    async def test_conesPunched(self):
        """
        Behind two home routers, A and B end up on a direct connection
        between the routers' public addresses, and R's own byte counters
        stay still while 4 MiB go each way.
        """
        await self.makeNet({"a": "cone", "b": "cone"})
        await self.withLogs(self.conesPunched)

    async def conesPunched(self):
        net = self.net
        relay, a, b = await self.meet()
        done = await self.outcome(b, a.peerID, "direct")
        self.assertEqual(done["Role"], "initiator")
        self.assertEqual(done["Relay"], str(relay.peerID))
        self.assertTrue(done["Addr"].startswith(f"/ip4/{net.publicIP('a')}/tcp/"), done)
        await self.outcome(a, b.peerID, "direct")

        async def directOnly():
            peers = (await a.call("swarm/peers"))["Peers"]
            addrs = [p["Addr"] for p in peers if p["Peer"] == str(b.peerID)]
            return addrs if addrs and all("/p2p-circuit" not in x for x in addrs) else None

        addrs = await until(directOnly, "A's relayed connection to B to close")
        self.assertTrue(addrs[0].startswith(f"/ip4/{net.publicIP('b')}/tcp/"), addrs)

        before = await net.counters()
        await self.transfer(a, b)
        after = await net.counters()
        own = (after["input"] - before["input"]) + (after["output"] - before["output"])
        forwarded = after["forward"] - before["forward"]
        self.assertGreater(forwarded, 2 * SIZE, (before, after))
        # identify pushes, DHT and AutoNAT chatter only: far below the data
        self.assertLess(own, SIZE // 8, (before, after))

    async def test_symmetricStaysRelayed(self):
        """
        With A behind a symmetric NAT the punch fails after three attempts:
        B says so, both stay on the relay, and the data crosses R.
        """
        await self.makeNet({"a": "symmetric", "b": "cone"})
        await self.withLogs(self.symmetricStaysRelayed)

    async def symmetricStaysRelayed(self):
        net = self.net
        relay, a, b = await self.meet()
        failed = await self.outcome(b, a.peerID, "relayed")
        self.assertEqual(failed["Attempts"], 3, failed)
        self.assertTrue(failed["Reason"], failed)
        await b.process.waitFor(b"staying on the relay", timeout=10)
        peers = (await a.call("swarm/peers"))["Peers"]
        addrs = [p["Addr"] for p in peers if p["Peer"] == str(b.peerID)]
        self.assertTrue(addrs and all("/p2p-circuit" in x for x in addrs), addrs)

        before = await net.counters()
        await self.transfer(a, b, size=MiB)
        after = await net.counters()
        self.assertGreater(after["input"] - before["input"], 2 * MiB, (before, after))
        self.assertGreater(after["output"] - before["output"], 2 * MiB, (before, after))
