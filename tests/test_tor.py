"""
Tor without a Tor network: the C{tor} config section, onion addresses, and
every way tor can fail to start -- each gives a clear error (why, and tor's
last log lines) while the node keeps running on its other transports.
"""

import socket
import time
from pathlib import Path

import yaml
from hypothesis import given, strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from tau.addrs import UnsupportedAddress
from tau.config import loadConfig, publicView
from tau.dialer import DialError
from tau.errors import ConfigError
from tau.node import makeNode
from tau.tor.config import MAX_OPTION_VALUE, MAX_OPTIONS, TorSection
from tau.tor.control import LogTail, TorStartError, bootstrapProgress, findTor
from tau.tor.transport import OnionTransport, onionAddr, parseOnion
from tests.torNetwork import freePorts, torAvailable

NAME = "vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd"


def load(value):
    return TorSection().load("test.yaml", value)


class TorSectionTests(SynchronousTestCase):
    def test_defaults(self):
        """
        Tor is off by default; enabled, it launches a tor and publishes an
        onion service on port 4242, clear-net listeners kept.
        """
        settings = load(None)
        self.assertEqual(
            (settings["enabled"], settings["launch"], settings["onion"], settings["only"], settings["port"]),
            (False, True, True, False, 4242),
        )

    def test_runningTorNeedsControl(self):
        """
        C{launch: false} needs the control port of the running tor.
        """
        with self.assertRaises(ConfigError) as e:
            load({"enabled": True, "launch": False})
        self.assertIn("tor.control", str(e.exception))
        self.assertEqual(load({"enabled": True, "launch": False, "control": "tcp:127.0.0.1:9051"})["control"], "tcp:127.0.0.1:9051")

    def test_badFields(self):
        for value, field in [
            ({"enabled": "yes"}, "tor.enabled"),
            ({"only": 1}, "tor.only"),
            ({"port": 0}, "tor.port"),
            ({"port": 65536}, "tor.port"),
            ({"timeout": 0}, "tor.timeout"),
            ({"timeout": 3601}, "tor.timeout"),
            ({"control": "ssl:127.0.0.1:9051"}, "tor.control"),
            ({"options": ["TestingTorNetwork 1"]}, "tor.options"),
            ({"options": {"Bad Name": "1"}}, "tor.options.Bad Name"),
            ({"options": {"SocksPort": "9050"}}, "tor.options.SocksPort"),
            ({"options": {"controlport": "9051"}}, "tor.options.controlport"),
            ({"options": {"Log": "notice stdout\nControlPort 1"}}, "tor.options.Log"),
            ({"options": {"DirAuthority": []}}, "tor.options.DirAuthority"),
            ({"colour": "red"}, "tor.colour"),
        ]:
            with self.assertRaises(ConfigError, msg=repr(value)) as e:
                load(value)
            self.assertIn(field, str(e.exception))
        self.assertEqual(load({"port": 65535, "timeout": 3600})["port"], 65535)

    def test_optionLimits(self):
        """
        At most L{MAX_OPTIONS} options and values, each of at most
        L{MAX_OPTION_VALUE} characters; one more is refused.
        """
        many = {f"Option{i}": "1" for i in range(MAX_OPTIONS)}
        self.assertEqual(len(load({"options": many})["options"]), MAX_OPTIONS)
        with self.assertRaises(ConfigError):
            load({"options": {**many, "OneMore": "1"}})
        self.assertEqual(load({"options": {"A": ["x"] * MAX_OPTIONS}})["options"]["A"], ["x"] * MAX_OPTIONS)
        with self.assertRaises(ConfigError):
            load({"options": {"A": ["x"] * (MAX_OPTIONS + 1)}})
        self.assertEqual(load({"options": {"A": "x" * MAX_OPTION_VALUE}})["options"]["A"], "x" * MAX_OPTION_VALUE)
        with self.assertRaises(ConfigError) as e:
            load({"options": {"A": "x" * (MAX_OPTION_VALUE + 1)}})
        self.assertIn("tor.options.A", str(e.exception))
        self.assertEqual(load({"options": {"NumCPUs": 2}})["options"], {"NumCPUs": "2"})

    def test_inNodeConfig(self):
        """
        The section is read from a node's config file and shown by
        C{publicView}.
        """
        root = Path(self.mktemp())
        path = Path(self.mktemp())
        path.write_text(yaml.safe_dump({"tor": {"enabled": True, "only": True}}))
        config = loadConfig(shape="full", root=root, configFile=path)
        self.assertTrue(config.tor["enabled"] and config.tor["only"])
        self.assertEqual(publicView(config)["tor"]["only"], True)


