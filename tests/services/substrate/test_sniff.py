"""
The Content-Type of a function's answer that names none, as Go's server
sniffs it.
"""

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tau.services.substrate.sniff import detectContentType


class SniffTests(SynchronousTestCase):
    def test_kinds(self):
        for data, kind in [
            (b"hello from wasm", "text/plain; charset=utf-8"),
            (b"  \n<!doctype html><p>x", "text/html; charset=utf-8"),
            (b"<p>a paragraph</p>", "text/html; charset=utf-8"),
            (b"<pre>", "text/plain; charset=utf-8"),   # not a tag Go knows
            (b"<?xml version='1.0'?><a/>", "text/xml; charset=utf-8"),
            (b'{"a": 1}', "text/plain; charset=utf-8"),
            (b"\x89PNG\r\n\x1a\n....", "image/png"),
            (b"RIFF\0\0\0\0WEBPVP8 ", "image/webp"),
            (b"\0asm\x01\0\0\0", "application/wasm"),
            (b"\x00\x01\x02", "application/octet-stream"),
        ]:
            self.assertEqual(detectContentType(data), kind, data)

    def test_onlyTheFirst512Bytes(self):
        self.assertEqual(detectContentType(b"a" * 512 + b"\x00"), "text/plain; charset=utf-8")
        self.assertEqual(detectContentType(b"a" * 511 + b"\x00"), "application/octet-stream")

    @given(st.binary(max_size=600))
    def test_anyBytes(self, data):
        self.assertIsInstance(detectContentType(data), str)
