"""
The answers of the Kademlia DHT: FIND_NODE, GET_PROVIDERS, ADD_PROVIDER
(rate-limited per peer and per source), GET_VALUE, PUT_VALUE and PING, as
L{tau.kad.dht.KademliaCore} gives them to the requests the network layer
hands it: a part of the core, kept in its own module.  The queries it runs
are L{tau.kad.queries}.
"""

from twisted.logger import Logger

from tau.diskfull import isFull
from tau.identity import InvalidKey as InvalidPeerID
from tau.kad.keys import MAX_PROVIDER_KEY, isMultihash
from tau.kad.messages import (
    MAX_KEY_SIZE,
    KadProtocolError,
    Message,
    Record,
    TYPE_NAMES,
    _peerID,
    peerEntry,
    providerAddrs,
)
from tau.kad.records import InvalidRecord, LimitExceeded, rfc3339
from tau.ratelog import PeerLog

peerLog = PeerLog(Logger())


class RequestHandlers:
    """
    The core's answers to requests (a mixin of
    L{tau.kad.dht.KademliaCore}, whose state it uses).
    """

    def handle(self, fromPeer, message, source=None):
        """
        Answer one request from C{fromPeer}.

        @param message: a C{Message} decoded with
            L{tau.kad.messages.decodeMessage}.
        @param source: where C{fromPeer}'s traffic comes from, shared by
            every identity one machine may use (L{tau.addrs.sourceOf} of
            its IP address), or L{None}: ADD_PROVIDER is rate-limited per
            peer and per source.
        @return: the response C{Message}, or L{None} when there is none
            (ADD_PROVIDER): the network layer then just reads the next
            request.
        @raise KadProtocolError: on a request we refuse; the network layer
            resets the stream and logs the reason.
        """
        if self.mode != "server":
            raise KadProtocolError("kad client mode: not answering requests")
        name = TYPE_NAMES.get(message.type)
        if name is None:
            raise KadProtocolError(f"unknown kad message type {message.type}")
        self.stats["handled " + name] += 1
        if message.type == Message.ADD_PROVIDER:
            return self._handle_ADD_PROVIDER(fromPeer, message, source)
        return getattr(self, "_handle_" + name)(fromPeer, message)

    def _entries(self, peers):
        entries = []
        for peer in peers:
            addrs = self.transport.selfAddrs() if peer == self.selfID else self.transport.addrsOf(peer)
            if addrs:
                entries.append(peerEntry(peer, addrs))
        return entries

    def _closer(self, key, fromPeer):
        return self.table.closest(key, self.k, now=self.clock.seconds(), exclude={fromPeer})

    def _needKey(self, message, maxSize=MAX_KEY_SIZE):
        if not message.key:
            raise KadProtocolError(f"{TYPE_NAMES[message.type]} without a key")
        if len(message.key) > maxSize:
            raise KadProtocolError(f"{TYPE_NAMES[message.type]} key longer than {maxSize}")
        return message.key

    def _needProviderKey(self, message):
        key = self._needKey(message, MAX_PROVIDER_KEY)
        if not isMultihash(key):
            raise KadProtocolError(f"{TYPE_NAMES[message.type]} key is not a multihash")
        return key

    def _handle_FIND_NODE(self, fromPeer, message):
        key = self._needKey(message)
        peers = self._closer(key, fromPeer)
        if key == self.selfKey:
            peers = [self.selfID]
        else:
            try:
                target = _peerID(key)
            except InvalidPeerID:
                target = None
            if target is not None and target != fromPeer and target not in peers:
                # Connected or known, even in client mode: how they are found.
                peers.insert(0, target)
        return Message(type=Message.FIND_NODE, closerPeers=self._entries(peers))

    def _handle_GET_PROVIDERS(self, fromPeer, message):
        key = self._needProviderKey(message)
        now = self.clock.seconds()
        providers = []
        for peer, addrs in self.store.getProviders(key, now, limit=self.maxProvidersPerAnswer):
            if peer == self.selfID:
                addrs = self.transport.selfAddrs()
            elif not addrs:
                addrs = self.transport.addrsOf(peer)
            providers.append(peerEntry(peer, addrs))
        return Message(
            type=Message.GET_PROVIDERS,
            key=key,
            providerPeers=providers,
            closerPeers=self._entries(self._closer(key, fromPeer)),
        )

    def _allowAddProvider(self, fromPeer, source, now):
        if source is not None and not self._sourceFlood.take(source, now):
            peerLog.info(
                self.clock,
                "floods",
                "kad: peers at {source} flood ADD_PROVIDER, dropping their records ({peer} now)",
                peer=fromPeer,
                limitBy=source,
                source=source,
            )
            return False
        if not self._flood.take(fromPeer, now):
            peerLog.info(self.clock, "floods", "kad: {peer} floods ADD_PROVIDER, dropping its records", peer=fromPeer)
            return False
        return True

    def _handle_ADD_PROVIDER(self, fromPeer, message, source=None):
        key = self._needProviderKey(message)
        now = self.clock.seconds()
        if not self._allowAddProvider(fromPeer, source, now):
            self.stats["ADD_PROVIDER rate-limited"] += 1
            return None
        stored = False
        for entry in message.providerPeers[: self.maxPeersPerAnswer]:
            # Only the sender may announce itself, and only with an address
            # (what go and js do).
            if entry.id != fromPeer.toBytes() or not entry.addrs or stored:
                self.stats["ADD_PROVIDER entries ignored"] += 1
                continue
            addrs = providerAddrs(entry.addrs, self.store.maxAddrsPerProvider)
            if not addrs:
                self.stats["ADD_PROVIDER entries ignored"] += 1
                continue
            try:
                evicted = self.store.addProvider(key, fromPeer, addrs, now)
            except LimitExceeded as e:
                self.stats["ADD_PROVIDER over limit"] += 1
                peerLog.debug(self.clock, "provider refused", "kad: provider record from {peer} refused: {why}", peer=fromPeer, why=str(e))
            except Exception as e:
                if not isFull(e):
                    raise
                self.stats["ADD_PROVIDER disk full"] += 1
                peerLog.info(self.clock, "disk full", "kad: provider record from {peer} dropped: the disk is full", peer=fromPeer)
            else:
                stored = True
                self.stats["provider records stored"] += 1
                self.stats["provider records evicted"] += evicted
        return None

    def _localRecord(self, key, now):
        stored = self.store.getValue(key, now)
        if stored is None:
            return None
        value, received = stored
        try:
            self._validate(key, value)
        except InvalidRecord:
            return None
        return Record(key=key, value=value, timeReceived=rfc3339(received).encode())

    def _handle_GET_VALUE(self, fromPeer, message):
        key = self._needKey(message)
        response = Message(
            type=Message.GET_VALUE, key=key, closerPeers=self._entries(self._closer(key, fromPeer))
        )
        record = self._localRecord(key, self.clock.seconds())
        if record is not None:
            response.record.CopyFrom(record)
        return response

    def _handle_PUT_VALUE(self, fromPeer, message):
        key = self._needKey(message)
        if not message.HasField("record"):
            raise KadProtocolError("PUT_VALUE without a record")
        if message.record.key != key:
            raise KadProtocolError("PUT_VALUE record key differs from the message key")
        value = message.record.value
        try:
            validator = self._validate(key, value)
        except InvalidRecord as e:
            raise KadProtocolError(f"PUT_VALUE refused: {e}") from None
        now = self.clock.seconds()
        existing = self.store.getValue(key, now)
        if existing is not None and existing[0] != value:
            try:
                self._validate(key, existing[0])
                better = validator.select(key, [existing[0], value]) == 0
            except InvalidRecord:
                better = False
            if better:
                raise KadProtocolError("PUT_VALUE refused: we hold a better record")
        try:
            self.store.putValue(key, value, now)
        except LimitExceeded as e:
            raise KadProtocolError(f"PUT_VALUE refused: {e}") from None
        except Exception as e:
            if not isFull(e):
                raise
            raise KadProtocolError("PUT_VALUE refused: the disk is full") from None
        self.stats["values stored"] += 1
        return Message(type=Message.PUT_VALUE, key=key, record=Record(key=key, value=value))

    def _handle_PING(self, fromPeer, message):
        return Message(type=Message.PING)
