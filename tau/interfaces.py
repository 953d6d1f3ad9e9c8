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

    def setStreamHandler(protocolID, handler, *, allowLimited=False, maxInbound=None):
        """
        Serve C{protocolID} with C{async def handler(stream)}, C{stream} a
        L{tau.streams.StreamProtocol} with C{remotePeer}; at most
        C{maxInbound} of its streams open at once per peer (None: the
        host's default).
        """

    def removeHandler(protocolID):
        """
        Stop serving C{protocolID}.
        """

    def protocols():
        """
        The protocol ids served.
        """

    def newStream(peerID, protocols, timeout=..., *, allowLimited=False, lazy=False):
        """
        A coroutine: a negotiated L{tau.streams.StreamProtocol} to C{peerID}
        speaking the first of C{protocols} it supports (dialing it if
        needed).  C{lazy}: with one protocol the peer is known to speak,
        the stream may come before the peer accepted it (a refusal then
        fails its first read).
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


class IContent(Interface):
    """
    Content-addressed data: UnixFS files and folders added, read, pinned
    and provided (kubo's coreapi).  A CID is given as a CID object, its
    text or an C{/ipfs/CID} path.  Failures are typed
    (L{tau.store.content}): C{BadInput} (not a CID, not UnixFS, an unsafe
    path, a bad tar stream or chunker), C{NotPinned}, C{NotFound} (a block
    missing), C{NotInTime} (no peer sent it in time), C{StoreFull}.
    Adding stores in one write batch, durable (and pinned with C{pin})
    when it returns, then announces the root to waiting peers and provides
    it in the DHT.  An add returns a L{tau.store.unixfs.Entry} (C{cid},
    C{size} of the whole DAG, C{filesize}).
    """

    def add(source, pin=True, chunker=None):
        """
        A coroutine: import one file from C{source} (bytes, a path, or a
        binary file object read to its end in a worker thread).
        C{chunker} as kubo names it (C{size-N}, C{buzhash}).
        """

    def addFolder(entries, pin=True, chunker=None, onFile=None):
        """
        A coroutine: import a folder from C{entries}, C{(path, source or
        None for a folder)} pairs (an iterable or async iterable);
        C{onFile(path, entry)} is called for each file.  The root folder's
        entry.
        """

    def addTar(stream, pin=True, chunker=None, onFile=None, maxEntries=...):
        """
        A coroutine: L{addFolder} of a tar stream (a binary file; regular
        files and folders, relative paths, at most C{maxEntries}).
        """

    def addDirectory(entries, pin=True, maxEntries=...):
        """
        A coroutine: a folder over nodes already stored, C{entries}
        mapping "a/b" paths to CIDs.
        """

    def cat(cid, offset=0, length=None, timeout=...):
        """
        A coroutine: once the first bytes of file C{cid} (from C{offset},
        at most C{length} bytes) are in, fetched from peers within
        C{timeout} seconds if needed, an async iterator of its bytes.
        """

    def get(cid, timeout=...):
        """
        A coroutine: an async iterator of a tar stream of C{cid} (a file or
        a folder, its top entry named after the CID), as kubo's C{get}.
        """

    def ls(cid, timeout=...):
        """
        A coroutine: the C{(name, cid, size)} entries of the folder C{cid}.
        """

    def entry(cid, timeout=...):
        """
        A coroutine: the L{tau.store.unixfs.Entry} of C{cid} read from its
        root block (C{filesize}: a file's length, 0 for a folder).
        """

    def has(cid):
        """
        A coroutine: whether block C{cid} is stored here.
        """

    def pin(cid):
        """
        A coroutine: pin C{cid} and everything under it (fetching what is
        missing); the number of blocks pinned.
        """

    def unpin(cid):
        """
        A coroutine: unpin C{cid} pinned by L{pin} (or an add).
        """

    def pins():
        """
        A coroutine: the CIDs pinned.
        """

    def gc(budget=None):
        """
        A coroutine: remove unpinned blocks, least recently used first,
        until at most C{budget} bytes are stored (all of them with None);
        C{(blocks, bytes)} removed.
        """

    def stat():
        """
        A coroutine: C{{"blocks", "bytes", "pinned"}} of the store.
        """

    def provide(cid):
        """
        Tell the peers waiting for C{cid} that it is here and provide it in
        the DHT; a Deferred firing with the number of peers told.
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

    def whenReady():
        """
        A Deferred firing once databases can be opened (the view is open).
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


class ITNSClient(Interface):
    """
    The cloud's project registry, as a service calls it
    (L{tau.services.tns.client.TNSClient}): the node's own tns service
    where it runs one, else the tns nodes it finds.  Lookups are cached
    until tns announces a change.
    """

    def fetch(path):
        """
        A coroutine: the object at C{path} (a list of segments), None when
        absent.
        """

    def push(path, data, *, peers=None):
        """
        A coroutine: store C{data} at C{path}.
        """

    def lookup(prefix, regex=False):
        """
        A coroutine: the keys under C{prefix} (or matching it, as a regex).
        """

    def list(depth):
        """
        A coroutine: the key paths, cut at C{depth} segments.
        """

    def publish(compiled, commit):
        """
        A coroutine: publish a compiled project as C{commit}; the peer that
        stored it.
        """

    def project(projectId, branch="main"):
        """
        A coroutine: a project's current config on C{branch}, or None.
        """

    def resource(projectId, resourceId, branch="main"):
        """
        A coroutine: one resource of a project's current config, or None.
        """

    def http(host, path, method="GET"):
        """
        A coroutine: the function or website serving C{method path} on
        C{host}, or None.
        """

    def projectsServing(host):
        """
        A coroutine: the projects with a website or function on C{host}.
        """

    def currentCommit(projectId, branch="main"):
        """
        A coroutine: the commit C{branch} of the project points at, or None.
        """


class IPatrickClient(Interface):
    """
    The cloud's CI/CD jobs, as a monkey calls them
    (L{tau.services.patrick.client.PatrickClient}): the node's own patrick
    and the other patrick nodes by turns where it runs one (each job has
    one owner among them), else the patrick nodes it finds.
    """

    def dequeue(peers=None):
        """
        A coroutine: the next queued job, now assigned to the caller, or
        None.
        """

    def isAssigned(jid):
        """
        A coroutine: whether job C{jid} is still the caller's (asking
        refreshes its lease).
        """

    def done(jid, logs, assets):
        """
        A coroutine: report job C{jid} built, with the CIDs of its logs and
        artefacts.
        """

    def failed(jid, logs, assets=None):
        """
        A coroutine: report job C{jid} failed, with the CIDs of its logs.
        """

    def info(jid):
        """
        A coroutine: the job C{jid}.
        """
