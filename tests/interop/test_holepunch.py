"""
Hole punching between js-libp2p (@libp2p/dcutr) and tau, each behind its
own nftables NAT (tests/natnet.py), through a tau relay.

The js node sits behind router NA and dials tau's C{/p2p-circuit} address;
tau, behind NB and private by AutoNAT, starts DCUtR on the inbound relayed
connection (js answers as A, the client of the direct connection's upgrade;
tau is B, its server) and both end up on a direct TCP connection between the
routers' public addresses.

js-libp2p dials from a fresh port each time and announces only observed
addresses AutoNAT confirmed, so the harness gives it what go-libp2p's port
reuse gives: every dial from one local port (C{--local-port}) and that
port's public address announced (C{--announce}).
"""

import os
import random
import shutil
import tempfile
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tau.control.client import ControlError
from tests.interop.jspeer import JsPeerUnavailable, startJsPeer
from tests.natnet import NATNet
from tests.test_netns import Node, until


class JsHolePunchTests(TestCase):
    timeout = 240

    async def test_jsDialsTauPunches(self):
        """
        js (behind NA) reaches tau (behind NB) through R; tau, private,
        punches; js and tau end up directly connected, and ping runs on it.
        """
        if os.geteuid() != 0:
            self.fail("needs root to create network namespaces (CI runs as root)")
        for tool in ("ip", "nft"):
            if shutil.which(tool) is None:
                self.fail(f"needs {tool} (.ci/run installs iproute2 and nftables)")
        await NATNet.removeStale(reactor)
        net = NATNet(reactor, {"a": "cone", "b": "cone"})
        self.addCleanup(self._delete, net)
        await net.build()
        sockets = tempfile.mkdtemp(prefix="tau-hpjs-")
        self.addCleanup(shutil.rmtree, sockets, True)
        self.nodes = []
        self.js = None
        try:
            await self.scenario(net, sockets)
        except JsPeerUnavailable:
            raise
        except Exception as e:
            logs = "".join(f"\n--- {n.name} ---\n{n.process.output()[-5000:]}" for n in self.nodes if n.process)
            if self.js is not None:
                logs += f"\n--- js ---\n{self.js.process.stderrTail(5000)}"
            raise AssertionError(f"{e.__class__.__name__}: {e}\n{logs}") from e

    async def _delete(self, net):
        self.assertEqual(await net.delete(), [])

    async def scenario(self, net, sockets):
        def node(name, namespace, **config):
            n = Node(name, net.ns[namespace], Path(self.mktemp()) / name, os.path.join(sockets, f"{name}.sock"), **config)
            self.nodes.append(n)
            return n

        relay = node(
            "r",
            "r",
            **{"p2p-listen": ["/ip4/0.0.0.0/tcp/0"], "relay": {"service": "on", "data": 0, "duration": 0}},
        )
        await relay.start(self)
        rid = await relay.call("id")
        boot = {s: [x for x in rid["Addresses"] if x.startswith(f"/ip4/{net.relayIP(s)}/tcp/")][0] for s in ("a", "b")}
        b = node("b", "b", **{"p2p-listen": ["/ip4/0.0.0.0/tcp/0"], "peers": [boot["b"]], "autonat": {"boot-delay": 0.5}})
        await b.start(self)

        async def private():
            answer = await b.call("id")
            return answer if answer["Reachability"] == "private" and any("/p2p-circuit" in x for x in answer["Addresses"]) else None

        await until(private, "tau B to be private with a circuit address")

        port = random.randint(20000, 30000)  # a fresh namespace: nothing else binds there
        self.js = js = await startJsPeer(
            reactor,
            script="holepunch.mjs",
            listen=["/ip4/0.0.0.0/tcp/0"],
            extraArgs=("--local-port", str(port), "--announce", f"/ip4/{net.publicIP('a')}/tcp/{port}"),
            wrapper=("ip", "netns", "exec", net.ns["a"]),
        )
        self.addCleanup(js.stop)
        self.assertIn("/libp2p/dcutr", (await js.command("info"))["protocols"])
        jsPeer = (await js.command("info"))["peerId"]
        circuit = f"{boot['a']}/p2p-circuit/p2p/{b.peerID}"
        dialed = await js.command("dial", addr=circuit)
        self.assertIn("/p2p-circuit", dialed["remoteAddr"])

        async def punched():
            try:
                answer = await b.call("swarm/holepunch", {"arg": jsPeer})
            except ControlError:
                return None
            if answer["State"] == "relayed":
                raise AssertionError(f"the hole punch failed: {answer}")
            return answer if answer["State"] == "direct" else None

        outcome = await until(punched, "tau B's hole punch with js to be direct", limit=60)
        self.assertEqual(outcome["Role"], "initiator")
        self.assertEqual(outcome["Addr"], f"/ip4/{net.publicIP('a')}/tcp/{port}")

        async def jsDirect():
            conns = (await js.command("connections"))["connections"]
            direct = [c for c in conns if c["peer"] == str(b.peerID) and "/p2p-circuit" not in c["remoteAddr"]]
            return direct or None

        direct = await until(jsDirect, "js to see the direct connection", limit=30)
        self.assertTrue(direct[0]["remoteAddr"].startswith(f"/ip4/{net.publicIP('b')}/tcp/"), direct)
        # js, as A, dialed the direct connection (the upgrade's client)
        self.assertEqual(direct[0]["direction"], "outbound")
        pong = await js.command("ping", peer=str(b.peerID))
        self.assertGreaterEqual(pong["rtt"], 0)
        peers = (await b.call("swarm/peers"))["Peers"]
        self.assertIn(
            f"/ip4/{net.publicIP('a')}/tcp/{port}", [p["Addr"] for p in peers if p["Peer"] == jsPeer]
        )
