"""
Malformed DNS against the real seer node of a serving cloud (issue 15,
item 6): truncated questions, compression loops, huge counts, a pointer
bomb, an oversized packet, over UDP and TCP, from 127.0.3.1; each gets
FORMERR with its id (or nothing, for what is not a query), and dig from
127.0.0.1 is still answered.  tests/services/seer/test_hostile.py proves
the same on an in-process server (and the TCP and rate caps); this is the
twistd node with its default limits.
"""

import struct

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, DatagramProtocol, Protocol
from twisted.names import dns
from twisted.trial.unittest import TestCase

from tau.services.seer.guard import Limits
from tests.attacks.servingcloud import MiB, rss
from tests.cloud import NETWORK
from tests.netclients import digStatus
from tests.services.seer.test_hostile import header, pointerBomb
from tests.test_e2e_serving import SEER_NODE, E2ECloud

ATTACKER = "127.0.3.1"


def query(name=f"nothing-here.g.{NETWORK}", ident=77):
    message = dns.Message(id=ident)
    message.addQuery(name.encode(), dns.A)
    return message.toStr()


class Catcher(DatagramProtocol):
    """
    UDP from the attacker's address: the replies, each to its waiter.
    """

    def __init__(self):
        self.replies = []
        self._waiting = []

    def datagramReceived(self, data, addr):
        self.replies.append(data)
        if self._waiting:
            self._waiting.pop(0).callback(data)

    def next(self):
        d = Deferred()
        self._waiting.append(d)
        timer = reactor.callLater(5, lambda: d.called or d.errback(AssertionError("no reply in 5 s")))
        d.addBoth(lambda r: (timer.active() and timer.cancel(), r)[1])
        return d


class TCPQuery(Protocol):
    def __init__(self, data):
        self.data = data
        self.received = b""
        self.lost = Deferred()

    def connectionMade(self):
        self.transport.write(struct.pack("!H", len(self.data)) + self.data)

    def dataReceived(self, data):
        self.received += data
        if len(self.received) >= 2 and len(self.received) >= 2 + struct.unpack("!H", self.received[:2])[0]:
            self.transport.loseConnection()

    def connectionLost(self, reason):
        self.lost.callback(None)


class DNSAttackTests(TestCase):
    timeout = 60

    async def test_malformedQueries(self):
        """
        Eleven malformed queries over UDP get FORMERR with their id, two
        packets that are not queries get nothing, the 64 KiB pointer bomb
        over TCP gets FORMERR within 2 s; dig is answered over UDP and TCP
        after, and the seer node's memory stays put.
        """
        cloud = await E2ECloud(self).start(["seer-tns-auth"])
        udp, tcp = await cloud.port(SEER_NODE, "dns"), await cloud.port(SEER_NODE, "dns-tcp")
        pid = cloud.processes[SEER_NODE].transport.pid
        self.assertEqual(await digStatus(reactor, udp, "example.org"), "REFUSED")
        before = rss(pid)

        catcher = Catcher()
        port = reactor.listenUDP(0, catcher, interface=ATTACKER)
        self.addCleanup(port.stopListening)
        whole = query()
        formErr = [
            whole[:-3],                                              # truncated question
            whole[:12],                                              # no question at all
            header() + b"\x3f" + b"a" * 5,                           # a label longer than what follows
            header() + b"\xc0\x0c" + b"\x00\x01\x00\x01",            # a name pointing at itself
            header() + b"\x01a\xc0\x0c\x00\x01\x00\x01",             # a loop through one label
            header() + b"\xc3\xff\x00\x01\x00\x01",                  # a pointer past the end
            header(qd=0xFFFF) + whole[12:],                          # huge question count
            header(an=0xFFFF) + whole[12:],                          # huge answer count
            pointerBomb()[:4096],
            whole + b"\x00" * (Limits.maxQuery + 1 - len(whole)),    # one byte over the largest query
            whole + b"\x00" * (60000 - len(whole)),                  # 60,000 bytes
        ]
        for packet in formErr:
            waiting = catcher.next()
            port.write(packet, ("127.0.0.1", udp))
            reply = dns.Message()
            reply.fromStr(await waiting)
            self.assertEqual((reply.id, reply.rCode), (77, dns.EFORMAT), packet[:40])
        # not queries: nothing back
        for packet in (b"\x00\x01\x02", header(flags=0x8000) + whole[12:]):
            port.write(packet, ("127.0.0.1", udp))
        self.assertEqual(await digStatus(reactor, udp, f"nothing-here.g.{NETWORK}"), "NXDOMAIN")
        self.assertEqual(len(catcher.replies), len(formErr))

        # the pointer bomb whole over TCP: refused on its header
        bomb = TCPQuery(pointerBomb())
        started = reactor.seconds()
        reactor.connectTCP("127.0.0.1", tcp, ClientFactory.forProtocol(lambda: bomb), bindAddress=(ATTACKER, 0))
        await bomb.lost
        reply = dns.Message()
        reply.fromStr(bomb.received[2:])
        self.assertEqual(reply.rCode, dns.EFORMAT)
        self.assertLess(reactor.seconds() - started, 2.0)
        self.assertEqual(await digStatus(reactor, tcp, "example.org", tcp=True), "REFUSED")
        self.assertEqual(await digStatus(reactor, udp, "example.org"), "REFUSED")
        self.assertLess(rss(pid) - before, 16 * MiB)
