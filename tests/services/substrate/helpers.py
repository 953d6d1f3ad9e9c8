"""
What the substrate service tests share: a guest module in WAT, a project
serving it and a website, published with their builds, and a client of
C{proxy-http} and the tunnel (as a gateway talks to a substrate).
"""

import io
import zipfile

import cbor2
from wasmtime import wat2wasm

from tau.cids import cidText
from tau.project import compileProject
from tau.project.indexes import assetKey
from tau.services import frames
from tau.services.commands import encodeCommand
from tau.services.framework import readFrame
from tau.services.substrate import PROTOCOL
from tau.services.substrate.tunnel import HEAD, TunnelDecoder, TunnelRequest, encodeChunk, encodeEnd, encodeRequest
from tests.project.helpers import IDS, PROJECT_ID, write

SDK = "taubyte/sdk"
HOST = "shop.example.com"
HELLO, ECHO, BOOM, SPIN, ZIPPED, MISSING, SITE, DOCS, DOMAIN = (
    IDS[0], IDS[1], IDS[2], IDS[3], IDS[4], IDS[5], IDS[6], IDS[7], IDS[8])

# 16 "X-Fn", 32 "hello", 48 "hello from wasm"; 1024.. the body read
GUEST = f"""
(module
 (import "{SDK}" "eventHttpWrite" (func $write (param i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "eventHttpHeaderAdd" (func $addHeader (param i32 i32 i32 i32 i32) (result i32)))
 (import "{SDK}" "eventHttpRetCode" (func $status (param i32 i32) (result i32)))
 (import "{SDK}" "readHttpEventBody" (func $read (param i32 i32 i32 i32) (result i32)))
 (memory (export "memory") 1)
 (data (i32.const 16) "X-Fn")
 (data (i32.const 32) "hello")
 (data (i32.const 48) "hello from wasm")

 ;; X-Fn: hello, 200, "hello from wasm"
 (func (export "hello") (param $ev i32)
   (drop (call $addHeader (local.get $ev) (i32.const 16) (i32.const 4) (i32.const 32) (i32.const 5)))
   (drop (call $write (local.get $ev) (i32.const 48) (i32.const 15) (i32.const 8))))

 ;; 201, the request body read 1000 bytes at a time and written back
 (func (export "echo") (param $ev i32) (local $r i32)
   (drop (call $status (local.get $ev) (i32.const 201)))
   (block $done
     (loop $more
       (local.set $r (call $read (local.get $ev) (i32.const 1024) (i32.const 1000) (i32.const 8)))
       (if (i32.load (i32.const 8))
         (then (drop (call $write (local.get $ev) (i32.const 1024) (i32.load (i32.const 8)) (i32.const 12)))))
       (br_if $done (i32.ne (local.get $r) (i32.const 0)))
       (br $more))))

 (func (export "boom") (param $ev i32) unreachable)
 (func (export "spin") (param $ev i32) (loop $forever (br $forever)))
)
"""


def guestModule():
    return wat2wasm(GUEST)


def zipped(files):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _function(id, name, method, path, call, timeout="1s"):
    return (f"id: {id}\nsource: .\n"
            f"trigger: {{type: https, method: {method}, domains: [dom], paths: [{path}]}}\n"
            f"execution: {{timeout: {timeout}, memory: 1MB, call: {call}}}\n")


