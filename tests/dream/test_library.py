"""
L{tau.dream} as a library: a real dream of C{twistd} processes on loopback
(L{startDream}), its listeners, its DNS answered by seer (dig), stopped
cleanly.
"""

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tau.dream import startDream
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
        dream = await startDream(reactor, folder, shapes=[("seer", "tns"), ("auth",)], name="lib1")
        self.addCleanup(dream.stop)
        self.assertEqual([n.shape for n in dream.nodes], [("seer", "tns"), ("auth",)])
        self.assertTrue(all(n.running and n.pid for n in dream.nodes))
        self.assertTrue(dream.urls["auth"].startswith("http://127.0.0.1:"))
        host, port = dream.dns
        self.assertEqual(host, "127.0.0.1")

        async def answered():
            return await digAddresses(reactor, port, "auth.tau.lib1.localtau") == ["127.0.0.1"]
        await until(answered, "seer answering for auth", limit=60)
        self.assertEqual(await digStatus(reactor, port, "auth.tau.other.localtau"), "REFUSED")
        await dream.stop()
        self.assertFalse(any(n.running for n in dream.nodes))
