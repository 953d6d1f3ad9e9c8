"""
Durations and sizes parse exactly as Taubyte's Go parsers parse them.
"""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tau.project.units import BINARY_BYTE_UNITS, DURATION_UNITS, METRIC_BYTE_UNITS, UnitError, parseBytes, parseDuration

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)

SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

#: Go's own time.ParseDuration test table (time_test.go).
GO_DURATIONS = {
    "0": 0,
    "5s": 5 * SECOND,
    "30s": 30 * SECOND,
    "1478s": 1478 * SECOND,
    "-5s": -5 * SECOND,
    "+5s": 5 * SECOND,
    "-0": 0,
    "+0": 0,
    "5.0s": 5 * SECOND,
    "5.6s": 5 * SECOND + 600_000_000,
    "5.s": 5 * SECOND,
    ".5s": 500_000_000,
    "1.0s": SECOND,
    "1.00s": SECOND,
    "1.004s": SECOND + 4_000_000,
    "1.0040s": SECOND + 4_000_000,
    "100.00100s": 100 * SECOND + 1_000_000,
    "10ns": 10,
    "11us": 11_000,
    "12µs": 12_000,
    "12μs": 12_000,
    "13ms": 13_000_000,
    "14s": 14 * SECOND,
    "15m": 15 * MINUTE,
    "16h": 16 * HOUR,
    "3h30m": 3 * HOUR + 30 * MINUTE,
    "10.5s4m": 4 * MINUTE + 10 * SECOND + 500_000_000,
    "-2m3.4s": -(2 * MINUTE + 3 * SECOND + 400_000_000),
    "1h2m3s4ms5us6ns": HOUR + 2 * MINUTE + 3 * SECOND + 4_000_000 + 5_000 + 6,
    "39h9m14.425s": 39 * HOUR + 9 * MINUTE + 14 * SECOND + 425_000_000,
    "52763797000ns": 52763797000,
    "0.3333333333333333333h": 20 * MINUTE,
    "9007199254740993ns": (1 << 53) + 1,
    "9223372036854775807ns": INT64_MAX,
    "9223372036854775.807us": INT64_MAX,
    "9223372036s854ms775us807ns": INT64_MAX,
    "-9223372036854775808ns": INT64_MIN,
    "-9223372036854775.808us": INT64_MIN,
    "-9223372036s854ms775us808ns": INT64_MIN,
    "-2562047h47m16.854775808s": INT64_MIN,
    "0.100000000000000000000h": 6 * MINUTE,
    "0.830103483285477580700h": 49 * MINUTE + 48 * SECOND + 372539827,
}

#: Go's error table, with the quoted input its message carries.
GO_DURATION_ERRORS = {
    "": '"',
    "3": '"3"',
    "-": '"-"',
    "s": '"s"',
    ".": '"."',
    "-.": '"-."',
    ".s": '".s"',
    "+.s": '"+.s"',
    "1d": '"1d"',
    "\ufffd": '"\\xef\\xbf\\xbd"',
    "\ufffd hello \ufffd world": '"\\xef\\xbf\\xbd hello \\xef\\xbf\\xbd world"',
    "9223372036854775810ns": '"9223372036854775810ns"',
    "9223372036854775808ns": '"9223372036854775808ns"',
    "9223372036854775.808us": '"9223372036854775.808us"',
    "9223372036854ms775us808ns": '"9223372036854ms775us808ns"',
    "-9223372036854775809ns": '"-9223372036854775809ns"',
}


