"""
The C{.taubyte/} convention: reading C{config.yaml}, images mapped to local
toolchains, and real builds in the sandbox (WAT with wabt, Rust with
Debian's rustc for wasm32-wasi, AssemblyScript with asc, a website).
"""

import os

import wasmtime
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tau import fakes
from tau.build import toolchains
from tau.build.sandbox import MiB, Limits, Sandbox
from tau.build.taubyte import Builder, BuildConfigError, readConfig
from tau.build.website import BadWebsite, addWebsite, folderEntries
from tau.store import unixfsread

BUILD_SH = '. /utils/wasm.sh\nbuild "${FILENAME}"\n'

PING_WAT = """
(module
  (import "taubyte/sdk" "getEventType" (func $type (param i32 i32)))
  (import "taubyte/sdk" "eventHttpWrite" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "pong")
  (func (export "ping") (param $ev i32) (result i32)
    (call $write (local.get $ev) (i32.const 16) (i32.const 4) (i32.const 0))))
"""

PING_RS = """
#[link(wasm_import_module = "taubyte/sdk")]
extern "C" {
    fn eventHttpWrite(ev: u32, p: *const u8, l: u32, n: *mut u32) -> u32;
}

#[no_mangle]
pub extern "C" fn ping(ev: u32) {
    let body = b"pong";
    let mut n: u32 = 0;
    unsafe { eventHttpWrite(ev, body.as_ptr(), body.len() as u32, &mut n); }
}
"""

PING_TS = """
@external("taubyte/sdk", "eventHttpWrite")
declare function eventHttpWrite(ev: u32, p: usize, l: u32, n: usize): u32;

export function ping(ev: u32): void {
  const body = String.UTF8.encode("pong");
  eventHttpWrite(ev, changetype<usize>(body), body.byteLength, memory.data(4));
}
"""


def write(root, files):
    for path, text in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)
    return root


def config(image, steps=("build",), variables="", folder=".taubyte", key="environment"):
    text = f"version: 1.00\n{key}:\n  image: {image}\n  variables:{variables}\nworkflow:\n"
    return {f"{folder}/config.yaml": text + "".join(f"  - {s}\n" for s in steps)}


class ReadConfigTests(TestCase):
    def repo(self, files):
        return write(self.mktemp(), files)

    def refused(self, files):
        with self.assertRaises(BuildConfigError) as caught:
            readConfig(self.repo(files))
        return str(caught.exception)

    def test_template(self):
        """
        Taubyte's template reads back: image, empty variables, one step.
        """
        root = self.repo({**config("taubyte/rust-wasi:latest"), ".taubyte/build.sh": BUILD_SH})
        read = readConfig(root)
        self.assertEqual((read.folder, read.version, read.image, read.variables, read.workflow),
                         (".taubyte", "1.0", "taubyte/rust-wasi:latest", {}, ("build",)))

    def test_oldFolderAndMisspelling(self):
        """
        The older C{taubyte/} folder and the misspelt C{enviroment} work,
        and variables become text.
        """
        root = self.repo({**config("tau/wat", folder="taubyte", key="enviroment",
                                   variables="\n    A: 1\n    B: true\n    C: text\n    D:"),
                          "taubyte/build.sh": BUILD_SH})
        read = readConfig(root)
        self.assertEqual(read.folder, "taubyte")
        self.assertEqual(read.variables, {"A": "1", "B": "true", "C": "text", "D": ""})

    def test_refused(self):
        script = {".taubyte/build.sh": BUILD_SH}
        cases = [
            ({}, "no .taubyte folder (nor taubyte) at the top of the repository"),
            ({".taubyte/build.sh": BUILD_SH}, ".taubyte/config.yaml is missing"),
            ({".taubyte/config.yaml": "a: [", **script}, ".taubyte/config.yaml is not valid YAML"),
            ({".taubyte/config.yaml": "- 1", **script}, "must be a mapping with environment and workflow"),
            ({".taubyte/config.yaml": "workflow: [build]", **script}, "environment must be a mapping"),
            ({**config(""), **script}, "environment.image must name an image"),
            ({**config("tau/wat", steps=("build", "test")), **script}, "step test has no script .taubyte/test.sh"),
            ({**config("tau/wat", steps=("../x",)), **script}, "'../x' is not a step name"),
            ({**config("tau/wat", steps=()), **script}, "workflow must list the steps to run"),
            ({**config("tau/wat", variables="\n    A-B: 1"), **script}, "'A-B' is not a variable name"),
            ({**config("tau/wat", variables="\n    A: [1]"), **script}, "variable A must be text, not list"),
            ({**config("tau/wat"), **script, ".taubyte/Docker/Dockerfile": "FROM x"},
             ".taubyte/Docker: custom build images need docker, which tau does not use"),
        ]
        for files, expected in cases:
            self.assertIn(expected, self.refused(files))

    def test_limits(self):
        script = {".taubyte/build.sh": BUILD_SH}
        self.assertIn("larger than 65536 bytes", self.refused({".taubyte/config.yaml": "#" * 65537, **script}))
        steps = {f".taubyte/s{i}.sh": "" for i in range(33)}
        readConfig(self.repo({**config("tau/wat", steps=[f"s{i}" for i in range(32)]), **steps}))
        self.assertIn("more than 32 steps", self.refused({**config("tau/wat", steps=[f"s{i}" for i in range(33)]),
                                                          **steps}))

    def test_linkedConfigRefused(self):
        """
        A config that is a link (it could point at any host file) is not read.
        """
        root = self.repo({".taubyte/build.sh": BUILD_SH})
        os.symlink("/etc/passwd", os.path.join(root, ".taubyte", "config.yaml"))
        with self.assertRaises(BuildConfigError) as caught:
            readConfig(root)
        self.assertEqual(str(caught.exception), ".taubyte/config.yaml must be a plain file")


