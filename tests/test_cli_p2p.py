"""
The p2p commands of the C{tau} CLI against two running twistd nodes:
swarm connect and peers, ping, dht provide, findprovs and findpeer.
"""

import hashlib
import re
from pathlib import Path

import cid as pycid
import multihash
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests.processes import TAU, TWISTD, run, spawn, stopped


class P2PCommandTests(TestCase):
    timeout = 180

    async def startNode(self):
        root = Path(self.mktemp()).resolve()
        node = spawn(reactor, TWISTD + ["-n", "--pidfile=", "taubyte", f"--root={root}", "--listen=/ip4/127.0.0.1/tcp/0"])
        self.addCleanup(stopped, node)
        await node.waitFor(b"reachable at")
        peerID = re.search(r"node (12D3KooW\w+) ready", node.output()).group(1)
        address = re.search(r"reachable at (\S+)", node.output()).group(1)
        return root, peerID, address

    async def tau(self, root, *args):
        status, out, err = await run(reactor, TAU + ["--root", str(root), *args])
        return status, out, err

    async def ok(self, root, *args):
        status, out, err = await self.tau(root, *args)
        self.assertEqual(status, 0, out + err)
        return out

    async def test_swarmPingDHT(self):
        (rootA, idA, _), (rootB, idB, addrB) = await self.startNode(), await self.startNode()
        self.assertTrue(addrB.endswith(f"/p2p/{idB}"))

        out = await self.ok(rootA, "swarm", "connect", addrB)
        self.assertEqual(out.strip(), f"connect {idB} success")
        out = await self.ok(rootA, "swarm", "peers")
        [line] = out.splitlines()
        self.assertTrue(line.startswith(addrB.split("/p2p/")[0]), line)
        self.assertIn(f"/p2p/{idB}  outbound", line)
        out = await self.ok(rootB, "swarm", "peers")
        self.assertIn(f"/p2p/{idA}  inbound", out)

        out = await self.ok(rootA, "ping", idB, "-n", "2")
        self.assertEqual(len(re.findall(rf"pong from {idB}: time=[0-9.]+ ms", out)), 2, out)

        data = b"the cli provides this"
        cid = str(pycid.make_cid(1, "raw", multihash.encode(hashlib.sha256(data).digest(), 0x12)))
        out = await self.ok(rootB, "dht", "provide", cid)
        self.assertRegex(out, r"provided to [1-9]\d* peers")
        out = await self.ok(rootA, "dht", "findprovs", cid, "-n", "1")
        self.assertEqual(out.split(), [idB])
        out = await self.ok(rootA, "dht", "findpeer", idB)
        self.assertIn(addrB.split("/p2p/")[0], out)

    async def test_oneLineErrors(self):
        root, peerID, address = await self.startNode()
        for args, words in [
            (("ping", "not-a-peer"), "not a peer ID"),
            (("dht", "findprovs", "not-a-cid"), "not a CID"),
            (("swarm", "connect", "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"), "failure"),
        ]:
            status, out, err = await self.tau(root, *args)
            self.assertNotEqual(status, 0)
            self.assertNotIn("Traceback", out + err)
            lines = err.splitlines()
            self.assertEqual(len(lines), 1, err)
            self.assertTrue(lines[0].startswith("tau: ") and words in lines[0], lines[0])

    async def test_nodeNotRunning(self):
        other = Path(self.mktemp()).resolve()
        status, out, err = await run(reactor, TAU + ["--root", str(other), "init"])
        self.assertEqual(status, 0, err)
        status, out, err = await self.tau(other, "swarm", "peers")
        self.assertNotEqual(status, 0)
        self.assertIn("no running node", err)
