"""
Control API command C{listeners}: where the node and its services listen,
so a program that started a node on port 0 (dream, tests) learns its ports
without reading its log.
"""

from twisted.application.service import IServiceCollection

from tau.control.routes import command
from tau.listen import Listener


def _entry(name, port):
    host = port.getHost()
    entry = {"Name": name, "Type": getattr(host, "type", "UNIX"), "Address": getattr(host, "host", None),
             "Port": getattr(host, "port", None)}
    if entry["Port"] is None:
        name = getattr(host, "name", b"")
        entry["Address"] = name.decode() if isinstance(name, bytes) else str(name)
    return entry


def _walk(service):
    yield service
    if IServiceCollection.providedBy(service):
        for child in service:
            yield from _walk(child)


def listenersOf(node):
    """
    C{[{Name, Type, Address, Port}]}: every bound L{Listener} in the node's
    service tree but the p2p ones (C{api}, C{auth-http}, C{gateway-http},
    ...), and the ports a service keeps in a C{ports} tuple, named
    C{<service>-<udp|tcp>} (seer's DNS: C{seer-udp}, C{seer-tcp}).
    """
    out = []
    for service in _walk(node):
        if isinstance(service, Listener):
            if service.port is not None and not service.name.startswith("p2p "):
                out.append(_entry(service.name, service.port))
            continue
        ports = getattr(service, "ports", None)
        if isinstance(ports, tuple) and service is not node:
            for port in ports:
                if hasattr(port, "getHost"):
                    out.append(_entry(f"{service.name}-{getattr(port.getHost(), 'type', 'unix').lower()}", port))
    out.sort(key=lambda e: e["Name"])
    return out


@command("listeners")
async def listeners(node, args):
    """
    Every bound listener of the node and its services (see
    L{listenersOf}).
    """
    return {"Listeners": listenersOf(node)}