class DurationTableTests(SynchronousTestCase):
    def test_goTable(self):
        """
        Every entry of Go's own test table gives Go's nanoseconds.
        """
        for text, nanoseconds in GO_DURATIONS.items():
            self.assertEqual(parseDuration(text), nanoseconds, text)

    def test_goErrors(self):
        """
        Every entry of Go's error table is refused, the input quoted as Go
        quotes it (non-ASCII bytes as \\xNN).
        """
        for text, quotedText in GO_DURATION_ERRORS.items():
            with self.assertRaises(UnitError, msg=text) as caught:
                parseDuration(text)
            self.assertIn(quotedText if text else '""', str(caught.exception))

    def test_messages(self):
        """
        Go's three messages: invalid, missing unit, unknown unit.
        """
        cases = {
            "x": 'time: invalid duration "x"',
            "5": 'time: missing unit in duration "5"',
            "5x": 'time: unknown unit "x" in duration "5x"',
            "5 s": 'time: unknown unit " s" in duration "5 s"',
        }
        for text, message in cases.items():
            with self.assertRaises(UnitError) as caught:
                parseDuration(text)
            self.assertEqual(str(caught.exception), message)

    def test_int64Edge(self):
        """
        The largest duration is accepted, one nanosecond more refused; the
        most negative is accepted, one less refused.
        """
        self.assertEqual(parseDuration(f"{INT64_MAX}ns"), INT64_MAX)
        self.assertRaises(UnitError, parseDuration, f"{INT64_MAX + 1}ns")
        self.assertEqual(parseDuration(f"{INT64_MIN}ns"), INT64_MIN)
        self.assertRaises(UnitError, parseDuration, f"{INT64_MIN - 1}ns")


_durationUnits = st.sampled_from(sorted(u.decode() for u in DURATION_UNITS))


def _unitValue(name):
    return DURATION_UNITS[name.encode()]


class DurationPropertyTests(SynchronousTestCase):
    @given(st.lists(st.tuples(st.integers(0, 10**4), _durationUnits), min_size=1, max_size=5))
    def test_integerSequences(self, parts):
        """
        A sequence of whole numbers with units is their exact sum.
        """
        text = "".join(f"{n}{unit}" for n, unit in parts)
        self.assertEqual(parseDuration(text), sum(n * _unitValue(unit) for n, unit in parts))

    @given(st.integers(0, 10**6), st.integers(0, 10**9), st.sampled_from(["ms", "s", "m", "h"]))
    def test_fractionsExact(self, whole, fraction, unit):
        """
        A fraction with no more digits than the unit has nanosecond digits
        is exact (Go's float64 step is then exact too).
        """
        digits = {"ms": 6, "s": 9, "m": 10, "h": 12}[unit]
        fractionText = str(fraction)[:digits]
        scale = 10 ** len(fractionText)
        expected = whole * _unitValue(unit) + int(fractionText) * _unitValue(unit) // scale
        self.assertEqual(parseDuration(f"{whole}.{fractionText}{unit}"), expected)

    @given(st.integers(0, INT64_MAX))
    def test_sign(self, nanoseconds):
        """
        A minus sign negates, a plus sign changes nothing.
        """
        self.assertEqual(parseDuration(f"-{nanoseconds}ns"), -nanoseconds)
        self.assertEqual(parseDuration(f"+{nanoseconds}ns"), nanoseconds)

    @given(st.text(alphabet="0123456789.+-nsuµμmhx e", max_size=20))
    def test_anyText(self, text):
        """
        Any text is an int64 or a UnitError, never another failure.
        """
        try:
            value = parseDuration(text)
        except UnitError:
            return
        self.assertTrue(INT64_MIN <= value <= INT64_MAX)


