"""
Between multiaddrs and Twisted: listen endpoint strings, client endpoints,
and the multiaddr of a socket address.
"""

import ipaddress

import multiaddr
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint


class UnsupportedAddress(ValueError):
    """
    A multiaddr this host cannot listen on or dial.
    """


def _parts(addr):
    ma = addr if isinstance(addr, multiaddr.Multiaddr) else multiaddr.Multiaddr(addr)
    return [(proto.name, value) for proto, value in ma.items()]


def listenEndpoint(addr):
    """
    The Twisted endpoint string for listening on C{/ip4|ip6/ADDR/tcp/PORT}.
    """
    parts = _parts(addr)
    if len(parts) != 2 or parts[1][0] != "tcp" or parts[0][0] not in ("ip4", "ip6"):
        raise UnsupportedAddress(f"cannot listen on {addr}: expected /ip4|ip6/ADDRESS/tcp/PORT")
    (family, host), (_, port) = parts
    if family == "ip6":
        return f"tcp6:{port}:interface={host.replace(':', chr(92) + ':')}"
    return f"tcp:{port}:interface={host}"


def clientEndpoint(reactor, addr, timeout=10):
    """
    A client endpoint for a TCP multiaddr (C{ip4}, C{ip6}, C{dns}, C{dns4},
    C{dns6}), with any trailing C{/p2p/<id>} removed beforehand.
    """
    parts = _parts(addr)
    if len(parts) != 2 or parts[1][0] != "tcp":
        raise UnsupportedAddress(f"cannot dial {addr}: only TCP addresses are supported")
    (family, host), (_, port) = parts
    port = int(port)
    if family == "ip4":
        return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    if family == "ip6":
        return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    if family in ("dns", "dns4", "dns6"):
        return HostnameEndpoint(reactor, host, port, timeout=timeout)
    raise UnsupportedAddress(f"cannot dial {addr}: unsupported protocol {family}")


def fromSocketAddress(address):
    """
    The multiaddr text of a Twisted TCP address, or None for others.
    """
    if isinstance(address, IPv4Address) and address.type == "TCP":
        return f"/ip4/{address.host}/tcp/{address.port}"
    if isinstance(address, IPv6Address) and address.type == "TCP":
        return f"/ip6/{address.host.split('%')[0]}/tcp/{address.port}"
    return None


def ipOf(addr):
    """
    The leading C{/ip4} or C{/ip6} address of a multiaddr (text or object)
    as an L{ipaddress} object, or None when it does not start with one.
    """
    parts = str(addr).split("/", 3)
    if len(parts) < 3 or parts[1] not in ("ip4", "ip6"):
        return None
    try:
        return ipaddress.ip_address(parts[2])
    except ValueError:
        return None


def sourceOf(ip):
    """
    Who stands behind an IP address (text, or an L{ipaddress} address), for
    limits per address: an IPv4 address as it is, an IPv6 address by its
    /64 (what one host or site is given), as text; an IPv4-mapped IPv6
    address counts as its IPv4 address.  None when C{ip} is not an IP
    address.
    """
    try:
        ip = ipaddress.ip_address(str(ip).split("%")[0])
    except ValueError:
        return None
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def addressGroup(addr):
    """
    L{sourceOf} the IP a multiaddr starts with; None when it starts with
    none.
    """
    ip = ipOf(addr)
    return None if ip is None else sourceOf(ip)


def isUnspecified(addr):
    ip = ipOf(addr)
    return ip is not None and ip.is_unspecified


def isLoopback(addr):
    ip = ipOf(addr)
    return ip is not None and ip.is_loopback


def interfaceAddresses(family):
    """
    The addresses of this machine's interfaces, for announcing a listener
    bound to 0.0.0.0 or ::.
    """
    try:
        import psutil
    except ImportError:
        return ["127.0.0.1"] if family == "ip4" else ["::1"]
    import socket

    want = socket.AF_INET if family == "ip4" else socket.AF_INET6
    out = []
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family == want:
                out.append(entry.address.split("%")[0])
    return out


def expandUnspecified(addr):
    """
    C{addr} itself, or one address per interface when it is unspecified.
    """
    if not isUnspecified(addr):
        return [str(addr)]
    parts = _parts(addr)
    family, rest = parts[0][0], "".join(f"/{n}/{v}" for n, v in parts[1:])
    return [f"/{family}/{ip}{rest}" for ip in interfaceAddresses(family)]
