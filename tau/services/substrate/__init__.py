"""
The substrate service: serves the requests gateways tunnel to it
(L{tau.services.substrate.tunnel}): websites and a project's functions
(WebAssembly) for HTTP, pubsub and p2p events.

Modules: L{website} (a UnixFS folder served over HTTP), L{wasm} (the
functions' runtime), L{metrics} (what a substrate answers C{proxy-http}
with).
"""

#: the substrate's command protocol (C{proxy-http}, then the HTTP tunnel)
PROTOCOL = "/substrate/v1"

#: how a substrate's C{proxy-http} error begins when nothing it knows
#: serves the host and path (a gateway answers 404 when every substrate
#: asked says so)
NOT_SERVED = "no website or function serves"
