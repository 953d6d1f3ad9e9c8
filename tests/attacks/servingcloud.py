"""
What the attacks on the serving path share: the serving cloud of
L{tests.test_e2e_serving} (seer+tns+auth, substrate, gateway as real
C{twistd} processes, the e2e project published) with more config per
shape, a raw HTTP client that sends exactly the bytes it is told (from a
loopback source address of its choice), the check that a normal request
through the gateway still answers, and what /proc says of a node.

    cloud, ports = await startAttackCloud(self, gateway={"max-body": 1024})
    elapsed = await stillServes(self, ports)          # GET /hello: 200, its body
    raw = await exchange(ports["gateway"], b"GET / HTTP/1.1\\r\\n...")
    raw.status()
"""

import os

import yaml
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater

from tau.private import writePrivate
from tests import e2e
from tests.cloud import until
from tests.test_e2e_serving import GATEWAY_NODE, SHAPES, SUBSTRATE_NODE, E2ECloud, publishProject

MiB = 1 << 20
#: what a normal request through the gateway may take while an attack is on
#: (seconds); it takes a few milliseconds on an idle machine, the bound is
#: for a shared, loaded one
QUICK = 3.0


class AttackCloud(E2ECloud):
    """
    The e2e cloud, with more config for some shapes (C{extra}: shape ->
    section -> fields, merged into the sections the e2e cloud writes).
    """

    def __init__(self, case, extra):
        super().__init__(case)
        self.extra = extra

    def prepare(self, shape):
        index = super().prepare(shape)
        path = self.roots[index] / "config" / f"cloud-{shape}.yaml"
        config = yaml.safe_load(path.read_text())
        for section, fields in self.extra.get(shape, {}).items():
            config.setdefault(section, {}).update(fields)
        writePrivate(path, yaml.safe_dump(config))
        return index

    def pid(self, index):
        return self.processes[index].transport.pid


async def startAttackCloud(case, gateway=None, substrate=None):
    """
    The serving cloud for C{case}, its gateway and substrate sections
    extended with C{gateway} and C{substrate}, the e2e project published
    and its function answering through the gateway: C{(cloud, ports)}
    (C{ports["gateway"]}, C{ports["substrate"]}: C{(address, port)}).
    """
    cloud = await AttackCloud(case, {"gateway": {"gateway": gateway or {}},
                                     "substrate": {"substrate": substrate or {}}}).start(list(SHAPES))
    ports = {"substrate": (SHAPES["substrate"][1], await cloud.port(SUBSTRATE_NODE, "substrate")),
             "gateway": (SHAPES["gateway"][1], await cloud.port(GATEWAY_NODE, "gateway"))}
    await publishProject(cloud, case.mktemp() + ".wasm")

    async def answers():
        raw = await exchange(ports["gateway"], request())
        return raw.status() == 200
    # the first requests may find the substrate still fetching the build
    await until(answers, "the e2e function's answer through the gateway", limit=60)
    return cloud, ports


def request(path=e2e.FUNCTION_PATH, host=e2e.DOMAIN, method=b"GET", headers=(), body=None, padTo=None):
    """
    The bytes of one HTTP/1.1 request (C{Connection: close}); C{padTo}
    adds an C{X-Pad} header making the request line and header lines
    (without their CRLFs, as the gateway counts them) exactly that long.
    """
    lines = [method + b" " + path.encode() + b" HTTP/1.1", b"Host: " + host.encode(), b"Connection: close", *headers]
    if body is not None:
        lines.append(b"Content-Length: %d" % len(body))
    if padTo is not None:
        used = sum(len(line) for line in lines) + len(b"X-Pad: ")
        lines.append(b"X-Pad: " + b"p" * (padTo - used))
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


class Raw(Protocol):
    """
    A client that sends the bytes it is told and keeps what comes back.

    @ivar closed: fires with what was received once the connection is lost.
    """

    def __init__(self):
        self.received = bytearray()
        self.closed = Deferred()
        self.open = False

    def connectionMade(self):
        self.open = True

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.open = False
        self.closed.callback(bytes(self.received))

    def status(self):
        """
        The status of the (first) answer, or None when nothing came.
        """
        parts = bytes(self.received).split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[0].startswith(b"HTTP/") else None

    def body(self):
        return bytes(self.received).partition(b"\r\n\r\n")[2]


async def connect(where, source=None, timeout=10):
    """
    A L{Raw} connected to C{where} (C{(address, port)}), from loopback
    address C{source} (None: the kernel's choice).
    """
    address, port = where
    endpoint = TCP4ClientEndpoint(reactor, address, port, timeout=timeout,
                                  bindAddress=(source, 0) if source else None)
    return await connectProtocol(endpoint, Raw())


async def exchange(where, data, source=None, limit=30.0):
    """
    Send C{data} on a new connection and wait for the server to close it
    (at most C{limit} seconds, then the connection is cut): the L{Raw}.
    """
    raw = await connect(where, source)
    raw.transport.write(data)
    timer = reactor.callLater(limit, raw.transport.abortConnection)
    await raw.closed
    if timer.active():
        timer.cancel()
    return raw


async def stillServes(case, ports, source=None):
    """
    Assert that C{GET /hello} through the gateway answers the e2e
    function's 200 and body within L{QUICK} seconds; the seconds it took.
    """
    started = reactor.seconds()
    raw = await exchange(ports["gateway"], request(), source=source)
    elapsed = reactor.seconds() - started
    case.assertEqual(raw.status(), 200, bytes(raw.received[:500]))
    case.assertTrue(raw.body().endswith(e2e.FUNCTION_BODY), raw.body()[:500])
    case.assertLess(elapsed, QUICK)
    return elapsed


def pause(seconds):
    return deferLater(reactor, seconds, lambda: None)


def rss(pid):
    """
    The resident memory of process C{pid}, in bytes.
    """
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def openFiles(pid):
    """
    The count of file descriptors process C{pid} has open.
    """
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError(f"no Threads for process {pid}")
