"""
The gateway as a node runs it: its config section, its factory, a node of
shape C{gateway} serving HTTP, and a clean stop.
"""

from pathlib import Path

from twisted.internet import reactor
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tau import loadConfig, makeNode
from tau.errors import ConfigError
from tau.interfaces import IHost, IRouting
from tau.services import factoryFor
from tau.services.gateway.config import GatewayConfig
from tests.services.gateway.helpers import TestSubstrate, cloud, curl


class ConfigTests(TestCase):
    def test_defaults(self):
        config = GatewayConfig.check("test", None)
        self.assertEqual(config, GatewayConfig())
        self.assertEqual(config.maxHeaderBytes, 16384)
        self.assertEqual(config.maxBody, 100 << 20)

    def test_values(self):
        config = GatewayConfig.check("test", {"max-body": "10MiB", "https": "tcp:8443", "substrate-grace": 0,
                                              "max-per-client": 8})
        self.assertEqual(config.maxBody, 10 << 20)
        self.assertEqual(config.https, "tcp:8443")
        self.assertEqual(config.substrateGrace, 0.0)

    def test_errors(self):
        for settings, field in [({"http": "nonsense:1"}, "gateway.http"), ({"substrate-fanout": 0}, "gateway.substrate-fanout"),
                                ({"substrate-fanout": 17}, "gateway.substrate-fanout"),
                                ({"substrate-timeout": 0}, "gateway.substrate-timeout"),
                                ({"max-header-bytes": 255}, "gateway.max-header-bytes"),
                                ({"max-body": "lots"}, "gateway.max-body"), ({"colour": 1}, "gateway.colour")]:
            e = self.assertRaises(ConfigError, GatewayConfig.check, "test", settings)
            self.assertIn(field, str(e))

    def test_nodeConfig(self):
        config = loadConfig(shape="gateway", root=Path(self.mktemp()),
                            overrides={"gateway": {"max-headers": 50}})
        self.assertEqual(config.services, ("gateway",))
        self.assertEqual(config.gateway.maxHeaders, 50)

    def test_factory(self):
        self.assertEqual(factoryFor("gateway").needs, (IHost, IRouting))


class NodeTests(TestCase):
    timeout = 60

    async def test_gatewayNode(self):
        """
        A node of shape gateway serves HTTP on its gateway.http endpoint; no
        substrate in its cloud: 502.
        """
        config = loadConfig(shape="gateway", root=Path(self.mktemp()), overrides={
            "api-listen": "tcp:0:interface=127.0.0.1", "p2p-listen": ["/ip4/127.0.0.1/tcp/0"],
            "gateway": {"http": "tcp:0:interface=127.0.0.1", "substrate-timeout": 1}})
        node = makeNode(config, reactor=reactor)
        node.startService()
        self.addCleanup(node.stopService)
        await node.whenReady()
        gateway = node.shapeServices["gateway"]
        port = gateway.ports()["http"].getHost().port
        status, _, _ = await curl("-H", "Host: a.example.com", f"http://127.0.0.1:{port}/")
        self.assertEqual(status, 502)

    async def test_stopClosesTheListenerAndRequests(self):
        silent = TestSubstrate("silent")
        service, _, url = await cloud(self, silent, **{"substrate-timeout": 30})
        port = service.ports()["http"].getHost().port
        opened = Protocol()
        await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory.forProtocol(lambda: opened))
        opened.transport.write(b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
        while not silent.streams:
            await deferLater(reactor, 0.01, lambda: None)
        await service.stopService()
        self.assertEqual(service.site.pending, set())
        # the substrate's stream was reset with the request
        await silent.streams[0].whenClosed()
        opened.transport.abortConnection()
        with self.assertRaises(ConnectionRefusedError):
            await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory.forProtocol(Protocol))