class ReadConfigPropertyTests(TestCase):
    """
    Whatever config.yaml holds, reading it gives a config or a
    L{BuildConfigError}, never another exception.
    """

    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
    values = st.recursive(scalars, lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8) | st.integers(), children, max_size=4)),
        max_leaves=20)

    def setUp(self):
        self.root = write(self.mktemp(), {".taubyte/build.sh": BUILD_SH})

    def read(self, raw):
        root = self.root
        with open(os.path.join(root, ".taubyte", "config.yaml"), "wb") as f:
            f.write(raw)
        try:
            return readConfig(root)
        except BuildConfigError:
            return None

    @settings(max_examples=100)
    @given(st.binary(max_size=200))
    def test_bytes(self, raw):
        self.read(raw)

    @settings(max_examples=100)
    @given(st.fixed_dictionaries({}, optional={
        "version": values, "workflow": st.one_of(values, st.lists(st.sampled_from(["build", "x", "../y"]))),
        "environment": st.one_of(values, st.fixed_dictionaries({}, optional={
            "image": values, "variables": values}))}))
    def test_shapes(self, document):
        read = self.read(yaml.safe_dump(document).encode())
        if read is not None:
            self.assertEqual(read.workflow, tuple(document["workflow"]))
            self.assertTrue(all(isinstance(v, str) for v in read.variables.values()))


class ToolchainTests(TestCase):
    def test_imageNames(self):
        for image in ("taubyte/rust-wasi:latest", "docker.io/taubyte/rust-wasi", "TAUBYTE/rust-wasi@sha256:00",
                      "taubyte/rust-wasi"):
            self.assertEqual(toolchains.imageName(image), "taubyte/rust-wasi")
        self.assertEqual(toolchains.imageName("localhost:5000/x/y:1"), "localhost:5000/x/y")

    def test_mapped(self):
        self.assertIs(toolchains.toolchainFor("taubyte/rust-wasi:latest"), toolchains.RUST)
        self.assertIs(toolchains.toolchainFor("tau/wat"), toolchains.WAT)

    def test_unknownImage(self):
        with self.assertRaises(toolchains.UnknownImage) as caught:
            toolchains.toolchainFor("node:20")
        self.assertIn("image 'node:20' has no local toolchain (tau runs no docker)", str(caught.exception))
        with self.assertRaises(toolchains.UnknownImage) as caught:
            toolchains.toolchainFor("taubyte/go-wasi:latest")
        self.assertIn("tinygo", str(caught.exception))

    def test_missingProgram(self):
        toolchain = toolchains.Toolchain("x", ("tau-no-such-compiler",), "the x package", "")
        self.assertEqual(toolchain.missing(), ["tau-no-such-compiler"])


