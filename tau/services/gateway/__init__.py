"""
The gateway service: the cloud's HTTP(S) entry point.  For each request
it asks substrates which serves it and tunnels the request to the best
over a p2p stream (Taubyte's HTTP tunnel), bodies streamed both ways.

Modules: L{config} (the C{gateway} config section), L{http} (the HTTP
site, its limits and streamed request bodies), L{proxy} (one request:
choose a substrate, fail over, forward), L{hello} (the server name of a
TLS ClientHello), L{tls} (certificates from auth by SNI), L{service} (the
service, L{service.makeGateway} and its factory).  The substrates are
found and chosen by L{tau.services.substrate.client}.
"""
