"""
The C{patrick} section of a node config.

    patrick:
      http-listen: tcp:0:interface=127.0.0.1   # the webhook and job API (an endpoint string)
      branches: [main, master]                 # branches that build ([] = every branch)
      max-body: 1048576                        # largest webhook or API request body (bytes)
      max-jobs: 10000                          # most jobs one listing reads
      max-log: 4194304                         # largest log GET /logs/<cid> answers (bytes)
      max-download: 268435456                  # largest asset GET /download answers (bytes)
      lease: 30                                # seconds a monkey's assignment lives without a refresh
      job-timeout: 3600                        # seconds a job may stay assigned in all
      check-interval: 5                        # seconds between checks for expired leases
      heartbeat: 1                             # seconds between a patrick node's heartbeats
      replicas: 1                              # nodes that hold a job write before it is answered
"""

from dataclasses import dataclass

from twisted.internet.endpoints import _parseServer

from tau.configsection import TypedSection
from tau.errors import ConfigError


@dataclass(frozen=True)
class PatrickConfig:
    """
    @ivar httpListen: endpoint string of the HTTP API (C{POST
        /github/<hook>} and the job routes).
    @ivar branches: the branches whose pushes make jobs (Taubyte: main and
        master outside dev mode); empty: every branch.
    @ivar maxBody: largest HTTP request body, in bytes (a webhook's).
    @ivar maxJobs: the most jobs a listing reads (open and archived each).
    @ivar maxLog: the largest log C{GET /logs/<cid>} answers, in bytes.
    @ivar maxDownload: the largest asset C{GET /download/...} answers.
    @ivar lease: seconds a monkey's assignment lives without a refresh
        (C{isAssigned}); then the job times out.
    @ivar jobTimeout: seconds a job may stay assigned, refreshed or not.
    @ivar checkInterval: seconds between two checks for expired leases.
    @ivar heartbeat: seconds between two heartbeats of a patrick node; a
        node silent for 5 of them is dead.
    @ivar replicas: nodes (this one included) that must hold a job write
        before it is answered.
    """

    httpListen: str = "tcp:0:interface=127.0.0.1"
    branches: tuple = ("main", "master")
    maxBody: int = 1 << 20
    maxJobs: int = 10_000
    maxLog: int = 4 << 20
    maxDownload: int = 256 << 20
    lease: float = 30.0
    jobTimeout: float = 3600.0
    checkInterval: float = 5.0
    heartbeat: float = 1.0
    replicas: int = 1

    #: YAML field -> attribute
    FIELDS = {
        "http-listen": "httpListen",
        "branches": "branches",
        "max-body": "maxBody",
        "max-jobs": "maxJobs",
        "max-log": "maxLog",
        "max-download": "maxDownload",
        "lease": "lease",
        "job-timeout": "jobTimeout",
        "check-interval": "checkInterval",
        "heartbeat": "heartbeat",
        "replicas": "replicas",
    }

    @classmethod
    def check(cls, source, value):
        """
        The section read from C{value} (the YAML mapping, or None for the
        defaults).

        @raise ConfigError: naming the field and what is expected.
        """
        return PatrickSection().load(source, value)


def _endpoint(source, field, v):
    if not isinstance(v, str) or not v:
        raise ConfigError(source, field, "expected an endpoint string such as tcp:8080:interface=127.0.0.1")
    try:
        _parseServer(v, None)
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(source, field, f"{v!r} is not an endpoint string ({e})") from None
    return v


def _branches(source, field, v):
    if not isinstance(v, list) or not all(isinstance(b, str) and 0 < len(b) <= 255 for b in v):
        raise ConfigError(source, field, f"expected a list of branch names, found {v!r}")
    return tuple(v)


def _count(source, field, v):
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ConfigError(source, field, f"expected a whole number above 0, found {v!r}")
    return v


def _seconds(source, field, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
        raise ConfigError(source, field, f"expected a positive number of seconds, found {v!r}")
    return float(v)


_CHECKS = {
    "http-listen": _endpoint,
    "branches": _branches,
    "max-body": _count,
    "max-jobs": _count,
    "max-log": _count,
    "max-download": _count,
    "lease": _seconds,
    "job-timeout": _seconds,
    "check-interval": _seconds,
    "heartbeat": _seconds,
    "replicas": _count,
}


class PatrickSection(TypedSection):
    """
    The C{patrick} section, held by the node config as a L{PatrickConfig}.
    """

    name = "patrick"
    type = PatrickConfig
    checks = _CHECKS

    def show(self, value):
        shown = super().show(value)
        shown["branches"] = list(value.branches)
        return shown
