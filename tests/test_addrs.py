"""
Multiaddrs and socket addresses: the address groups limits count by.
"""

from twisted.trial.unittest import SynchronousTestCase

from tau.addrs import addressGroup


class AddressGroupTests(SynchronousTestCase):
    def test_ipv4Exact(self):
        """
        An IPv4 address is its own group, loopback ones too.
        """
        self.assertEqual(addressGroup("/ip4/1.2.3.4/tcp/5"), "1.2.3.4")
        self.assertEqual(addressGroup("/ip4/127.0.0.2/tcp/5"), "127.0.0.2")
        self.assertNotEqual(addressGroup("/ip4/127.0.0.1/tcp/5"), addressGroup("/ip4/127.0.0.2/tcp/5"))

    def test_ipv6SlashSixtyFour(self):
        """
        IPv6 addresses group by /64: one host holds a whole /64.
        """
        a = addressGroup("/ip6/2001:db8:0:1::a/tcp/5")
        self.assertEqual(a, "2001:db8:0:1::/64")
        self.assertEqual(addressGroup("/ip6/2001:db8:0:1:ffff:ffff:ffff:ffff/tcp/5"), a)
        self.assertNotEqual(addressGroup("/ip6/2001:db8:0:2::a/tcp/5"), a)

    def test_ipv4Mapped(self):
        self.assertEqual(addressGroup("/ip6/::ffff:1.2.3.4/tcp/5"), "1.2.3.4")

    def test_notAnIP(self):
        self.assertIsNone(addressGroup("/dns4/example.com/tcp/5"))
        self.assertIsNone(addressGroup("not an address"))
        self.assertIsNone(addressGroup(None))
