"""
The C{seer} section of a node config (its zone is the node config's
C{network-fqdn} and C{domains.generated}).

    seer:
      dns-udp: udp:0:interface=127.0.0.1 # where DNS is served over UDP (0: any free port; 53 in production)
      dns-tcp: tcp:0:interface=127.0.0.1 # and over TCP
      ttl: 60                             # seconds a silent node stays, and the TTL of answers
      max-nodes: 10000                    # the most nodes seer keeps
      max-answers: 16                     # the most addresses one answer gives
      announce-ip: ""                     # this node's address seer answers with ("": it does not tell seer)
      rate-limit: 1000                    # DNS queries a second one source address gets answered (0: no limit)
      max-tcp: 256                        # DNS TCP connections at once (16 at most from one address)
      tcp-idle: 10                        # seconds a DNS TCP connection may go without a whole query
"""

import ipaddress
from dataclasses import dataclass

from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, serverFromString

from tau.configsection import TypedSection
from tau.errors import ConfigError
from tau.services.seer.dns import parseUDP
from tau.services.seer.guard import Limits


@dataclass(frozen=True)
class SeerConfig:
    dnsUDP: str = "udp:0:interface=127.0.0.1"
    dnsTCP: str = "tcp:0:interface=127.0.0.1"
    ttl: int = 60
    maxNodes: int = 10_000
    maxAnswers: int = 16
    announceIP: str = ""
    rateLimit: int = 1000
    maxTCP: int = 256
    tcpIdle: int = 10

    #: YAML field -> attribute
    FIELDS = {
        "dns-udp": "dnsUDP",
        "dns-tcp": "dnsTCP",
        "ttl": "ttl",
        "max-nodes": "maxNodes",
        "max-answers": "maxAnswers",
        "announce-ip": "announceIP",
        "rate-limit": "rateLimit",
        "max-tcp": "maxTCP",
        "tcp-idle": "tcpIdle",
    }

    def limits(self):
        """
        The L{tau.services.seer.guard.Limits} of the DNS server.
        """
        return Limits(rate=float(self.rateLimit), burst=float(self.rateLimit), maxTCP=self.maxTCP,
                      idle=float(self.tcpIdle))

    @classmethod
    def check(cls, source, value):
        return SeerSection().load(source, value)


def _count(what, most=None):
    def check(source, field, v):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0 or (most is not None and v > most):
            bound = f" up to {most}" if most is not None else ""
            raise ConfigError(source, field, f"expected a whole number of {what} above 0{bound}, found {v!r}")
        return v

    return check


def _rate(source, field, v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ConfigError(source, field, f"expected a whole number of queries a second, 0 or more, found {v!r}")
    return v


def _udp(source, field, v):
    try:
        parseUDP(v)
    except ValueError as e:
        raise ConfigError(source, field, str(e)) from None
    return v


def _tcp(source, field, v):
    try:
        # building an endpoint listens on nothing: no reactor needed yet
        endpoint = serverFromString(None, v)
    except Exception as e:
        raise ConfigError(source, field, f"expected a tcp: endpoint string, found {v!r} ({e})") from None
    if not isinstance(endpoint, (TCP4ServerEndpoint, TCP6ServerEndpoint)):
        raise ConfigError(source, field, f"expected a tcp: endpoint string, found {v!r}")
    return v


def _ip(source, field, v):
    if v == "":
        return v
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        raise ConfigError(source, field, f"expected an IP address or \"\", found {v!r}") from None


_CHECKS = {
    "dns-udp": _udp,
    "dns-tcp": _tcp,
    # the TTL of a DNS answer is 32 bits
    "ttl": _count("seconds", 2**31 - 1),
    "max-nodes": _count("nodes"),
    "max-answers": _count("addresses"),
    "announce-ip": _ip,
    "rate-limit": _rate,
    "max-tcp": _count("connections"),
    "tcp-idle": _count("seconds"),
}


class SeerSection(TypedSection):
    """
    The C{seer} section, held by the node config as a L{SeerConfig}.
    """

    name = "seer"
    type = SeerConfig
    checks = _CHECKS
