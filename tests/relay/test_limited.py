"""
Limited connections (relayed, with a time or data limit): streams run on
them only when both sides allow it, like go-libp2p's WithAllowLimitedConn
and js-libp2p's runOnLimitedConnection.
"""

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tau.host import Host, LimitedConnectionError
from tau.identity import PrivateKey
from tau.protocols import identify, installProtocols, ping
from tau.protocols.multistream import NegotiationFailed
from tau.relay import RelayClient, RelayLimits
from tests.hosts import addressOf
from tests.relay.helpers import startRelayHost

PLAIN = "/tau/test/plain/1.0.0"
OPTED = "/tau/test/opted/1.0.0"
LIMITED = RelayLimits(maxReservationsPerIP=0)  # go's 2 min / 128 KiB
UNLIMITED = RelayLimits(data=0, duration=0, maxReservationsPerIP=0)


class Served:
    """
    Serves PLAIN (not on limited connections) and OPTED (on them too):
    answers a length-prefixed message with it upper-cased and counts the
    streams.
    """

    def __init__(self, host):
        self.streams = []
        host.setStreamHandler(PLAIN, self.serve)
        host.setStreamHandler(OPTED, self.serve, allowLimited=True)

    async def serve(self, stream):
        self.streams.append(stream)
        message = await stream.readLP(64)
        stream.writeLP(message.upper())
        stream.closeWrite()


async def ask(host, peerID, protocol, **kwargs):
    stream = await host.newStream(peerID, [protocol], **kwargs)
    stream.writeLP(b"hello")
    answer = await stream.readLP(64)
    return answer, stream.connection


async def startPrivate(case):
    """
    A started host that does not listen (only reachable through a relay),
    with a relay client.
    """
    host = Host(PrivateKey.generate(), reactor)
    installProtocols(host)
    client = RelayClient(host, reactor)
    client.install()
    host.startService()
    client.startService()
    case.addCleanup(lambda: client.stopService() if client.running else None)
    case.addCleanup(lambda: host.stopService() if host.running else None)
    await host.whenReady()
    return host, client


class LimitedConnectionTests(TestCase):
    timeout = 60

    async def relayed(self, limits, private=True):
        """
        R relays with C{limits}; A (private, or listening) holds a
        reservation on R and serves PLAIN and OPTED; B connects to A through
        R.  Returns C{(a, b, connection of B to A, A's Served)}.
        """
        r, _, _ = await startRelayHost(self, service="on", limits=limits)
        if private:
            a, aClient = await startPrivate(self)
        else:
            a, aClient, _ = await startRelayHost(self)
        served = Served(a)
        await aClient.listen(r.peerID, addressOf(r))
        b, _, _ = await startRelayHost(self)
        conn = await b.connect(f"{addressOf(r)}/p2p-circuit/p2p/{a.peerID}")
        self.assertEqual(conn.relay, r.peerID)
        await identify.whenIdentified(b, conn)
        return a, b, conn, served

    async def test_streamRefusedUnlessAllowed(self):
        """
        On a limited connection, a stream the caller did not allow there is
        refused before anything is sent (the peer has no other address).
        """
        a, b, conn, served = await self.relayed(LIMITED)
        self.assertTrue(conn.limited)
        for protocol in (PLAIN, OPTED):
            with self.assertRaises(LimitedConnectionError) as caught:
                await b.newStream(a.peerID, [protocol])
            self.assertIn("limited", str(caught.exception))
        self.assertEqual(served.streams, [])

    async def test_allowedOnBothSides(self):
        """
        A stream allowed by the caller to a protocol served on limited
        connections runs over the relayed connection.
        """
        a, b, conn, served = await self.relayed(LIMITED)
        answer, used = await ask(b, a.peerID, OPTED, allowLimited=True)
        self.assertEqual((answer, used), (b"HELLO", conn))
        self.assertEqual(len(served.streams), 1)
        self.assertTrue(served.streams[0].connection.limited)

    async def test_inboundRefusedUnlessServedThere(self):
        """
        A protocol not registered for limited connections is answered "na"
        there, even to a caller that allows it; its handler never runs.
        """
        a, b, conn, served = await self.relayed(LIMITED)
        with self.assertRaises(NegotiationFailed):
            await ask(b, a.peerID, PLAIN, allowLimited=True)
        self.assertEqual(served.streams, [])

    async def test_identifyAndPingRun(self):
        """
        Identify and ping opt in: they work both ways on a limited
        connection.
        """
        a, b, conn, _ = await self.relayed(LIMITED)
        [inbound] = a.connections(b.peerID)
        self.assertTrue(inbound.limited)
        result = await identify.identify(a, inbound)
        self.assertEqual(result.agentVersion, b.agentVersion)
        self.assertEqual(len(await ping.ping(b, a.peerID)), 1)
        self.assertEqual(len(await ping.ping(a, b.peerID)), 1)

    async def test_unlimitedRelayIsNormal(self):
        """
        A relay that sets no limits makes connections that are not
        limited: every protocol runs on them as on a direct one.
        """
        a, b, conn, served = await self.relayed(UNLIMITED)
        self.assertIsNotNone(conn.relay)
        self.assertFalse(conn.limited)
        self.assertIsNone(conn.limit)
        self.assertFalse(a.connections(b.peerID)[0].limited)
        answer, used = await ask(b, a.peerID, PLAIN)
        self.assertEqual((answer, used), (b"HELLO", conn))

    async def test_directConnectionPreferred(self):
        """
        When the peer also has a direct address (learnt by identify), a
        stream that may not run on the limited connection gets a new
        direct connection instead.
        """
        a, b, conn, served = await self.relayed(LIMITED, private=False)
        answer, used = await ask(b, a.peerID, PLAIN)
        self.assertEqual(answer, b"HELLO")
        self.assertIsNone(used.relay)
        self.assertFalse(used.limited)
        self.assertFalse(served.streams[0].connection.limited)

    async def test_failedDirectDialRemembered(self):
        """
        When the direct addresses do not answer, the stream is refused, and
        for a while later streams are refused without dialing again.
        """
        a, b, conn, served = await self.relayed(LIMITED)
        gone = await startRelayHost(self)
        deadAddr = gone[0].listenAddresses()[0]
        await gone[0].stopService()
        b.peerstore.addAddrs(a.peerID, [deadAddr])
        dialed = []
        dialAddr = b._dialAddr

        async def counting(addr, peerID, timeout):
            dialed.append(addr)
            return await dialAddr(addr, peerID, timeout)

        b._dialAddr = counting
        with self.assertRaises(LimitedConnectionError) as caught:
            await b.newStream(a.peerID, [PLAIN])
        self.assertIn("no direct connection", str(caught.exception))
        self.assertEqual(dialed, [deadAddr])
        with self.assertRaises(LimitedConnectionError):
            await b.newStream(a.peerID, [PLAIN])
        self.assertEqual(dialed, [deadAddr])
        self.assertEqual(served.streams, [])
