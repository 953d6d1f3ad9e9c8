"""
The C{gateway} section of a node config.

    gateway:
      http: tcp:0:interface=127.0.0.1   # the HTTP listener (an endpoint string; "" for none)
      https: ""                        # the HTTPS listener ("" for none): certificates from auth, by SNI
      tls-certificate: ""              # a PEM file (chain and key) for names auth has none for ("" for none)
      substrate-fanout: 3              # substrates asked at once for each request
      substrate-timeout: 5             # seconds a substrate has to answer proxy-http
      substrate-grace: 0.02            # seconds the others still have once one offered
      idle-timeout: 30                 # seconds a substrate's answer or a client may stay silent
      header-timeout: 10               # seconds from a request's first byte to the end of its headers
      max-headers: 100                 # header lines in one request (431 past it)
      max-header-bytes: 16384          # bytes of a request line and its headers (431 past it)
      max-body: 104857600              # bytes of one request body (413 past it)
      replay-bytes: 65536              # bytes of a body kept to send again to another substrate
      max-per-client: 64               # connections open at once from one client address (429 past it)
      certificate-ttl: 300             # seconds a certificate fetched from auth is kept
      certificate-miss-ttl: 30         # seconds a name auth has no certificate for is not asked again
"""

from dataclasses import dataclass

from twisted.internet.endpoints import _parseServer

from tau.configsection import TypedSection, parseSize
from tau.errors import ConfigError


@dataclass(frozen=True)
class GatewayConfig:
    http: str = "tcp:0:interface=127.0.0.1"
    https: str = ""
    tlsCertificate: str = ""
    substrateFanout: int = 3
    substrateTimeout: float = 5.0
    substrateGrace: float = 0.02
    idleTimeout: float = 30.0
    headerTimeout: float = 10.0
    maxHeaders: int = 100
    maxHeaderBytes: int = 16384
    maxBody: int = 100 << 20
    replayBytes: int = 64 << 10
    maxPerClient: int = 64
    certificateTTL: float = 300.0
    certificateMissTTL: float = 30.0

    #: YAML field -> attribute
    FIELDS = {
        "http": "http",
        "https": "https",
        "tls-certificate": "tlsCertificate",
        "substrate-fanout": "substrateFanout",
        "substrate-timeout": "substrateTimeout",
        "substrate-grace": "substrateGrace",
        "idle-timeout": "idleTimeout",
        "header-timeout": "headerTimeout",
        "max-headers": "maxHeaders",
        "max-header-bytes": "maxHeaderBytes",
        "max-body": "maxBody",
        "replay-bytes": "replayBytes",
        "max-per-client": "maxPerClient",
        "certificate-ttl": "certificateTTL",
        "certificate-miss-ttl": "certificateMissTTL",
    }

    @classmethod
    def check(cls, source, value):
        """
        The section read from C{value} (the YAML mapping, or None for the
        defaults).

        @raise ConfigError: naming the field and what is expected.
        """
        return GatewaySection().load(source, value)


def _endpoint(source, field, v):
    if v == "":
        return v
    if not isinstance(v, str):
        raise ConfigError(source, field, "expected an endpoint string such as tcp:8080:interface=127.0.0.1, or \"\"")
    try:
        _parseServer(v, None)
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(source, field, f"{v!r} is not an endpoint string ({e})") from None
    return v


def _path(source, field, v):
    if not isinstance(v, str):
        raise ConfigError(source, field, f"expected a file path or \"\", found {v!r}")
    return v


def _count(what, least=1, most=None):
    def check(source, field, v):
        if isinstance(v, bool) or not isinstance(v, int) or v < least or (most is not None and v > most):
            bound = f" up to {most}" if most is not None else ""
            raise ConfigError(source, field, f"expected a whole number of {what} from {least}{bound}, found {v!r}")
        return v

    return check


def _seconds(zero=False):
    def check(source, field, v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (v == 0 and not zero):
            raise ConfigError(source, field, f"expected a {'' if zero else 'positive '}number of seconds, found {v!r}")
        return float(v)

    return check


def _bytes(least):
    def check(source, field, v):
        try:
            n = parseSize(v)
        except ValueError as e:
            raise ConfigError(source, field, str(e)) from None
        if n < least:
            raise ConfigError(source, field, f"expected at least {least} bytes, found {v!r}")
        return n

    return check


_CHECKS = {
    "http": _endpoint,
    "https": _endpoint,
    "tls-certificate": _path,
    "substrate-fanout": _count("substrates", 1, 16),
    "substrate-timeout": _seconds(),
    "substrate-grace": _seconds(zero=True),
    "idle-timeout": _seconds(),
    "header-timeout": _seconds(),
    "max-headers": _count("headers"),
    "max-header-bytes": _bytes(256),
    "max-body": _bytes(0),
    "replay-bytes": _bytes(0),
    "max-per-client": _count("connections"),
    "certificate-ttl": _seconds(),
    "certificate-miss-ttl": _seconds(),
}


class GatewaySection(TypedSection):
    """
    The C{gateway} section, held by the node config as a L{GatewayConfig}.
    """

    name = "gateway"
    type = GatewayConfig
    checks = _CHECKS
