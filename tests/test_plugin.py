"""
The twistd plugin, its options, and a real twistd process.
"""

import os
import re
import signal
from pathlib import Path

import yaml
from twisted.application.service import IServiceMaker
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError
from zope.interface.verify import verifyObject
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tau.tap import Options
from tests.processes import TWISTD, environment, run, spawn, stopped


class PluginTests(SynchronousTestCase):
    def test_discovered(self):
        """
        twistd finds the taubyte plugin, and it provides IServiceMaker.
        """
        import twisted.plugins

        makers = {m.tapname: m for m in getPlugins(IServiceMaker, twisted.plugins)}
        self.assertIn("taubyte", makers)
        self.assertTrue(verifyObject(IServiceMaker, makers["taubyte"]))
        self.assertEqual(makers["taubyte"].module, "tau.tap")


class OptionsTests(SynchronousTestCase):
    def test_defaults(self):
        options = Options()
        options.parseOptions([])
        self.assertEqual(options["shape"], "full")
        self.assertIsNone(options["root"])
        self.assertEqual(options.overrides(), {})

    def test_overrides(self):
        options = Options()
        options.parseOptions(
            [
                "--shape=seer",
                "--root=/r",
                "--listen=/ip4/127.0.0.1/tcp/1",
                "--listen=/ip6/::1/tcp/1",
                "--announce=/dns4/a.example.com/tcp/1",
                "--peer=/ip4/1.2.3.4/tcp/1/p2p/12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq",
                "--api-listen=tcp:0:interface=127.0.0.1",
            ]
        )
        self.assertEqual(options["shape"], "seer")
        self.assertEqual(
            options.overrides(),
            {
                "p2p-listen": ["/ip4/127.0.0.1/tcp/1", "/ip6/::1/tcp/1"],
                "p2p-announce": ["/dns4/a.example.com/tcp/1"],
                "peers": ["/ip4/1.2.3.4/tcp/1/p2p/12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"],
                "api-listen": "tcp:0:interface=127.0.0.1",
            },
        )

    def test_unknownOption(self):
        self.assertRaises(UsageError, Options().parseOptions, ["--colour=blue"])


def twistdArgs(root, *extra):
    return TWISTD + ["-n", "--pidfile=", "taubyte", f"--root={root}", "--listen=/ip4/127.0.0.1/tcp/0", *extra]


