"""
Starting and stopping a node, on a fake reactor and on the real one, and its
control API.
"""

import json
from pathlib import Path

import treq
from twisted.application.service import MultiService
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tau import loadConfig, makeNode
from tau.listen import ListenError


def testConfig(case, shape="full", **overrides):
    fields = {"api-listen": "tcp:0:interface=127.0.0.1", "p2p-listen": ["/ip4/127.0.0.1/tcp/0"]}
    fields.update(overrides)
    return loadConfig(shape=shape, root=Path(case.mktemp()), overrides=fields)


def withoutStore(node):
    """
    The block store works with threads, which MemoryReactorClock lacks; the
    fake-reactor tests are about listeners, so they run the node without it.
    """
    node.store.disownServiceParent()
    node.store = None
    if node.kvdb is not None:  # kept in SQLite and the block store, threads too
        node.kvdb.disownServiceParent()
        node.kvdb = None
    for service in node.shapeServices.values():  # their data is in the kvdb
        service.disownServiceParent()
    node.shapeServices = {}
    return node


class FakeReactorTests(SynchronousTestCase):
    def test_startAndStop(self):
        """
        Nothing is bound before start; start binds the control API on
        loopback; whenReady fires with the node; stop closes the port.
        """
        clock = MemoryReactorClock()
        node = withoutStore(makeNode(testConfig(self), reactor=clock))
        self.assertEqual(clock.tcpServers, [])
        ready = []
        node.whenReady().addCallback(ready.append)
        node.startService()
        self.assertEqual(ready, [])  # bound, but ready only once the reactor runs
        clock.run()
        self.assertEqual(ready, [node])
        # the control API and the p2p listener, both on loopback as configured
        self.assertEqual([server[3] for server in clock.tcpServers], ["127.0.0.1", "127.0.0.1"])
        self.assertEqual(set(node.ports()), {"api", "p2p"})
        self.assertTrue(node.config.apiFile.exists())
        stopped = []
        node.stopService().addCallback(stopped.append)
        self.assertEqual(stopped, [None])
        self.assertFalse(node.running)
        self.assertFalse(node.config.apiFile.exists())

    def test_badEndpointFailsWhenReady(self):
        clock = MemoryReactorClock()
        config = testConfig(self).evolve(apiListen="nonsense:1")
        node = withoutStore(makeNode(config, reactor=clock))
        node.startService()
        failure = self.failureResultOf(node.whenReady(), ListenError)
        self.assertIn("api", str(failure.value))
        self.successResultOf(node.stopService())


class PrivateSocketTests(SynchronousTestCase):
    def test_unixSocketMode(self):
        """
        A unix: API endpoint is made mode 0600 unless it gives its own mode;
        TCP endpoints are left as they are.
        """
        from tau.node import _privateSocket

        self.assertEqual(_privateSocket("unix:/run/tau.sock"), "unix:/run/tau.sock:mode=600")
        self.assertEqual(_privateSocket("unix:/run/tau.sock:mode=660"), "unix:/run/tau.sock:mode=660")
        self.assertEqual(_privateSocket("unix:/run/tau.sock:lockfile=0"), "unix:/run/tau.sock:lockfile=0:mode=600")
        self.assertEqual(_privateSocket("tcp:0:interface=127.0.0.1"), "tcp:0:interface=127.0.0.1")


