"""
The metrics a substrate answers proxy-http with (Taubyte's little-endian
layout).
"""

import struct

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tau.project.indexes import assetKey, multihash
from tau.services.substrate.metrics import (FunctionMetrics, MetricsError, WebsiteMetrics, decodeAnswer,
                                            encodeAnswer)


class MetricsTests(SynchronousTestCase):
    def test_websiteLayout(self):
        """
        A website's metrics are the version byte and an f32, little-endian.
        """
        self.assertEqual(encodeAnswer(WebsiteMetrics(cached=1.0)), {"websites": b"\x01\x00\x00\x80\x3f"})

    def test_functionLayout(self):
        """
        A function's: version, f32 cached, i64 coldStart, f64 memory, i64
        avgRunTime.
        """
        data = encodeAnswer(FunctionMetrics(1.0, 2, 3.5, -4))["functions"]
        self.assertEqual(data, struct.pack("<Bfqdq", 1, 1.0, 2, 3.5, -4))
        self.assertEqual(len(data), 29)

    @given(st.floats(width=32, allow_nan=False), st.integers(-2**63, 2**63 - 1),
           st.floats(allow_nan=False), st.integers(-2**63, 2**63 - 1))
    def test_roundTrip(self, cached, cold, memory, run):
        metrics = FunctionMetrics(cached, cold, memory, run)
        self.assertEqual(decodeAnswer(encodeAnswer(metrics)), metrics)

    def test_refused(self):
        """
        A wrong kind, size, version or type is a MetricsError naming it.
        """
        cases = [
            ({}, "expected"),
            ({"websites": b"\x01\x00\x00\x00\x00", "functions": b""}, "expected"),
            ({"pages": b"\x01\x00\x00\x00\x00"}, "found key"),
            ({"websites": "text"}, "found key"),
            ({"websites": b"\x01\x00\x00\x00"}, "4 bytes, expected 5"),
            ({"functions": b"\x01\x00\x00\x00\x00"}, "5 bytes, expected 29"),
            ({"websites": b"\x02\x00\x00\x00\x00"}, "version 2"),
            ([1], "expected"),
        ]
        for body, why in cases:
            with self.assertRaises(MetricsError) as e:
                decodeAnswer(body)
            self.assertIn(why, str(e.exception))


class AssetKeyTests(SynchronousTestCase):
    def test_key(self):
        """
        A build's tns path is assets/ + the multihash of project, resource
        and branch concatenated (what Taubyte's build jobs write).
        """
        self.assertEqual(assetKey("QmP", "QmF", "main"), ["assets", multihash("QmPQmFmain")])
        self.assertTrue(assetKey("QmP", "QmF", "main")[1].startswith("Qm"))
