"""
What a host knows of other peers: addresses, protocols, keys, agent.

Everything here comes from the network (identify, the DHT, the config), so
every collection is bounded.  Addresses are kept without the trailing
C{/p2p/<id>}.
"""

from dataclasses import dataclass, field

import multiaddr

from tau.identity import PeerID

MAX_PEERS = 10_000
MAX_ADDRS = 32
MAX_PROTOCOLS = 128
MAX_PROTOCOL_LENGTH = 256
MAX_AGENT_LENGTH = 256


@dataclass
class PeerRecord:
    peerID: PeerID
    addrs: dict = field(default_factory=dict)  # multiaddr text -> expiry (clock seconds, or None = permanent)
    protocols: set = field(default_factory=set)
    publicKey: object = None
    agentVersion: str = ""
    protocolVersion: str = ""
    observedAddr: str = ""
    lastSeen: float = 0.0


def stripPeer(addr):
    """
    C{addr} without a trailing C{/p2p/<id>}: C{(multiaddr text, PeerID or None)}.
    """
    ma = addr if isinstance(addr, multiaddr.Multiaddr) else multiaddr.Multiaddr(addr)
    parts = list(ma.items())
    if parts and parts[-1][0].name == "p2p":
        peer = PeerID.fromString(parts[-1][1])
        return str(ma.decapsulate_code(parts[-1][0].code)), peer
    return str(ma), None


class PeerStore:
    """
    A bounded in-memory record per peer.

    @param clock: an L{IReactorTime}, for address expiry.
    """

    def __init__(self, clock, maxPeers=MAX_PEERS):
        self._clock = clock
        self._maxPeers = maxPeers
        self._peers = {}

    def __contains__(self, peerID):
        return peerID in self._peers

    def __len__(self):
        return len(self._peers)

    def peers(self):
        return list(self._peers)

    def get(self, peerID):
        """
        The L{PeerRecord} of C{peerID}, or None.
        """
        return self._peers.get(peerID)

    def record(self, peerID):
        rec = self._peers.get(peerID)
        if rec is None:
            if len(self._peers) >= self._maxPeers:
                self._evict()
            rec = self._peers[peerID] = PeerRecord(peerID)
        rec.lastSeen = self._clock.seconds()
        return rec

    def _evict(self):
        # Forget the peer seen longest ago.
        oldest = min(self._peers.values(), key=lambda r: r.lastSeen)
        del self._peers[oldest.peerID]

    def addAddrs(self, peerID, addrs, ttl=None):
        """
        Remember addresses of C{peerID} (multiaddr text or objects), for
        C{ttl} seconds or for good when None.  Malformed ones are skipped.
        """
        rec = self.record(peerID)
        expiry = None if ttl is None else self._clock.seconds() + ttl
        for addr in addrs:
            try:
                text, peer = stripPeer(addr)
            except Exception:
                continue
            if peer is not None and peer != peerID:
                continue
            old = rec.addrs.get(text, 0)
            if text in rec.addrs and (old is None or (expiry is not None and old >= expiry)):
                continue
            if text not in rec.addrs and len(rec.addrs) >= MAX_ADDRS:
                continue
            rec.addrs[text] = expiry

    def setAddrs(self, peerID, addrs, ttl=None):
        """
        Replace the non-permanent addresses of C{peerID} (an identify answer).
        """
        rec = self.record(peerID)
        rec.addrs = {a: e for a, e in rec.addrs.items() if e is None}
        self.addAddrs(peerID, addrs, ttl)

    def addrs(self, peerID):
        """
        The unexpired addresses of C{peerID}, as multiaddr text.
        """
        rec = self._peers.get(peerID)
        if rec is None:
            return []
        now = self._clock.seconds()
        expired = [a for a, e in rec.addrs.items() if e is not None and e < now]
        for a in expired:
            del rec.addrs[a]
        return list(rec.addrs)

    def setProtocols(self, peerID, protocols):
        rec = self.record(peerID)
        rec.protocols = {p for p in list(protocols)[:MAX_PROTOCOLS] if isinstance(p, str) and len(p) <= MAX_PROTOCOL_LENGTH}

    def addProtocols(self, peerID, protocols):
        rec = self.record(peerID)
        for p in protocols:
            if len(rec.protocols) >= MAX_PROTOCOLS:
                break
            if isinstance(p, str) and len(p) <= MAX_PROTOCOL_LENGTH:
                rec.protocols.add(p)

    def protocols(self, peerID):
        rec = self._peers.get(peerID)
        return set(rec.protocols) if rec else set()

    def supports(self, peerID, protocolID):
        rec = self._peers.get(peerID)
        return rec is not None and protocolID in rec.protocols

    def setPublicKey(self, peerID, key):
        """
        Remember C{key} for C{peerID}, which it must name.

        @raise ValueError: when the key is not C{peerID}'s.
        """
        if not peerID.matches(key):
            raise ValueError(f"public key does not belong to {peerID}")
        self.record(peerID).publicKey = key

    def publicKey(self, peerID):
        rec = self._peers.get(peerID)
        if rec is not None and rec.publicKey is not None:
            return rec.publicKey
        return peerID.extractPublicKey()

    def setAgent(self, peerID, agentVersion="", protocolVersion=""):
        rec = self.record(peerID)
        rec.agentVersion = (agentVersion or "")[:MAX_AGENT_LENGTH]
        rec.protocolVersion = (protocolVersion or "")[:MAX_AGENT_LENGTH]
