"""
L{Job}: a CI/CD job as patrick keeps it and monkeys run it, in Taubyte's
encodings: CBOR with integer keys on the wire and in kvdb
(C{core/services/patrick/types.go}), Go's JSON field names on patrick's
HTTP API.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from tau.project.indexes import multihash

#: A job is tried at most this many times (Taubyte's MaxJobAttempts): one
#: automatic retry.
MAX_ATTEMPTS = 2


class JobStatus(enum.IntEnum):
    """
    Taubyte's job states.  C{LOCKED} exists only in a monkey's memory.
    """

    FAILED = -1
    OPEN = 0
    LOCKED = 1
    SUCCESS = 2
    CANCELLED = 3

    @property
    def ended(self) -> bool:
        return self in (JobStatus.FAILED, JobStatus.SUCCESS, JobStatus.CANCELLED)


@dataclass
class Repository:
    """
    The pushed repository: C{id} is an int for GitHub and hosted
    repositories; C{sshURL} is where a monkey clones from.
    """

    id: int | str = 0
    provider: str = "github"
    sshURL: str = ""
    branch: str = ""
    uri: str = ""
    pushedAt: int = 0


@dataclass
class Meta:
    """
    What a job builds: the push (C{ref}, C{before}, C{after}, the head
    commit) and the repository.
    """

    ref: str = ""
    before: str = ""
    after: str = ""
    headCommit: str = ""
    repository: Repository = field(default_factory=Repository)


@dataclass
class Job:
    """
    @ivar logs: log name (an RFC 3339 time, or the job id) -> CID.
    @ivar assetCid: resource id -> the CID of its build.
    @ivar attempt: runs finished so far (done or failed).
    @ivar delay: seconds a monkey waits before running it (tests), or None.
    """

    id: str
    timestamp: int = 0
    status: JobStatus = JobStatus.OPEN
    logs: dict = field(default_factory=dict)
    meta: Meta = field(default_factory=Meta)
    assetCid: dict = field(default_factory=dict)
    attempt: int = 0
    delay: int | None = None

    def toCBOR(self) -> dict:
        """
        The CBOR map Taubyte's patrick sends and stores.
        """
        repo = self.meta.repository
        return {
            1: self.id,
            2: self.timestamp,
            3: int(self.status),
            "LogLock": {},
            11: dict(self.logs),
            15: {
                4: self.meta.ref,
                8: self.meta.before,
                16: self.meta.after,
                32: {33: self.meta.headCommit},
                64: {65: repo.id, 66: repo.provider, 67: repo.sshURL, 68: repo.branch, 69: repo.uri, 70: repo.pushedAt},
            },
            "CidLock": {},
            20: dict(self.assetCid),
            30: self.attempt,
            99: None if self.delay is None else {1: self.delay},
        }

    @classmethod
    def fromCBOR(cls, value) -> "Job":
        """
        A job from its CBOR map (as L{toCBOR} writes it, or Taubyte).

        @raise ValueError: not a job.
        """
        if not isinstance(value, dict) or not isinstance(value.get(1), str) or not value[1]:
            raise ValueError("not a job: no id")
        meta = _map(value.get(15), "meta")
        repo = _map(meta.get(64), "repository")
        head = _map(meta.get(32), "head commit")
        delay = value.get(99)
        try:
            return cls(
                id=value[1],
                timestamp=_int(value.get(2, 0), "timestamp"),
                status=JobStatus(_int(value.get(3, 0), "status")),
                logs=_textMap(value.get(11), "logs"),
                meta=Meta(
                    ref=_text(meta.get(4, ""), "ref"),
                    before=_text(meta.get(8, ""), "before"),
                    after=_text(meta.get(16, ""), "after"),
                    headCommit=_text(head.get(33, ""), "head commit id"),
                    repository=Repository(
                        id=_repoID(repo.get(65, 0)),
                        provider=_text(repo.get(66, ""), "provider"),
                        sshURL=_text(repo.get(67, ""), "ssh_url"),
                        branch=_text(repo.get(68, ""), "branch"),
                        uri=_text(repo.get(69, ""), "uri"),
                        pushedAt=_int(repo.get(70, 0), "pushed_at"),
                    ),
                ),
                assetCid=_textMap(value.get(20), "assetCid"),
                attempt=_int(value.get(30, 0), "attempt"),
                delay=None if delay is None else _int(_map(delay, "delay").get(1, 0), "delay"),
            )
        except ValueError as e:
            raise ValueError(f"not a job: {e}") from None

    def toJSON(self) -> dict:
        """
        The job as Taubyte's patrick answers it over HTTP (Go's field
        names).
        """
        repo = self.meta.repository
        return {
            "Id": self.id,
            "Timestamp": self.timestamp,
            "Status": int(self.status),
            "LogLock": {},
            "Logs": dict(self.logs),
            "Meta": {
                "ref": self.meta.ref,
                "before": self.meta.before,
                "after": self.meta.after,
                "head_commit": {"id": self.meta.headCommit},
                "Repository": {
                    "id": repo.id,
                    "provider": repo.provider,
                    "ssh_url": repo.sshURL,
                    "default_branch": repo.branch,
                    "uri": repo.uri,
                    "pushed_at": repo.pushedAt,
                },
            },
            "CidLock": {},
            "AssetCid": dict(self.assetCid),
            "Attempt": self.attempt,
            "Delay": None if self.delay is None else {"Time": self.delay},
        }


def pushJobID(meta: Meta) -> str | None:
    """
    The deterministic id of the job of a push (Taubyte's
    C{PushEventJobID}): base58 sha2-256 multihash of
    C{v1:github:<repo id>:<ref>:<after>:<pushed at>}; None when the push
    lacks C{pushed_at}, C{after} or C{ref} (Taubyte then draws a random
    id).
    """
    repo = meta.repository
    if not repo.pushedAt or not meta.after or not meta.ref:
        return None
    return multihash(f"v1:github:{repo.id}:{meta.ref}:{meta.after}:{repo.pushedAt}")


def _map(value, what):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a map")
    return value


def _int(value, what):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} is not an integer")
    return value


def _text(value, what):
    if not isinstance(value, str):
        raise ValueError(f"{what} is not text")
    return value


def _repoID(value):
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("repository id is neither an integer nor text")
    return value


def _textMap(value, what):
    value = _map(value, what)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"{what} is not a map of text to text")
    return dict(value)
