"""
Hole punching with DCUtR (C{/libp2p/dcutr}, libp2p/specs relay/DCUtR.md):
two peers behind NATs that meet through a circuit relay switch to a direct
TCP connection.

- L{tau.dcutr.messages}: the C{HolePunch} messages and their limits;
- L{tau.dcutr.punch}: the simultaneous dials from the relay connection's
  port, and the upgrade with DCUtR's roles;
- L{tau.dcutr.service}: L{HolePunchService}, which starts hole punches on
  relayed connections while AutoNAT says the node is private, and answers
  the peer's.
"""

from tau.dcutr.messages import PROTOCOL_ID
from tau.dcutr.service import HolePunchService, Outcome

__all__ = ["PROTOCOL_ID", "HolePunchService", "Outcome", "install"]


def install(host, reactor, *, autonat=None, options=None):
    """
    A L{HolePunchService} for C{host} (not started), driven by
    C{autonat.status}, configured by C{options} (the C{dcutr} section).

    @return: the service, or None when C{hole-punching} is off.
    """
    options = options or {}
    if not options.get("hole-punching", True):
        return None
    return HolePunchService(
        host,
        reactor,
        reachability=(lambda: autonat.status) if autonat is not None else (lambda: "unknown"),
        attempts=int(options.get("attempts", 3)),
        timeout=float(options.get("timeout", 5.0)),
    )
