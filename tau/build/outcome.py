"""
What a sandboxed command leaves: the status line the sandbox's wrapper
writes, the failure it means, and the tar of C{/out} after it, extracted
with its limits checked (L{tau.build.sandbox}).
"""

from __future__ import annotations

import os
import signal
import tarfile

MiB = 1 << 20

#: Free space (bytes) under which a filesystem counts as full.
FULL = 64 * 1024


class BadOutput(Exception):
    """
    The tree a build left in C{/out} is not one tau takes: why.
    """


def signalName(number):
    """
    C{SIGTERM} for 15.
    """
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def size(n):
    """
    C{n} bytes, said in MiB when whole.
    """
    return f"{n // MiB} MiB" if n % MiB == 0 else f"{n} bytes"


def statusLine(tarPath):
    """
    The C{(rc, {mount: free bytes})} of the status line at the start of
    C{tarPath}, or None when the wrapper never wrote it.
    """
    with open(tarPath, "rb") as f:
        line = f.readline(200)
    parts = line.decode("ascii", "replace").split()
    if len(parts) != 5 or parts[0] != "tau-sandbox" or not all(p.isdigit() for p in parts[2:]):
        return None
    if not (parts[1].isdigit() or parts[1] == "copy"):
        return None
    return parts[1], dict(zip(("/src", "/out", "/tmp"), map(int, parts[2:])))


def failure(rc, free, limits):
    """
    Why a command failed, from its status line (L{statusLine}) and its
    L{tau.build.sandbox.Limits}: a sentence, or None when it succeeded.
    """
    sizes = {"/src": limits.sourceBytes, "/out": limits.outputBytes, "/tmp": limits.tmpBytes}
    if rc == "copy":
        if free["/src"] < FULL:
            return f"the source does not fit the /src limit of {size(limits.sourceBytes)}"
        return "copying the source into the sandbox failed"
    status = int(rc)
    if status == 0:
        return None
    for mount in ("/out", "/src", "/tmp"):
        if free[mount] < FULL:
            return f"exited with status {status} after filling {mount} (its limit is {size(sizes[mount])})"
    if status == 128 + signal.SIGXCPU:
        return f"stopped at the CPU-time limit of {limits.cpuSeconds} s"
    if status == 128 + signal.SIGXFSZ:
        return "stopped at the file-size limit"
    if status > 128:
        return f"killed by {signalName(status - 128)}"
    return f"exited with status {status}"


def extract(tarPath, outDir, limits):
    """
    Extract the tar after the status line of C{tarPath} into C{outDir}:
    regular files and folders only, at most C{limits.outputFiles} entries
    and C{limits.outputBytes} bytes.
    """
    with open(tarPath, "rb") as f:
        f.readline(200)
        try:
            with tarfile.open(fileobj=f, mode="r|") as archive:
                os.makedirs(outDir)
                count = total = 0
                for member in archive:
                    count += 1
                    total += member.size
                    if count > limits.outputFiles + 1:
                        raise BadOutput(f"the output holds more than {limits.outputFiles} entries")
                    if total > limits.outputBytes:
                        raise BadOutput(f"the output is larger than {size(limits.outputBytes)}")
                    parts = [p for p in member.name.split("/") if p not in ("", ".")]
                    if member.name.startswith("/") or ".." in parts:
                        raise BadOutput(f"the output holds an unsafe path {member.name[:200]!r}")
                    if not (member.isfile() or member.isdir()):
                        raise BadOutput(f"the output holds {'/'.join(parts)!r}, which is neither a file nor a folder")
                    if parts:
                        archive.extract(member, outDir, filter="data")
        except (tarfile.TarError, EOFError) as e:
            raise BadOutput(f"the output could not be read back: {e}") from None
