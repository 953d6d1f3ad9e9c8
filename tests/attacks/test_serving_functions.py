"""
Hostile functions on the real substrate node of a serving cloud (issue 15,
item 6): a second project of the same cloud (written here, its functions
in WAT compiled with wabt's wat2wasm, published with C{tau project push}
and C{tau project asset}) has a function that loops, one that traps, one
that recurses without end, one that grows its memory past its limit, one
that sets status 600, one that hands the host huge lengths, and one that
fetches loopback and the cloud metadata address.  Through the real
gateway each answers as it should (504 within its timeout, 500, the
errno of each host call, outbound HTTP refused); after each the e2e
project's function still answers 200, and once they all ran several times
the substrate's open files, threads and memory are where they were.

tests/services/substrate/test_wasm.py and test_httpclient.py prove the
same on an in-process runtime; this is the twistd node, its tns-published
limits (timeout, memory) and its default egress policy.
"""

import hashlib
from pathlib import Path

import base58
import yaml
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from tau.services.substrate.wasm import errno
from tests import e2e
from tests.attacks.servingcloud import (
    MiB, exchange, openFiles, request, rss, startAttackCloud, stillServes, threads)
from tests.cloud import NETWORK, until
from tests.test_e2e_serving import SUBSTRATE_NODE, TNS_NODE

log = Logger()

DOMAIN = f"hostile-attacks.g.{NETWORK}"
#: the looping function's timeout (seconds) and the runtime's epoch tick
SPIN_TIMEOUT = 1.0
TICK = 0.01
#: the functions' memory limit: 16 pages
MEMORY = "1MB"
METADATA = "http://169.254.169.254/latest/meta-data/"

WAT = """
;; Hostile functions against Taubyte's host ABI (module "taubyte/sdk").
(module
 (import "taubyte/sdk" "eventHttpRetCode" (func $retCode (param i32 i32) (result i32)))
 (import "taubyte/sdk" "eventHttpWrite" (func $write (param i32 i32 i32 i32) (result i32)))
 (import "taubyte/sdk" "eventHttpHeaderAdd" (func $headerAdd (param i32 i32 i32 i32 i32) (result i32)))
 (import "taubyte/sdk" "readHttpEventBody" (func $read (param i32 i32 i32 i32) (result i32)))
 (import "taubyte/sdk" "getHttpEventPath" (func $path (param i32 i32 i32) (result i32)))
 (import "taubyte/sdk" "newHttpClient" (func $newClient (param i32) (result i32)))
 (import "taubyte/sdk" "newHttpRequest" (func $newRequest (param i32 i32) (result i32)))
 (import "taubyte/sdk" "setHttpRequestURL" (func $setURL (param i32 i32 i32 i32) (result i32)))
 (import "taubyte/sdk" "setHttpRequestBody" (func $setBody (param i32 i32 i32 i32) (result i32)))
 (import "taubyte/sdk" "doHttpRequest" (func $do (param i32 i32) (result i32)))
 (memory (export "memory") 1)
 ;; 0: client id, 4: request id, 8: a count; 32..: the errnos answered
 (data (i32.const 64) "fine")
 (data (i32.const 256) "LOOPBACK")
 (data (i32.const 512) "METADATA")

 (func $must (param $errno i32) (if (local.get $errno) (then unreachable)))
 ;; the errnos at 32.. (one byte each) as the body
 (func $answer (param $ev i32) (param $count i32)
   (call $must (call $write (local.get $ev) (i32.const 32) (local.get $count) (i32.const 8))))

 (func (export "fine") (param $ev i32) (result i32)
   (call $must (call $write (local.get $ev) (i32.const 64) (i32.const 4) (i32.const 8)))
   (i32.const 0))
 (func (export "spin") (param $ev i32) (result i32)
   (loop $forever (br $forever))
   (i32.const 0))
 (func (export "boom") (param $ev i32) (result i32) unreachable)
 (func $deeper (param $n i32) (result i32) (call $deeper (i32.add (local.get $n) (i32.const 1))))
 (func (export "recurse") (param $ev i32) (result i32) (call $deeper (i32.const 0)))
 ;; 1 GiB more memory: refused (-1) by the limit, and the guest traps as
 ;; tinygo's allocator does
 (func (export "grow") (param $ev i32) (result i32)
   (if (i32.eq (memory.grow (i32.const 16384)) (i32.const -1)) (then unreachable))
   (i32.const 0))
 (func (export "status600") (param $ev i32) (result i32)
   (drop (call $retCode (local.get $ev) (i32.const 600)))
   (i32.const 0))

 ;; host calls handed lengths of nearly 4 GiB
 (func (export "huge") (param $ev i32) (result i32)
   (i32.store8 (i32.const 32) (call $write (local.get $ev) (i32.const 0) (i32.const 0xFFFFFFF0) (i32.const 8)))
   (i32.store8 (i32.const 33) (call $headerAdd (local.get $ev) (i32.const 64) (i32.const 0xFFFFFFF0)
                                               (i32.const 64) (i32.const 0x7FFFFFFF)))
   (i32.store8 (i32.const 34) (call $read (local.get $ev) (i32.const 128) (i32.const 0xFFFFFFF0) (i32.const 8)))
   (i32.store8 (i32.const 35) (call $path (local.get $ev) (i32.const 128) (i32.const 0xFFFFFFF0)))
   (call $must (call $newClient (i32.const 0)))
   (call $must (call $newRequest (i32.load (i32.const 0)) (i32.const 4)))
   (i32.store8 (i32.const 36) (call $setBody (i32.load (i32.const 0)) (i32.load (i32.const 4))
                                             (i32.const 0) (i32.const 0xFFFFFFF0)))
   (call $answer (local.get $ev) (i32.const 5))
   (i32.const 0))

 ;; GET a URL: the errno of doHttpRequest
 (func $fetch (param $url i32) (param $len i32) (result i32)
   (call $must (call $newClient (i32.const 0)))
   (call $must (call $newRequest (i32.load (i32.const 0)) (i32.const 4)))
   (call $must (call $setURL (i32.load (i32.const 0)) (i32.load (i32.const 4)) (local.get $url) (local.get $len)))
   (call $do (i32.load (i32.const 0)) (i32.load (i32.const 4))))
 (func (export "outbound") (param $ev i32) (result i32)
   (i32.store8 (i32.const 32) (call $fetch (i32.const 256) (i32.const LOOPBACK_LEN)))
   (i32.store8 (i32.const 33) (call $fetch (i32.const 512) (i32.const METADATA_LEN)))
   (call $answer (local.get $ev) (i32.const 2))
   (i32.const 0))
)
"""

