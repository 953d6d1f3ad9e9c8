"""
seer's usage: heartbeat bytes read as Taubyte's seer reads its
C{UsageData} (a wrong type refused, unknown keys ignored), and the JSON
of Taubyte's C{UsageReturn} that C{heartbeat info} answers, byte for byte
as go's encoding/json writes it.
"""

import json
import math

import cbor2
from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tau.services.seer.usage import (
    MAX_CUSTOM,
    MAX_CUSTOM_NAME,
    InvalidUsage,
    _goFloat,
    checkUsage,
    parseUsage,
    usageReturn,
)

CPU = {21: 10, 22: 2, 23: 1, 24: 0, 25: 3, 26: 4, "27": 5, 28: 6, 29: 7, 30: 8, 31: 9, 32: 11, 33: 10}
SAMPLE = {3: {11: 1, 12: 2, 13: 3}, 5: CPU, 7: {14: 100, 15: 50, 16: 50, 17: 40}, 9: {"b": 1.0, "a": 0.5}}

FIELDS = ["Id", "Name", "Type", "Timestamp", "UsedMem", "TotalMem", "FreeMem", "TotalCpu", "CpuCount", "CpuUser",
          "CpuNice", "CpuSystem", "CpuIdle", "CpuIowait", "CpuIrq", "CpuSoftirq", "CpuSteal", "CpuGuest",
          "CpuGuestNice", "CpuStatCount", "Address", "TotalDisk", "FreeDisk", "UsedDisk", "AvailableDisk",
          "CustomValues"]


class ParseTests(SynchronousTestCase):
    def test_taubyteShape(self):
        """
        Taubyte's keys (iowait under the text "27"); unknown keys ignored;
        a part left out is zeros; no custom values is no key 9.
        """
        parsed = parseUsage(cbor2.dumps(dict(SAMPLE, extra="x", **{"9x": 1})))
        self.assertEqual(parsed[5]["27"], 5)
        self.assertEqual(parsed[9], {"a": 0.5, "b": 1.0})
        parsed = parseUsage(cbor2.dumps({3: {11: 7, 99: "no"}}))
        self.assertEqual(parsed[3], {11: 7, 12: 0, 13: 0})
        self.assertEqual(parsed[7], {14: 0, 15: 0, 16: 0, 17: 0})
        self.assertNotIn(9, parseUsage(cbor2.dumps({9: {}})))

    def test_refused(self):
        """
        Not one CBOR map, a count that is not a whole number in
        0..2**64-1, a custom value that is not finite, too many custom
        values or too long a name: refused, saying why.
        """
        for data, why in [
            (b"\x61x", "usage: a CBOR map"),
            (cbor2.dumps({}) + b"\x00", "bytes after the CBOR item"),
            (cbor2.dumps({3: [1]}), "part 3 is not a map"),
            (cbor2.dumps({3: {11: -1}}), "3.11 is not a whole number"),
            (cbor2.dumps({3: {11: 1.5}}), "3.11 is not a whole number"),
            (cbor2.dumps({5: {"27": True}}), "5.27 is not a whole number"),
            (cbor2.dumps({9: {"x": math.nan}}), "part 9 maps names"),
            (cbor2.dumps({9: {"x": "1"}}), "part 9 maps names"),
            (cbor2.dumps({9: {"k" * (MAX_CUSTOM_NAME + 1): 1}}), f"at most {MAX_CUSTOM_NAME} characters"),
            (cbor2.dumps({9: {str(i): 1 for i in range(MAX_CUSTOM + 1)}}), f"at most {MAX_CUSTOM} custom values"),
        ]:
            with self.assertRaises(InvalidUsage) as e:
                parseUsage(data)
            self.assertIn(why, str(e.exception))

    def test_edges(self):
        """
        2**64-1 and exactly MAX_CUSTOM values of MAX_CUSTOM_NAME
        characters are heard.
        """
        self.assertEqual(parseUsage(cbor2.dumps({7: {14: 2**64 - 1}}))[7][14], 2**64 - 1)
        custom = {f"{i:02d}".ljust(MAX_CUSTOM_NAME, "k"): i for i in range(MAX_CUSTOM)}
        self.assertEqual(len(parseUsage(cbor2.dumps({9: custom}))[9]), MAX_CUSTOM)

    @settings(max_examples=300, deadline=None)
    @given(st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=4),
                        lambda inner: st.dictionaries(st.sampled_from([3, 5, 7, 9, 11, 12, 21, "27", "a"]) | st.text(max_size=3),
                                                      inner, max_size=5), max_leaves=20))
    def test_anyValue(self, value):
        """
        Any decoded value is refused or gives every part with every key,
        and its UsageReturn is JSON with Taubyte's fields in order.
        """
        try:
            parsed = checkUsage(value)
        except InvalidUsage:
            return
        self.assertEqual(set(parsed) - {9}, {3, 5, 7})
        self.assertEqual(list(json.loads(usageReturn("p", "h", [], 0, "", parsed))), FIELDS)


class UsageReturnTests(SynchronousTestCase):
    def test_goBytes(self):
        """
        The bytes go's json.Marshal writes for Taubyte's UsageReturn: its
        field order, compact, <>& escaped, custom values' keys sorted and
        whole floats without a fraction.
        """
        parsed = parseUsage(cbor2.dumps(SAMPLE))
        self.assertEqual(
            usageReturn("12D3KooW", "host<1>&", ["gateway"], 1700000000123456789, "127.0.0.1", parsed),
            b'{"Id":"12D3KooW","Name":"host\\u003c1\\u003e\\u0026","Type":["gateway"],'
            b'"Timestamp":1700000000123456789,"UsedMem":1,"TotalMem":2,"FreeMem":3,"TotalCpu":10,"CpuCount":2,'
            b'"CpuUser":1,"CpuNice":0,"CpuSystem":3,"CpuIdle":4,"CpuIowait":5,"CpuIrq":6,"CpuSoftirq":7,'
            b'"CpuSteal":8,"CpuGuest":9,"CpuGuestNice":11,"CpuStatCount":10,"Address":"127.0.0.1",'
            b'"TotalDisk":100,"FreeDisk":50,"UsedDisk":50,"AvailableDisk":40,"CustomValues":{"a":0.5,"b":1}}')
        out = json.loads(usageReturn("p", "é", [], 0, "", parseUsage(cbor2.dumps({}))))
        self.assertEqual((out["Type"], out["CustomValues"], out["Name"]), ([], None, "é"))

    def test_goFloats(self):
        """
        Floats as go's encoding/json writes them: plain between 1e-6 and
        1e21, exponents outside without a leading zero.
        """
        for value, text in [(1.0, "1"), (0.5, "0.5"), (-2.25, "-2.25"), (1e20, "100000000000000000000"),
                            (1e21, "1e+21"), (1.5e-6, "0.0000015"), (1e-7, "1e-7"), (0.0, "0"),
                            (123456789.0, "123456789"), (2.5e-10, "2.5e-10")]:
            self.assertEqual(_goFloat(value), text, value)
