"""
The end-to-end project (tests/fixtures/e2e), what the tests that serve it
share: its folders, ids and domain, what its function answers, and
compiling its WAT with wabt's C{wat2wasm} (a real process, through
C{spawnProcess}).

    fixtures/e2e/project/   the config repository (a domain under the test
                            cloud's generated suffix, the function
                            GET /hello, the website on /)
    fixtures/e2e/hello.wat  the function (Taubyte's ABI), export "hello"
    fixtures/e2e/website/   index.html (+ app.js, which writes into the DOM
                            and calls /hello), about/index.html
"""

import shutil
from pathlib import Path

from tests.cloud import NETWORK
from tests.processes import run

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "e2e"
PROJECT_FOLDER = FIXTURE / "project"
WAT = FIXTURE / "hello.wat"
WEBSITE = FIXTURE / "website"

PROJECT_ID = "QmWwcZoxfgAihk2bC38RCyVHBLTdiYx4XJA7iwMRgXGCne"
DOMAIN_ID = "QmbxUBSx6Wcq9TSkDoDgfj94YxZKV6zi4FENjABbT3cJNg"
FUNCTION_ID = "QmPT6dJHnSc6npt2VPnW8sPeyeVwgmaJiqc2Jk4jbxZ1N7"
WEBSITE_ID = "QmWbJTYQ4XPTSjDYEtDktZbrgYX4zJHmG4Hxj8JMmMYjVo"
#: the project's domain: under the generated suffix of tests/cloud.py's network
DOMAIN = f"hello-e2e.g.{NETWORK}"
EXPORT = "hello"
FUNCTION_PATH = "/hello"
#: what GET /hello answers
FUNCTION_BODY = b"hello from tau at /hello"
FUNCTION_HEADERS = [("Content-Type", "text/plain; charset=utf-8"), ("X-Served-By", "tau-e2e")]

WAT2WASM = shutil.which("wat2wasm")


class ToolMissing(Exception):
    pass


async def compileWat(reactor, target, source=WAT):
    """
    Compile C{source} (WAT) to C{target} (a path) with wabt's wat2wasm;
    the module's bytes.

    @raise ToolMissing: wat2wasm is not installed.
    @raise AssertionError: wat2wasm refused the source.
    """
    if WAT2WASM is None:
        raise ToolMissing("wat2wasm is not installed (apt-get install wabt; .ci/run does)")
    status, out, err = await run(reactor, [WAT2WASM, str(source), "-o", str(target)], env={}, timeout=60)
    if status != 0:
        raise AssertionError(f"wat2wasm {source} exited {status}: {out}{err}")
    return Path(target).read_bytes()
