"""
What a node does with its reachability.

 - public: the DHT (mode C{auto}) serves queries, the relay service (mode
   C{auto}) relays for others, auto-relay releases its reservations;
 - private: the DHT becomes a client (peers should not put an unreachable
   node in their routing tables), the relay service stops, auto-relay holds
   reservations and announces the C{/p2p-circuit} addresses;
 - unknown: the DHT and the relay service go back to what the config gives
   before anything is known (server and on when the node listens).

Every change the peers should know of reaches them by identify push.
"""

from tau.autonat.autorelay import AutoRelay
from tau.autonat.reachability import PRIVATE, PUBLIC
from tau.autonat.service import AutoNATService

__all__ = ["ReachabilityPolicy", "install"]


class ReachabilityPolicy:
    """
    @param dht: the L{tau.kad.network.DHTService} when its mode is C{auto},
        else None.
    @param relay: the L{tau.relay.RelayService}, or None.
    @param autorelay: the L{AutoRelay}, or None.
    """

    def __init__(self, dht=None, relay=None, autorelay=None):
        self.dht = dht
        self.dhtDefault = dht.mode if dht is not None else None
        self.relay = relay
        self.autorelay = autorelay

    def __call__(self, status):
        if self.dht is not None:
            mode = {PUBLIC: "server", PRIVATE: "client"}.get(status, self.dhtDefault)
            self.dht.setMode(mode)
        if self.relay is not None:
            if status in (PUBLIC, PRIVATE):
                self.relay.setReachable(status == PUBLIC)
            else:
                self.relay.setReachable(self.relay.autoDefault)
        if self.autorelay is not None:
            self.autorelay.setActive(status == PRIVATE)


def install(node, config, reactor):
    """
    Give C{node} its AutoNAT service and auto-relay (children of the node,
    not started) and let the verdict drive the DHT, the relay service and
    auto-relay.

    @return: C{(autonat, autorelay or None)}.
    """
    options = config.autonat
    autonat = AutoNATService(
        node.host,
        reactor,
        serve=options["service"],
        allowPrivate=options["allow-private"],
        reachability=options["reachability"],
        bootDelay=float(options["boot-delay"]),
    )
    client = getattr(node, "relayClient", None)
    autorelay = None
    if options["auto-relay"] and client is not None:
        autorelay = AutoRelay(node.host, client, reactor)
    dht = node.dht if node.dht is not None and config.dht["mode"] == "auto" else None
    autonat.subscribe(ReachabilityPolicy(dht, getattr(node, "relay", None), autorelay))
    autonat.setServiceParent(node)
    if autorelay is not None:
        autorelay.setServiceParent(node)
    return autonat, autorelay
