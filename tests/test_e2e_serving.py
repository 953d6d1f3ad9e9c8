"""
End to end, in CI: a cloud of real C{twistd -n taubyte} processes on
loopback (tests/cloud.py's ProcessCloud):

    node 0  seer + tns + auth   announced (to seer) as 127.0.0.1
    node 1  substrate           announced as 127.0.0.2, HTTP on 127.0.0.2:0
    node 2  gateway             announced as 127.0.0.3, HTTP on 127.0.0.3:0

seer and tns on one node also guards that seer asks its own node's tns
(the node's tns client is a capability, L{tau.interfaces.ITNSClient}).

The project tests/fixtures/e2e (L{tests.e2e}) is published with
C{tau project push}, its function (hello.wat, compiled here by wat2wasm)
and its website folder with C{tau project asset}; then
C{dig @seer} resolves the project's domain to the gateway only; C{curl}
through the gateway gets the function's answer and the website's pages;
headless Chromium renders the website (its script writes into the DOM and
calls the function through the gateway).
"""

import re

import yaml
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tau.cloud import makeAdmission
from tau.private import writePrivate
from tests import e2e
from tests.browser import renderedDOM
from tests.cloud import CLOUD_KEY, NETWORK, ProcessCloud, until
from tests.netclients import curl, digAddresses, digStatus

TTL = 3
SEER_NODE, SUBSTRATE_NODE, GATEWAY_NODE = 0, 1, 2
TNS_NODE = SEER_NODE

#: shape name -> (services, the address the node announces to seer), in
#: the order the nodes start
SHAPES = {
    "seer-tns-auth": (["seer", "tns", "auth"], "127.0.0.1"),
    "substrate": (["substrate"], "127.0.0.2"),
    "gateway": (["gateway"], "127.0.0.3"),
}

#: shape name -> more config sections
EXTRA = {
    "substrate": {"substrate": {"http-listen": "tcp:0:interface=127.0.0.2"}},
    "gateway": {"gateway": {"http": "tcp:0:interface=127.0.0.3"}},
}

_TCP = rb"IPv4Address\(type='TCP', host='[0-9.]+', port=(\d+)\)"
#: what -> a regex of the log line giving its port (group 1)
PORT_LINES = {
    # seer (tau/services/seer/service.py): "... DNS for F on <udp host> and <tcp host>"
    "dns": rb"DNS for \S+ on IPv4Address\(type='UDP', host='[0-9.]+', port=(\d+)\)",
    "dns-tcp": rb"DNS for \S+ on IPv4Address\(type='UDP', [^)]*\) and " + _TCP,
    # substrate and gateway: "substrate serving /substrate/v1 and HTTP on <host>",
    # "gateway serving http on <host>[, https on <host>]"
    "substrate": rb"substrate serving \S+ and HTTP on " + _TCP,
    "gateway": rb"gateway serving http on " + _TCP,
}


class E2ECloud(ProcessCloud):
    """
    Nodes running several services each (L{SHAPES}), announced to seer at
    their address, with the extra config of their shape.
    """

    def prepare(self, shape):
        index = super().prepare(shape)
        services, address = SHAPES[shape]
        path = self.roots[index] / "config" / f"cloud-{shape}.yaml"
        config = yaml.safe_load(path.read_text())
        config["services"] = services
        config["cloud"]["admission"] = makeAdmission(CLOUD_KEY, self.keys[index].peerID(), services).text()
        config["seer"] = {"ttl": TTL, "announce-ip": address}
        config.update(EXTRA.get(shape, {}))
        writePrivate(path, yaml.safe_dump(config))
        return index

    async def port(self, index, what, limit=30):
        """
        The port node C{index} printed for C{what} (L{PORT_LINES}).
        """
        found = []

        async def printed():
            match = re.search(PORT_LINES[what], self.processes[index].out + self.processes[index].err)
            if match:
                found.append(int(match.group(1)))
            return bool(found)
        await until(printed, f"node {index}'s {what} port in its log", limit=limit)
        return found[0]


async def startServingCloud(case):
    """
    The cloud of L{SHAPES} for C{case} (has C{mktemp}, C{addCleanup}), with
    the project published; C{(cloud, ports)}, C{ports} giving C{"dns"}
    and C{"dns-tcp"} (seer's UDP and TCP ports), C{"substrate"} and C{"gateway"} (C{(address,
    port)} of their HTTP listeners).  bench/serve.py starts its targets
    with this too.
    """
    cloud = await E2ECloud(case).start(list(SHAPES))
    ports = {"dns": await cloud.port(SEER_NODE, "dns"), "dns-tcp": await cloud.port(SEER_NODE, "dns-tcp")}
    ports["substrate"] = (SHAPES["substrate"][1], await cloud.port(SUBSTRATE_NODE, "substrate"))
    ports["gateway"] = (SHAPES["gateway"][1], await cloud.port(GATEWAY_NODE, "gateway"))        
    await publishProject(cloud, case.mktemp() + ".wasm")
    return cloud, ports


