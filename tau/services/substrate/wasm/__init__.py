"""
The substrate's WebAssembly runtime on wasmtime: the Taubyte host ABI (module
C{taubyte/sdk}, see /work/shared/specs/wasm-host-abi.md), a compiled-module
cache on disk keyed by CID, an instance pool and per-function limits.

  - L{errno}: the errno values the host functions answer.
  - L{http}: the HTTP request an event holds and the Go-faithful response
    writer the guest fills.
  - L{guestmem}: checked reads and writes of an instance's linear memory.
  - L{hostabi}: the C{taubyte/sdk} host functions of the HTTP event, and
    the list of every family of them (C{PROVIDERS}).
  - L{events}: the pubsub and p2p events and their host functions.
  - L{selfabi}: the C{self*} host functions and C{cryptoRead}.
  - L{services}: L{FunctionServices}, what the node-backed families reach
    (content, kvdb, tns, outbound HTTP), one per substrate.
  - L{database}, L{storage}, L{httpclient}: the database, storage and
    HTTP-client host functions (L{nodeabi}: what they share); L{egress}:
    where outbound HTTP may go, and the requests.
  - L{engine}: the engine (epoch interruption) and the module cache.
  - L{instance}: one instantiated function and the pool of warm ones.
  - L{runtime}: L{Runtime}, the call path (a thread pool and an epoch ticker
    on the reactor).
"""

from tau.services.substrate.wasm.http import HttpRequest, HttpResponse
from tau.services.substrate.wasm.egress import HttpClientPolicy
from tau.services.substrate.wasm.instance import Limits
from tau.services.substrate.wasm.runtime import FunctionFailed, Runtime
from tau.services.substrate.wasm.services import FunctionServices

__all__ = ["FunctionFailed", "FunctionServices", "HttpClientPolicy", "HttpRequest", "HttpResponse", "Limits", "Runtime"]
