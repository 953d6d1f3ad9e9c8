"""
Deliver push webhooks as GitHub does: signed with the hook's secret
(C{X-Hub-Signature-256: sha256=<hex HMAC-SHA256>} and the SHA-1 one older
consumers check), posted with treq, retried a bounded number of times in
the background.
"""

import hashlib
import hmac
import uuid

import treq
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool

log = Logger()

#: attempts per delivery, and the seconds waited before each retry
ATTEMPTS = 3
BACKOFF = (1.0, 4.0)
#: seconds one attempt may take
TIMEOUT = 10.0
#: the most bytes of an answer read (then dropped)
MAX_ANSWER = 64 << 10


def signatures(secret, body):
    """
    C{{"X-Hub-Signature": "sha1=...", "X-Hub-Signature-256": "sha256=..."}}
    of C{body} (the exact bytes sent) under C{secret} (text).
    """
    key = secret.encode("utf-8")
    return {
        "X-Hub-Signature": "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
    }


def pushHeaders(hookID, secret, body, delivery=None):
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/tau",
        "X-GitHub-Event": "push",
        "X-GitHub-Hook-ID": str(hookID),
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-Installation-Target-Type": "repository",
    }
    headers.update(signatures(secret, body))
    return headers


class Refused(Exception):
    """
    The receiver answered 4xx (not 429): retrying will not help.
    """


class WebhookSender:
    """
    Posts webhooks in the background; L{stop} cancels what is pending.

    @param reactor: IReactorTime, IReactorTCP.
    """

    def __init__(self, reactor, attempts=ATTEMPTS, backoff=BACKOFF, timeout=TIMEOUT):
        self.reactor = reactor
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self._http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        self._pending = set()
        self._stopped = False

    def send(self, url, hookID, secret, body):
        """
        Start delivering C{body}; a Deferred firing with True (delivered) or
        False (given up), never failing.
        """
        headers = pushHeaders(hookID, secret, body)
        d = Deferred.fromCoroutine(self._deliver(url, headers, body))
        self._pending.add(d)

        def settle(result):
            self._pending.discard(d)
            return result
        d.addBoth(settle)
        return d

    async def _attempt(self, url, headers, body):
        running = self._http.post(url, data=body, headers=headers)
        timer = self.reactor.callLater(self.timeout, running.cancel)
        try:
            response = await running
            size = [0]

            def drop(data):
                size[0] += len(data)
                if size[0] > MAX_ANSWER:
                    raise ValueError("answer too long")
            try:
                await treq.collect(response, drop)
            except Exception:
                pass
        finally:
            if timer.active():
                timer.cancel()
        if 200 <= response.code < 300:
            return
        if 400 <= response.code < 500 and response.code != 429:
            raise Refused(f"{url} answered {response.code}")
        raise OSError(f"{url} answered {response.code}")

    async def _deliver(self, url, headers, body):
        delivery = headers["X-GitHub-Delivery"]
        for attempt in range(self.attempts):
            try:
                await self._attempt(url, headers, body)
                log.info("webhook {delivery} delivered to {url}", delivery=delivery, url=url)
                return True
            except CancelledError:
                raise
            except Refused as e:
                log.warn("webhook {delivery} refused: {why}", delivery=delivery, why=str(e))
                return False
            except Exception as e:
                if self._stopped:
                    raise CancelledError() from None
                why = f"{e.__class__.__name__}: {e}"
                if attempt + 1 >= self.attempts:
                    log.warn("webhook {delivery} to {url} given up after {n} attempts: {why}",
                             delivery=delivery, url=url, n=self.attempts, why=why)
                    return False
                wait = self.backoff[min(attempt, len(self.backoff) - 1)]
                log.info("webhook {delivery} to {url} failed ({why}), again in {wait} s",
                         delivery=delivery, url=url, why=why, wait=wait)
                pause = Deferred()
                call = self.reactor.callLater(wait, pause.callback, None)
                try:
                    await pause
                except BaseException:
                    if call.active():
                        call.cancel()
                    raise
        return False

    def pending(self):
        return len(self._pending)

    def stop(self):
        """
        Cancel pending deliveries; fires when they ended.
        """
        self._stopped = True
        pending = list(self._pending)
        for d in pending:
            d.cancel()
        return DeferredList(pending, consumeErrors=True)
