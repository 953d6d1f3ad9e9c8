"""
substrate: the service that runs a project's functions (WebAssembly) for
HTTP, pubsub and p2p events.  L{tau.services.substrate.wasm} is its runtime.
"""
