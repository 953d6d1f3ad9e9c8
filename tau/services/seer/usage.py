"""
What a node's heartbeat tells seer of its load: the CBOR usage of
Taubyte's spec sheet (Taubyte's C{UsageData}, C{core/services/seer}), read
from Linux's C{/proc} and the disk of a folder; a part that cannot be read
is left out.

    {3: {11 used, 12 total, 13 free}}                 memory (bytes; used: this process's)
    {5: {21 total, 22 count, 23 user, 24 nice, 25 system, 26 idle,
         "27" iowait, 28 irq, 29 softirq, 30 steal, 31 guest,
         32 guestNice, 33 statCount}}                 CPU (ticks)
    {7: {14 total, 15 free, 16 used, 17 available}}   disk (bytes)
    {9: {text: float}}                                custom values, left out when empty

iowait's key is the text C{"27"}, as Taubyte's tag typo makes it.

L{parseUsage} reads what a heartbeat carries as Taubyte's seer does (a map
of those keys, unknown keys ignored, a wrong type refused);
L{usageReturn} is what C{heartbeat {action: info}} answers: the JSON of
Taubyte's C{UsageReturn}.
"""

import json
import math
import os
import re
from decimal import Decimal
from pathlib import Path

import cbor2
from twisted.internet.threads import deferToThreadPool

from tau.services.commands import CommandError, decodeCBOR

MEMORY, CPU, DISK, CUSTOM = 3, 5, 7, 9
CPU_KEYS = (23, 24, 25, 26, "27", 28, 29, 30, 31, 32)
#: the keys of each part, in Taubyte's order
PARTS = {
    MEMORY: (11, 12, 13),
    CPU: (21, 22, 23, 24, 25, 26, "27", 28, 29, 30, 31, 32, 33),
    DISK: (14, 15, 16, 17),
}
#: the most custom values one usage carries, and the longest name of one
MAX_CUSTOM = 64
MAX_CUSTOM_NAME = 256
_UINT64 = (1 << 64) - 1


class InvalidUsage(ValueError):
    """
    Usage bytes that are not Taubyte's usage; the message says why.
    """


def memory(meminfo, status=""):
    """
    @param meminfo: the text of C{/proc/meminfo}.
    @param status: the text of C{/proc/self/status} (used: its C{VmRSS}).
    """
    def kib(text):
        fields = {}
        for line in text.splitlines():
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                fields[name] = int(parts[0]) * 1024
        return fields

    system, mine = kib(meminfo), kib(status)
    return {11: mine.get("VmRSS", 0), 12: system["MemTotal"], 13: system["MemFree"]}


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


def disk(folder):
    stat = os.statvfs(folder)
    size = stat.f_frsize
    return {14: stat.f_blocks * size, 15: stat.f_bfree * size, 16: (stat.f_blocks - stat.f_bfree) * size,
            17: stat.f_bavail * size}


def readUsage(folder, proc="/proc"):
    """
    The usage bytes (CBOR), read now (blocking: see L{usage}).
    """
    def status():
        try:
            return Path(proc, "self", "status").read_text()
        except OSError:
            return ""

    out = {}
    for key, read in ((MEMORY, lambda: memory(Path(proc, "meminfo").read_text(), status())),
                      (CPU, lambda: cpu(Path(proc, "stat").read_text())),
                      (DISK, lambda: disk(folder))):
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


def parseUsage(data):
    """
    The usage map of heartbeat bytes, each part with all its keys (0 when
    not given), custom values as floats; unknown keys dropped.

    @raise InvalidUsage: when the bytes are not one CBOR map of those
        parts, a count is not a whole number in 0..2**64-1, or a custom
        value is not a finite number.
    """
    try:
        value = decodeCBOR(data)
    except CommandError as e:
        raise InvalidUsage(f"usage: {e}") from None
    return checkUsage(value)