class TwistdTests(TestCase):
    """
    C{twistd -n taubyte} for real, in a child process.
    """

    timeout = 120

    def startNode(self, root, *extra):
        proc = spawn(reactor, twistdArgs(root, *extra))
        self.addCleanup(stopped, proc)
        return proc

    def test_runStopRestart(self):
        """
        The first start creates the root and logs the PeerId and the
        addresses; SIGTERM stops it with status 0 and no traceback; SIGINT
        too; the second start has the same identity.
        """

        async def go():
            root = Path(self.mktemp()).resolve()
            peerIDs = []
            for sig in (signal.SIGTERM, signal.SIGINT):
                proc = self.startNode(root)
                await proc.waitFor(b"api listening on")
                out = proc.output()
                peerIDs.append(re.search(r"node (12D3KooW\w+) ready", out).group(1))
                self.assertRegex(out, r"api listening on 127\.0\.0\.1:\d+")
                self.assertTrue((root / "config" / "full.yaml").exists())
                self.assertTrue((root / "storage" / "full" / "api").exists())
                proc.kill(sig)
                status = await proc.ended()
                out = proc.output()
                self.assertEqual(status, 0, out)
                self.assertNotIn("Traceback", out)
                self.assertNotIn("Unhandled error", out)
                self.assertFalse((root / "storage" / "full" / "api").exists())
            self.assertEqual(peerIDs[0], peerIDs[1])
            stored = yaml.safe_load((root / "config" / "full.yaml").read_text())
            self.assertIn("privatekey", stored)
            self.assertEqual(os.stat(root / "config" / "full.yaml").st_mode & 0o777, 0o600)

        return Deferred.fromCoroutine(go())

    def test_badConfigOneLine(self):
        """
        A bad value exits non-zero with one line naming file, field and what
        is expected, without a traceback, and creates nothing.
        """

        async def go():
            root = Path(self.mktemp()).resolve()
            bad = Path(self.mktemp()).resolve()
            bad.mkdir()
            (bad / "node.yaml").write_text("p2p-listen: [/ip4/1.2.3.4/udp/9]\n")
            status, out, err = await run(reactor, twistdArgs(root, f"--config={bad / 'node.yaml'}"))
            self.assertNotEqual(status, 0)
            self.assertNotIn("Traceback", out + err)
            lines = [line for line in err.splitlines() if line.strip()]
            self.assertEqual(len(lines), 1, err)
            self.assertIn(f"{bad / 'node.yaml'}: p2p-listen[0]:", lines[0])
            self.assertFalse(root.exists())

        return Deferred.fromCoroutine(go())

    def test_unknownServiceRefused(self):
        """
        A shape naming a service Taubyte does not have ends twistd with one
        line naming it and the services there are, no traceback.
        """

        async def go():
            root = Path(self.mktemp()).resolve()
            (root / "config").mkdir(parents=True)
            (root / "config" / "odd.yaml").write_text("services: [nosuch]\n")
            status, out, err = await run(reactor, TWISTD + ["-n", "--pidfile=", "taubyte", "--shape=odd",
                                                            f"--root={root}"])
            self.assertNotEqual(status, 0)
            self.assertIn("services[0]: unknown service 'nosuch' (Taubyte's services: auth, gateway,", err)
            self.assertNotIn("Traceback", out + err)

        return Deferred.fromCoroutine(go())

    def test_portInUseExits(self):
        async def go():
            root = Path(self.mktemp()).resolve()
            port = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
            self.addCleanup(port.stopListening)
            taken = port.getHost().port
            status, out, err = await run(reactor, twistdArgs(root, f"--api-listen=tcp:{taken}:interface=127.0.0.1"))
            self.assertNotEqual(status, 0)
            self.assertIn(f"taubyte: cannot listen for api on 'tcp:{taken}:interface=127.0.0.1'", out + err)
            self.assertNotIn("Traceback", out + err)

        return Deferred.fromCoroutine(go())

    def test_defaultRootIsPrinted(self):
        async def go():
            home = Path(self.mktemp()).resolve()
            home.mkdir()
            env = environment(HOME=str(home))
            env.pop("TAU_ROOT", None)
            proc = spawn(reactor, TWISTD + ["-n", "--pidfile=", "taubyte", "--listen=/ip4/127.0.0.1/tcp/0"], env=env)
            self.addCleanup(stopped, proc)
            await proc.waitFor(b"api listening on")
            self.assertIn(f"using root {home / '.tau'}", proc.output())
            self.assertTrue((home / ".tau" / "config" / "full.yaml").exists())
            proc.kill()
            self.assertEqual(await proc.ended(), 0, proc.output())

        return Deferred.fromCoroutine(go())


class GarbageCollectionTests(SynchronousTestCase):
    def test_frozenOnceReady(self):
        """
        Once the node is ready, what it built to start is moved out of the
        collector's passes (C{gc.freeze}): a full collection under load no
        longer walks all of it.
        """
        import gc

        from twisted.internet.defer import succeed
        from twisted.internet.testing import MemoryReactorClock

        from tau.tap import _Guard

        class ReadyNode:
            def whenReady(self):
                return succeed(self)

        self.addCleanup(gc.unfreeze)
        gc.unfreeze()
        self.assertEqual(gc.get_freeze_count(), 0)
        guard = _Guard(ReadyNode(), MemoryReactorClock())
        guard.startService()
        self.assertGreater(gc.get_freeze_count(), 1000)

    def test_failedLaterStops(self):
        """
        A node that fails after twistd started it (its ports bound later,
        say) is logged and stops the reactor; one that fails at once ends
        the process with its message.
        """
        from twisted.internet.defer import Deferred, fail
        from twisted.internet.testing import MemoryReactorClock

        from tau.tap import _Guard

        class Node:
            def __init__(self, ready):
                self.ready = ready

            def whenReady(self):
                return self.ready

        reactor = MemoryReactorClock()
        ready = Deferred()
        _Guard(Node(ready), reactor).startService()
        self.assertEqual(reactor.whenRunningHooks, [])
        ready.errback(RuntimeError("tcp:1234: address in use"))
        self.assertEqual([hook for hook, _, _ in reactor.whenRunningHooks], [reactor.stop])

        with self.assertRaises(SystemExit) as e:
            _Guard(Node(fail(RuntimeError("no such key"))), MemoryReactorClock()).startService()
        self.assertIn("no such key", str(e.exception))