#: the functions (each on GET /NAME, calling export NAME)
FUNCTIONS = ["fine", "spin", "boom", "recurse", "grow", "status600", "huge", "outbound"]


def cidOf(name):
    """
    A CIDv0 for a resource id, made from its name.
    """
    digest = hashlib.sha256(f"tau attacks {name}".encode()).digest()
    return base58.b58encode(b"\x12\x20" + digest).decode("ascii")


def writeProject(folder):
    """
    The hostile project's config repository in C{folder}: its id and the
    ids of its functions (name -> id).
    """
    folder = Path(folder)
    (folder / "domains").mkdir(parents=True)
    (folder / "functions").mkdir()
    project = cidOf("project")
    (folder / "config.yaml").write_text(yaml.safe_dump({"id": project, "name": "hostile", "description": "hostile functions"}))
    (folder / "domains" / "hostile.yaml").write_text(yaml.safe_dump({"id": cidOf("domain"), "fqdn": DOMAIN}))
    ids = {}
    for name in FUNCTIONS:
        ids[name] = cidOf(name)
        (folder / "functions" / f"{name}.yaml").write_text(yaml.safe_dump({
            "id": ids[name], "description": name, "source": ".",
            "trigger": {"type": "https", "method": "GET", "domains": ["hostile"], "paths": [f"/{name}"]},
            "execution": {"timeout": f"{SPIN_TIMEOUT:g}s" if name == "spin" else "5s", "memory": MEMORY, "call": name},
        }))
    return project, ids


class Hits(Resource):
    """
    A loopback web server a function must not reach: counts its requests.
    """

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.count = 0

    def render_GET(self, request):
        self.count += 1
        return b"you reached loopback"


