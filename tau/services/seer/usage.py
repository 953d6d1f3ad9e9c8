"""
What a node's heartbeat tells seer of its load: the CBOR usage of
Taubyte's spec sheet (C{core/services/seer/types.go}), read from Linux's
C{/proc} and the disk of a folder; a part that cannot be read is left out.

    {3: {11 used, 12 total, 13 free}}                 disk (bytes)
    {5: {21 total, 22 count, 23 user, 24 nice, 25 system, 26 idle,
         "27" iowait, 28 irq, 29 softirq, 30 steal, 31 guest,
         32 guestNice, 33 statCount}}                 CPU (ticks)
    {7: {14 total, 15 free, 16 used, 17 avail}}       memory (bytes)

iowait's key is the text C{"27"}, as Taubyte's tag typo makes it.
"""

import os
from pathlib import Path

import cbor2
from twisted.internet.threads import deferToThreadPool

CPU_KEYS = (23, 24, 25, 26, "27", 28, 29, 30, 31, 32)


def disk(folder):
    stat = os.statvfs(folder)
    total, free = stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize
    return {11: total - stat.f_bfree * stat.f_frsize, 12: total, 13: free}


def cpu(stat):
    """
    @param stat: the text of C{/proc/stat}.
    """
    lines = stat.splitlines()
    ticks = [int(v) for v in lines[0].split()[1:11]]
    out = dict(zip(CPU_KEYS, ticks))
    out.update({21: sum(ticks), 22: sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit()),
                33: len(ticks)})
    return out


def memory(meminfo):
    """
    @param meminfo: the text of C{/proc/meminfo}.
    """
    fields = {}
    for line in meminfo.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name] = int(parts[0]) * 1024
    total, free = fields["MemTotal"], fields["MemFree"]
    return {14: total, 15: free, 16: total - free, 17: fields.get("MemAvailable", free)}


def readUsage(folder, proc="/proc"):
    """
    The usage bytes (CBOR), read now (blocking: see L{usage}).
    """
    out = {}
    for key, read in ((3, lambda: disk(folder)),
                      (5, lambda: cpu(Path(proc, "stat").read_text())),
                      (7, lambda: memory(Path(proc, "meminfo").read_text()))):
        try:
            out[key] = read()
        except (OSError, ValueError, KeyError, IndexError):
            continue
    return cbor2.dumps(out)


async def usage(reactor, folder):
    """
    L{readUsage} in the reactor's thread pool.
    """
    return await deferToThreadPool(reactor, reactor.getThreadPool(), readUsage, folder)
