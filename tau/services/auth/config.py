"""
The C{auth} section of a node config.

    auth:
      http-listen: tcp:0:interface=127.0.0.1   # the HTTP API (an endpoint string)
      github-api: https://api.github.com       # GitHub's REST API
      webhook-url: https://patrick.tau.example.com/github/
      max-body: 1048576                        # largest HTTP request body (bytes)
      provider-timeout: 10                     # seconds a git provider call may take
      git-listen: tcp:0:interface=127.0.0.1    # hosted git repositories over smart HTTP ("" = off)
      git-url: ""                              # their public base URL ("" = http://<bound address>/)
      git-root: ""                             # where they live ("" = <node root>/git)
      git-max-body: 268435456                  # largest git request body (a push's pack), bytes
      git-timeout: 600                         # seconds one git request may run
      git-max-processes: 16                    # git requests served at once
      git-public-read: false                   # anyone may clone (pushing always wants a token)
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
    @ivar gitListen: endpoint string of git hosting (L{tau.githost}); empty:
        no git hosting.
    @ivar gitURL: the base URL clients reach it at (clone URLs in webhooks);
        empty: C{http://<bound host>:<port>/}.
    @ivar gitRoot: the folder of the hosted repositories; empty: C{git} in
        the node's root.
    @ivar gitMaxBody: the largest git request body (a push), in bytes.
    @ivar gitTimeout: seconds one git request may run.
    @ivar gitMaxProcesses: git requests served at once (then 503).
    @ivar gitPublicRead: whether anyone may clone a hosted repository.
    """

    httpListen: str = "tcp:0:interface=127.0.0.1"
    githubAPI: str = "https://api.github.com"
    webhookURL: str = ""
    maxBody: int = 1 << 20
    providerTimeout: float = 10.0
    gitListen: str = "tcp:0:interface=127.0.0.1"
    gitURL: str = ""
    gitRoot: str = ""
    gitMaxBody: int = 256 << 20
    gitTimeout: float = 600.0
    gitMaxProcesses: int = 16
    gitPublicRead: bool = False

    #: YAML field -> attribute
    FIELDS = {
        "http-listen": "httpListen",
        "github-api": "githubAPI",
        "webhook-url": "webhookURL",
        "max-body": "maxBody",
        "provider-timeout": "providerTimeout",
        "git-listen": "gitListen",
        "git-url": "gitURL",
        "git-root": "gitRoot",
        "git-max-body": "gitMaxBody",
        "git-timeout": "gitTimeout",
        "git-max-processes": "gitMaxProcesses",
        "git-public-read": "gitPublicRead",
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


def _count(source, field, v):
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ConfigError(source, field, f"expected a whole number above 0, found {v!r}")
    return v


def _text(source, field, v):
    if not isinstance(v, str):
        raise ConfigError(source, field, f"expected text (a path), found {v!r}")
    return v


def _bool(source, field, v):
    if not isinstance(v, bool):
        raise ConfigError(source, field, f"expected true or false, found {v!r}")
    return v


_CHECKS = {
    "http-listen": _endpoint,
    "github-api": _url,
    "webhook-url": lambda s, f, v: _url(s, f, v, empty=True),
    "max-body": _positiveInt,
    "provider-timeout": _seconds,
    "git-listen": lambda s, f, v: v if v == "" else _endpoint(s, f, v),
    "git-url": lambda s, f, v: _url(s, f, v, empty=True),
    "git-root": _text,
    "git-max-body": _positiveInt,
    "git-timeout": _seconds,
    "git-max-processes": _count,
    "git-public-read": _bool,
}


class AuthSection(TypedSection):
    """
    The C{auth} section, held by the node config as a L{AuthConfig}.
    """

    name = "auth"
    type = AuthConfig
    checks = _CHECKS
