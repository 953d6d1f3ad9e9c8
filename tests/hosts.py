"""
Real hosts on loopback for tests.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol

from tau.host import Host
from tau.identity import PrivateKey


async def echo(stream):
    """
    Echo everything until the peer half-closes, then close.
    """
    while True:
        data = await stream.readSome()
        if not data:
            break
        stream.write(data)
    stream.closeWrite()


async def startHost(case, *, swarmKey=None, install=True, key=None, **kwargs):
    """
    A started L{Host} on 127.0.0.1:0 serving C{/tau/echo/1.0.0}, stopped
    when the test ends.
    """
    host = Host(key or PrivateKey.generate(), reactor, listen=["/ip4/127.0.0.1/tcp/0"], swarmKey=swarmKey, **kwargs)
    if install:
        from tau.protocols import installProtocols

        installProtocols(host, perf=True)
    # echo is a test tool: it runs on limited (relayed) connections too,
    # and as many at once as a test opens
    host.setStreamHandler("/tau/echo/1.0.0", echo, allowLimited=True, maxInbound=1000)
    host.startService()
    case.addCleanup(lambda: host.stopService() if host.running else None)
    await host.whenReady()
    return host


def addressOf(host):
    return f"{host.listenAddresses()[0]}/p2p/{host.peerID}"


async def roundTrip(host, peerID, payload):
    """
    Send C{payload} on an echo stream and return what comes back (over a
    limited connection too).
    """
    stream = await host.newStream(peerID, ["/tau/echo/1.0.0"], allowLimited=True)
    stream.write(payload)
    stream.closeWrite()
    return await stream.readToEnd(len(payload) + 1)


class Silent(Protocol):
    """
    A black hole: accepts the TCP connection and never answers.
    """

    def __init__(self, accepted):
        self.accepted = accepted
        self.lost = Deferred()

    def connectionMade(self):
        if not self.accepted.called:
            self.accepted.callback(self)

    def connectionLost(self, reason):
        self.lost.callback(None)


def blackHole(case):
    """
    A listener on 127.0.0.1 that accepts and never answers: its address,
    and a Deferred firing with the first connection's L{Silent}.
    """
    accepted = Deferred()
    port = reactor.listenTCP(0, Factory.forProtocol(lambda: Silent(accepted)), interface="127.0.0.1")
    case.addCleanup(port.stopListening)
    return f"/ip4/127.0.0.1/tcp/{port.getHost().port}", accepted


def recordDials(host):
    """
    Record the addresses C{host} dials, in order.
    """
    dialed = []
    dialAddr = host._dialAddr

    async def recording(addr, peerID, timeout):
        dialed.append(addr)
        return await dialAddr(addr, peerID, timeout)

    host._dialAddr = recording
    return dialed
