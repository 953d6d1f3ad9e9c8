"""
The serving side of Bitswap: per-peer ledgers and the engine that answers
their wantlists from the block store.

The engine is transport-free: it is handed parsed messages
(L{Engine.messageReceived}) and sends its answers through an
C{async send(peer, Message)} callable that returns once the message is
written (so a slow peer holds back only its own answers).  One task per
peer drains that peer's pending wants, highest priority first, batching
blocks into messages of at most C{maxMessage} bytes.

Semantics (ipfs/specs BITSWAP.md, boxo's engine):
  - want-block: the block, or DONT_HAVE when asked for and missing;
  - want-have: the block itself when it is at most C{replaceHasWithBlock}
    bytes, else HAVE; DONT_HAVE when asked for and missing;
  - a want answered with a block or HAVE leaves the wantlist; a want
    answered with DONT_HAVE stays, and is answered again when the block
    arrives here (L{Engine.blocksAdded});
  - cancel removes a want; C{full} replaces the wantlist.
"""

from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.logger import Logger

from tau import cids
from tau.bitswap.message import BLOCK, HAVE, MAX_MESSAGE, PRESENCE_DONT_HAVE, PRESENCE_HAVE, Message, entryOverhead

#: Most wants kept per peer (boxo and helia: 1024).
MAX_WANTLIST = 1024
#: want-have for a block this small is answered with the block.
REPLACE_HAS_WITH_BLOCK = 1024
#: Largest message of blocks the engine builds: the 4 MiB limit less room
#: for the protobuf framing and our wantlist riding along.
TARGET_MESSAGE = MAX_MESSAGE - 64 * 1024
#: Wants looked up in the store per round, all at once (the store reads
#: them in its threads side by side).
BATCH = 16

log = Logger()


class Ledger:
    """
    What one peer wants from us, and what we exchanged with it.
    """

    def __init__(self, peer):
        self.peer = peer
        self.wants = {}
        self.pending = {}
        self.dontHaveSent = set()
        self.bytesSent = 0
        self.bytesReceived = 0
        self.blocksSent = 0
        self.blocksReceived = 0
        self.messagesReceived = 0
        self.wantsDropped = 0

    def stat(self):
        return {
            "peer": str(self.peer),
            "wantlist": len(self.wants),
            "bytesSent": self.bytesSent,
            "bytesReceived": self.bytesReceived,
            "blocksSent": self.blocksSent,
            "blocksReceived": self.blocksReceived,
            "messagesReceived": self.messagesReceived,
        }


