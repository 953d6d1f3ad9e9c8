"""
L{JobLog}: what a job did, line by line, each with its time from the
reactor's clock, bounded; stored by CID when the job ends, as Taubyte
stores it (C{Logs[<RFC 3339 time>]} for the job's body, then
C{Logs[<job id>]} with its last lines).
"""

from __future__ import annotations

from datetime import datetime, timezone

from tau.build.sandbox import BoundedLog


def rfc3339(seconds):
    """
    C{seconds} since the epoch as Go's C{time.RFC3339} in UTC
    (C{2026-12-07T15:25:52Z}).
    """
    return datetime.fromtimestamp(int(seconds), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class JobLog:
    """
    @param clock: gives each line its time.
    @param limit: bytes kept (its start and its end, what was dropped
        said between them).
    """

    def __init__(self, clock, limit):
        self.clock = clock
        self._log = BoundedLog(limit)
        self._stage = None
        self.stages = {}

    def say(self, line):
        """
        Add one line (text) of tau's.
        """
        stamp = rfc3339(self.clock.seconds())
        for part in str(line).splitlines() or [""]:
            self._log.write(f"{stamp} {part}\n".encode("utf-8", "replace"))

    def stage(self, name):
        """
        The job enters stage C{name} (C{clone}, C{build}, C{store},
        C{publish}): the time since the last stage began is added to that
        one's (L{stages}: name -> seconds).
        """
        now = self.clock.seconds()
        if self._stage is not None:
            last, began = self._stage
            self.stages[last] = self.stages.get(last, 0.0) + now - began
        self._stage = (name, now)

    def endStages(self):
        """
        Close the stage under way; the line that says how long each took
        (C{tau: stages clone 0.512 s, build 3.104 s, ...}), or None when
        the job had none.
        """
        if self._stage is not None:
            self.stage(None)
            self._stage = None
        self.stages.pop(None, None)
        if not self.stages:
            return None
        return "tau: stages " + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in self.stages.items())

    def output(self, data):
        """
        Add a command's output (bytes, already bounded by the sandbox).
        """
        if data:
            self._log.write(data if data.endswith(b"\n") else data + b"\n")

    def value(self):
        return self._log.value()
