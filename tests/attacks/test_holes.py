"""
The smaller holes of the network layer, each attacked against a real node
process on loopback: perf served to anyone, a control API socket and
files other users can open, a control API without a token on a shared
host, add/dir names that leave the folder, C{tau get} leaving a partial
C{PATH.part}, secrets open to other users without a word.
"""

import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

import treq
import yaml
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tau.identity import PeerID
from tau.protocols import perf
from tau.protocols.multistream import NegotiationFailed
from tau.store import unixfs, unixfsread
from tests.hosts import startHost
from tests.processes import TAU, TWISTD, run, spawn, stopped

# helia's CID of b"hello\n" (CIDv1, raw leaf)
HELLO = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"
SECRET_WARNING = "holds a secret and is open to other users"


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


class NodeProcess(TestCase):
    """
    Start real C{twistd taubyte} nodes and run the C{tau} command against
    them.
    """

    timeout = 180

    async def startNode(self, root=None, fields=None, *options):
        """
        A node of shape full on loopback, with C{fields} in a C{--config}
        file; returns (root, process).
        """
        root = root or Path(self.mktemp()).resolve()
        argv = TWISTD + ["-n", "--pidfile=", "taubyte", f"--root={root}", "--listen=/ip4/127.0.0.1/tcp/0", *options]
        if fields:
            config = Path(self.mktemp()).resolve()
            config.write_text(yaml.safe_dump(fields))
            argv.append(f"--config={config}")
        node = spawn(reactor, argv)
        self.addCleanup(stopped, node)
        await node.waitFor(b"reachable at")
        return root, node

    def p2pAddress(self, node):
        return re.search(r"reachable at (\S+)", node.output()).group(1)

    async def tau(self, root, *args):
        return await run(reactor, TAU + ["--root", str(root), *args])

    async def ok(self, root, *args):
        status, out, err = await self.tau(root, *args)
        self.assertEqual(status, 0, out + err)
        return out

    async def post(self, root, command, body=None, headers=None):
        """
        POST to the node's control API over TCP: (status, response, JSON or
        None).
        """
        address = (root / "storage" / "full" / "api").read_text().split("/")
        url = f"http://{address[2]}:{address[4]}/api/v0/{command}"
        response = await treq.post(url, data=body, headers=headers or {}, timeout=60, persistent=False)
        content = await response.content()
        try:
            answer = json.loads(content)
        except ValueError:
            answer = None
        return response.code, response, answer


class PerfTests(NodeProcess):
    async def test_perfOnlyWhenEnabled(self):
        """
        A default node answers a perf stream with "na" (any peer could pull
        1 GiB per stream from it); with C{perf: true} it serves perf.
        """
        _, closed = await self.startNode()
        _, opened = await self.startNode(None, {"perf": True})
        host = await startHost(self)
        for node in (closed, opened):
            await host.connect(self.p2pAddress(node))
        closedID = PeerID.fromString(self.p2pAddress(closed).split("/p2p/")[-1])
        openedID = PeerID.fromString(self.p2pAddress(opened).split("/p2p/")[-1])
        with self.assertRaises(NegotiationFailed):
            await perf.perf(host, closedID, upload=0, download=1 << 20, timeout=30)
        result = await perf.perf(host, openedID, upload=1024, download=1 << 20, timeout=30)
        self.assertEqual(result["download"][0], 1 << 20)


class PrivateFilesTests(NodeProcess):
    async def test_unixSocketAndAPIFile(self):
        """
        A unix: control API socket is made 0600 (Twisted's default is
        0666, so any local user could drive the node) and the api file
        0600; the tau command still reaches the node through the socket.
        """
        sockets = tempfile.mkdtemp(prefix="tau-holes-")   # a socket path must be short
        self.addCleanup(shutil.rmtree, sockets, True)
        socket = os.path.join(sockets, "api.sock")
        root, _ = await self.startNode(None, {"api-listen": f"unix:{socket}"})
        self.assertTrue(stat.S_ISSOCK(os.stat(socket).st_mode))
        self.assertEqual(mode(socket), 0o600)
        apiFile = root / "storage" / "full" / "api"
        self.assertEqual(apiFile.read_text().strip(), f"/unix{socket}")
        self.assertEqual(mode(apiFile), 0o600)
        out = await self.ok(root, "id")
        self.assertTrue(out.startswith("12D3KooW"), out)


