"""
L{Registry}: the nodes seer heard from, each kept for C{ttl} seconds after
it last told seer anything (heartbeat, announce, place), and healthy
(answered over DNS) while its last heartbeat is less than C{ttl} seconds
old, as Taubyte's seer answers only nodes whose heartbeat is recent.
"""

import ipaddress
from dataclasses import dataclass, field


@dataclass
class Node:
    """
    What seer knows of one node.

    @ivar services: service name -> its meta (text -> text).
    @ivar usage: its last heartbeat's usage (L{tau.services.seer.usage.parseUsage}),
        or None before one.
    @ivar seen: the clock's seconds when it last told seer anything.
    @ivar heard: the clock's seconds at its last heartbeat, or None.
    @ivar healthy: whether C{heard} is less than the TTL old.
    """

    peer: str
    seen: float
    hostname: str = ""
    usage: dict = None
    heard: float = None
    healthy: bool = False
    services: dict = field(default_factory=dict)
    addresses: list = field(default_factory=list)
    #: (lat, long, the clock's Unix seconds when set), or None
    location: tuple = None

    def ips(self):
        """
        The addresses its services announced (meta C{IP}), valid ones only.
        """
        out = []
        for meta in self.services.values():
            try:
                ip = ipaddress.ip_address(meta.get("IP", ""))
            except ValueError:
                continue
            if ip not in out:
                out.append(ip)
        return out


class Registry:
    """
    @param clock: IReactorTime.
    @param ttl: seconds a node stays after it last told seer, and stays
        healthy after its last heartbeat.
    @param maxNodes: the most nodes kept; a new node past it is refused.
    """

    def __init__(self, clock, ttl, maxNodes):
        self.clock = clock
        self.ttl = ttl
        self.maxNodes = maxNodes
        self._nodes = {}
        #: changes whenever the healthy nodes or their services do (answers
        #: cached against it are stale once it moved)
        self.version = 0
        # nothing expires before then
        self._nextExpiry = None

    def _touch(self, peer):
        self.expire()
        node = self._nodes.get(peer)
        if node is None:
            if len(self._nodes) >= self.maxNodes:
                raise OverflowError(f"seer holds {self.maxNodes} nodes already")
            node = self._nodes[peer] = Node(peer, self.clock.seconds())
        node.seen = self.clock.seconds()
        return node

    def heartbeat(self, peer, hostname, usage):
        """
        Node C{peer} is alive, with C{usage} (parsed).
        """
        node = self._touch(peer)
        node.hostname = hostname
        node.usage = usage
        node.heard = node.seen
        if not node.healthy:
            node.healthy = True
            self.version += 1

    def announce(self, peer, services):
        """
        @param services: name -> meta; replaces what the node announced.
        """
        node = self._touch(peer)
        if node.services != services:
            node.services = dict(services)
            node.addresses = node.ips()
            if node.healthy:
                self.version += 1

    def locate(self, peer, lat, long, when=None):
        """
        Where node C{peer} is (degrees), since C{when} (Unix seconds; now
        when not given).
        """
        node = self._touch(peer)
        node.location = (lat, long, int(self.clock.seconds()) if when is None else when)

    def expire(self):
        """
        Drop the nodes not heard from for C{ttl} seconds, and mark those
        whose last heartbeat is as old no more healthy (cheap when nothing
        can have expired yet).
        """
        now = self.clock.seconds()
        if self._nextExpiry is not None and now < self._nextExpiry:
            return
        oldest = now - self.ttl
        for peer in [p for p, n in self._nodes.items() if n.seen <= oldest]:
            if self._nodes.pop(peer).healthy:
                self.version += 1
        nextExpiry = now + self.ttl
        for node in self._nodes.values():
            if node.healthy and node.heard <= oldest:
                node.healthy = False
                self.version += 1
            # a node's times only grow and a new one's are now: the earliest is a bound
            nextExpiry = min(nextExpiry, (node.heard if node.healthy else node.seen) + self.ttl)
        self._nextExpiry = nextExpiry

    def nodes(self, service=None):
        """
        The nodes kept, those running C{service} when given, by peer.
        """
        self.expire()
        return [n for _, n in sorted(self._nodes.items()) if service is None or service in n.services]

    def healthy(self, service=None):
        """
        The healthy nodes, those running C{service} when given, by peer.
        """
        return [n for n in self.nodes(service) if n.healthy]

    def node(self, peer):
        self.expire()
        return self._nodes.get(peer)