class BytesTests(SynchronousTestCase):
    def test_units(self):
        """
        KiB..EiB are powers of 1024, kB/KB..EB powers of 1000, B one byte,
        fractions allowed, sequences summed.
        """
        cases = {
            "1B": 1,
            "16MB": 16_000_000,
            "1GB": 10**9,
            "1kB": 1000,
            "1KB": 1000,
            "1KiB": 1024,
            "1.5KiB": 1536,
            "1MiB512KiB": 1572864,
            "2GiB": 2 << 30,
            "1EB": 10**18,
            "7EiB": 7 << 60,
            ".5KB": 500,
            "0": 0,
            "-1KB": -1000,
            "+2MiB": 2 << 20,
        }
        for text, number in cases.items():
            self.assertEqual(parseBytes(text), number, text)

    def test_refused(self):
        """
        A bare number (but 0), kiB, a space, mixed binary and metric units,
        an unknown unit: refused with the library's message.
        """
        cases = {
            "100": "units: unknown unit  in 100",
            "1kiB": "units: unknown unit kiB in 1kiB",
            "10 MB": "units: unknown unit  MB in 10 MB",
            "1KiB1KB": "units: unknown unit KiB in 1KiB1KB",
            "1mb": "units: unknown unit mb in 1mb",
            "": "units: invalid ",
            "MB": "units: invalid MB",
            ".MB": "units: invalid .MB",
        }
        for text, message in cases.items():
            with self.assertRaises(UnitError, msg=text) as caught:
                parseBytes(text)
            self.assertEqual(str(caught.exception), message)

    def test_int64Edge(self):
        """
        The sum must stay below 2**63: 8EiB (exactly 2**63, which the Go
        library turns into a negative number) is refused, 8EiB less a byte
        expressed in float64 steps is not representable so 7EiB is the
        largest whole-unit binary size, and 9EB overflows in metric too.
        """
        self.assertEqual(parseBytes("7EiB"), 7 << 60)
        self.assertRaises(UnitError, parseBytes, "8EiB")
        self.assertEqual(parseBytes("9EB"), 9 * 10**18)
        self.assertRaises(UnitError, parseBytes, "10EB")

    def test_longDigitRuns(self):
        """
        The library refuses digit runs that would overflow int64, in the
        fraction too (unlike Go's durations, which drop extra fraction
        digits).
        """
        self.assertEqual(parseBytes("0.123456789012345678KB"), 123)
        self.assertRaises(UnitError, parseBytes, "0.12345678901234567890KB")
        # The library's edge: another digit after 922337203685477579 overflows.
        self.assertEqual(parseBytes("0.9223372036854775780B"), 0)
        self.assertRaises(UnitError, parseBytes, "0.9223372036854775790B")
        self.assertEqual(parseBytes("0.0000000000000000000001KB"), 0)
        self.assertRaises(UnitError, parseBytes, "99999999999999999999B")


_binary = st.sampled_from(sorted(u.decode() for u in BINARY_BYTE_UNITS))
_metric = st.sampled_from(sorted(u.decode() for u in METRIC_BYTE_UNITS))


class BytesPropertyTests(SynchronousTestCase):
    @given(st.integers(0, 2**20), st.one_of(_binary, _metric))
    def test_wholeUnits(self, n, unit):
        """
        A whole number of a unit is that many times the unit (exact while
        below 2**53, where float64 is exact).
        """
        multiplier = BINARY_BYTE_UNITS.get(unit.encode()) or METRIC_BYTE_UNITS[unit.encode()]
        if n * multiplier < 2**53:
            self.assertEqual(parseBytes(f"{n}{unit}"), n * int(multiplier))

    @given(st.integers(1, 2**40))
    def test_bareNumbersRefused(self, n):
        """
        A size needs a unit: a bare number other than 0 is refused.
        """
        self.assertRaises(UnitError, parseBytes, str(n))

    @given(st.integers(0, 2**20), _binary)
    def test_sign(self, n, unit):
        """
        A minus sign negates.
        """
        if n * BINARY_BYTE_UNITS[unit.encode()] >= 2**63:
            return
        self.assertEqual(parseBytes(f"-{n}{unit}"), -parseBytes(f"{n}{unit}"))

    @given(st.text(alphabet="0123456789.+-kKMGTPEiB x", max_size=20))
    def test_anyText(self, text):
        """
        Any text is an int64 or a UnitError, never another failure.
        """
        try:
            value = parseBytes(text)
        except UnitError:
            return
        self.assertTrue(INT64_MIN <= value <= INT64_MAX)
