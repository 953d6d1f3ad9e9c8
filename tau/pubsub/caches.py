"""
The two caches of a pubsub router, both bounded:

  - L{SeenCache}: the ids of messages seen in the last C{seen_ttl} seconds
    (duplicates are dropped without a second validation);
  - L{MessageCache}: the messages of the last C{history} heartbeats, served
    to IWANTs, the last C{gossip} of them announced in IHAVEs.
"""

from collections import OrderedDict, deque


class SeenCache:
    """
    Message ids with the time they were first seen; entries older than
    C{ttl} seconds are forgotten, and at most C{maxSize} are kept (the
    oldest go first).
    """

    def __init__(self, clock, ttl=120.0, maxSize=200_000):
        self.clock = clock
        self.ttl = ttl
        self.maxSize = maxSize
        self._entries = OrderedDict()

    def __contains__(self, msgID):
        self._expire()
        return msgID in self._entries

    def __len__(self):
        return len(self._entries)

    def add(self, msgID):
        """
        Remember C{msgID}; False when it was already there.
        """
        self._expire()
        if msgID in self._entries:
            return False
        self._entries[msgID] = self.clock.seconds()
        while len(self._entries) > self.maxSize:
            self._entries.popitem(last=False)
        return True

    def _expire(self):
        limit = self.clock.seconds() - self.ttl
        entries = self._entries
        while entries:
            first = next(iter(entries))
            if entries[first] > limit:
                break
            del entries[first]


class MessageCache:
    """
    The recent messages, in C{history} windows (one per heartbeat), at most
    C{maxMessages} of them and C{maxBytes} of payload (past either bound the
    oldest go first).

    @ivar transmissions: how often each peer asked each message with IWANT.
    """

    def __init__(self, history=5, gossip=3, maxMessages=100_000, maxBytes=256 << 20):
        if gossip > history:
            raise ValueError("gossip windows cannot exceed history windows")
        self.history = history
        self.gossip = gossip
        self.maxMessages = maxMessages
        self.maxBytes = maxBytes
        self.bytes = 0
        self._messages = {}
        self._windows = [deque()]
        self._transmissions = {}

    def __len__(self):
        return len(self._messages)

    def __contains__(self, msgID):
        return msgID in self._messages

    def put(self, message):
        if message.msgID in self._messages:
            return
        size = len(message.data)
        # past the bounds the oldest messages give way
        while self._messages and (len(self._messages) >= self.maxMessages or self.bytes + size > self.maxBytes):
            self._evictOldest()
        self._messages[message.msgID] = message
        self.bytes += size
        self._windows[0].append((message.msgID, message.topic))

    def _evictOldest(self):
        for window in reversed(self._windows):
            if window:
                old, _ = window.popleft()
                self._forget(old)
                return

    def _forget(self, msgID):
        message = self._messages.pop(msgID, None)
        if message is not None:
            self.bytes -= len(message.data)
        self._transmissions.pop(msgID, None)

    def get(self, msgID):
        return self._messages.get(msgID)

    def getForPeer(self, msgID, peer, maxTransmissions):
        """
        The message for an IWANT of C{peer}, or None when unknown or
        already sent to it C{maxTransmissions} times.
        """
        message = self._messages.get(msgID)
        if message is None:
            return None
        counts = self._transmissions.setdefault(msgID, {})
        sent = counts.get(peer, 0)
        if sent >= maxTransmissions:
            return None
        counts[peer] = sent + 1
        return message

    def gossipIDs(self, topic):
        """
        The ids to announce in IHAVE for C{topic}, newest window first.
        """
        out = []
        for window in self._windows[: self.gossip]:
            for msgID, t in window:
                if t == topic:
                    out.append(msgID)
        return out

    def shift(self):
        """
        Start a new window, dropping the oldest beyond C{history}.
        """
        self._windows.insert(0, deque())
        while len(self._windows) > self.history:
            for msgID, _ in self._windows.pop():
                self._forget(msgID)
