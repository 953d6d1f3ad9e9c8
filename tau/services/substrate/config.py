"""
The C{substrate} section of a node config.

    substrate:
      http-listen: null            # an endpoint string for direct HTTP (null: none, the gateway's job)
      module-cache: null           # compiled modules' folder (null: <root>/storage/<shape>/substrate-modules)
      max-request-body: 8MiB       # the largest request body a function is given (past it: 413)
      max-module: 64MiB            # the largest function build fetched, and WebAssembly module unzipped
      workers: 4                   # threads running functions at once
      pool-size: 4                 # warm instances kept per function
      pool-total: 64               # warm instances kept in all
      http-client-allow: []        # CIDRs a function's outbound HTTP may reach although private
      subscribe-all: true          # subscribe every project's pubsub functions at start (else: when a function asks)
"""

import ipaddress
from dataclasses import dataclass

from twisted.internet.endpoints import _parseServer

from tau.configsection import TypedSection, size
from tau.errors import ConfigError

MIB = 1 << 20


@dataclass(frozen=True)
class SubstrateConfig:
    """
    @ivar httpListen: endpoint string of the direct HTTP listener, or None.
    @ivar moduleCache: the compiled-module cache folder (a path; relative
        to the node's root), or None for the default under its data folder.
    @ivar maxRequestBody: bytes of request body a function may be given.
    @ivar maxModule: bytes of a function's build, zipped or not, and of
        the module inside a zip.
    @ivar workers: threads running functions at once.
    @ivar poolSize: warm instances kept per function.
    @ivar poolTotal: warm instances kept in all.
    @ivar httpClientAllow: CIDRs (text, normalised) a function's outbound
        HTTP may reach although they are loopback, private or link-local.
    @ivar subscribeAll: subscribe the channels of every project's pubsub
        functions at start (else only those a function asks for).
    """

    httpListen: object = None
    moduleCache: object = None
    maxRequestBody: int = 8 * MIB
    maxModule: int = 64 * MIB
    workers: int = 4
    poolSize: int = 4
    poolTotal: int = 64
    httpClientAllow: tuple = ()
    subscribeAll: bool = True

    #: YAML field -> attribute
    FIELDS = {
        "http-listen": "httpListen",
        "module-cache": "moduleCache",
        "max-request-body": "maxRequestBody",
        "max-module": "maxModule",
        "workers": "workers",
        "pool-size": "poolSize",
        "pool-total": "poolTotal",
        "http-client-allow": "httpClientAllow",
        "subscribe-all": "subscribeAll",
    }

    @classmethod
    def check(cls, source, value):
        """
        The section read from C{value} (the YAML mapping, or None for the
        defaults).

        @raise ConfigError: naming the field and what is expected.
        """
        return SubstrateSection().load(source, value)


def _endpoint(source, field, v):
    if v is None:
        return None
    if not isinstance(v, str) or not v:
        raise ConfigError(source, field, "expected an endpoint string such as tcp:8080:interface=127.0.0.1, or null")
    try:
        _parseServer(v, None)
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(source, field, f"{v!r} is not an endpoint string ({e})") from None
    return v


def _folder(source, field, v):
    if v is None:
        return None
    if not isinstance(v, str) or not v or "\x00" in v:
        raise ConfigError(source, field, f"expected a folder path, or null, found {v!r}")
    return v


def _bytes(source, field, v):
    n = size(source, field, v)
    if n <= 0:
        raise ConfigError(source, field, f"expected a size above 0, found {v!r}")
    return n


def _count(what):
    def check(source, field, v):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ConfigError(source, field, f"expected a whole number of {what} above 0, found {v!r}")
        return v

    return check


def _cidrs(source, field, v):
    if v is None:
        return ()
    if not isinstance(v, list):
        raise ConfigError(source, field, f"expected a list of CIDRs such as 10.0.0.0/8, found {v!r}")
    out = []
    for i, item in enumerate(v):
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except (TypeError, ValueError):
            raise ConfigError(source, f"{field}[{i}]", f"expected a CIDR such as 10.0.0.0/8 or fd00::/8, found {item!r}") from None
    return tuple(out)


def _flag(source, field, v):
    if not isinstance(v, bool):
        raise ConfigError(source, field, f"expected true or false, found {v!r}")
    return v


_CHECKS = {
    "http-listen": _endpoint,
    "module-cache": _folder,
    "max-request-body": _bytes,
    "max-module": _bytes,
    "workers": _count("threads"),
    "pool-size": _count("instances"),
    "pool-total": _count("instances"),
    "http-client-allow": _cidrs,
    "subscribe-all": _flag,
}


class SubstrateSection(TypedSection):
    """
    The C{substrate} section, held by the node config as a
    L{SubstrateConfig}.
    """

    name = "substrate"
    type = SubstrateConfig
    checks = _CHECKS

    def show(self, value):
        shown = super().show(value)
        shown["http-client-allow"] = list(value.httpClientAllow)
        return shown
