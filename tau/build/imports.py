"""
The check that a built WebAssembly module imports only what a function may
import (the spec sheet C{wasm-host-abi.md}, section 1):

 - C{taubyte/sdk}: the host functions substrate defines
   (L{tau.services.substrate.wasm.hostabi.PROVIDERS}), with the same
   signature;
 - C{wasi_snapshot_preview1}: WASI preview 1 as wasmtime links it;
 - C{env}: C{_ready()}, C{_sleep(i64)}, C{_log(i32, i32)} (Taubyte's
   runtime provides those three);
 - the modules of the project's libraries (guest-to-guest), when the
   caller names them.

Both host namespaces are checked against a real wasmtime linker set up as
substrate sets it up, so the check cannot drift from what runs.  Anything
else (another module, a memory, table or global import, a wrong
signature) is refused with a message naming it.
"""

from __future__ import annotations

import types

import wasmtime

from tau.services.substrate.wasm import hostabi

WASI = "wasi_snapshot_preview1"
SDK = hostabi.MODULE
ENV = "env"

#: Most bytes of a module checked.
MAX_MODULE = 64 << 20

#: Most imports a module may have.
MAX_IMPORTS = 4096

#: env functions: name -> (params, results), as value type names.
ENV_FUNCTIONS = {
    "_ready": ((), ()),
    "_sleep": (("i64",), ()),
    "_log": (("i32", "i32"), ()),
}


class ForeignImport(ValueError):
    """
    The module imports something a function may not: what and why.
    """


def _signature(functype):
    return tuple(str(t) for t in functype.params), tuple(str(t) for t in functype.results)


def _show(signature):
    params, results = signature
    return f"({', '.join(params)}) -> ({', '.join(results)})"


class _HostFunctions:
    """
    The host namespaces' functions, looked up in a linker set up as
    substrate's (C{define_wasi} and L{hostabi.define}).
    """

    def __init__(self, engine):
        self.store = wasmtime.Store(engine)
        self.store.set_wasi(wasmtime.WasiConfig())
        self.linker = wasmtime.Linker(engine)
        self.linker.define_wasi()
        hostabi.define(self.linker, types.SimpleNamespace(events={}, context=None))

    def signature(self, module, name):
        if module == ENV:
            return ENV_FUNCTIONS.get(name)
        try:
            item = self.linker.get(self.store, module, name)
        except wasmtime.WasmtimeError:
            return None
        if not isinstance(item, wasmtime.Func):
            return None
        return _signature(item.type(self.store))


def moduleImports(wasm, engine=None):
    """
    The C{(module, name, kind, signature or None)} imports of C{wasm}
    (bytes), read by compiling it with wasmtime (blocking: call it from a
    worker thread).  Raises L{ForeignImport} for a module that is too big
    or not valid WebAssembly.
    """
    if len(wasm) > MAX_MODULE:
        raise ForeignImport(f"the module is {len(wasm)} bytes, more than the {MAX_MODULE} tau checks")
    engine = engine or wasmtime.Engine()
    try:
        module = wasmtime.Module(engine, wasm)
    except wasmtime.WasmtimeError as e:
        raise ForeignImport(f"the build output is not a valid WebAssembly module: {str(e).splitlines()[0]}") from None
    found = []
    for item in module.imports:
        kind = type(item.type).__name__.replace("Type", "").lower()
        signature = _signature(item.type) if isinstance(item.type, wasmtime.FuncType) else None
        found.append((item.module, item.name, kind, signature))
    return found


def checkImports(wasm, libraries=(), engine=None):
    """
    Check that module C{wasm} (bytes) imports only the host ABI and the
    modules named in C{libraries}; return its imports (L{moduleImports}).
    Blocking (it compiles the module): call it from a worker thread.

    @raise ForeignImport: the first import that is not allowed, named.
    """
    engine = engine or wasmtime.Engine()
    found = moduleImports(wasm, engine)
    if len(found) > MAX_IMPORTS:
        raise ForeignImport(f"the module has {len(found)} imports, more than {MAX_IMPORTS}")
    host = None
    for module, name, kind, signature in found:
        what = f"{module}.{name}"
        if module in libraries:
            if kind != "func":
                raise ForeignImport(f"the module imports {what}, a {kind}; only functions are linked between modules")
            continue
        if module not in (SDK, WASI, ENV):
            raise ForeignImport(
                f"the module imports {what} from module {module!r}, which is neither the host ABI ({SDK}, {WASI},"
                f" {ENV}) nor a library of the project{' (' + ', '.join(sorted(libraries)) + ')' if libraries else ''}")
        if kind != "func":
            raise ForeignImport(f"the module imports {what}, a {kind}; the host provides only functions")
        if host is None:
            host = _HostFunctions(engine)
        provided = host.signature(module, name)
        if provided is None:
            raise ForeignImport(f"the module imports {what}, which the host does not provide")
        if provided != signature:
            raise ForeignImport(f"the module imports {what} as {_show(signature)}, but the host provides it as"
                                f" {_show(provided)}")
    return found
