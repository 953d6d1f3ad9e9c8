"""
The C{tau} command for real, in child processes (C{python -m tau.cli}).
"""

import json
import os
import re
import signal
from importlib.metadata import entry_points
from pathlib import Path

import multiaddr
import treq
import yaml
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tau import loadConfig
from tests.processes import TAU, TWISTD, run, spawn, stopped

PEER_ID = re.compile(r"\b12D3KooW[1-9A-HJ-NP-Za-km-z]{44}\b")


class ConsoleScriptTests(SynchronousTestCase):
    def test_entryPoint(self):
        """
        The installed metadata declares the C{tau} console script, and it is
        L{tau.cli.main}.
        """
        import tau.cli

        [script] = [ep for ep in entry_points(group="console_scripts") if ep.name == "tau"]
        self.assertEqual(script.value, "tau.cli:main")
        self.assertIs(script.load(), tau.cli.main)


class CLITests(TestCase):
    timeout = 120

    def root(self):
        return Path(self.mktemp()).resolve()

    async def tau(self, root, *args):
        """
        Run C{tau --root ROOT ARGS...}: C{(status, stdout, stderr)}.
        """
        return await run(reactor, TAU + ["--root", str(root), *args])

    def assertOneLineError(self, status, out, err):
        """
        A failed command: non-zero status, nothing on stdout, and exactly one
        line C{tau: ...} on stderr.
        """
        self.assertNotEqual(status, 0)
        self.assertNotIn("Traceback", out + err)
        self.assertEqual(out, "")
        lines = err.splitlines()
        self.assertEqual(len(lines), 1, err)
        self.assertTrue(lines[0].startswith("tau: "), err)
        return lines[0]

    async def init(self, root, *args):
        status, out, err = await self.tau(root, *args, "init")
        self.assertEqual(status, 0, out + err)
        [peerID] = PEER_ID.findall(out)
        return peerID

    def test_init(self):
        """
        C{tau init} creates a root with the node's key (mode 0600) and prints
        its PeerId; a second C{tau init} of that root refuses in one line and
        changes nothing.
        """

        async def go():
            root = self.root()
            peerID = await self.init(root)
            shapeFile = root / "config" / "full.yaml"
            self.assertEqual(os.stat(shapeFile).st_mode & 0o777, 0o600)
            self.assertTrue((root / "storage" / "full").is_dir())
            self.assertEqual(str(loadConfig(shape="full", root=root, create=False).peerID), peerID)
            before = shapeFile.read_bytes()

            line = self.assertOneLineError(*await self.tau(root, "init"))
            self.assertIn(str(shapeFile), line)
            self.assertIn("already", line)
            self.assertEqual(shapeFile.read_bytes(), before)

        return Deferred.fromCoroutine(go())

    def test_initShape(self):
        """
        C{tau --shape S init} initialises shape S beside the others, with its
        own identity; a shape naming a service this build does not provide
        is refused in one line, and nothing is created for it.
        """

        async def go():
            from tau import services

            root = self.root()
            full = await self.init(root)
            if "seer" in services.FACTORIES:
                seer = await self.init(root, "--shape", "seer")
                self.assertNotEqual(seer, full)
            else:
                line = self.assertOneLineError(*await self.tau(root, "--shape", "seer", "init"))
                self.assertIn("'seer' is not provided by this version of tau", line)
                self.assertFalse((root / "config" / "seer.yaml").exists())
                self.assertFalse((root / "storage" / "seer").exists())
            self.assertEqual(str(loadConfig(shape="full", root=root, create=False).peerID), full)

        return Deferred.fromCoroutine(go())

    def test_idOffline(self):
        """
        C{tau id} of a root whose node is not running prints the PeerId.
        """

        async def go():
            root = self.root()
            peerID = await self.init(root)
            status, out, err = await self.tau(root, "id")
            self.assertEqual(status, 0, err)
            self.assertEqual(out.splitlines(), [peerID])
            self.assertIn("not running", err)
            self.assertNotIn("Traceback", err)

            status, out, err = await self.tau(root, "id", "--json")
            self.assertEqual(status, 0, err)
            answer = json.loads(out)
            self.assertEqual(answer["ID"], peerID)
            self.assertEqual(answer["Addresses"], [])

        return Deferred.fromCoroutine(go())

    def test_idRunningNode(self):
        """
        C{tau id} against a running C{twistd -n taubyte} prints the PeerId
        and then the node's addresses, as its control API gives them;
        C{--json} prints the API's answer itself.
        """

        async def go():
            root = self.root()
            node = spawn(
                reactor,
                TWISTD + ["-n", "--pidfile=", "taubyte", f"--root={root}", "--listen=/ip4/127.0.0.1/tcp/0"],
            )
            self.addCleanup(stopped, node)
            await node.waitFor(b"api listening on")
            peerID = re.search(r"node (12D3KooW\w+) ready", node.output()).group(1)

            api = multiaddr.Multiaddr((root / "storage" / "full" / "api").read_text().strip())
            url = f"http://{api.value_for_protocol('ip4')}:{api.value_for_protocol('tcp')}/api/v0/id"
            response = await treq.post(url, persistent=False)
            self.assertEqual(response.code, 200)
            answer = json.loads(await response.content())
            self.assertEqual(answer["ID"], peerID)
            self.assertTrue(answer["Addresses"], answer)
            for addr in answer["Addresses"]:
                self.assertTrue(addr.endswith(f"/p2p/{peerID}"), addr)

            status, out, err = await self.tau(root, "id")
            self.assertEqual(status, 0, err)
            self.assertEqual(out.splitlines(), [peerID] + answer["Addresses"])
            self.assertNotIn("not running", err)

            status, out, err = await self.tau(root, "id", "--json")
            self.assertEqual(status, 0, err)
            self.assertEqual(json.loads(out), answer)

            node.kill(signal.SIGTERM)
            self.assertEqual(await node.ended(), 0, node.output())
            # Stopped: tau id answers offline again.
            status, out, err = await self.tau(root, "id")
            self.assertEqual((status, out.splitlines()), (0, [peerID]))
            self.assertIn("not running", err)

        return Deferred.fromCoroutine(go())

    def test_configShow(self):
        """
        C{tau config show} prints the effective config as YAML with the
        private key redacted, and never the key itself.
        """

        async def go():
            root = self.root()
            peerID = await self.init(root)
            key = yaml.safe_load((root / "config" / "full.yaml").read_text())["privatekey"]
            status, out, err = await self.tau(root, "config", "show")
            self.assertEqual(status, 0, err)
            shown = yaml.safe_load(out)
            self.assertEqual(shown["privatekey"], "<redacted>")
            self.assertIn("privatekey: <redacted>", out.splitlines())
            self.assertEqual(shown["peer-id"], peerID)
            self.assertEqual(shown["shape"], "full")
            self.assertEqual(shown["root"], str(root))
            self.assertEqual(shown["api-listen"], "tcp:0:interface=127.0.0.1")
            self.assertNotIn(key, out + err)
            self.assertNotIn(key[:16], out + err)

        return Deferred.fromCoroutine(go())

    def test_uninitialisedRoot(self):
        """
        C{tau id} and C{tau config show} of a root that does not exist fail
        in one line that says to run C{tau init}, and create nothing.
        """

        async def go():
            root = self.root()
            for command in (["id"], ["id", "--json"], ["config", "show"]):
                line = self.assertOneLineError(*await self.tau(root, *command))
                self.assertIn("tau init", line)
                self.assertFalse(root.exists(), command)

        return Deferred.fromCoroutine(go())

    def test_unknownSubcommand(self):
        """
        An unknown subcommand, or none, fails in one line naming the problem.
        """

        async def go():
            root = self.root()
            line = self.assertOneLineError(*await self.tau(root, "frobnicate"))
            self.assertIn("frobnicate", line)
            self.assertOneLineError(*await self.tau(root))
            self.assertOneLineError(*await self.tau(root, "config", "nope"))
            self.assertFalse(root.exists())

        return Deferred.fromCoroutine(go())
