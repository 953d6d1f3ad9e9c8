"""
What a node runs to tell seer it is alive: L{SeerClient} (the calls) and
L{Beacon} (an announce, then a heartbeat every interval).
"""

import socket

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from tau.services.discovery import ServiceClient
from tau.services.framework import LocalCalls
from tau.services.seer import PROTOCOL
from tau.services.seer.commands import signatureOf
from tau.services.seer.usage import usage

log = Logger()


class SeerClient:
    """
    @param host: the local host (its C{key} signs).
    @param routing: DHT routing (C{findProviders}), or None.
    @param client: a L{ServiceClient} to seer, or None for one of its own.
    """

    def __init__(self, host, routing, *, client=None):
        self.host = host
        self.client = client or ServiceClient(host, routing, PROTOCOL)

    def _signed(self, body):
        peer = str(self.host.peerID)
        body.update(id=peer, client=peer, signature=signatureOf(self.host.key, peer, peer))
        return body

    async def heartbeat(self, usage, hostname):
        """
        @param usage: CBOR usage bytes (the spec sheet's keys).
        """
        return await self.client.call("heartbeat", self._signed({"usage": usage, "hostname": hostname}))

    async def announce(self, services):
        """
        @param services: name -> meta (text -> text; C{IP} is the address
            seer answers with).
        """
        body = {"services": [{"Type": name, "Meta": meta} for name, meta in services.items()]}
        return (await self.client.call("announce", self._signed(body)))["Registered"]

    async def locate(self, lat, long):
        """
        Tell seer where this node is (degrees).
        """
        return await self.client.call("geo", {"action": "set", "location": {1: lat, 2: long}})

    async def near(self, lat, long, distance):
        """
        C{{peer: {1: ns, 4: {1: lat, 2: long}}}}: the nodes within
        C{distance} metres.
        """
        body = {"action": "query", "from": {1: lat, 2: long}, "distance": distance}
        return (await self.client.call("geo", body))["peers"]

    async def nodes(self, service=None):
        if service is None:
            return (await self.client.call("heartbeat", {"action": "list"}))["ids"]
        return (await self.client.call("heartbeat", {"action": "listService", "name": service}))["ids"]


def beaconOf(host, routing, config, reactor, service=None):
    """
    The L{Beacon} of a node whose C{seer.announce-ip} is set (its shape's
    services, with that address, every third of seer's TTL), or None.

    @param service: the L{tau.services.seer.service.SeerService} the node
        runs, told directly; None: the seer nodes found in the network.
    """
    ip = config.seer.announceIP
    if not ip:
        return None
    calls = LocalCalls(service.commands.handlers, host.peerID) if service is not None else None
    services = {name: {"IP": ip} for name in config.services}
    return Beacon(SeerClient(host, routing, client=calls), services, config.seer.ttl / 3, reactor,
                  lambda: usage(reactor, str(config.root)), config.location)


class Beacon(TimerService):
    """
    Every C{interval} seconds (less than seer's TTL), announce C{services}
    and send a heartbeat with the usage C{async measure() -> bytes} gives,
    and the node's C{location} (C{{lat, long}}) when given.  A failed round
    is logged and the next one tries again.
    """

    def __init__(self, seer, services, interval, clock, measure, location=None):
        super().__init__(interval, self._round)
        self.clock = clock
        self.seer = seer
        self.services = services
        self.measure = measure
        self.location = location

    async def _tell(self):
        await self.seer.announce(self.services)
        await self.seer.heartbeat(await self.measure(), socket.gethostname())
        if self.location:
            await self.seer.locate(self.location["lat"], self.location["long"])

    def _round(self):
        d = Deferred.fromCoroutine(self._tell())
        d.addErrback(lambda f: log.info("seer: telling seer failed: {why}", why=f.getErrorMessage()))
        return d
