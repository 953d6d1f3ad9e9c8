"""
Hosts with circuit relay for the relay tests.
"""

from twisted.internet import reactor

from tau import relay
from tests.hosts import startHost


async def startRelayHost(case, service="off", limits=None, **kwargs):
    """
    A started host on loopback (echo, identify, ping) with a relay client
    and a relay service in mode C{service}; returns C{(host, client,
    service)}, all stopped when the test ends.
    """
    host = await startHost(case, **kwargs)
    client, server = relay.install(host, reactor, service=service, limits=limits)
    client.startService()
    server.startService()
    case.addCleanup(lambda: server.stopService() if server.running else None)
    case.addCleanup(lambda: client.stopService() if client.running else None)
    return host, client, server