class BuildTests(TestCase):
    """
    Real builds in the sandbox.
    """

    def setUp(self):
        self.builder = Builder(reactor, Sandbox(reactor), Limits(cpuSeconds=20, wallSeconds=60, outputBytes=16 * MiB,
                                                                 sourceBytes=64 * MiB, tmpBytes=256 * MiB))

    def repo(self, files):
        return write(self.mktemp(), files)

    def test_wat(self):
        """
        A WAT function builds end to end to a module that passes the import
        check, and runs.
        """
        root = self.repo({**config("tau/wat"), ".taubyte/build.sh": BUILD_SH, "ping.wat": PING_WAT})

        async def check():
            result = await self.builder.buildWasm(root)
            self.assertIsNone(result.failure, result.log)
            self.assertEqual([i[:2] for i in result.imports],
                             [("taubyte/sdk", "getEventType"), ("taubyte/sdk", "eventHttpWrite")])
            module = wasmtime.Module(wasmtime.Engine(), result.wasm)
            self.assertIn("ping", [e.name for e in module.exports])
            self.assertIn(b"tau build: step build", result.log)
            self.assertIn(b"imports checked (2)", result.log)
        return Deferred.fromCoroutine(check())

    def test_foreignImportRefused(self):
        wat = '(module (import "os" "system" (func (param i32) (result i32))) (func (export "f")))'
        root = self.repo({**config("tau/wat"), ".taubyte/build.sh": BUILD_SH, "main.wat": wat})

        async def check():
            result = await self.builder.buildWasm(root)
            self.assertEqual(result.failure, "refused: the module imports os.system from module 'os', which is"
                                             " neither the host ABI (taubyte/sdk, wasi_snapshot_preview1, env) nor a"
                                             " library of the project")
            self.assertIsNone(result.wasm)
            self.assertTrue(result.log.endswith(b"tau build: failed: " + result.failure.encode() + b"\n"))
        return Deferred.fromCoroutine(check())

    def test_rust(self):
        """
        A Rust function builds for wasm32-wasi with Debian's rustc, through
        Taubyte's template build script.
        """
        root = self.repo({**config("taubyte/rust-wasi:latest"), ".taubyte/build.sh": BUILD_SH, "lib.rs": PING_RS})

        async def check():
            result = await self.builder.buildWasm(root)
            self.assertIsNone(result.failure, result.log)
            self.assertEqual([i[:2] for i in result.imports], [("taubyte/sdk", "eventHttpWrite")])
            module = wasmtime.Module(wasmtime.Engine(), result.wasm)
            self.assertIn("ping", [e.name for e in module.exports])
        return Deferred.fromCoroutine(check())

    def test_cargo(self):
        """
        A Cargo crate (no crates from the network: the sandbox has none)
        builds with Debian's cargo.
        """
        crate = ('[package]\nname = "ping"\nversion = "0.1.0"\nedition = "2021"\n\n'
                 '[lib]\ncrate-type = ["cdylib"]\n')
        root = self.repo({**config("taubyte/rust-wasi:latest"), ".taubyte/build.sh": BUILD_SH,
                          "Cargo.toml": crate, "src/lib.rs": PING_RS})

        async def check():
            result = await self.builder.buildWasm(root)
            self.assertIsNone(result.failure, result.log)
            self.assertIn(b"Compiling ping v0.1.0 (/src)", result.log)
            self.assertEqual([i[:2] for i in result.imports], [("taubyte/sdk", "eventHttpWrite")])
        return Deferred.fromCoroutine(check())

    def test_assemblyScript(self):
        """
        An AssemblyScript function builds with asc from npm (node runs in the
        sandbox under the memory limit) and imports only the host ABI.
        """
        root = self.repo({**config("taubyte/assembly-script-wasi:latest"), ".taubyte/build.sh": BUILD_SH,
                          "assembly/index.ts": PING_TS})

        async def check():
            result = await self.builder.buildWasm(root)
            self.assertIsNone(result.failure, result.log)
            self.assertEqual([i[:2] for i in result.imports], [("taubyte/sdk", "eventHttpWrite")])
            module = wasmtime.Module(wasmtime.Engine(), result.wasm)
            self.assertIn("ping", [e.name for e in module.exports])
        return Deferred.fromCoroutine(check())

    def test_artifactWasmAndSteps(self):
        """
        Steps run in order with the variables, SRC and OUT; the older
        /out/artifact.wasm is taken too.
        """
        root = self.repo({**config("tau/wat", steps=("one", "two"), variables="\n    NAME: ping"),
                          ".taubyte/one.sh": 'echo "$SRC $OUT $NAME" > /tmp/seen\n',
                          ".taubyte/two.sh": 'cat /tmp/seen\nwat2wasm "$NAME.wat" -o "$OUT/artifact.wasm"\n',
                          "ping.wat": PING_WAT})

        async def check():
            result = await self.builder.buildWasm(root)
            self.assertIsNone(result.failure, result.log)
            self.assertIn(b"tau build: step one\ntau build: step two\n/src /out ping\n", result.log)
        return Deferred.fromCoroutine(check())

    def test_failures(self):
        """
        A failing step stops the workflow, a build without its module and a
        config naming an unknown image fail, each saying why.
        """
        cases = [
            ({**config("tau/wat", steps=("a", "b")), ".taubyte/a.sh": "exit 7\n", ".taubyte/b.sh": "echo B\n"},
             "exited with status 7", b"tau build: step a failed with status 7"),
            ({**config("tau/wat"), ".taubyte/build.sh": "true\n"},
             "the build left neither /out/main.wasm nor /out/artifact.wasm", b""),
            ({**config("node:20"), ".taubyte/build.sh": "true\n"},
             "image 'node:20' has no local toolchain (tau runs no docker); known images: ", b""),
            ({**config("tau/wat"), ".taubyte/build.sh": "echo garbage > /out/main.wasm\n"},
             "refused: the build output is not a valid WebAssembly module", b""),
        ]

        async def check():
            for files, failure, logged in cases:
                result = await self.builder.buildWasm(self.repo(files))
                self.assertTrue(result.failure.startswith(failure), result.failure)
                self.assertIn(logged, result.log)
                self.assertNotIn(b"\nB\n", result.log)
        return Deferred.fromCoroutine(check())

    def test_noSandbox(self):
        """
        Where the sandbox cannot run, the build fails saying why (and runs
        nothing).
        """
        builder = Builder(reactor, Sandbox(reactor, bwrap="tau-no-such-bwrap"))
        root = self.repo({**config("tau/wat"), ".taubyte/build.sh": BUILD_SH, "ping.wat": PING_WAT})

        async def check():
            result = await builder.buildWasm(root)
            self.assertEqual(result.failure, "cannot sandbox builds: tau-no-such-bwrap is not installed (Debian"
                                             " package bubblewrap)")
        return Deferred.fromCoroutine(check())

    def test_website(self):
        """
        A website's /out tree comes back as a folder and is added as one
        UnixFS folder whose files are those built.
        """
        root = self.repo({**config("tau/wat", variables="\n    TITLE: Hello"),
                          ".taubyte/build.sh": 'mkdir -p "$OUT/css"\necho "<h1>$TITLE</h1>" > "$OUT/index.html"\n'
                                               'echo "h1{}" > "$OUT/css/site.css"\n'})
        out = os.path.abspath(self.mktemp())
        content = fakes.FakeContent()

        async def check():
            result = await self.builder.buildWebsite(root, out)
            self.assertIsNone(result.failure, result.log)
            self.assertEqual(result.folder, out)
            entry = await addWebsite(reactor, content, out)
            self.assertEqual(sorted(name for name, _, _ in await content.ls(entry.cid)), ["css", "index.html"])
            listed = {p: size async for p, _, size in unixfsread.tree(content.blocks, entry.cid)}
            self.assertEqual(listed, {"": None, "css": None, "css/site.css": 5, "index.html": 15})
        return Deferred.fromCoroutine(check())

    def test_emptyWebsite(self):
        root = self.repo({**config("tau/wat"), ".taubyte/build.sh": "true\n"})

        async def check():
            result = await self.builder.buildWebsite(root, os.path.abspath(self.mktemp()))
            self.assertEqual(result.failure, "the build left /out empty")
            self.assertIsNone(result.folder)
        return Deferred.fromCoroutine(check())


class WebsiteEntriesTests(TestCase):
    def test_entries(self):
        root = write(self.mktemp(), {"b/x.txt": "x", "a.txt": "a", "b/c/y": "y"})
        self.assertEqual([p for p, _ in folderEntries(root)], ["a.txt", "b", "b/c", "b/c/y", "b/x.txt"])

    def test_limit(self):
        """
        Exactly C{maxEntries} entries are taken, one more is refused.
        """
        root = write(self.mktemp(), {"a": "", "b/c": ""})
        self.assertEqual(len(folderEntries(root, maxEntries=3)), 3)
        with self.assertRaises(BadWebsite):
            folderEntries(root, maxEntries=2)

    def test_linkRefused(self):
        root = write(self.mktemp(), {"a": ""})
        os.symlink("/etc/passwd", os.path.join(root, "p"))
        with self.assertRaises(BadWebsite) as caught:
            folderEntries(root)
        self.assertEqual(str(caught.exception), "the website holds 'p', which is neither a file nor a folder")
