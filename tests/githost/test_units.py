"""
The parsers and builders of git hosting, without processes or sockets.
"""

import base64

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from tau.githost.cgi import BackendError, parseHeaders
from tau.githost.credentials import MAX_AUTHORIZATION, deployReadToken, parseAuthorization
from tau.githost.payload import encode, parseUpdates, pushEvent, repositoryID
from tau.githost.repos import ZERO, checkID

A, B = "a" * 40, "b" * 40
REPO = {"id": "123", "name": "shop", "full_name": "ci/shop", "owner": "ci"}


class CredentialTests(TestCase):
    def test_basic(self):
        header = b"Basic " + base64.b64encode(b"ci:tau_x:y")
        self.assertEqual(parseAuthorization(header), ("ci", "tau_x:y"))

    def test_tokenSchemes(self):
        self.assertEqual(parseAuthorization(b"tau tau_abc"), ("", "tau_abc"))
        self.assertEqual(parseAuthorization(b"Bearer tau_abc"), ("", "tau_abc"))

    def test_unreadable(self):
        for header in (None, b"", b"Basic !!!", b"Basic " + base64.b64encode(b"nocolon"),
                       b"Basic " + base64.b64encode(b"user:"), b"Digest x", b"tau a b", b"Basic " + base64.b64encode(b"\xff:x")):
            self.assertIsNone(parseAuthorization(header), header)

    def test_lengthLimit(self):
        """
        A header of exactly C{MAX_AUTHORIZATION} bytes is read, one more is
        not.
        """
        token = "t" * (MAX_AUTHORIZATION - len("tau "))
        self.assertEqual(parseAuthorization(("tau " + token).encode()), ("", token))
        self.assertIsNone(parseAuthorization(("tau " + token + "t").encode()))

    @given(st.binary(max_size=300))
    def test_anyBytes(self, header):
        result = parseAuthorization(header)
        self.assertTrue(result is None or (isinstance(result, tuple) and result[1]))

    def test_deployToken(self):
        self.assertEqual(deployReadToken("k"), deployReadToken(b"k"))
        self.assertNotEqual(deployReadToken("k"), deployReadToken("l"))
        self.assertTrue(deployReadToken("k").startswith("tau-deploy-"))


class ParserTests(TestCase):
    def test_headers(self):
        self.assertEqual(parseHeaders(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\nX: a: b"),
                         (404, [(b"Content-Type", b"text/plain"), (b"X", b"a: b")]))
        self.assertEqual(parseHeaders(b"Expires: Fri, 01 Jan 1980"), (200, [(b"Expires", b"Fri, 01 Jan 1980")]))
        for bad in (b"nocolon", b"Status: 99", b"Status: x", b"Bad Name: x", b": x"):
            self.assertRaises(BackendError, parseHeaders, bad)

    @given(st.binary(max_size=500))
    def test_headersAnyBytes(self, block):
        try:
            status, headers = parseHeaders(block)
        except BackendError:
            return
        self.assertTrue(100 <= status <= 599)

    def test_updates(self):
        data = f"{ZERO} {A} refs/heads/main\n{A} {B} refs/tags/v1\nbad line\n{A} {B} HEAD\n".encode()
        self.assertEqual(parseUpdates(data), [(ZERO, A, "refs/heads/main"), (A, B, "refs/tags/v1")])

    @given(st.binary(max_size=500))
    def test_updatesAnyBytes(self, data):
        for old, new, ref in parseUpdates(data):
            self.assertEqual((len(old), len(new)), (40, 40))
            self.assertTrue(ref.startswith("refs/"))

    def test_ids(self):
        for good in ("101", "shop-config", "a_b.c"):
            self.assertEqual(checkID(good), good)
        for bad in ("", ".hooks", "..", "a/b", "x.git", "a" * 101, None, 5, "a b"):
            self.assertIsNone(checkID(bad), bad)


class PayloadTests(TestCase):
    def event(self, before, after, commits):
        return pushEvent(ref="refs/heads/main", before=before, after=after, commits=commits, repository=REPO,
                         cloneURL="http://git.example.com/123.git", pusher={"name": "ci", "email": ""},
                         pushedAt=1700000000.7)

    def test_fieldsPatrickReads(self):
        commit = {"id": A, "tree_id": B, "message": "m", "timestamp": "t", "author": {}, "committer": {}}
        event = self.event(ZERO, A, [commit])
        self.assertEqual((event["ref"], event["before"], event["after"]), ("refs/heads/main", ZERO, A))
        self.assertEqual(event["head_commit"]["id"], A)
        self.assertEqual(event["repository"]["id"], 123)
        self.assertEqual(event["repository"]["pushed_at"], 1700000000)
        self.assertEqual(event["repository"]["ssh_url"], "http://git.example.com/123.git")
        self.assertEqual(event["repository"]["full_name"], "ci/shop")
        self.assertTrue(event["created"])
        self.assertFalse(event["deleted"])

    def test_deletion(self):
        event = self.event(A, ZERO, [])
        self.assertIsNone(event["head_commit"])
        self.assertTrue(event["deleted"])

    def test_ids(self):
        self.assertEqual(repositoryID("42"), 42)
        self.assertEqual(repositoryID("shop"), "shop")

    def test_encodeIsStable(self):
        event = self.event(ZERO, A, [])
        self.assertEqual(encode(event), encode(dict(reversed(list(event.items())))))


class InterfaceTests(TestCase):
    def test_accessImplementations(self):
        """
        The test fake and auth's access both provide L{IGitAccess}.
        """
        from zope.interface.verify import verifyObject

        from tau.githost import IGitAccess
        from tau.services.auth.hosting import AuthGitAccess
        from tests.githost.helpers import MemoryAccess

        verifyObject(IGitAccess, MemoryAccess("http://x/"))
        verifyObject(IGitAccess, AuthGitAccess(None, None))
