"""
Wire protocols.  L{installProtocols} registers the ones every host serves.
"""


def installProtocols(host, perf=False):
    """
    Serve identify (and push) and ping on C{host}; perf too when C{perf}
    (the perf spec advises against serving it on public nodes: any peer
    may ask it for up to 1 GiB per stream).
    """
    from tau.protocols import identify, ping

    identify.install(host)
    ping.install(host)
    if perf:
        from tau.protocols import perf as _perf

        _perf.install(host)
