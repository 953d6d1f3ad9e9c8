"""
The substrate service: serves requests (websites, functions) that gateways
tunnel to it (L{tau.services.tunnel}).

Modules: L{website} (a UnixFS folder served over HTTP).
"""
