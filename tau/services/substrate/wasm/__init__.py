"""
The substrate's WebAssembly runtime on wasmtime: the Taubyte host ABI (module
C{taubyte/sdk}, see /work/shared/specs/wasm-host-abi.md), a compiled-module
cache on disk keyed by CID, an instance pool and per-function limits.

  - L{errno}: the errno values the host functions answer.
  - L{http}: the HTTP request an event holds and the Go-faithful response
    writer the guest fills.
  - L{guestmem}: checked reads and writes of an instance's linear memory.
  - L{hostabi}: the C{taubyte/sdk} host functions of the HTTP event, and
    the list of every family's provider.
  - L{events}: the pubsub and p2p events and their host functions.
  - L{selfabi}: the C{self*} host functions and C{cryptoRead}.
  - L{engine}: the engine (epoch interruption) and the module cache.
  - L{instance}: one instantiated function and the pool of warm ones.
  - L{runtime}: L{Runtime}, the call path (a thread pool and an epoch ticker
    on the reactor).
"""

from tau.services.substrate.wasm.http import HttpRequest, HttpResponse
from tau.services.substrate.wasm.instance import Limits
from tau.services.substrate.wasm.runtime import FunctionFailed, Runtime

__all__ = ["FunctionFailed", "HttpRequest", "HttpResponse", "Limits", "Runtime"]
