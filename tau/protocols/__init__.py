"""
Wire protocols.  L{installProtocols} registers the ones every host serves.
"""


def installProtocols(host):
    """
    Serve identify (and push), ping and perf on C{host}.
    """
    from tau.protocols import identify, perf, ping

    identify.install(host)
    ping.install(host)
    perf.install(host)
