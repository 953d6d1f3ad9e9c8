"""
Which peers belong to this node's cloud: services trust each other's
calls only when the caller shows an admission (L{tau.cloud}) signed by the
cloud's key for the very PeerId the secure channel proved.

A node with a cloud serves its admission on C{/tau/cloud/admission/1.0.0}
(one length-prefixed message, then the end of the stream; empty when it
has none).  L{CloudMembers.isMember} asks a peer for it once, checks it
(signed by our cloud's key, naming that peer) and remembers the verdict:
an admission until the node stops, a refusal for a minute.  A node
without a cloud trusts only itself.
"""

from collections import OrderedDict

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tau.cloud import MAX_ADMISSION, InvalidAdmission, decodeAdmission
from tau.interfaces import IMembers
from tau.oneshot import OneShot
from tau.streams import withTimeout

PROTOCOL_ID = "/tau/cloud/admission/1.0.0"
#: seconds an asked peer has to answer, and a refusal is remembered
ASK_TIMEOUT = 5.0
REFUSAL_TTL = 60.0
#: peers whose verdict is remembered
MAX_KNOWN = 4096

log = Logger()


@implementer(IMembers)
class CloudMembers(Service):
    """
    @param host: the node's L{tau.host.Host}.
    @param cloud: the cloud's L{PeerID} (config C{cloud.key}), or None.
    @param admission: this node's L{tau.cloud.Admission}, or None.
    """

    name = "members"

    def __init__(self, host, clock, cloud=None, admission=None):
        self.host = host
        self.clock = clock
        self.cloud = cloud
        self.admission = admission
        self._known = OrderedDict()
        self._asking = {}

    def startService(self):
        super().startService()
        self.host.setStreamHandler(PROTOCOL_ID, self._serve, allowLimited=True, maxInbound=2)

    def stopService(self):
        super().stopService()
        self.host.removeHandler(PROTOCOL_ID)
        self._known.clear()

    async def _serve(self, stream):
        stream.writeLP(self.admission.data if self.admission is not None else b"")
        stream.closeWrite()

    async def isMember(self, peer, service=None):
        """
        Whether C{peer} is a node of this cloud (admitted for C{service},
        when given).  We are, always.
        """
        if peer == self.host.peerID:
            return True
        if self.cloud is None:
            return False
        known = self._known.get(peer)
        if isinstance(known, float) and known > self.clock.seconds():
            return False
        if known is None or isinstance(known, float):
            pending = self._asking.get(peer)
            if pending is None:
                pending = self._asking[peer] = OneShot()
                d = Deferred.fromCoroutine(self._ask(peer))
                d.addBoth(self._asked, peer, pending)
            known = await pending.whenFired()
        if known is None:
            return False
        return service is None or service in known.services

    def _asked(self, result, peer, pending):
        del self._asking[peer]
        if isinstance(result, Failure):
            log.failure("cloud: asking {peer} for its admission failed", result, peer=str(peer))
            result = None
        if result is None:
            self._remember(peer, self.clock.seconds() + REFUSAL_TTL)
        else:
            self._remember(peer, result)
        pending.fire(result)

    def _remember(self, peer, verdict):
        self._known[peer] = verdict
        self._known.move_to_end(peer)
        while len(self._known) > MAX_KNOWN:
            self._known.popitem(last=False)

    async def _ask(self, peer):
        try:
            stream = await self.host.newStream(peer, [PROTOCOL_ID], timeout=ASK_TIMEOUT, allowLimited=True)
            try:
                data = await withTimeout(self.clock, ASK_TIMEOUT, stream.readLP(MAX_ADMISSION, allowEOF=True))
            finally:
                stream.reset()
        except Exception as e:
            log.debug("cloud: {peer} showed no admission: {why}", peer=str(peer), why=str(e) or e.__class__.__name__)
            return None
        if not data:
            return None
        try:
            admission = decodeAdmission(data)
        except InvalidAdmission as e:
            log.info("cloud: {peer} showed a bad admission: {why}", peer=str(peer), why=str(e))
            return None
        if admission.cloud != self.cloud or admission.node != peer:
            log.info("cloud: {peer} showed an admission for {node} by cloud {cloud}, not ours",
                     peer=str(peer), node=str(admission.node), cloud=str(admission.cloud))
            return None
        return admission
