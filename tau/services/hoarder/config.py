"""
The C{hoarder} section of a node config.

    hoarder:
      zone: ""                  # the zone this node announces in its heartbeat
      heartbeat: 1              # seconds between heartbeats
      dead-after: 5             # seconds of silence after which a member is dead
      backstop: 15              # seconds between reconciles when nothing asks for one
      jitter: 0.5               # the most seconds a reconcile waits before it claims
      asset-sweep: 600          # seconds between sweeps of tns assets (first one 10 s after start)
      fetch-timeout: 60         # seconds a stash may take to fetch its artefact
      max-members: 1024         # members tracked at most
      max-cids: 1000            # CIDs or hashes one request names at most
      max-items: 100000         # instances, stashed CIDs or assets one reconcile reads at most
"""

from dataclasses import dataclass

from tau.configsection import TypedSection
from tau.errors import ConfigError


@dataclass(frozen=True)
class HoarderConfig:
    zone: str = ""
    heartbeat: float = 1.0
    deadAfter: float = 5.0
    backstop: float = 15.0
    jitter: float = 0.5
    assetSweep: float = 600.0
    fetchTimeout: float = 60.0
    maxMembers: int = 1024
    maxCids: int = 1000
    maxItems: int = 100_000

    FIELDS = {
        "zone": "zone",
        "heartbeat": "heartbeat",
        "dead-after": "deadAfter",
        "backstop": "backstop",
        "jitter": "jitter",
        "asset-sweep": "assetSweep",
        "fetch-timeout": "fetchTimeout",
        "max-members": "maxMembers",
        "max-cids": "maxCids",
        "max-items": "maxItems",
    }

    @classmethod
    def check(cls, source, value):
        """
        The section read from C{value} (None: the defaults).

        @raise ConfigError: naming the field and what is expected.
        """
        return HoarderSection().load(source, value)


def _count(source, field, v):
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ConfigError(source, field, f"expected a whole number above 0, found {v!r}")
    return v


def _seconds(positive):
    def check(source, field, v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (positive and v == 0):
            raise ConfigError(source, field, f"expected a {'positive' if positive else 'non-negative'} "
                                             f"number of seconds, found {v!r}")
        return float(v)

    return check


def _zone(source, field, v):
    if not isinstance(v, str) or len(v) > 64:
        raise ConfigError(source, field, f"expected text of at most 64 characters, found {v!r:.80}")
    return v


_CHECKS = {
    "zone": _zone,
    "heartbeat": _seconds(True),
    "dead-after": _seconds(True),
    "backstop": _seconds(True),
    "jitter": _seconds(False),
    "asset-sweep": _seconds(True),
    "fetch-timeout": _seconds(True),
    "max-members": _count,
    "max-cids": _count,
    "max-items": _count,
}


class HoarderSection(TypedSection):
    """
    The C{hoarder} section, held by the node config as a L{HoarderConfig}.
    """

    name = "hoarder"
    type = HoarderConfig
    checks = _CHECKS

    def finish(self, source, fields, peerID):
        config = super().finish(source, fields, peerID)
        if config.deadAfter <= config.heartbeat:
            raise ConfigError(source, "hoarder.dead-after", "expected more seconds than hoarder.heartbeat")
        return config
