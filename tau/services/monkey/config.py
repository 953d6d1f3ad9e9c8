"""
The C{monkey} section of a node config.

    monkey:
      poll-interval: 5          # seconds between two asks to patrick for a job
      lease-interval: 10        # seconds between two isAssigned checks while a job runs
      job-timeout: 3600         # seconds a whole job may take (clone, builds, publishing)
      clone-timeout: 300        # seconds a clone may take
      max-clone: 2GiB           # bytes a clone (git folder and tree) may hold
      build-cpu: 300            # CPU seconds of each build process (RLIMIT_CPU)
      build-memory: 4GiB        # address space of each build process (RLIMIT_AS)
      build-output: 256MiB      # size of a build's /out (and of its /tmp)
      build-source: 1GiB        # size of a build's /src (the checked-out source)
      build-wall: 600           # wall-clock seconds of one build
      max-log: 4MiB             # bytes of a job's log kept (each build's output is bounded too)
      workdir: null             # where jobs clone (null: <root>/storage/<shape>/monkey)
"""

from dataclasses import dataclass

from tau.build.sandbox import Limits
from tau.configsection import TypedSection, size
from tau.errors import ConfigError

MIB = 1 << 20


@dataclass(frozen=True)
class MonkeyConfig:
    """
    @ivar pollInterval: seconds between two C{dequeue} asks when idle.
    @ivar leaseInterval: seconds between two C{isAssigned} checks of the
        running job (each refreshes its assignment at patrick).
    @ivar jobTimeout: seconds a whole job may take before it fails.
    @ivar cloneTimeout: seconds one clone may take.
    @ivar maxClone: bytes one clone (its git folder and tree) may hold.
    @ivar buildCPU: CPU seconds of each build process.
    @ivar buildMemory: bytes of address space of each build process.
    @ivar buildOutput: bytes of a build's C{/out} and C{/tmp}.
    @ivar buildSource: bytes of a build's C{/src}.
    @ivar buildWall: wall-clock seconds of one build.
    @ivar maxLog: bytes of a job's log kept.
    @ivar workdir: the folder jobs clone into (relative to the node's
        root), or None for the default under its data folder.
    """

    pollInterval: float = 5.0
    leaseInterval: float = 10.0
    jobTimeout: float = 3600.0
    cloneTimeout: float = 300.0
    maxClone: int = 2048 * MIB
    buildCPU: int = 300
    buildMemory: int = 4096 * MIB
    buildOutput: int = 256 * MIB
    buildSource: int = 1024 * MIB
    buildWall: float = 600.0
    maxLog: int = 4 * MIB
    workdir: object = None

    #: YAML field -> attribute
    FIELDS = {
        "poll-interval": "pollInterval",
        "lease-interval": "leaseInterval",
        "job-timeout": "jobTimeout",
        "clone-timeout": "cloneTimeout",
        "max-clone": "maxClone",
        "build-cpu": "buildCPU",
        "build-memory": "buildMemory",
        "build-output": "buildOutput",
        "build-source": "buildSource",
        "build-wall": "buildWall",
        "max-log": "maxLog",
        "workdir": "workdir",
    }

    @classmethod
    def check(cls, source, value):
        """
        The section read from C{value} (the YAML mapping, or None for the
        defaults).

        @raise ConfigError: naming the field and what is expected.
        """
        return MonkeySection().load(source, value)

    def limits(self):
        """
        The sandbox L{Limits} of one build.
        """
        return Limits(cpuSeconds=self.buildCPU, wallSeconds=self.buildWall, memoryBytes=self.buildMemory,
                      sourceBytes=self.buildSource, outputBytes=self.buildOutput, tmpBytes=self.buildOutput)


def _seconds(source, field, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise ConfigError(source, field, f"expected a positive number of seconds, found {v!r}")
    return float(v)


def _wholeSeconds(source, field, v):
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ConfigError(source, field, f"expected a whole number of seconds above 0, found {v!r}")
    return v


def _bytes(source, field, v):
    n = size(source, field, v)
    if n <= 0:
        raise ConfigError(source, field, f"expected a size above 0, found {v!r}")
    return n


def _folder(source, field, v):
    if v is None:
        return None
    if not isinstance(v, str) or not v or "\x00" in v:
        raise ConfigError(source, field, f"expected a folder path, or null, found {v!r}")
    return v


_CHECKS = {
    "poll-interval": _seconds,
    "lease-interval": _seconds,
    "job-timeout": _seconds,
    "clone-timeout": _seconds,
    "max-clone": _bytes,
    "build-cpu": _wholeSeconds,
    "build-memory": _bytes,
    "build-output": _bytes,
    "build-source": _bytes,
    "build-wall": _seconds,
    "max-log": _bytes,
    "workdir": _folder,
}


class MonkeySection(TypedSection):
    """
    The C{monkey} section, held by the node config as a L{MonkeyConfig}.
    """

    name = "monkey"
    type = MonkeyConfig
    checks = _CHECKS
