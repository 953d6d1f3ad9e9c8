"""
Webhook delivery: GitHub's signatures, bounded retries in the background,
what a refusal or a dead receiver gets.
"""

import hashlib
import hmac

from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from tau.githost.webhook import WebhookSender, pushHeaders, signatures
from tests.githost.helpers import Receiver, listen


class SignatureTests(TestCase):
    def test_githubExample(self):
        """
        GitHub's documented example: secret C{It's a Secret to Everybody},
        body C{Hello, World!}.
        """
        self.assertEqual(signatures("It's a Secret to Everybody", b"Hello, World!")["X-Hub-Signature-256"],
                         "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")

    def test_headers(self):
        body = b'{"ref":"refs/heads/main"}'
        headers = pushHeaders("h1", "s", body, delivery="d1")
        self.assertEqual(headers["X-GitHub-Event"], "push")
        self.assertEqual((headers["X-GitHub-Hook-ID"], headers["X-GitHub-Delivery"]), ("h1", "d1"))
        self.assertEqual(headers["X-Hub-Signature"], "sha1=" + hmac.new(b"s", body, hashlib.sha1).hexdigest())
        self.assertEqual(headers["Content-Type"], "application/json")


class DeliveryTests(TestCase):
    timeout = 30

    async def setUp(self):
        self.receiver = Receiver()
        self.url = f"http://127.0.0.1:{await listen(self, Site(self.receiver))}/github/h1"
        self.sender = WebhookSender(reactor, attempts=3, backoff=(0.01, 0.02), timeout=5)
        self.addCleanup(self.sender.stop)

    async def test_retriedUntilDelivered(self):
        """
        A 5xx is retried: the third and last attempt delivers the same
        body, same delivery id.
        """
        self.receiver.answers = [500, 503]
        self.assertTrue(await self.sender.send(self.url, "h1", "s", b"{}"))
        self.assertEqual(len(self.receiver.received), 3)
        deliveries = {headers.getRawHeaders("X-GitHub-Delivery")[0] for _, headers, _ in self.receiver.received}
        self.assertEqual(len(deliveries), 1)
        self.assertEqual(self.sender.pending(), 0)

    async def test_givenUp(self):
        self.receiver.answers = [500, 500, 500, 200]
        self.assertFalse(await self.sender.send(self.url, "h1", "s", b"{}"))
        self.assertEqual(len(self.receiver.received), 3)

    async def test_refusedNotRetried(self):
        """
        A 4xx (a bad signature, an unknown hook) is not retried: it would be
        refused again.
        """
        self.receiver.answers = [401]
        self.assertFalse(await self.sender.send(self.url, "h1", "s", b"{}"))
        self.assertEqual(len(self.receiver.received), 1)

    async def test_nobodyListening(self):
        port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(Factory.forProtocol(Protocol))
        where = port.getHost().port
        await port.stopListening()
        self.assertFalse(await self.sender.send(f"http://127.0.0.1:{where}/x", "h1", "s", b"{}"))

    async def test_silentReceiverTimesOut(self):
        """
        A receiver that accepts and never answers costs C{timeout} per
        attempt, no more.
        """
        port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(Factory.forProtocol(Protocol))
        self.addCleanup(port.stopListening)
        sender = WebhookSender(reactor, attempts=2, backoff=(0.01,), timeout=0.2)
        started = reactor.seconds()
        self.assertFalse(await sender.send(f"http://127.0.0.1:{port.getHost().port}/x", "h1", "s", b"{}"))
        self.assertLess(reactor.seconds() - started, 5)

    async def test_stopCancels(self):
        self.receiver.answers = [500] * 3
        sender = WebhookSender(reactor, attempts=3, backoff=(30.0,), timeout=5)
        d = sender.send(self.url, "h1", "s", b"{}")
        await self.receiver.wait(1)
        await sender.stop()
        self.assertTrue(d.called)
        self.assertEqual(sender.pending(), 0)
        self.assertEqual(len(self.receiver.received), 1)   # no retry after stop