def checkUsage(value):
    """
    L{parseUsage} of a decoded CBOR value (as the gossip carries it).
    """
    if not isinstance(value, dict):
        raise InvalidUsage("usage: a CBOR map {3: memory, 5: cpu, 7: disk, 9: custom values}")
    out = {}
    for part, keys in PARTS.items():
        given = value.get(part)
        if given is None:
            given = {}
        if not isinstance(given, dict):
            raise InvalidUsage(f"usage: part {part} is not a map")
        counts = {}
        for key in keys:
            v = given.get(key, 0)
            if v is None:
                v = 0
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _UINT64:
                raise InvalidUsage(f"usage: {part}.{key} is not a whole number in 0..2**64-1")
            counts[key] = v
        out[part] = counts
    custom = value.get(CUSTOM)
    if custom:
        if not isinstance(custom, dict) or len(custom) > MAX_CUSTOM:
            raise InvalidUsage(f"usage: part 9 is a map of at most {MAX_CUSTOM} custom values")
        values = {}
        for k, v in custom.items():
            if not isinstance(k, str) or len(k) > MAX_CUSTOM_NAME or isinstance(v, bool) \
                    or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InvalidUsage(f"usage: part 9 maps names of at most {MAX_CUSTOM_NAME} characters to finite numbers")
            values[k] = float(v)
        out[CUSTOM] = values
    return out


def _goFloat(x):
    """
    C{x} as go's encoding/json writes a float64.
    """
    a = abs(x)
    if a == 0 or 1e-6 <= a < 1e21:
        text = format(Decimal(repr(x)), "f")
        return text[:-2] if text.endswith(".0") else text
    mantissa, _, exponent = repr(x).partition("e")
    mantissa = mantissa[:-2] if mantissa.endswith(".0") else mantissa
    e = int(exponent)
    return f"{mantissa}e{'-' if e < 0 else '+'}{abs(e)}"


_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _goString(text):
    return re.sub("[<>&\u2028\u2029]", lambda m: _GO_ESCAPES[m.group()],
                  json.dumps(text, ensure_ascii=False))


def usageReturn(peer, hostname, services, heard, address, parsed):
    """
    The JSON bytes of Taubyte's C{UsageReturn} (go's encoding: its field
    names, compact, keys of C{CustomValues} sorted, null when none).

    @param services: the names the node announced.
    @param heard: the Unix time of its last heartbeat, in nanoseconds.
    @param address: its address, or C{""}.
    @param parsed: its usage, as L{parseUsage} gives it.
    """
    mem, cpu_, disk_ = parsed[MEMORY], parsed[CPU], parsed[DISK]
    fields = [
        ("Id", _goString(peer)),
        ("Name", _goString(hostname)),
        ("Type", "[" + ",".join(_goString(s) for s in services) + "]"),
        ("Timestamp", str(int(heard))),
        ("UsedMem", mem[11]), ("TotalMem", mem[12]), ("FreeMem", mem[13]),
        ("TotalCpu", cpu_[21]), ("CpuCount", cpu_[22]), ("CpuUser", cpu_[23]), ("CpuNice", cpu_[24]),
        ("CpuSystem", cpu_[25]), ("CpuIdle", cpu_[26]), ("CpuIowait", cpu_["27"]), ("CpuIrq", cpu_[28]),
        ("CpuSoftirq", cpu_[29]), ("CpuSteal", cpu_[30]), ("CpuGuest", cpu_[31]), ("CpuGuestNice", cpu_[32]),
        ("CpuStatCount", cpu_[33]),
        ("Address", _goString(address)),
        ("TotalDisk", disk_[14]), ("FreeDisk", disk_[15]), ("UsedDisk", disk_[16]), ("AvailableDisk", disk_[17]),
    ]
    custom = parsed.get(CUSTOM)
    customText = "null" if custom is None else \
        "{" + ",".join(f"{_goString(k)}:{_goFloat(custom[k])}" for k in sorted(custom)) + "}"
    # go's int is 64 bits, signed: a count past it wraps as go's int() does
    body = ",".join(f'"{name}":{value if isinstance(value, str) else _int64(value)}' for name, value in fields)
    return ("{" + body + f',"CustomValues":{customText}' + "}").encode("utf-8")


def _int64(v):
    return v - (1 << 64) if v >= 1 << 63 else v