class RealReactorTests(TestCase):
    async def startNode(self, **overrides):
        parent = MultiService()
        node = makeNode(testConfig(self, **overrides), reactor=reactor)
        node.setServiceParent(parent)
        parent.startService()
        self.addCleanup(parent.stopService)
        await node.whenReady()
        return node

    def test_embedInParentService(self):
        """
        A node embedded in an application's service tree starts on port 0,
        says where it listens, and stops with its parent leaving the reactor
        clean (trial fails the test on a leftover port or call).
        """

        async def go():
            parent = MultiService()
            node = makeNode(testConfig(self), reactor=reactor)
            node.setServiceParent(parent)
            parent.startService()
            await node.whenReady()
            port = node.ports()["api"]
            self.assertNotEqual(port, 0)
            address = node.config.apiFile.read_text().strip()
            self.assertEqual(address, f"/ip4/127.0.0.1/tcp/{port}")
            await parent.stopService()
            self.assertFalse(node.config.apiFile.exists())

        return Deferred.fromCoroutine(go())

    async def test_fullShapeRunsSubstrate(self):
        """
        C{full} runs substrate: its protocol is served, and its direct HTTP
        listener when configured (an unknown host: 404 or, with no tns
        reachable, 503).
        """
        node = await self.startNode(substrate={"http-listen": "tcp:0:interface=127.0.0.1"})
        substrate = node.shapeServices["substrate"]
        self.assertIn("/substrate/v1", node.host.protocols())
        response = await treq.get(f"http://127.0.0.1:{substrate.httpPort()}/", headers={"Host": "nobody.example"},
                                  persistent=False)
        self.assertIn(response.code, (404, 503))
        await treq.content(response)

    async def test_fullShapeMonkeyReachesItsPatrick(self):
        """
        On a C{full} node, alone in its cloud, the monkey asks the node's
        own patrick for jobs (a client of the network alone would find no
        patrick: it never calls its own node).
        """
        node = await self.startNode()
        monkey = node.shapeServices["monkey"]
        self.assertIsNone(await monkey.patrick.dequeue())
        self.assertEqual(await monkey.patrick.client.peers(), [node.host.peerID])

    def test_portInUse(self):
        """
        A listener that cannot bind makes whenReady fail with a clear error.
        """

        async def go():
            first = await self.startNode()
            taken = first.ports()["api"]
            node = makeNode(testConfig(self, **{"api-listen": f"tcp:{taken}:interface=127.0.0.1"}), reactor=reactor)
            node.startService()
            try:
                await node.whenReady()
            except ListenError as e:
                self.assertIn(str(taken), str(e))
                self.assertIn("api", str(e))
            else:
                self.fail("a second node bound a taken port")
            finally:
                await node.stopService()

        return Deferred.fromCoroutine(go())

    def test_apiId(self):
        async def go():
            node = await self.startNode()
            url = f"http://127.0.0.1:{node.ports()['api']}/api/v0/id"
            response = await treq.post(url, persistent=False)
            self.assertEqual(response.code, 200)
            body = json.loads(await response.content())
            self.assertEqual(body["ID"], str(node.config.peerID))
            self.assertTrue(body["AgentVersion"].startswith("tau/"))
            self.assertEqual(body["Shape"], "full")

        return Deferred.fromCoroutine(go())

    def test_apiRefusals(self):
        """
        GET, browser requests and unknown commands are refused with a JSON error.
        """

        async def go():
            node = await self.startNode()
            base = f"http://127.0.0.1:{node.ports()['api']}/api/v0/"
            for method, path, headers, status in [
                ("GET", "id", {}, 405),
                ("POST", "id", {"Origin": "http://evil.example"}, 403),
                ("POST", "nope", {}, 404),
            ]:
                response = await treq.request(method, base + path, headers=headers, persistent=False)
                self.assertEqual(response.code, status)
                body = json.loads(await response.content())
                self.assertEqual(body["Type"], "error")
                self.assertTrue(body["Message"])

        return Deferred.fromCoroutine(go())

    def test_apiToken(self):
        """
        With api-token, the token (0600) is needed: 401 without it, even
        for a request with a body, 200 with it.
        """

        async def go():
            node = await self.startNode(**{"api-token": True})
            token = node.config.apiTokenFile.read_text().strip()
            self.assertEqual(node.config.apiTokenFile.stat().st_mode & 0o777, 0o600)
            url = f"http://127.0.0.1:{node.ports()['api']}/api/v0/"
            for command, headers, body, status in [
                ("id", {}, None, 401),
                ("add", {}, b"x" * 200_000, 401),
                ("id", {"Authorization": "Bearer " + token[:-1]}, None, 401),
                ("id", {"Authorization": "Bearer " + token}, None, 200),
            ]:
                response = await treq.post(url + command, headers=headers, data=body, persistent=False)
                self.assertEqual(response.code, status, (command, headers))
                json.loads(await response.content())

        return Deferred.fromCoroutine(go())


async def api(node, command, body=None, **args):
    """POST a control API command (with an optional body): (status, JSON answer)."""
    url = f"http://127.0.0.1:{node.ports()['api']}/api/v0/{command}"
    response = await treq.post(url, params=args, data=body, persistent=False)
    return response.code, json.loads(await response.content())


async def startedNode(case, **overrides):
    """A node on the real reactor, stopped when C{case} ends."""
    node = makeNode(testConfig(case, **overrides), reactor=reactor)
    node.startService()
    case.addCleanup(node.stopService)
    await node.whenReady()
    return node


class SwarmAPITests(TestCase):
    """
    The p2p commands of the control API, between two real nodes.
    """

    async def startNode(self, **overrides):
        return await startedNode(self, **overrides)

    def test_idHasP2PAddresses(self):
        async def go():
            node = await self.startNode()
            code, body = await api(node, "id")
            self.assertEqual(code, 200)
            port = node.ports()["p2p"]
            self.assertEqual(body["Addresses"], [f"/ip4/127.0.0.1/tcp/{port}/p2p/{node.config.peerID}"])
            for protocol in ("/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"):
                self.assertIn(protocol, body["Protocols"])
            self.assertNotIn("/perf/1.0.0", body["Protocols"])   # only when the config says perf: true

            withPerf = await self.startNode(perf=True)
            self.assertIn("/perf/1.0.0", (await api(withPerf, "id"))[1]["Protocols"])

        return Deferred.fromCoroutine(go())

    def test_connectPeersPing(self):
        async def go():
            a = await self.startNode()
            b = await self.startNode()
            code, body = await api(b, "id")
            target = body["Addresses"][0]
            code, body = await api(a, "swarm/connect", arg=target)
            self.assertEqual(code, 200, body)
            self.assertEqual(body["Peer"], str(b.config.peerID))
            code, body = await api(a, "swarm/peers")
            self.assertEqual([p["Peer"] for p in body["Peers"]], [str(b.config.peerID)])
            self.assertEqual(body["Peers"][0]["Direction"], "outbound")
            self.assertEqual(body["Peers"][0]["Security"], "/tls/1.0.0")
            code, body = await api(a, "ping", arg=str(b.config.peerID), count="2")
            self.assertEqual(code, 200, body)
            self.assertEqual(len(body["RTTs"]), 2)

        return Deferred.fromCoroutine(go())

    def test_badArguments(self):
        async def go():
            a = await self.startNode()
            code, body = await api(a, "ping", arg="not-a-peer")
            self.assertEqual(code, 400)
            self.assertIn("not a peer ID", body["Message"])
            code, body = await api(a, "swarm/connect", arg="/ip4/127.0.0.1/tcp/1/p2p/12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq")
            self.assertEqual(code, 502)
            self.assertIn("failure", body["Message"])
            code, body = await api(a, "swarm/connect")
            self.assertEqual(code, 400)

        return Deferred.fromCoroutine(go())