class OnionAddressTests(SynchronousTestCase):
    def test_roundTrip(self):
        addr = onionAddr(NAME + ".onion", 4242)
        self.assertEqual(addr, f"/onion3/{NAME}:4242")
        self.assertEqual(parseOnion(addr), (NAME + ".onion", 4242))

    def test_bad(self):
        for addr in [f"/onion3/{NAME}", f"/onion3/{NAME}:0", f"/onion3/{NAME}:65536", f"/onion3/{NAME[:-1]}:1",
                     f"/onion3/{NAME.upper()}:1", "/onion/abcdefghijklmnop:1", f"/onion3/{NAME}:1/tcp/1",
                     f"/ip4/1.2.3.4/onion3/{NAME}:1"]:
            with self.assertRaises(UnsupportedAddress, msg=addr):
                parseOnion(addr)
        with self.assertRaises(UnsupportedAddress):
            onionAddr("example.onion", 1)

    @given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567", min_size=56, max_size=56), st.integers(1, 65535))
    def test_parseWhatWeMake(self, name, port):
        self.assertEqual(parseOnion(onionAddr(name, port)), (name + ".onion", port))

    @given(st.text(max_size=120))
    def test_parseNeverCrashes(self, text):
        try:
            parseOnion(text)
        except UnsupportedAddress:
            pass

    def test_transportClaimsOnionOnly(self):
        transport = OnionTransport(None, lambda: None, None)
        self.assertTrue(transport.canDial(f"/onion3/{NAME}:1"))
        self.assertFalse(transport.canDial("/ip4/127.0.0.1/tcp/1"))
        self.assertFalse(transport.canDial(f"/onion3/{NAME}:1/p2p/12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq/p2p-circuit"))

    def test_dialWithoutTor(self):
        """
        With no tor running, dialing an onion address fails at once, saying
        so.
        """
        transport = OnionTransport(None, lambda: None, None)
        d = Deferred.fromCoroutine(transport.dial(f"/onion3/{NAME}:1", None, 10))
        self.assertIn("tor is not running", str(self.failureResultOf(d, DialError).value))


class ControlHelperTests(SynchronousTestCase):
    def test_logTail(self):
        tail = LogTail(lines=3)
        tail.write(b"one\ntwo\nthr")
        tail.write("ee\n\nfour\nfi")
        self.assertEqual(tail.tail(), ["two", "three", "four", "fi"])

    def test_bootstrapProgress(self):
        self.assertEqual(
            bootstrapProgress('NOTICE BOOTSTRAP PROGRESS=75 TAG=enough_dirinfo SUMMARY="Loaded enough directory info to build circuits"'),
            (75, "enough_dirinfo", "Loaded enough directory info to build circuits"),
        )
        self.assertEqual(bootstrapProgress("garbage"), (0, "", ""))
        self.assertEqual(bootstrapProgress("PROGRESS=x"), (0, "", ""))

    def test_findTor(self):
        with self.assertRaises(TorStartError) as e:
            findTor("/nonexistent/tor")
        self.assertIn("/nonexistent/tor", str(e.exception))


def nodeConfig(case, tor):
    root = Path(case.mktemp())
    root.mkdir()
    path = root / "extra.yaml"
    path.write_text(yaml.safe_dump({"services": [], "p2p-listen": ["/ip4/127.0.0.1/tcp/0"], "tor": tor}))
    return loadConfig(shape="torfail", root=root, configFile=path)


