"""
L{Registry}: the nodes seer heard from, each kept for C{ttl} seconds after
its last heartbeat or announce.
"""

import ipaddress
from dataclasses import dataclass, field


@dataclass
class Node:
    """
    What seer knows of one node.

    @ivar services: service name -> its meta (text -> text).
    @ivar usage: the CBOR usage bytes of its last heartbeat.
    @ivar seen: the clock's seconds at its last heartbeat or announce.
    """

    peer: str
    seen: float
    hostname: str = ""
    usage: bytes = b""
    services: dict = field(default_factory=dict)
    addresses: list = field(default_factory=list)
    #: (lat, long, the clock's nanoseconds when set), or None
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
    @param ttl: seconds a node stays after it last told seer.
    @param maxNodes: the most nodes kept; a new node past it is refused.
    """

    def __init__(self, clock, ttl, maxNodes):
        self.clock = clock
        self.ttl = ttl
        self.maxNodes = maxNodes
        self._nodes = {}
        #: changes whenever the nodes or their services do (answers cached
        #: against it are stale once it moved)
        self.version = 0
        # no node expires before then
        self._nextExpiry = None

    def _touch(self, peer):
        self.expire()
        node = self._nodes.get(peer)
        if node is None:
            if len(self._nodes) >= self.maxNodes:
                raise OverflowError(f"seer holds {self.maxNodes} nodes already")
            node = self._nodes[peer] = Node(peer, self.clock.seconds())
            self.version += 1
        node.seen = self.clock.seconds()
        return node

    def heartbeat(self, peer, hostname, usage):
        node = self._touch(peer)
        node.hostname = hostname
        node.usage = usage

    def announce(self, peer, services):
        """
        @param services: name -> meta; replaces what the node announced.
        """
        node = self._touch(peer)
        if node.services != services:
            node.services = dict(services)
            node.addresses = node.ips()
            self.version += 1

    def locate(self, peer, lat, long):
        """
        Where node C{peer} is (degrees).
        """
        self._touch(peer).location = (lat, long, int(self.clock.seconds() * 1e9))

    def expire(self):
        """
        Drop the nodes not heard from for C{ttl} seconds (cheap when none
        can have expired yet).
        """
        now = self.clock.seconds()
        if self._nextExpiry is not None and now < self._nextExpiry:
            return
        oldest = now - self.ttl
        gone = [p for p, n in self._nodes.items() if n.seen <= oldest]
        for peer in gone:
            del self._nodes[peer]
        if gone:
            self.version += 1
        # a node's seen only grows and a new one's is now: the earliest is a bound
        self._nextExpiry = min((n.seen for n in self._nodes.values()), default=now) + self.ttl

    def nodes(self, service=None):
        """
        The live nodes, those running C{service} when given, by peer.
        """
        self.expire()
        return [n for _, n in sorted(self._nodes.items()) if service is None or service in n.services]

    def node(self, peer):
        self.expire()
        return self._nodes.get(peer)
