"""
Tests for L{tau.ratelog.PeerLog}: lines about a peer are rate-limited per
peer and reason, and the held-back count is reported.
"""

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tau.ratelog import PeerLog, connectionKey


class PeerLogTests(SynchronousTestCase):
    def setUp(self):
        self.events = []
        self.clock = Clock()
        self.log = PeerLog(Logger(observer=self.events.append), interval=60.0, burst=3, maxKeys=4)

    def lines(self):
        out = [formatEvent(e) for e in self.events]
        self.events.clear()
        return out

    def bad(self, peer, what="bad frame", clock=None):
        return self.log.info(clock or self.clock, what, "{what} from {peer}", peer=peer, what=what)

    def test_burstPerWindow(self):
        """
        C{burst} lines per peer and reason go through in a window; the next
        line after the window says how many were held back.
        """
        self.assertEqual([self.bad("p") for _ in range(5)], [True, True, True, False, False])
        self.assertEqual(self.lines(), ["bad frame from p"] * 3)
        self.clock.advance(59.9)
        self.assertFalse(self.bad("p"))
        self.clock.advance(0.1)
        self.assertTrue(self.bad("p"))
        self.assertEqual(self.lines(), ["bad frame from p (3 similar lines suppressed)"])
        self.clock.advance(60)
        self.assertTrue(self.bad("p"))
        self.assertEqual(self.lines(), ["bad frame from p"])

    def test_perPeerAndReason(self):
        for _ in range(3):
            self.bad("p")
        self.assertFalse(self.bad("p"))
        self.assertTrue(self.bad("q"))
        self.assertTrue(self.bad("p", what="other"))

    def test_levelAndFields(self):
        self.log.debug(self.clock, "refused", "refused {n} from {peer}", peer="p", n=7)
        [event] = self.events
        self.assertEqual((event["log_level"], event["peer"], event["n"]), (LogLevel.debug, "p", 7))

    def test_boundedKeys(self):
        """
        At most C{maxKeys} pairs are remembered: the least recently seen is
        forgotten (and may log again), the others stay limited.
        """
        for peer in "abcd":
            for _ in range(3):
                self.bad(peer)
        self.assertFalse(self.bad("a"))
        self.assertTrue(self.bad("e"))
        # b was the least recently seen: forgotten.
        self.assertTrue(self.bad("b"))
        self.assertFalse(self.bad("a"))
        self.assertEqual(len(self.log._clocks[self.clock]), 4)

    def test_perClock(self):
        """
        Each clock has its own state (tests with their own clock never share
        it); a clock going back starts a new window.
        """
        for _ in range(3):
            self.bad("p")
        self.assertTrue(self.bad("p", clock=Clock()))
        self.clock.advance(100)
        for _ in range(3):
            self.bad("p")
        self.clock.rightNow = 50.0
        self.assertTrue(self.bad("p"))

    def test_noClock(self):
        """
        Without a clock there is no window: every line goes through.
        """
        self.assertEqual([self.log.info(None, "x", "x from {peer}", peer="p") for _ in range(5)], [True] * 5)


def transport(peer, host=IPv4Address("TCP", "127.0.0.1", 4242)):
    return StringTransport(hostAddress=host, peerAddress=peer)


class ConnectionKeyTests(SynchronousTestCase):
    def test_remoteIPAndLocalPort(self):
        self.assertEqual(connectionKey(transport(IPv4Address("TCP", "192.0.2.1", 5555))), "192.0.2.1 to port 4242")
        v6 = transport(IPv6Address("TCP", "2001:db8::1:2:3:4%eth0", 5555), IPv6Address("TCP", "::1", 4243))
        self.assertEqual(connectionKey(v6), "2001:db8::/64 to port 4243")

    def test_noIPAddresses(self):
        self.assertIsNone(connectionKey(transport(UNIXAddress(b"/tmp/x"))))
        self.assertIsNone(connectionKey(None))

    def test_reconnectingPeerStaysLimited(self):
        """
        Lines limited by the connection key count against the remote IP,
        whatever port (connection) they come from.
        """
        events = []
        log = PeerLog(Logger(observer=events.append), burst=3)
        clock = Clock()
        for port in range(5000, 5010):
            peer = IPv4Address("TCP", "192.0.2.1", port)
            log.info(clock, "bad", "bad {peer}", peer=peer, limitBy=connectionKey(transport(peer)))
        other = IPv4Address("TCP", "192.0.2.2", 5000)
        self.assertTrue(log.info(clock, "bad", "bad {peer}", peer=other, limitBy=connectionKey(transport(other))))
        self.assertEqual(len(events), 4)
