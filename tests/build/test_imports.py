"""
The host-ABI import check of built modules.
"""

import wasmtime
from twisted.trial.unittest import TestCase

from tau.build.imports import ForeignImport, checkImports, moduleImports
from tau.services.substrate.wasm import hostabi


def module(*imports):
    return wasmtime.wat2wasm("(module %s (func (export \"f\")))" % " ".join(imports))


def fn(module, name, params="", result=""):
    params = f"(param {params})" if params else ""
    result = f"(result {result})" if result else ""
    return f'(import "{module}" "{name}" (func {params} {result}))'


class CheckImportsTests(TestCase):
    def refused(self, wasm, libraries=()):
        with self.assertRaises(ForeignImport) as caught:
            checkImports(wasm, libraries)
        return str(caught.exception)

    def test_hostAbi(self):
        """
        The SDK's HTTP functions, WASI and env's three functions with their
        signatures pass; the imports are listed.
        """
        wasm = module(fn("taubyte/sdk", "getEventType", "i32 i32"),
                      fn("taubyte/sdk", "eventHttpWrite", "i32 i32 i32 i32", "i32"),
                      fn("wasi_snapshot_preview1", "fd_write", "i32 i32 i32 i32", "i32"),
                      fn("wasi_snapshot_preview1", "clock_time_get", "i32 i64 i32", "i32"),
                      fn("env", "_sleep", "i64"), fn("env", "_log", "i32 i32"), fn("env", "_ready"))
        found = checkImports(wasm)
        self.assertEqual(found[1], ("taubyte/sdk", "eventHttpWrite", "func", (("i32",) * 4, ("i32",))))
        self.assertEqual(len(found), 7)

    def test_noImports(self):
        self.assertEqual(checkImports(module()), [])

    def test_everyProvidedName(self):
        """
        Every function the providers define passes with its own signature.
        """
        imports = []
        for provider in hostabi.PROVIDERS:
            for name, n, hasResult, _ in provider(_Stub()):
                imports.append(fn("taubyte/sdk", name, " ".join(["i32"] * n), "i32" if hasResult else ""))
        self.assertEqual(len(checkImports(module(*imports))), len(imports))

    def test_foreignModule(self):
        message = self.refused(module(fn("evil", "exec", "i32", "i32")))
        self.assertEqual(message, "the module imports evil.exec from module 'evil', which is neither the host ABI"
                                  " (taubyte/sdk, wasi_snapshot_preview1, env) nor a library of the project")

    def test_library(self):
        """
        A library's module is linked guest-to-guest when the caller names it.
        """
        wasm = module(fn("fifo_writer", "fifo_1", "", "i32"))
        self.assertEqual(len(checkImports(wasm, libraries=("fifo_writer",))), 1)
        self.assertIn("from module 'fifo_writer'", self.refused(wasm, libraries=("other",)))

    def test_unknownSdkName(self):
        message = self.refused(module(fn("taubyte/sdk", "ethSign", "i32", "i32")))
        self.assertEqual(message, "the module imports taubyte/sdk.ethSign, which the host does not provide")

    def test_wrongSignature(self):
        message = self.refused(module(fn("taubyte/sdk", "eventHttpWrite", "i32 i32 i32", "i32")))
        self.assertEqual(message, "the module imports taubyte/sdk.eventHttpWrite as (i32, i32, i32) -> (i32), but the"
                                  " host provides it as (i32, i32, i32, i32) -> (i32)")
        self.assertIn("env._sleep as (i32) -> ()", self.refused(module(fn("env", "_sleep", "i32"))))
        self.assertIn("wasi_snapshot_preview1.fd_write as", self.refused(module(fn("wasi_snapshot_preview1",
                                                                                   "fd_write", "i32"))))

    def test_unknownEnvAndWasi(self):
        self.assertIn("env.abort, which the host does not provide", self.refused(module(fn("env", "abort"))))
        self.assertIn("wasi_snapshot_preview1.sock_open, which the host does not provide",
                      self.refused(module(fn("wasi_snapshot_preview1", "sock_open", "i32", "i32"))))

    def test_memoryImport(self):
        message = self.refused(module('(import "env" "memory" (memory 1))'))
        self.assertEqual(message, "the module imports env.memory, a memory; the host provides only functions")

    def test_notWasm(self):
        message = self.refused(b"\0asm\x01\0\0\0garbage")
        self.assertTrue(message.startswith("the build output is not a valid WebAssembly module: "), message)
        self.assertIn("not a valid WebAssembly module", self.refused(b"hello"))

    def test_moduleImports(self):
        found = moduleImports(module('(import "a" "t" (table 1 funcref))', fn("b", "f", "i64", "f32")))
        self.assertEqual(found, [("a", "t", "table", None), ("b", "f", "func", (("i64",), ("f32",)))])


class _Stub:
    events = {}
    context = None
