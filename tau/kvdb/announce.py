"""
Announcements of a L{tau.kvdb.replica.Replica}: its heads, its latest
snapshot and new delta blocks, published at most once every
C{announceDelay} seconds.
"""

from twisted.internet.defer import Deferred

from tau.kvdb import codec


class Announcer:
    """
    The announcements of a L{tau.kvdb.replica.Replica} (mixed into it: the
    state is the replica's).
    """

    def headsMessage(self, blocks=()):
        # a snapshot merged from someone else is passed on once checked
        return codec.encodeHeads(list(self.heads), self.snapshotCID if self._snapshotTrusted else None, blocks)

    def announce(self, blocks=()):
        """
        Publish the heads (and the latest snapshot, and C{blocks}: new
        delta blocks sent along), at most once every C{announceDelay}
        seconds: the announcement after a quiet time goes out at once, the
        next ones wait and go out together.  Failures are logged.
        """
        if self._stopped:
            return
        for data in blocks:
            if len(data) <= codec.MAX_INLINE:
                self._announceBlocks.append(data)
        # the newest first, up to what one announcement carries
        kept, used = [], 0
        for data in reversed(self._announceBlocks):
            if used + len(data) > codec.MAX_INLINE:
                break
            kept.append(data)
            used += len(data)
        self._announceBlocks = kept[::-1]
        if not self.heads or self._announceCall is not None:
            return
        now = self.clock.seconds()
        wait = 0 if self._lastAnnounce is None else self._lastAnnounce + self.announceDelay - now
        if wait > 0:
            self._announceCall = self.clock.callLater(wait, self._announceNow)
        else:
            self._announceNow()

    def _announceNow(self):
        self._announceCall = None
        self._lastAnnounce = self.clock.seconds()
        blocks, self._announceBlocks = self._announceBlocks[::-1], []
        d = Deferred.fromCoroutine(self._announce(blocks))
        d.addErrback(lambda f: self.log.info("kvdb {db}: announcing heads failed: {why}", db=self.name, why=f.getErrorMessage()))

    async def _announce(self, blocks=()):
        await self._publish(self.headsMessage(blocks))
