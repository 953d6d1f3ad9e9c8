"""
L{tau.dream} as a library: a real dream of C{twistd} processes on loopback
(L{startDream}), its listeners, its DNS answered by seer (dig), stopped
cleanly.
"""

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tau.dream import Dream, DreamError, startDream
from tests.cloud import until
from tests.netclients import digAddresses, digStatus


class LibraryTests(TestCase):
    timeout = 180

    async def test_startAndStop(self):
        """
        Two nodes start with every listener on a kernel-chosen port; seer
        answers for C{<service>.tau.<name>.localtau} with the node that
        runs it (once its beacon arrived), not for other names; stopping
        ends every process.
        """
        folder = self.mktemp()
        seen = []

        def configure(index, shape, fields):
            seen.append((index, shape))
            fields.setdefault("auth", {})["git-listen"] = ""

        dream = await startDream(reactor, folder, shapes=[("seer", "tns"), ("auth",)], name="lib1",
                                 configure=configure)
        self.addCleanup(dream.stop)
        self.assertEqual([n.shape for n in dream.nodes], [("seer", "tns"), ("auth",)])
        self.assertTrue(all(n.running and n.pid for n in dream.nodes))
        self.assertTrue(dream.urls["auth"].startswith("http://127.0.0.1:"))
        self.assertEqual(sorted(seen), [(0, ("seer", "tns")), (1, ("auth",))])
        self.assertNotIn("auth-git", dream.urls)
        self.assertEqual(sorted(dream.nodes[1].listeners), ["api", "auth-http"])
        host, port = dream.dns
        self.assertEqual(host, "127.0.0.1")

        async def answered():
            return await digAddresses(reactor, port, "auth.tau.lib1.localtau") == ["127.0.0.1"]
        await until(answered, "seer answering for auth", limit=60)
        self.assertEqual(await digStatus(reactor, port, "auth.tau.other.localtau"), "REFUSED")
        node = await dream.inject(("tns",))
        self.assertEqual((node.index, node.name, dream.nodes[2]), (2, "2-tns", node))
        self.assertTrue(node.running)
        await dream.stop()
        self.assertFalse(any(n.running for n in dream.nodes))
        with self.assertRaises(DreamError):
            await dream.inject(("tns",))

    async def test_failedStart(self):
        """
        A node that cannot start fails the start with where to look, and the
        nodes already running are stopped.
        """
        def configure(index, shape, fields):
            if index == 1:
                fields["seer"]["dns-udp"] = "udp:0:interface=192.0.2.1"

        dream = Dream(reactor, self.mktemp(), "lib2", configure=configure)
        with self.assertRaises(Exception) as caught:
            await dream.start([("tns",), ("seer",)])
        self.assertIn("node.log", str(caught.exception))
        self.assertFalse(any(n.running for n in dream.nodes))


class _Node:
    def __init__(self, urls):
        self._urls = urls

    def urls(self):
        return dict(self._urls)


class WiringTests(TestCase):
    def test_servicesWired(self):
        """
        auth posts webhooks to the running patrick's listener, or, on a
        node that runs both, to a port picked for its patrick; monkeys ask
        for jobs every second; the caller's configure runs last.
        """
        dream = Dream(reactor, self.mktemp(), "wired", configure=lambda i, s, f: f.setdefault("seen", True))
        fields = {}
        dream._configure(0, ("auth",), fields)
        self.assertNotIn("auth", fields)
        self.assertTrue(fields["seen"])
        dream.nodes.append(_Node({"patrick": "http://127.0.0.1:4321"}))
        fields = {}
        dream._configure(1, ("auth", "monkey"), fields)
        self.assertEqual(fields["auth"], {"webhook-url": "http://127.0.0.1:4321/github/"})
        self.assertEqual(fields["monkey"], {"poll-interval": 1.0})
        fields = {}
        dream._configure(2, ("auth", "patrick"), fields)
        port = int(fields["patrick"]["http-listen"].split(":")[1])
        self.assertEqual(fields["patrick"]["http-listen"], f"tcp:{port}:interface=127.0.0.1")
        self.assertEqual(fields["auth"], {"webhook-url": f"http://127.0.0.1:{port}/github/"})
