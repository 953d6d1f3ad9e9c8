"""
The server name of a TLS ClientHello: real hellos from OpenSSL, split
anyhow, and fuzzed bytes.
"""

from hypothesis import given, strategies as st
from OpenSSL import SSL
from twisted.trial.unittest import TestCase

from tau.services.gateway.hello import INCOMPLETE, MAX_HELLO, HelloError, serverName


def clientHello(name=None):
    """
    The bytes OpenSSL sends first as a TLS client (SNI C{name}).
    """
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    connection = SSL.Connection(context, None)
    if name is not None:
        connection.set_tlsext_host_name(name.encode("ascii"))
    connection.set_connect_state()
    try:
        connection.do_handshake()
    except SSL.WantReadError:
        pass
    return connection.bio_read(1 << 16)


HELLO = clientHello("app.example.com")


def records(handshake, sizes):
    """
    C{handshake} (a handshake message) in TLS records of C{sizes} bytes
    (the last one takes the rest).
    """
    out, offset = bytearray(), 0
    for size in sizes + [len(handshake)]:
        part = handshake[offset:offset + max(size, 1)]
        if not part:
            break
        out += b"\x16\x03\x01" + len(part).to_bytes(2, "big") + part
        offset += len(part)
    return bytes(out)


def record(handshake):
    return records(handshake, [])


def helloMessage(extensions):
    """
    A ClientHello handshake message with C{extensions} (bytes, or None for
    no extensions block).
    """
    body = b"\x03\x03" + b"r" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    if extensions is not None:
        body += len(extensions).to_bytes(2, "big") + extensions
    return b"\x01" + len(body).to_bytes(3, "big") + body


def sni(*names, kind=0):
    entries = b"".join(bytes([kind]) + len(n).to_bytes(2, "big") + n for n in names)
    data = len(entries).to_bytes(2, "big") + entries
    return b"\x00\x00" + len(data).to_bytes(2, "big") + data


class ServerNameTests(TestCase):
    def test_openSSL(self):
        self.assertEqual(serverName(HELLO), "app.example.com")

    def test_noName(self):
        self.assertIsNone(serverName(clientHello()))
        self.assertIsNone(serverName(record(helloMessage(None))))

    def test_caseAndDot(self):
        self.assertEqual(serverName(record(helloMessage(sni(b"App.Example.COM.")))), "app.example.com")

    def test_everyPrefixIsIncomplete(self):
        for end in range(len(HELLO)):
            self.assertIs(serverName(HELLO[:end]), INCOMPLETE, end)

    def test_notTLS(self):
        e = self.assertRaises(HelloError, serverName, b"GET / HTTP/1.1\r\n\r\n")
        self.assertIn("record type 71", str(e))

    def test_notAClientHello(self):
        e = self.assertRaises(HelloError, serverName, record(b"\x02\x00\x00\x01x"))
        self.assertIn("expected a ClientHello", str(e))

    def test_badNames(self):
        for name in (b"a..b", b"-a.com", b"a b.com", b"\xff.com", b"a" * 64 + b".com"):
            self.assertRaises(HelloError, serverName, record(helloMessage(sni(name))))

    def test_extensionTwice(self):
        e = self.assertRaises(HelloError, serverName, record(helloMessage(sni(b"a.com") + sni(b"b.com"))))
        self.assertIn("twice", str(e))

    def test_lengthPastTheEnd(self):
        broken = helloMessage(b"\x00\x00\x00\x40" + b"x" * 4)
        e = self.assertRaises(HelloError, serverName, record(broken))
        self.assertIn("past the end", str(e))

    def test_limit(self):
        """
        A hello of exactly MAX_HELLO bytes is read; one byte more is
        refused on its header, before it is all in.
        """
        padding = lambda n: b"\x00\x15" + n.to_bytes(2, "big") + b"\x00" * n
        base = len(helloMessage(sni(b"a.com") + padding(0))) - 4
        exact = helloMessage(sni(b"a.com") + padding(MAX_HELLO - base))
        self.assertEqual(len(exact) - 4, MAX_HELLO)
        self.assertEqual(serverName(records(exact, [16000])), "a.com")
        over = helloMessage(sni(b"a.com") + padding(MAX_HELLO - base + 1))
        e = self.assertRaises(HelloError, serverName, records(over, [16000])[:100])
        self.assertIn(f"limit {MAX_HELLO}", str(e))

    @given(st.lists(st.integers(1, 300), max_size=20))
    def test_anySplitIntoRecords(self, sizes):
        self.assertEqual(serverName(records(HELLO[5:], sizes)), "app.example.com")

    @given(st.binary(max_size=4096))
    def test_fuzzBytes(self, data):
        try:
            result = serverName(data)
        except HelloError:
            return
        self.assertTrue(result is INCOMPLETE or result is None or isinstance(result, str))

    @given(st.lists(st.tuples(st.integers(0, len(HELLO) - 1), st.integers(0, 255)), min_size=1, max_size=8))
    def test_fuzzMutations(self, changes):
        data = bytearray(HELLO)
        for at, value in changes:
            data[at] = value
        try:
            result = serverName(bytes(data))
        except HelloError:
            return
        self.assertTrue(result is INCOMPLETE or result is None or isinstance(result, str))