class Engine:
    """
    @param store: a block store (async C{get}, C{size}).
    @param send: C{async send(peer, Message)}.
    @param maxLedgers: the most peers with a wantlist at once; beyond that
        the wantlists of new peers are ignored.
    """

    def __init__(
        self,
        store,
        send,
        *,
        maxWantlist=MAX_WANTLIST,
        maxMessage=TARGET_MESSAGE,
        replaceHasWithBlock=REPLACE_HAS_WITH_BLOCK,
        maxLedgers=4096,
    ):
        self.store = store
        self.send = send
        self.maxWantlist = maxWantlist
        self.maxMessage = maxMessage
        self.replaceHasWithBlock = replaceHasWithBlock
        self.maxLedgers = maxLedgers
        self.ledgers = {}
        self._wantedBy = {}
        self._tasks = {}
        self._stopped = False
        self.bytesSent = 0
        self.blocksSent = 0

    # input

    def ledger(self, peer, create=True):
        ledger = self.ledgers.get(peer)
        if ledger is None and create:
            if len(self.ledgers) >= self.maxLedgers:
                return None
            ledger = self.ledgers[peer] = Ledger(peer)
        return ledger

    def messageReceived(self, peer, message):
        """
        Apply C{message}'s wantlist to C{peer}'s ledger and start answering.
        """
        if not message.entries and not message.full:
            return
        ledger = self.ledger(peer)
        if ledger is None:
            log.warn("bitswap: too many ledgers, ignoring the wantlist of {peer}", peer=str(peer))
            return
        ledger.messagesReceived += 1
        if message.full:
            for c in list(ledger.wants):
                self._removeWant(ledger, c)
        dropped = 0
        for entry in message.entries:
            c = entry.cid
            if entry.cancel:
                self._removeWant(ledger, c)
                continue
            if c not in ledger.wants and len(ledger.wants) >= self.maxWantlist:
                dropped += 1
                continue
            previous = ledger.wants.get(c)
            if previous is not None and previous.wantType == BLOCK and entry.wantType == HAVE:
                # A want-have does not downgrade a want-block (boxo).
                previous.priority = entry.priority
                previous.sendDontHave = previous.sendDontHave or entry.sendDontHave
                continue
            ledger.wants[c] = entry
            ledger.pending[c] = None
            ledger.dontHaveSent.discard(c)
            self._wantedBy.setdefault(c.multihash, set()).add(peer)
        if dropped:
            ledger.wantsDropped += dropped
            log.info(
                "bitswap: {peer} wants more than {limit} blocks, {dropped} wants ignored",
                peer=str(peer),
                limit=self.maxWantlist,
                dropped=dropped,
            )
        self._schedule(ledger)

    def blockReceivedFrom(self, peer, size):
        ledger = self.ledger(peer)
        if ledger is not None:
            ledger.bytesReceived += size
            ledger.blocksReceived += 1

    def blocksAdded(self, added):
        """
        The store has new blocks (CIDs): answer the peers that want them.
        """
        for c in added:
            for peer in list(self._wantedBy.get(c.multihash, ())):
                ledger = self.ledgers.get(peer)
                if ledger is None:
                    continue
                for wanted in ledger.wants:
                    if wanted.multihash == c.multihash:
                        ledger.pending[wanted] = None
                self._schedule(ledger)

    def peerDisconnected(self, peer):
        """
        Forget C{peer}'s wantlist (it sends a full one when it comes back).
        """
        ledger = self.ledgers.pop(peer, None)
        task = self._tasks.pop(peer, None)
        if task is not None:
            task.cancel()
        if ledger is not None:
            for c in ledger.wants:
                self._unindex(peer, c)

    def stop(self):
        self._stopped = True
        for task in list(self._tasks.values()):
            task.cancel()
        self._tasks.clear()

    def stat(self):
        return {str(peer): ledger.stat() for peer, ledger in self.ledgers.items()}

    # internals

    def _removeWant(self, ledger, c):
        if ledger.wants.pop(c, None) is not None:
            self._unindex(ledger.peer, c)
        ledger.pending.pop(c, None)
        ledger.dontHaveSent.discard(c)

    def _unindex(self, peer, c):
        peers = self._wantedBy.get(c.multihash)
        if peers is not None:
            peers.discard(peer)
            if not peers:
                del self._wantedBy[c.multihash]

    def _schedule(self, ledger):
        if self._stopped or not ledger.pending or ledger.peer in self._tasks:
            return
        d = Deferred.fromCoroutine(self._serve(ledger))
        self._tasks[ledger.peer] = d
        d.addErrback(self._serveFailed, ledger.peer)
        d.addBoth(self._served, ledger.peer, d)

    def _served(self, result, peer, d):
        if self._tasks.get(peer) is d:
            del self._tasks[peer]
            ledger = self.ledgers.get(peer)
            if ledger is not None and ledger.pending:
                self._schedule(ledger)
        return None

    def _serveFailed(self, failure, peer):
        if failure.check(CancelledError):
            return None
        log.info("bitswap: answering {peer} failed: {why}", peer=str(peer), why=failure.getErrorMessage())
        self.peerDisconnected(peer)
        return None

    async def _serve(self, ledger):
        """
        Answer C{ledger}'s pending wants: a round of up to L{BATCH} wants,
        highest priority first, is looked up in the store at once, and the
        next round is read while the previous message is being written.
        """
        sending = None

        async def flush(message):
            nonlocal sending
            if sending is not None:
                previous, sending = sending, None
                await previous
            sending = Deferred.fromCoroutine(self._flush(ledger, message))

        try:
            await self._rounds(ledger, flush)
        except BaseException:
            if sending is not None:
                sending.addErrback(lambda f: None)
            raise
        if sending is not None:
            await sending

    async def _rounds(self, ledger, flush):
        out = Message()
        size = 0
        while ledger.pending and self.ledgers.get(ledger.peer) is ledger:
            batch = sorted(ledger.pending, key=lambda c: -ledger.wants[c].priority if c in ledger.wants else 0)[:BATCH]
            entries = []
            for c in batch:
                ledger.pending.pop(c, None)
                entry = ledger.wants.get(c)
                if entry is not None:
                    entries.append(entry)
            answers = await gatherResults(
                [Deferred.fromCoroutine(self._answer(ledger, entry)) for entry in entries], consumeErrors=True
            )
            for entry, answer in zip(entries, answers):
                c = entry.cid
                if answer is None:
                    continue
                kind, payload = answer
                if kind == "block":
                    if out.blocks and size + len(payload) + 64 > self.maxMessage:
                        await flush(out)
                        out, size = Message(), 0
                    if ledger.wants.get(c) is not entry:
                        continue  # cancelled while we waited
                    out.blocks.append((cids.prefixOf(c), payload))
                    size += len(payload) + 16
                    self._removeWant(ledger, c)
                else:
                    out.presences.append((c, kind))
                    size += entryOverhead(c)
                    if kind == PRESENCE_HAVE:
                        self._removeWant(ledger, c)
                    else:
                        ledger.dontHaveSent.add(c)
            if not out.empty() and (size >= self.maxMessage // 2 or not ledger.pending):
                await flush(out)
                out, size = Message(), 0
        if not out.empty():
            await flush(out)

    async def _answer(self, ledger, entry):
        """
        @return: C{("block", data)}, C{(PRESENCE_HAVE | PRESENCE_DONT_HAVE,
            None)} or None (nothing to say).
        """
        c = entry.cid
        if entry.wantType == HAVE:
            size = await self._size(c)
            if size is not None and size <= self.replaceHasWithBlock:
                data = await self._get(c)
                if data is not None:
                    return ("block", data)
                size = None
            if size is not None:
                return (PRESENCE_HAVE, None)
        else:
            data = await self._get(c)
            if data is not None:
                return ("block", data)
        if entry.sendDontHave and c not in ledger.dontHaveSent:
            return (PRESENCE_DONT_HAVE, None)
        return None

    async def _size(self, c):
        try:
            return await self.store.size(c)
        except Exception:
            log.failure("bitswap: block store size() failed")
            return None

    async def _get(self, c):
        try:
            return await self.store.get(c)
        except Exception as e:
            # CorruptBlock and friends: never serve what we cannot vouch for.
            log.warn("bitswap: not serving {cid}: {why}", cid=cids.cidText(c), why=f"{e.__class__.__name__}: {e}")
            return None

    async def _flush(self, ledger, message):
        n = message.blockBytes()
        await self.send(ledger.peer, message)
        ledger.bytesSent += n
        ledger.blocksSent += len(message.blocks)
        self.bytesSent += n
        self.blocksSent += len(message.blocks)