async def publishProject(cloud, wasm):
    """
    The project, the function's WASM (compiled to C{wasm}) and the
    website's folder, through the tns node (so the substrate fetches the
    builds over bitswap).
    """
    await e2e.compileWat(reactor, wasm)
    for args in (("project", "push", str(e2e.PROJECT_FOLDER), "--commit", "e2e1"),
                 ("project", "asset", e2e.PROJECT_ID, e2e.FUNCTION_ID, wasm),
                 ("project", "asset", e2e.PROJECT_ID, e2e.WEBSITE_ID, str(e2e.WEBSITE))):
        status, out, err = await cloud.tau(TNS_NODE, *args)
        if status != 0:
            raise AssertionError(f"tau {' '.join(args)} exited {status}: {out}{err}")


class ServingTests(TestCase):
    timeout = 300

    async def setUp(self):
        self.cloud, ports = await startServingCloud(self)
        self.dns, self.dnsTCP = ports["dns"], ports["dns-tcp"]
        self.substrate, self.gateway = ports["substrate"], ports["gateway"]

    async def test_serving(self):
        # seer: the project's domain resolves to the gateway only, once the
        # gateway's beacon reached seer and tns has the project
        async def resolved():
            return await digAddresses(reactor, self.dns, e2e.DOMAIN) == [self.gateway[0]]
        await until(resolved, f"{e2e.DOMAIN} answered with the gateway", limit=60)
        self.assertEqual(await digAddresses(reactor, self.dnsTCP, e2e.DOMAIN, tcp=True), [self.gateway[0]])
        self.assertEqual(await digStatus(reactor, self.dns, f"nothing-here.g.{NETWORK}"), "NXDOMAIN")
        self.assertEqual(await digStatus(reactor, self.dns, "example.org"), "REFUSED")

        # curl through the gateway, at the address seer answered
        [address] = await digAddresses(reactor, self.dns, e2e.DOMAIN)
        via = {e2e.DOMAIN: (address, self.gateway[1])}

        async def functionAnswers():
            status, _, body = await curl(reactor, f"http://{e2e.DOMAIN}/hello", via=via)
            return (status, body) == (200, e2e.FUNCTION_BODY)
        # the first request may find the substrate still fetching the build
        await until(functionAnswers, "the function's answer through the gateway", limit=60)
        status, headers, body = await curl(reactor, f"http://{e2e.DOMAIN}/hello", via=via)
        self.assertEqual((status, body), (200, e2e.FUNCTION_BODY))
        self.assertEqual(headers["content-type"], "text/plain; charset=utf-8")
        self.assertEqual(headers["x-served-by"], "tau-e2e")

        status, headers, body = await curl(reactor, f"http://{e2e.DOMAIN}/", via=via)
        self.assertEqual(status, 200)
        self.assertEqual(body, (e2e.WEBSITE / "index.html").read_bytes())
        self.assertTrue(headers["content-type"].startswith("text/html"))
        self.assertIn("etag", headers)
        status, _, body = await curl(reactor, f"http://{e2e.DOMAIN}/about/", via=via)
        self.assertEqual((status, body), (200, (e2e.WEBSITE / "about" / "index.html").read_bytes()))
        status, _, _ = await curl(reactor, f"http://{e2e.DOMAIN}/no-such-page", via=via)
        self.assertEqual(status, 404)
        status, _, _ = await curl(reactor, f"http://not-a-project.g.{NETWORK}/hello",
                                  via={f"not-a-project.g.{NETWORK}": (address, self.gateway[1])})
        self.assertEqual(status, 404)

        # direct to the substrate's own HTTP listener (no gateway)
        status, _, body = await curl(reactor, f"http://{e2e.DOMAIN}/hello", via={e2e.DOMAIN: self.substrate})
        self.assertEqual((status, body), (200, e2e.FUNCTION_BODY))

        # the website renders in headless Chromium, through the gateway
        dom = await renderedDOM(reactor, f"http://{e2e.DOMAIN}/", hosts=via, workdir=self.mktemp())
        self.assertIn('<p id="rendered">rendered by app.js</p>', dom)
        self.assertIn(f'<p id="function">function said: {e2e.FUNCTION_BODY.decode()}</p>', dom)
        dom = await renderedDOM(reactor, f"http://{e2e.DOMAIN}/about/", hosts=via, workdir=self.mktemp())
        self.assertIn('<h1 id="about">about this site</h1>', dom)