class HostileFunctionTests(TestCase):
    timeout = 120

    async def tau(self, cloud, *args):
        status, out, err = await cloud.tau(TNS_NODE, *args)
        if status != 0:
            raise AssertionError(f"tau {' '.join(args)} exited {status}: {out}{err}")

    async def publish(self, cloud, loopbackURL):
        """
        Compile L{WAT} (fetching C{loopbackURL}), push the hostile project
        and publish the module as the build of each of its functions.
        """
        folder = Path(self.mktemp()).resolve()
        project, ids = writeProject(folder / "project")
        wat = WAT.replace("LOOPBACK_LEN", str(len(loopbackURL))).replace("METADATA_LEN", str(len(METADATA)))
        wat = wat.replace('"LOOPBACK"', f'"{loopbackURL}"').replace('"METADATA"', f'"{METADATA}"')
        (folder / "hostile.wat").write_text(wat)
        wasm = str(folder / "hostile.wasm")
        await e2e.compileWat(reactor, wasm, folder / "hostile.wat")
        await self.tau(cloud, "project", "push", str(folder / "project"), "--commit", "hostile1")
        await gatherResults([Deferred.fromCoroutine(self.tau(cloud, "project", "asset", project, ids[name], wasm))
                             for name in FUNCTIONS])

    async def call(self, name):
        """
        C{GET /NAME} of the hostile project through the gateway: the
        L{tests.attacks.servingcloud.Raw} and the seconds it took.
        """
        started = reactor.seconds()
        raw = await exchange(self.ports["gateway"], request(path=f"/{name}", host=DOMAIN))
        return raw, reactor.seconds() - started

    async def test_hostileFunctions(self):
        """
        Each hostile function answers as it should through the gateway and
        leaves the node serving; three rounds of them all leave the
        substrate's open files, threads and memory where they were.
        """
        hits = Hits()
        port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(Site(hits))
        self.addCleanup(port.stopListening)
        cloud, self.ports = await startAttackCloud(self)
        await self.publish(cloud, f"http://127.0.0.1:{port.getHost().port}/")
        pid = cloud.pid(SUBSTRATE_NODE)

        async def fine():
            raw, _ = await self.call("fine")
            return raw.status() == 200 and raw.body() == b"fine"
        await until(fine, "the hostile project's fine function", limit=60)

        spins = []

        async def attack():
            for name in FUNCTIONS:
                raw, elapsed = await self.call(name)
                status, body = raw.status(), raw.body()
                if name == "fine":
                    self.assertEqual((status, body), (200, b"fine"))
                elif name == "spin":
                    self.assertEqual(status, 504, raw.received[:300])
                    spins.append(elapsed)
                elif name in ("boom", "recurse", "grow", "status600"):
                    self.assertEqual(status, 500, (name, raw.received[:300]))
                elif name == "huge":
                    self.assertEqual(status, 200)
                    # write, header, body read: outside memory; the path's
                    # buffer size is unused (as in go: the path's own bytes
                    # are written, within memory); a request body over the
                    # client's limit
                    oom = errno.ADDRESS_OUT_OF_MEMORY
                    self.assertEqual(list(body), [oom, oom, oom, errno.NONE, errno.HTTP_WRITE_BODY_FAILED])
                elif name == "outbound":
                    self.assertEqual(status, 200)
                    self.assertEqual(list(body), [errno.HTTP_REQUEST_FAILED, errno.HTTP_REQUEST_FAILED])
                # the other project's function is unharmed
                await stillServes(self, self.ports)

        await attack()
        before = (openFiles(pid), threads(pid), rss(pid))
        for _ in range(3):
            await attack()
        after = (openFiles(pid), threads(pid), rss(pid))
        # refused by the egress policy, before any connection
        self.assertEqual(hits.count, 0)
        output = cloud.processes[SUBSTRATE_NODE].output()
        self.assertIn("127.0.0.1: no address a function may connect to (127.0.0.1)", output)
        self.assertIn("169.254.169.254: no address a function may connect to (169.254.169.254)", output)
        # a looping function answers 504 once its timeout and a tick passed
        # (and the way through the gateway and back)
        for elapsed in spins:
            self.assertGreaterEqual(elapsed, SPIN_TIMEOUT)
            self.assertLess(elapsed, SPIN_TIMEOUT + TICK + 2.0)
        self.assertLessEqual(after[0], before[0] + 2, f"open files {before[0]} -> {after[0]}")
        self.assertLessEqual(after[1], before[1] + 2, f"threads {before[1]} -> {after[1]}")
        self.assertLess(after[2] - before[2], 32 * MiB, f"RSS {before[2] / MiB:.1f} -> {after[2] / MiB:.1f} MiB")
        log.info("hostile functions: spin answered 504 after {spins} s; substrate open files {files}, threads {threads}, "
                 "RSS {rss} MiB before and after 3 rounds", spins=[round(e, 3) for e in spins],
                 files=(before[0], after[0]), threads=(before[1], after[1]),
                 rss=(round(before[2] / MiB, 1), round(after[2] / MiB, 1)))