class TorFailureTests(TestCase):
    """
    A node whose tor cannot start: the error says why; the node is ready
    and reachable over TCP all the same.
    """

    timeout = 60

    async def startNode(self, tor):
        node = makeNode(nodeConfig(self, tor), reactor)
        node.startService()
        self.addCleanup(lambda: node.stopService() if node.running else None)
        await node.whenReady()
        return node

    async def torError(self, node):
        try:
            await node.tor.whenReady()
        except TorStartError as e:
            return e
        self.fail("tor started")

    async def assertOtherTransportsWork(self, node):
        other = await self.startNode({"enabled": False})
        conn = await other.host.connect(node.announcedAddresses()[0])
        self.assertEqual(conn.remotePeer, node.config.peerID)
        self.assertIn("/tcp/", node.announcedAddresses()[0])

    def needTor(self):
        missing = torAvailable()
        if missing:
            raise SkipTest(missing)

    async def test_binaryMissing(self):
        node = await self.startNode({"enabled": True, "binary": "/nonexistent/tor"})
        error = await self.torError(node)
        self.assertIn("/nonexistent/tor", str(error))
        self.assertEqual(node.tor.error, error)
        await self.assertOtherTransportsWork(node)

    async def test_onlyThroughTor(self):
        """
        With C{tor.only}, the node binds no clear-net listener, announces
        nothing while its onion service is not up, and does not ask peers
        whether they can dial it back (it is public through its onion).
        """
        node = await self.startNode({"enabled": True, "only": True, "binary": "/nonexistent/tor"})
        await self.torError(node)
        self.assertEqual((node.host.listenAddresses(), node.announcedAddresses()), ([], []))
        self.assertEqual(node.autonat.status, "public")
        self.assertEqual(node.dht.mode, "server")

    async def test_badOption(self):
        """
        A torrc option tor does not know: tor exits, and its own words are
        in the error.
        """
        self.needTor()
        node = await self.startNode({"enabled": True, "options": {"NoSuchTorOption": "1"}})
        error = await self.torError(node)
        self.assertIn("tor exited with status 1", str(error))
        self.assertTrue(any("NoSuchTorOption" in line for line in error.logLines), error.logLines)
        await self.assertOtherTransportsWork(node)

    async def test_bootstrapFails(self):
        """
        A tor that cannot reach its directory authorities does not
        bootstrap: after C{tor.timeout} it is stopped, and the error says
        how far it got.
        """
        self.needTor()
        dirPort, orPort = freePorts(2)  # nothing listens there
        options = {"TestingTorNetwork": "1", "DirAuthority": f"nobody orport={orPort} no-v2 v3ident={'A' * 40} 127.0.0.1:{dirPort} {'B' * 40}"}
        began = time.monotonic()
        node = await self.startNode({"enabled": True, "timeout": 4, "options": options})
        error = await self.torError(node)
        self.assertIn("did not bootstrap in 4", str(error))
        self.assertTrue(error.logLines)
        self.assertLess(time.monotonic() - began, 30)
        self.assertIsNone(node.tor.tor)
        await self.assertOtherTransportsWork(node)

    async def test_controlRefused(self):
        [port] = freePorts(1)
        node = await self.startNode({"enabled": True, "launch": False, "control": f"tcp:127.0.0.1:{port}"})
        error = await self.torError(node)
        self.assertIn(f"cannot reach the tor control port tcp:127.0.0.1:{port}", str(error))
        self.assertIn("refused", str(error).lower())
        await self.assertOtherTransportsWork(node)

    async def test_controlSilent(self):
        """
        A control port that accepts but never answers: the error comes
        after C{tor.timeout}.
        """
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        self.addCleanup(silent.close)
        port = silent.getsockname()[1]
        node = await self.startNode({"enabled": True, "launch": False, "control": f"tcp:127.0.0.1:{port}", "timeout": 1})
        error = await self.torError(node)
        self.assertIn("did not answer in 1", str(error))

    async def test_stopWhileLaunching(self):
        """
        Stopping the node while its tor bootstraps stops that tor (the
        test's reactor would be left unclean otherwise).
        """
        self.needTor()
        dirPort, orPort = freePorts(2)
        options = {"TestingTorNetwork": "1", "DirAuthority": f"nobody orport={orPort} no-v2 v3ident={'A' * 40} 127.0.0.1:{dirPort} {'B' * 40}"}
        node = await self.startNode({"enabled": True, "timeout": 50, "options": options})
        pidFile = node.config.dataDir / "tor" / "tor.pid"
        for _ in range(100):  # tor writes its pid file as it starts
            if pidFile.exists():
                break
            await deferLater(reactor, 0.1, lambda: None)
        self.assertTrue(pidFile.exists())
        await node.stopService()
        error = await self.torError(node)
        self.assertIn("stopped", str(error))
