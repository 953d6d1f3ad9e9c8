"""
A stand-in host for the AutoNAT service and auto-relay tests: peers,
connections and protocols are set by the test.
"""

from tau.identity import PrivateKey
from tau.peerstore import PeerStore


class FakeConn:
    def __init__(self, peer, remoteAddr="/ip4/1.2.3.4/tcp/4001", relay=None):
        self.remotePeer = peer
        self.remoteAddr = remoteAddr
        self.relay = relay
        self.closing = False
        self.closed = []

    def whenClosed(self):
        from twisted.internet.defer import Deferred

        d = Deferred()
        self.closed.append(d)
        return d

    def lose(self):
        for d in self.closed:
            d.callback(None)


class FakeHost:
    def __init__(self, clock, listen=("/ip4/0.0.0.0/tcp/4001",), announce=("/ip4/192.168.1.5/tcp/4001",)):
        self.clock = clock
        self.key = PrivateKey.generate()
        self.peerID = self.key.peerID()
        self.peerstore = PeerStore(clock)
        self.swarmKey = None
        self.listen = list(listen)
        self.announce = list(announce)
        self.extra = []
        self.conns = {}
        self.handlers = {}
        self.observers = []
        self.changes = 0

    # the test's side

    def connect(self, peer, protocols=(), observed=None, relay=None, remoteAddr="/ip4/1.2.3.4/tcp/4001"):
        conn = FakeConn(peer, remoteAddr, relay)
        self.conns[peer] = conn
        self.peerstore.setProtocols(peer, protocols)
        if observed is not None:
            self.peerstore.record(peer).observedAddr = observed
        for observer in self.observers:
            observer(conn)
        return conn

    def disconnect(self, peer):
        conn = self.conns.pop(peer)
        conn.lose()

    # the host API

    def connectedPeers(self):
        return list(self.conns)

    def connectionTo(self, peer):
        return self.conns.get(peer)

    def connections(self, peer=None):
        if peer is not None:
            return [self.conns[peer]] if peer in self.conns else []
        return list(self.conns.values())

    def listenAddresses(self):
        return list(self.listen)

    def announcedAddresses(self):
        return list(self.announce) + [a for a in self.extra if a not in self.announce]

    def addAnnouncedAddrs(self, addrs):
        for a in addrs:
            if a not in self.extra:
                self.extra.append(a)
        self.notifyChanged()

    def removeAnnouncedAddrs(self, addrs):
        self.extra = [a for a in self.extra if a not in addrs]
        self.notifyChanged()

    def notifyChanged(self):
        self.changes += 1

    def setStreamHandler(self, protocolID, handler, maxInbound=None):
        self.handlers[protocolID] = handler

    def removeHandler(self, protocolID):
        self.handlers.pop(protocolID, None)

    def protocols(self):
        return list(self.handlers)

    def addConnectionObserver(self, observer):
        self.observers.append(observer)


def newPeer():
    return PrivateKey.generate().peerID()
