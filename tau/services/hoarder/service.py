"""
L{HoarderService}: hoarder on a node, and its factory.

Once started it beats on the members topic, serves C{/hoarder/v1}, and
reconciles (claims and opens the database and storage instances it is
placed for, pushes under-replicated stashes again) when the live members
change, when a member asks on the reconcile topic, and every C{backstop}
seconds; it sweeps tns's assets C{10 s} after start and every
C{asset-sweep} seconds.
"""

import cbor2
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from tau.identity import PeerID
from tau.interfaces import IContent, IHost, IKVDB, IMembers, IPubSub, IRouting, ITNSClient
from tau.services import needs
from tau.services.discovery import Announcer, ServiceClient
from tau.services.framework import CommandRouter
from tau.services.hoarder import PROTOCOL, RECONCILE_TOPIC
from tau.services.hoarder.assets import sweep
from tau.services.hoarder.commands import Commands
from tau.services.hoarder.config import HoarderConfig
from tau.services.hoarder.instances import Reconciler
from tau.services.hoarder.membership import Membership
from tau.services.hoarder.rawstash import RawStash
from tau.services.hoarder.registry import Registry
from tau.services.hoarder.stash import Stasher
from tau.services.base import StartedService

#: the largest reconcile request, and seconds after start of the first asset sweep
MAX_RECONCILE = 4096
FIRST_SWEEP = 10.0

log = Logger()


class HoarderService(StartedService):
    """
    @param isMember: C{async isMember(peer, service=None)} (IMembers).
    @param routing: DHT routing (the service is announced, and its peers
        found, through it), or None.
    """

    def __init__(self, host, kvdb, pubsub, content, tns, reactor, config, isMember, *, routing=None):
        self.setName("hoarder")
        self.host = host
        self.pubsub = pubsub
        self.tns = tns
        self.reactor = reactor
        self.config = config
        self.isMember = isMember
        self.me = str(host.peerID)
        self.registry = Registry(kvdb, config.maxItems)
        self.membership = Membership(host.peerID, pubsub, reactor, isMember, onChange=self._membersChanged,
                                     zone=config.zone, interval=config.heartbeat, deadAfter=config.deadAfter,
                                     maxMembers=config.maxMembers)
        self.calls = ServiceClient(host, routing, PROTOCOL, timeout=config.fetchTimeout + 10, attempts=1)
        self.stasher = Stasher(self.me, content, self.registry, self.membership, self._push, reactor,
                               config.fetchTimeout)
        self.reconciler = Reconciler(self.me, self.registry, self.membership, kvdb, tns, self.stasher, reactor,
                                     jitter=config.jitter, maxItems=config.maxItems)
        self.commands = Commands(self.me, self.registry, self.membership, self.stasher, self.reconciler,
                                 isMember, config.maxCids)
        self.rawStash = RawStash(content, self.stasher, isMember, reactor)
        # a stash fetches, then waits for its fan-out
        self.router = CommandRouter(PROTOCOL, reactor, handlerTimeout=3 * config.fetchTimeout + 30)
        self.announcer = Announcer(routing, PROTOCOL, reactor) if routing is not None else None
        self._installed = False
        self._backstop = None
        self._sweeps = None
        self._firstSweep = None
        self._reconcileSub = None

    async def _start(self):
        await self.registry.open()
        if not self.running:
            return self
        self.pubsub.addValidator(RECONCILE_TOPIC, self._validReconcile)
        self._reconcileSub = self.pubsub.subscribe(RECONCILE_TOPIC)
        reading = Deferred.fromCoroutine(self._readReconciles(self._reconcileSub))
        reading.addErrback(lambda f: log.failure("hoarder: reading reconcile requests failed", f))
        self.membership.start()
        self.commands.define(self.router)
        self.router.define("stash", self.rawStash.handle)
        self.router.install(self.host)
        self._installed = True
        if self.announcer is not None:
            self.announcer.start()
        self._backstop = LoopingCall(self.reconciler.trigger)
        self._backstop.clock = self.reactor
        # not at once: the node's other services (its tns) may still be
        # opening; the members' first heartbeats start one soon enough
        self._backstop.start(self.config.backstop, now=False)
        self._firstSweep = self.reactor.callLater(FIRST_SWEEP, self._startSweeps)
        log.info("hoarder serving {protocol}", protocol=PROTOCOL)
        return self

    def stopService(self):
        idle = self.reconciler.stop()
        for loop in (self._backstop, self._sweeps):
            if loop is not None and loop.running:
                loop.stop()
        self._backstop = self._sweeps = None
        if self._firstSweep is not None and self._firstSweep.active():
            self._firstSweep.cancel()
        self._firstSweep = None
        if self._installed:
            self.router.uninstall(self.host)
            self._installed = False
            self.membership.stop()
            self.pubsub.removeValidator(RECONCILE_TOPIC)
        if self._reconcileSub is not None:
            self._reconcileSub.cancel()
            self._reconcileSub = None
        if self.announcer is not None:
            self.announcer.stop()
        super().stopService()
        return idle

    # what starts a reconcile

    def _membersChanged(self, joined, left):
        self.reconciler.trigger()

    def _startSweeps(self):
        self._firstSweep = None
        self._sweeps = LoopingCall(self._sweep)
        self._sweeps.clock = self.reactor
        self._sweeps.start(self.config.assetSweep, now=True)

    def _sweep(self):
        d = Deferred.fromCoroutine(sweep(self.tns, self.membership, self.stasher, self.me, self.config.maxItems))
        d.addErrback(lambda f: log.info("hoarder: the asset sweep failed: {why}", why=f.getErrorMessage()))
        return d

    async def _validReconcile(self, message):
        if len(message.data) > MAX_RECONCILE or message.source is None:
            return False
        try:
            value = cbor2.loads(message.data)
        except Exception:
            return False
        if not isinstance(value, dict) or not isinstance(value.get("Hash"), str):
            return False
        return True if await self.isMember(message.source, "hoarder") else None

    async def _readReconciles(self, sub):
        async for _message in sub:
            self.reconciler.trigger()

    async def requestReconcile(self, hash, meta=None):
        """
        Ask every member to reconcile (C{{"Hash", "Meta"}} on the reconcile
        topic).
        """
        await self.pubsub.publish(RECONCILE_TOPIC, cbor2.dumps({"Hash": hash, "Meta": meta}))

    # pushes to other members

    async def _push(self, peer, cid, target, owner):
        body = {"action": "stash", "cid": cid, "target": target, "owner": owner, "fanout": False}
        answer = await self.calls.call("hoarder", body, peers=[PeerID.fromString(peer)])
        if not isinstance(answer, dict) or answer.get("cid") != cid:
            raise ValueError(f"{peer} answered {answer!r:.200}")


def makeHoarder(host, kvdb, pubsub, content, tns, reactor, config, isMember, *, routing=None):
    """
    The hoarder service of a node (C{config}: its L{HoarderConfig}, None
    for the defaults).
    """
    return HoarderService(host, kvdb, pubsub, content, tns, reactor, config or HoarderConfig(), isMember,
                          routing=routing)


@needs(IHost, IKVDB, IPubSub, IContent, IRouting, IMembers, ITNSClient)
def serviceFactory(capabilities, config, reactor):
    """
    The hoarder service of a node whose shape names it: its members are
    the nodes of this node's cloud admitted for hoarder.
    """
    return makeHoarder(capabilities[IHost], capabilities[IKVDB], capabilities[IPubSub], capabilities[IContent],
                       capabilities[ITNSClient], reactor, config.hoarder, capabilities[IMembers].isMember,
                       routing=capabilities[IRouting])