class TokenTests(NodeProcess):
    async def test_bearerToken(self):
        """
        With C{api-token: true}, a request without the node's token (or
        with a wrong one) gets 401 and its body is not taken; the token
        file is 0600 and the tau command sends it.
        """
        root, _ = await self.startNode(None, {"api-token": True})
        tokenFile = root / "storage" / "full" / "api-token"
        self.assertEqual(mode(tokenFile), 0o600)
        self.assertEqual(mode(root / "storage" / "full" / "api"), 0o600)
        token = tokenFile.read_text().strip()
        self.assertGreaterEqual(len(token), 32)

        wrong = ("x" if token[0] != "x" else "y") + token[1:]
        for headers in ({}, {"Authorization": f"Bearer {wrong}"}, {"Authorization": f"Bearer {token[:-1]}"},
                        {"Authorization": f"Basic {token}"}, {"Authorization": token}):
            code, response, answer = await self.post(root, "id", headers=headers)
            self.assertEqual(code, 401, headers)
            self.assertEqual(response.headers.getRawHeaders("www-authenticate"), ['Bearer realm="tau"'])
            self.assertIn("needs its token", answer["Message"])
        before = await self.ok(root, "repo", "stat")
        code, _, answer = await self.post(root, "add", body=b"x" * 200_000)
        self.assertEqual(code, 401)
        code, _, answer = await self.post(root, "id", headers={"Authorization": f"Bearer {token}"})
        self.assertEqual(code, 200)
        self.assertTrue(answer["ID"].startswith("12D3KooW"))

        # the tau command reads the token; the 401'd add stored nothing
        objects = re.search(r"NumObjects: \d+\n", before).group(0)
        self.assertIn(objects, await self.ok(root, "repo", "stat"))
        self.assertTrue((await self.ok(root, "id")).startswith(answer["ID"]))
        tokenFile.rename(tokenFile.with_name("kept"))
        status, out, err = await self.tau(root, "id")
        self.assertEqual(status, 1)
        self.assertIn("needs its token", err)
        tokenFile.with_name("kept").rename(tokenFile)

    async def test_noTokenByDefault(self):
        """
        Without C{api-token}, no token is made or asked for.
        """
        root, _ = await self.startNode()
        code, _, _ = await self.post(root, "id")
        self.assertEqual(code, 200)
        self.assertFalse((root / "storage" / "full" / "api-token").exists())
        self.assertEqual(mode(root / "storage" / "full" / "api"), 0o600)


class AddDirTests(NodeProcess):
    async def test_unsafeNamesRefused(self):
        """
        add/dir builds a folder from names given by the client: '.', '..',
        empty names and NUL are refused (400), '/' only separates names.
        """
        root, _ = await self.startNode()
        hello = Path(self.mktemp())
        hello.write_bytes(b"hello\n")
        self.assertEqual((await self.ok(root, "add", "-q", str(hello))).strip(), HELLO)
        for path in ("..", ".", "a/../b", "a/..", "/etc", "a//b", "a/", "", "a\x00b", "../../x"):
            code, _, answer = await self.post(root, "add/dir", body=json.dumps({"entries": {path: HELLO}}).encode())
            self.assertEqual(code, 400, path)
            self.assertIn("refusing the path", answer["Message"])
        code, _, answer = await self.post(root, "add/dir", body=json.dumps({"entries": {"a/b.txt": HELLO, "c": HELLO}}).encode())
        self.assertEqual(code, 200, answer)
        listing = await self.ok(root, "ls", answer["Hash"])
        self.assertEqual([line.split()[-1] for line in listing.splitlines()], ["a", "c"])


class GetTests(NodeProcess):
    async def test_failedGetLeavesNothing(self):
        """
        tau get of a folder the node cuts short (an unsafe name, "z/..",
        after a 3 MB file) fails and leaves neither PATH nor PATH.part; a
        CID found nowhere neither.
        """
        root, _ = await self.startNode()
        big = Path(self.mktemp())
        big.write_bytes(os.urandom(3_000_000))
        bigCid = (await self.ok(root, "add", "-q", str(big))).strip()
        # a directory block naming "z/..": stored as the bytes of a file
        # (a raw block), then asked for as dag-pb (the store keys blocks by
        # multihash), as a peer could serve it over Bitswap
        folder, block, _ = unixfs.directoryNode({
            "a": unixfs.Entry(unixfsread._parse(bigCid), 3_000_000, 3_000_000),
            "z/..": unixfs.Entry(unixfsread._parse(HELLO), 6, 6),
        })
        blockFile = Path(self.mktemp())
        blockFile.write_bytes(block)
        await self.ok(root, "add", "-q", str(blockFile))
        for cid in (unixfs.cidText(folder), "bafkreiaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"):
            target = Path(self.mktemp()).resolve()
            status, out, err = await self.tau(root, "get", cid, "-o", str(target), "--timeout", "2")
            self.assertEqual(status, 1, out + err)
            self.assertEqual(sorted(os.listdir(target.parent)), [], err)


class SecretWarningTests(NodeProcess):
    async def test_openSecretsWarned(self):
        """
        A config file holding the key, or a swarm key, that other users can
        read is named in a warning at start and by the tau command; the
        node still starts.  Mode 0600: no warning.
        """
        root = Path(self.mktemp()).resolve()
        await self.ok(root, "init")
        config = root / "config" / "full.yaml"
        self.assertEqual(mode(config), 0o600)
        swarmKey = Path(self.mktemp()).resolve()
        swarmKey.write_text("/key/swarm/psk/1.0.0/\n/base16/\n" + "ab" * 32 + "\n")
        os.chmod(swarmKey, 0o644)
        os.chmod(config, 0o644)
        _, node = await self.startNode(root, None, f"--swarmkey={swarmKey}")
        for path in (config, swarmKey):
            self.assertIn(f"{path} {SECRET_WARNING} (mode 0644)", node.output())
        status, out, err = await self.tau(root, "id")
        self.assertEqual(status, 0, err)
        self.assertIn(f"tau: warning: {config} {SECRET_WARNING} (mode 0644); make it private: chmod 600 {config}", err)
        os.chmod(config, 0o640)
        self.assertIn(f"{config} {SECRET_WARNING} (mode 0640)", (await self.tau(root, "id"))[2])
        os.chmod(config, 0o600)
        status, out, err = await self.tau(root, "id")
        self.assertEqual((status, err), (0, ""))
