"""
The C{tns} section of a node config.

    tns:
      max-keys: 100000          # the most keys one push writes or one answer reads
      max-message: 4194304      # the largest command or answer (bytes)
      replicas: 1               # nodes that hold a push before it is answered
      write-timeout: 30         # seconds a push may wait for them
"""

from dataclasses import dataclass

from tau.configsection import TypedSection
from tau.errors import ConfigError
from tau.services.framework import MAX_MESSAGE

@dataclass(frozen=True)
class TNSConfig:
    """
    @ivar maxKeys: the most leaves one push writes, and the most keys one
        fetch, lookup or list reads.
    @ivar maxMessage: the largest command or answer payload, in bytes.
    @ivar replicas: nodes (this one included) that must hold each push
        before it is answered and announced.
    @ivar writeTimeout: seconds a push may wait for them (the push is kept
        and keeps replicating when they do not answer in time).
    """

    maxKeys: int = 100_000
    maxMessage: int = MAX_MESSAGE
    replicas: int = 1
    writeTimeout: float = 30.0

    #: YAML field -> attribute
    FIELDS = {
        "max-keys": "maxKeys",
        "max-message": "maxMessage",
        "replicas": "replicas",
        "write-timeout": "writeTimeout",
    }

    @classmethod
    def check(cls, source, value):
        """
        The section read from C{value} (the YAML mapping, or None for the
        defaults).

        @raise ConfigError: naming the field and what is expected.
        """
        return TNSSection().load(source, value)


def _count(what):
    def check(source, field, v):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ConfigError(source, field, f"expected a whole number of {what} above 0, found {v!r}")
        return v

    return check


def _seconds(source, field, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
        raise ConfigError(source, field, f"expected a positive number of seconds, found {v!r}")
    return float(v)


_CHECKS = {
    "max-keys": _count("keys"),
    "max-message": _count("bytes"),
    "replicas": _count("nodes"),
    "write-timeout": _seconds,
}


class TNSSection(TypedSection):
    """
    The C{tns} section, held by the node config as a L{TNSConfig}.
    """

    name = "tns"
    type = TNSConfig
    checks = _CHECKS
