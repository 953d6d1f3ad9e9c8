"""
What AutoNAT and auto-relay look at among the host's peers.
"""

from __future__ import annotations

__all__ = ["directPeers", "onIdentified"]


def directPeers(host, protocol=None):
    """
    The connected peers reached over a direct (not relayed) connection and,
    when C{protocol} is given, known to support it.
    """
    for peer in host.connectedPeers():
        if protocol is not None and not host.peerstore.supports(peer, protocol):
            continue
        conn = host.connectionTo(peer)
        if conn is not None and getattr(conn, "relay", None) is None:
            yield peer


def onIdentified(host, connection, callback, log, what):
    """
    Call C{callback(result)} once identify finished on C{connection}.

    A connection that closed before identify finished is no news; a failure
    of C{callback} is logged as C{"{what}: handling an identified peer failed"}.
    """
    from tau.protocols import identify

    d = identify.whenIdentified(host, connection)
    d.addCallbacks(callback, lambda f: None)
    d.addErrback(lambda f: log.failure(f"{what}: handling an identified peer failed", f))
    return d
