"""
L{Stasher}: hands what a job stored (artefacts, logs) to hoarder, which
keeps it on more nodes, as Taubyte's monkey does: C{stash} with target
2; a failure never fails the job, it is retried in the background every
L{RETRY} seconds for L{GIVE_UP} seconds.

hoarder's client is imported when first needed: a build without it logs
so once and stashes nothing.
"""

from __future__ import annotations

from twisted.internet.defer import ensureDeferred, maybeDeferred
from twisted.logger import Logger

log = Logger()

#: copies hoarder is asked to keep
TARGET = 2
#: seconds between two tries of a failed stash
RETRY = 10.0
#: seconds after which a failing stash is given up
GIVE_UP = 600.0
#: stashes retried at once; past it the oldest is given up
MAX_PENDING = 1000


def hoarderClient(host, routing):
    """
    hoarder's client, or None when this build has none.
    """
    try:
        from tau.services.hoarder.client import HoarderClient
    except ImportError:
        return None
    return HoarderClient(host, routing)


class Stasher:
    """
    @param clock: IReactorTime.
    @param makeClient: C{makeClient()} -> an object with C{async
        stash(cid, target=...)}, or None when there is no hoarder.
    """

    def __init__(self, clock, makeClient):
        self.clock = clock
        self._makeClient = makeClient
        self._client = None
        self._looked = False
        self._pending = {}
        self._stopped = False

    def _hoarder(self):
        if not self._looked:
            self._looked = True
            self._client = self._makeClient()
            if self._client is None:
                log.info("monkey: no hoarder in this build; stored builds and logs are not stashed")
        return self._client

    def stash(self, cid):
        """
        Stash C{cid} (text), now and, when that fails, again later.
        """
        if self._stopped or self._hoarder() is None or cid in self._pending:
            return
        if len(self._pending) >= MAX_PENDING:
            oldest = next(iter(self._pending))
            self._cancel(oldest)
            log.warn("monkey: too many stashes pending; gave up stashing {cid}", cid=oldest)
        self._pending[cid] = [self.clock.seconds(), None]
        self._try(cid)

    def _try(self, cid):
        entry = self._pending.get(cid)
        if entry is None:
            return
        entry[1] = None
        d = maybeDeferred(lambda: ensureDeferred(self._client.stash(cid, target=TARGET)))
        d.addCallbacks(lambda _: self._pending.pop(cid, None), lambda f: self._failed(cid, f))

    def _failed(self, cid, failure):
        entry = self._pending.get(cid)
        if entry is None or self._stopped:
            return
        if self.clock.seconds() - entry[0] + RETRY > GIVE_UP:
            self._pending.pop(cid, None)
            log.warn("monkey: gave up stashing {cid} after {seconds:.0f} s: {why}", cid=cid, seconds=GIVE_UP,
                     why=failure.getErrorMessage())
            return
        log.info("monkey: stashing {cid} failed ({why}); trying again in {retry:.0f} s", cid=cid,
                 why=failure.getErrorMessage(), retry=RETRY)
        entry[1] = self.clock.callLater(RETRY, self._try, cid)

    def _cancel(self, cid):
        entry = self._pending.pop(cid, None)
        if entry is not None and entry[1] is not None and entry[1].active():
            entry[1].cancel()

    def pending(self):
        """
        The CIDs not stashed yet.
        """
        return list(self._pending)

    def stop(self):
        """
        Give up every retry.
        """
        self._stopped = True
        for cid in list(self._pending):
            self._cancel(cid)
