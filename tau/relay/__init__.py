"""
Circuit relay v2 (C{/libp2p/circuit/relay/0.2.0/hop} and C{.../stop},
libp2p/specs relay/circuit-v2.md).

- L{RelayService} (L{tau.relay.server}): the relay; it holds
  reservations and joins hop and stop streams into relayed connections,
  within L{RelayLimits}.
- L{RelayClient} (L{tau.relay.client}): reservations
  (C{reserve}/C{listen}), the stop handler that accepts relayed
  connections, and the host transport that dials
  C{.../p2p/RELAY/p2p-circuit/p2p/TARGET}.

Relayed connections are ordinary L{tau.connection.Connection}s of the host
(TLS and yamux end to end) with C{relay} set to the relay's PeerID and
C{limited} true when the relay limits them.
"""

from tau.relay.client import RelayClient, RelayError, splitCircuit
from tau.relay.messages import HOP, STOP, Limit, Reservation
from tau.relay.server import Circuit, RelayLimits, RelayService

__all__ = [
    "HOP",
    "STOP",
    "Circuit",
    "Limit",
    "RelayClient",
    "RelayError",
    "RelayLimits",
    "RelayService",
    "Reservation",
    "install",
    "splitCircuit",
]


def install(host, reactor, *, service="off", limits=None, autoDefault=True):
    """
    Give C{host} a L{RelayClient} (installed: stop handler and circuit
    transport) and a L{RelayService} in mode C{service} (C{auto}, C{on},
    C{off}); both are services, not started: add them to a service parent
    or start them.

    @return: C{(client, service)}.
    """
    client = RelayClient(host, reactor)
    client.install()
    relay = RelayService(host, reactor, limits or RelayLimits(), mode=service, autoDefault=autoDefault)
    return client, relay
