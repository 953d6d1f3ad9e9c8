"""
The C{auth} section of a node config.

    auth:
      http-listen: tcp:0:interface=127.0.0.1   # the HTTP API (an endpoint string)
      github-api: https://api.github.com       # GitHub's REST API
      webhook-url: https://patrick.tau.example.com/github/
      max-body: 1048576                        # largest HTTP request body (bytes)
      provider-timeout: 10                     # seconds a git provider call may take
"""

from dataclasses import dataclass
from urllib.parse import urlsplit

from twisted.internet.endpoints import _parseServer

from tau.configsection import TypedSection
from tau.errors import ConfigError

@dataclass(frozen=True)
class AuthConfig:
    """
    @ivar httpListen: endpoint string of the HTTP API; loopback on a port
        the kernel picks by default, so a node exposes nothing until its
        operator says where (C{Listener.port} tells where it is bound).
    @ivar githubAPI: base URL of GitHub's REST API.
    @ivar webhookURL: the URL GitHub posts pushes to, the hook id appended;
        empty: C{https://patrick.tau.<network-fqdn>/github/} (Taubyte's).
    @ivar maxBody: largest HTTP request body, in bytes.
    @ivar providerTimeout: seconds one call to a git provider may take.
    """

    httpListen: str = "tcp:0:interface=127.0.0.1"
    githubAPI: str = "https://api.github.com"
    webhookURL: str = ""
    maxBody: int = 1 << 20
    providerTimeout: float = 10.0

    #: YAML field -> attribute
    FIELDS = {
        "http-listen": "httpListen",
        "github-api": "githubAPI",
        "webhook-url": "webhookURL",
        "max-body": "maxBody",
        "provider-timeout": "providerTimeout",
    }

    @classmethod
    def check(cls, source, value):
        """
        The section read from C{value} (the YAML mapping, or None for the
        defaults).

        @raise ConfigError: naming the field and what is expected.
        """
        return AuthSection().load(source, value)


def _endpoint(source, field, v):
    if not isinstance(v, str) or not v:
        raise ConfigError(source, field, "expected an endpoint string such as tcp:8443:interface=127.0.0.1")
    try:
        _parseServer(v, None)
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(source, field, f"{v!r} is not an endpoint string ({e})") from None
    return v


def _url(source, field, v, empty=False):
    if empty and v == "":
        return v
    parts = urlsplit(v) if isinstance(v, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(source, field, f"expected an http:// or https:// URL, found {v!r}")
    return v


def _positiveInt(source, field, v):
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ConfigError(source, field, f"expected a whole number of bytes above 0, found {v!r}")
    return v


def _seconds(source, field, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
        raise ConfigError(source, field, f"expected a positive number of seconds, found {v!r}")
    return float(v)


_CHECKS = {
    "http-listen": _endpoint,
    "github-api": _url,
    "webhook-url": lambda s, f, v: _url(s, f, v, empty=True),
    "max-body": _positiveInt,
    "provider-timeout": _seconds,
}


class AuthSection(TypedSection):
    """
    The C{auth} section, held by the node config as a L{AuthConfig}.
    """

    name = "auth"
    type = AuthConfig
    checks = _CHECKS
