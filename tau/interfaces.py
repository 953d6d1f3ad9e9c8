"""
The capabilities a service meets the node at.

A service factory declares which of these it needs and gets only those
(L{tau.services.Capabilities}); it never sees the node.  Each has one
implementation in the node and one fake in L{tau.fakes} for tests, both
checked against the interface with C{verifyObject}.
"""

from zope.interface import Attribute, Interface


class IHost(Interface):
    """
    The libp2p host: streams, handlers, peers.
    """

    peerID = Attribute("this node's L{tau.identity.PeerID}")
    clock = Attribute("the IReactorTime the host runs on")
    peerstore = Attribute(
        "what the host knows of other peers: C{peers()}, C{supports(peer, protocol)}, "
        "C{addrs(peer)}, C{addAddrs(peer, addrs, ttl)}, C{protocols(peer)}"
    )

    def setStreamHandler(protocolID, handler, *, allowLimited=False):
        """
        Serve C{protocolID} with C{async def handler(stream)}, C{stream} a
        L{tau.streams.StreamProtocol} with C{remotePeer}.
        """

    def removeHandler(protocolID):
        """
        Stop serving C{protocolID}.
        """

    def protocols():
        """
        The protocol ids served.
        """

    def newStream(peerID, protocols, timeout=..., *, allowLimited=False):
        """
        A coroutine: a negotiated L{tau.streams.StreamProtocol} to C{peerID}
        speaking the first of C{protocols} it supports (dialing it if
        needed).
        """

    def connect(addr, timeout=...):
        """
        A coroutine: a connection to the multiaddr C{addr} (text, possibly
        ending in C{/p2p/ID}).
        """

    def dial(peerID, timeout=..., route=True):
        """
        A coroutine: a connection to C{peerID}, from known addresses or
        peer routing.
        """

    def connectedPeers():
        """
        The peers with an open connection.
        """


class IRouting(Interface):
    """
    Content and peer routing: the Kademlia DHT.
    """

    def provide(key):
        """
        Announce that this node provides C{key} (a CID or multihash); a
        Deferred firing with the number of peers told.
        """

    def findProviders(key, count=20):
        """
        A Deferred firing with C{[(PeerID, [multiaddr text])]}: up to
        C{count} providers of C{key}; their addresses are remembered.
        """

    def findPeer(peerID):
        """
        A Deferred firing with the multiaddrs (text) of C{peerID}.
        """


class IPubSub(Interface):
    """
    Gossipsub topics.
    """

    def subscribe(topic):
        """
        A subscription to C{topic}: C{await sub.next()} (or C{async for})
        gives its messages (C{.data}, C{.source}); C{sub.cancel()}.
        """

    def publish(topic, data):
        """
        A coroutine: sign and publish C{data} (bytes) on C{topic}.
        """

    def topicPeers(topic):
        """
        The peers known to be subscribed to C{topic}.
        """

    def addValidator(topic, fn):
        """
        Check every message of C{topic} with C{fn(message)}: True accepts,
        False rejects (and penalises the sender), None ignores; it may
        return a Deferred or coroutine.
        """

    def removeValidator(topic):
        """
        Stop checking C{topic}.
        """


class IKVDB(Interface):
    """
    Replicated key/value databases (a Merkle-CRDT, last write wins).
    Keys and values are bytes.
    """

    def open(name):
        """
        A coroutine: start replicating database C{name} (idempotent).
        """

    def databases():
        """
        The names of the databases replicated here.
        """

    def get(db, key):
        """
        A coroutine: the value of C{key}, or None.
        """

    def list(db, prefix=b"", limit=None, values=False):
        """
        A coroutine: the keys (or C{(key, value)} pairs with C{values})
        starting with C{prefix}, in order.
        """

    def put(db, key, value, replicas=1, timeout=30.0):
        """
        A coroutine: write C{key}; returns once durable here and, with
        C{replicas} > 1, acknowledged by that many nodes in all.
        """

    def delete(db, key, replicas=1, timeout=30.0):
        """
        A coroutine: delete C{key}, as L{put} writes it.
        """

    def write(db, entries, replicas=1, timeout=30.0):
        """
        A coroutine: C{entries} (C{[(key, value or None)]}) written as one
        delta.
        """

    def create(name, writerList, quota=None):
        """
        A coroutine: the database C{name} whose writers are C{writerList}
        (node or cloud writers, L{tau.kvdb.writers}); its replica, whose
        C{name} is the full C{NAME@GENESIS}.
        """

    def serviceDatabase(service, name, quota=...):
        """
        A coroutine: the database C{name} of C{service}, written by the
        nodes of this node's cloud that run C{service}.
        """

    def writersOf(db):
        """
        A coroutine: the writers of C{db}, or None for an open database.
        """

    def addWriters(db, writerList):
        """
        A coroutine: add writers to C{db} (only a writer may).
        """


class IMembers(Interface):
    """
    The nodes of this node's cloud (L{tau.members}).
    """

    def isMember(peer, service=None):
        """
        A coroutine: whether C{peer} showed an admission of this node's
        cloud (for C{service}, when given); this node always is.
        """
