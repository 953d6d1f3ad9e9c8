"""
The wasmtime engine of a runtime and its compiled-module cache.

The engine has epoch interruption on: a call's deadline is a number of epoch
ticks, and the runtime's ticker (on the reactor) advances the epoch.

Compiled modules are kept in memory and serialized on disk as C{CID.cwasm}
in the cache folder.  A serialized module is native code that wasmtime
trusts: the folder must be the node's own (never shared, never written by
anyone else); a file that does not deserialize (another wasmtime version or
engine config) is compiled again and replaced.
"""

import os

from twisted.logger import Logger
from wasmtime import Config, Engine, Module, WasmtimeError

log = Logger()


def makeEngine():
    config = Config()
    config.epoch_interruption = True
    config.cranelift_opt_level = "speed"
    return Engine(config)


class ModuleCache:
    """
    Compiled modules by CID.  L{module} runs in a worker thread (it compiles
    and touches the disk).  C{compiled} and C{loaded} count compilations and
    loads from disk.
    """

    def __init__(self, engine, folder=None):
        self._engine = engine
        self._folder = folder
        self._modules = {}
        self.compiled = 0
        self.loaded = 0

    def _path(self, cid):
        return os.path.join(self._folder, f"{cid}.cwasm")

    def module(self, cid, wasm):
        """
        The compiled module of C{cid}; C{wasm} (bytes, or a callable returning
        them) is only used when it is neither in memory nor on disk.
        """
        module = self._modules.get(cid)
        if module is None:
            module = self._fromDisk(cid)
        if module is None:
            module = Module(self._engine, wasm() if callable(wasm) else wasm)
            self.compiled += 1
            self._toDisk(cid, module)
        self._modules[cid] = module
        return module

    def has(self, cid):
        """
        Whether C{cid} is compiled here, in memory or on disk (a stat: cheap
        enough for the reactor thread).
        """
        return cid in self._modules or (self._folder is not None and os.path.exists(self._path(cid)))

    def _fromDisk(self, cid):
        if self._folder is None or not os.path.exists(self._path(cid)):
            return None
        try:
            module = Module.deserialize_file(self._engine, self._path(cid))
        except WasmtimeError as e:
            log.warn("compiled module {cid} does not load, compiling again: {error}", cid=cid, error=str(e))
            return None
        self.loaded += 1
        return module

    def _toDisk(self, cid, module):
        if self._folder is None:
            return
        os.makedirs(self._folder, mode=0o700, exist_ok=True)
        tmp = self._path(cid) + ".tmp"
        with open(tmp, "wb") as f:
            f.write(module.serialize())
        os.replace(tmp, self._path(cid))