def shopProject(root):
    """
    Functions C{GET /hello}, C{POST /echo}, C{GET /boom} (traps), C{GET
    /spin} (loops; 200 ms timeout), C{GET /zipped} (hello, built as a zip),
    C{GET /missing} (no build) and websites on C{/} and C{/docs}, all on
    L{HOST}.
    """
    return write(root, {
        "config.yaml": f"id: {PROJECT_ID}\nname: shop\n",
        "domains/dom.yaml": f"id: {DOMAIN}\nfqdn: {HOST}\n",
        "functions/hello.yaml": _function(HELLO, "hello", "GET", "/hello", "hello"),
        "functions/echo.yaml": _function(ECHO, "echo", "POST", "/echo", "echo"),
        "functions/boom.yaml": _function(BOOM, "boom", "GET", "/boom", "boom"),
        "functions/spin.yaml": _function(SPIN, "spin", "GET", "/spin", "spin", timeout="200ms"),
        "functions/zipped.yaml": _function(ZIPPED, "zipped", "GET", "/zipped", "hello"),
        "functions/missing.yaml": _function(MISSING, "missing", "GET", "/missing", "hello"),
        "websites/site.yaml": f"id: {SITE}\ndomains: [dom]\npaths: [/]\n"
        "source: {branch: main, github: {id: 777, fullname: acme/site}}\n",
        "websites/docs.yaml": f"id: {DOCS}\ndomains: [dom]\npaths: [/docs]\n"
        "source: {branch: main, github: {id: 778, fullname: acme/docs}}\n",
    })


SITE_FILES = {"index.html": b"<h1>shop</h1>", "about/index.html": b"<p>about</p>", "app.js": b"let x = 1;"}
DOCS_FILES = {"index.html": b"<h1>docs</h1>", "guide/index.html": b"<p>guide</p>"}


async def publishShop(root, tns, content, branch="main"):
    """
    Compile and publish L{shopProject} with C{tns} and add the builds of its
    functions and websites to C{content}, their CIDs pushed at their asset
    keys.  C{{resource id: build CID text}}.
    """
    await tns.publish(compileProject(shopProject(root)), "c1")
    module = guestModule()
    builds = {}
    for resource in (HELLO, ECHO, BOOM, SPIN):
        builds[resource] = (await content.add(module)).cid
    builds[ZIPPED] = (await content.add(zipped({"README": b"x", "main.wasm": module}))).cid
    for resource, files in ((SITE, SITE_FILES), (DOCS, DOCS_FILES)):
        folders = sorted({name.rpartition("/")[0] for name in files if "/" in name})
        entries = [(folder, None) for folder in folders] + list(files.items())
        builds[resource] = (await content.addFolder(entries)).cid
    out = {}
    for resource, cid in builds.items():
        out[resource] = cidText(cid)
        await tns.push(assetKey(PROJECT_ID, resource, branch), out[resource])
    return out


async def proxyHTTP(host, peer, target, path, method="GET"):
    """
    Send C{proxy-http} for C{target} (a host name), C{path}, C{method} to
    C{peer}: C{(answer, stream, decoder)}; the stream is open when the
    answer is not an error.
    """
    stream = await host.newStream(peer, [PROTOCOL])
    stream.write(encodeCommand("proxy-http", {"host": target, "path": path, "method": method}))
    decoder = frames.FrameDecoder(1 << 20)
    frame = await readFrame(stream, decoder)
    return cbor2.loads(frame.payload), stream


async def tunnelled(stream, target, url, method="GET", headers=None, body=b"", chunk=4096):
    """
    Send a request on C{stream} (after a C{proxy-http} answer) and read the
    answer: C{(status, headers, body)}.
    """
    request = TunnelRequest(method=method, url=url, headers={"Host": [target], **(headers or {})}, host=target,
                            contentLength=len(body))
    stream.write(encodeRequest(request))
    for start in range(0, len(body), chunk):
        stream.write(encodeChunk(body[start:start + chunk]))
    stream.write(encodeEnd())
    decoder = TunnelDecoder(HEAD, maxChunk=1 << 24)
    status, answerHeaders, out = None, None, []
    try:
        while True:
            data = await stream.readSome()
            if not data:
                break
            for kind, value in decoder.feed(data):
                if kind == "head":
                    status, answerHeaders = value
                elif kind == "chunk":
                    out.append(value)
                else:
                    return status, answerHeaders, b"".join(out)
    finally:
        stream.reset()
    return status, answerHeaders, b"".join(out)
