"""
Taubyte's two units, parsed exactly as Taubyte's compiler parses them.

Durations (C{timeout}, C{ttl}) are Go's C{time.ParseDuration} and compile to
nanoseconds; sizes (C{memory}, C{size}) are C{units.ParseStrictBytes} of
github.com/alecthomas/units (the version Taubyte pins) and compile to bytes.
Both are re-implemented here from their specifications, byte for byte,
including their error texts, so a value Taubyte accepts compiles to the same
number and a value it refuses is refused with the same words.
"""

_INT64_MAX = (1 << 63) - 1

#: Go's duration units, in nanoseconds (U+00B5 and U+03BC are both micro).
DURATION_UNITS = {
    b"ns": 1,
    b"us": 1_000,
    "µs".encode(): 1_000,
    "μs".encode(): 1_000,
    b"ms": 1_000_000,
    b"s": 1_000_000_000,
    b"m": 60_000_000_000,
    b"h": 3_600_000_000_000,
}


def _unitMap(suffix, scale):
    units = {b"B": 1.0}
    for power, prefix in enumerate("KMGTPE", start=1):
        units[(prefix + suffix).encode()] = float(scale**power)
    if scale == 1000:
        # SI spells kilo with a small k; both are accepted in metric mode,
        # never "kiB" in binary mode.
        units[("k" + suffix).encode()] = 1000.0
    return units


#: ParseStrictBytes tries the binary units first, then the metric ones.
BINARY_BYTE_UNITS = _unitMap("iB", 1024)
METRIC_BYTE_UNITS = _unitMap("B", 1000)


class UnitError(ValueError):
    """
    A duration or size that does not parse; the message is Go's.
    """


def _goQuote(text):
    """
    Go's C{time.quote}: double quotes, C{"} and C{\\} escaped, every byte of
    a non-ASCII or control character as C{\\xNN}.
    """
    out = ['"']
    for char in text:
        if ord(char) >= 0x80 or char < " ":
            out.extend(f"\\x{byte:02x}" for byte in char.encode("utf-8"))
        else:
            out.append("\\" + char if char in '"\\' else char)
    out.append('"')
    return "".join(out)


def _digits(data, start):
    """
    The end of the run of ASCII digits in C{data} from C{start}.
    """
    end = start
    while end < len(data) and 0x30 <= data[end] <= 0x39:
        end += 1
    return end


def _unitEnd(data, start):
    end = start
    while end < len(data) and not (data[end] == 0x2E or 0x30 <= data[end] <= 0x39):
        end += 1
    return end


def _splitSign(data):
    if data[:1] in (b"-", b"+"):
        return data[:1] == b"-", data[1:]
    return False, data


def parseDuration(text):
    """
    Go's C{time.ParseDuration}: a signed sequence of decimal numbers, each
    with an optional fraction and a unit (C{ns us µs μs ms s m h}), e.g.
    C{300ms}, C{-1.5h}, C{2h45m}; C{0} alone needs no unit.

    @return: nanoseconds, an int64.
    @raise UnitError: with Go's message.
    """
    invalid = UnitError("time: invalid duration " + _goQuote(text))
    negative, data = _splitSign(text.encode("utf-8"))
    if data == b"0":
        return 0
    if not data:
        raise invalid
    total = 0
    pos = 0
    while pos < len(data):
        if not (data[pos] == 0x2E or 0x30 <= data[pos] <= 0x39):
            raise invalid
        end = _digits(data, pos)
        whole = 0
        for byte in data[pos:end]:
            if whole > (1 << 63) // 10:
                raise invalid
            whole = whole * 10 + byte - 0x30
            if whole > 1 << 63:
                raise invalid
        pre = end != pos
        pos = end
        fraction, scale, post = 0, 1.0, False
        if pos < len(data) and data[pos] == 0x2E:
            pos += 1
            end = _digits(data, pos)
            overflow = False
            for byte in data[pos:end]:
                # Past int64 precision the remaining digits are ignored.
                if overflow or fraction > _INT64_MAX // 10:
                    overflow = True
                    continue
                bigger = fraction * 10 + byte - 0x30
                if bigger > 1 << 63:
                    overflow = True
                    continue
                fraction, scale = bigger, scale * 10
            post = end != pos
            pos = end
        if not pre and not post:
            raise invalid
        end = _unitEnd(data, pos)
        if end == pos:
            raise UnitError("time: missing unit in duration " + _goQuote(text))
        unitName = data[pos:end]
        pos = end
        unit = DURATION_UNITS.get(unitName)
        if unit is None:
            raise UnitError(f"time: unknown unit {_goQuote(unitName.decode('utf-8', 'replace'))} in duration {_goQuote(text)}")
        if whole > (1 << 63) // unit:
            raise invalid
        whole *= unit
        if fraction > 0:
            # Go computes the fraction in float64: nanosecond-exact for
            # fractions of hours, truncated toward zero.
            whole += int(float(fraction) * (float(unit) / scale))
            if whole > 1 << 63:
                raise invalid
        total += whole
        if total > 1 << 63:
            raise invalid
    if negative:
        return -total
    if total > _INT64_MAX:
        raise invalid
    return total


def _parseUnit(text, units):
    """
    alecthomas/units' C{ParseUnit}: like Go's durations, but accumulated in
    float64 and with its own messages.
    """
    negative, data = _splitSign(text.encode("utf-8"))
    if data == b"0":
        return 0
    invalid = UnitError("units: invalid " + text)
    if not data:
        raise invalid
    total = 0.0
    pos = 0
    while pos < len(data):
        if not (data[pos] == 0x2E or 0x30 <= data[pos] <= 0x39):
            raise invalid
        whole, pos, pre = _unitsInt(data, pos, invalid)
        value = float(whole)
        post = False
        if pos < len(data) and data[pos] == 0x2E:
            start = pos + 1
            fraction, pos, post = _unitsInt(data, start, invalid)
            scale = 1.0
            for _ in range(pos - start):
                scale *= 10
            value += float(fraction) / scale
        if not pre and not post:
            raise invalid
        end = _unitEnd(data, pos)
        unitName = data[pos:end]
        pos = end
        unit = units.get(unitName)
        if unit is None:
            raise UnitError(f"units: unknown unit {unitName.decode('utf-8', 'replace')} in {text}")
        total += value * unit
    if negative:
        total = -total
    # The library lets exactly 2**63 through and Go then converts it to the
    # most negative int64; refusing it is the sensible reading.
    if total < -(2.0**63) or total >= 2.0**63:
        raise UnitError("units: overflow parsing unit")
    return int(total)


def _unitsInt(data, pos, invalid):
    """
    The library's C{leadingInt}: digits into an int64, refusing (not
    ignoring) an overflow, in the fraction too.

    @return: C{(value, end, consumedAny)}
    """
    value = 0
    end = _digits(data, pos)
    for byte in data[pos:end]:
        if value >= ((1 << 63) - 10) // 10:
            raise invalid
        value = value * 10 + byte - 0x30
    return value, end, end != pos


def parseBytes(text):
    """
    C{units.ParseStrictBytes}: C{KiB MiB GiB TiB PiB EiB} are powers of 1024,
    C{kB KB MB GB TB PB EB} powers of 1000, C{B} is one byte; sequences and
    fractions as in durations (C{1.5GiB}, C{1GiB512MiB}); a bare number is
    refused except C{0}.

    @return: bytes, an int64.
    @raise UnitError: with the library's message (that of the metric try).
    """
    try:
        return _parseUnit(text, BINARY_BYTE_UNITS)
    except UnitError:
        return _parseUnit(text, METRIC_BYTE_UNITS)
