"""
A webhook's signature (HMAC-SHA256 only, as GitHub signs it; Taubyte
checks SHA-1) and its payload read into a job's L{Meta}, every field
checked.
"""

import hashlib
import hmac
import json

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tau.githost.payload import encode, pushEvent as githostPush
from tau.githost.webhook import signatures
from tau.services.patrick.job import pushJobID
from tau.services.patrick.webhook import MAX_DEPTH, PayloadError, SignatureError, checkSignature, parsePush
from tests.services.patrick.helpers import SECRET, encoded, pushEvent


class SignatureTests(SynchronousTestCase):
    body = b'{"ref": "refs/heads/main"}'

    def test_githostSignaturesAccepted(self):
        """
        What auth's git hosting (and GitHub) sends is accepted.
        """
        headers = signatures(SECRET, self.body)
        checkSignature(SECRET, self.body, headers["X-Hub-Signature-256"], headers["X-Hub-Signature"])
        checkSignature(SECRET, self.body, headers["X-Hub-Signature-256"].upper().replace("SHA256", "sha256"))

    def test_refused(self):
        sha256 = "sha256=" + hmac.new(SECRET.encode(), self.body, hashlib.sha256).hexdigest()
        sha1 = "sha1=" + hmac.new(SECRET.encode(), self.body, hashlib.sha1).hexdigest()
        cases = [
            ((None, sha1), "only an X-Hub-Signature (HMAC-SHA1) header"),
            ((None, None), "no X-Hub-Signature-256 header"),
            (("", None), "no X-Hub-Signature-256 header"),
            (("sha1=" + sha1[5:], None), "is not sha256=<64 hex digits>"),
            ((sha256[:-1], None), "is not sha256=<64 hex digits>"),
            (("sha256=" + "0" * 64, sha1), "does not match"),
            (("sha256=" + "\u00e9" * 64, None), "does not match"),
        ]
        for (h256, h1), why in cases:
            with self.assertRaises(SignatureError) as e:
                checkSignature(SECRET, self.body, h256, h1)
            self.assertIn(why, str(e.exception))
        with self.assertRaises(SignatureError):
            checkSignature("other", self.body, sha256)
        with self.assertRaises(SignatureError):
            checkSignature(SECRET, self.body + b" ", sha256)


class PayloadTests(SynchronousTestCase):
    def test_push(self):
        meta = parsePush(encoded(pushEvent()))
        self.assertEqual((meta.ref, meta.after, meta.headCommit), ("refs/heads/main", "a" * 40, "a" * 40))
        self.assertEqual((meta.repository.id, meta.repository.branch, meta.repository.pushedAt),
                         (101, "main", 1700000000))
        self.assertEqual(meta.repository.sshURL, "http://git.example.com/101.git")
        self.assertIsNotNone(pushJobID(meta))

    def test_githostPush(self):
        """
        The push event auth's git hosting sends is read.
        """
        commit = {"id": "b" * 40, "message": "m", "timestamp": "t", "author": {}, "committer": {}}
        event = githostPush(ref="refs/heads/main", before="0" * 40, after="b" * 40, commits=[commit],
                            repository={"id": "123456789012", "name": "r", "full_name": "ci/r", "owner": "ci"},
                            cloneURL="http://h/123456789012.git", pusher={"name": "ci"}, pushedAt=1700000001)
        meta = parsePush(encode(event))
        self.assertEqual((meta.repository.id, meta.headCommit, meta.repository.sshURL),
                         (123456789012, "b" * 40, "http://h/123456789012.git"))

    def test_malformed(self):
        def event(**changes):
            e = pushEvent()
            for key, value in changes.items():
                if "." in key:
                    outer, inner = key.split(".")
                    e[outer][inner] = value
                else:
                    e[key] = value
            return encoded(e)

        cases = [
            (b"not json", "the payload is not JSON"),
            (b"\xff\xfe", "the payload is not UTF-8"),
            (b"[1, 2]", "the payload is a JSON list, expected an object"),
            (event(ref=5), "ref: expected text, found int"),
            (event(ref="refs/tags/v1"), "ref: 'refs/tags/v1' is not a branch"),
            (event(ref="refs/heads/"), "is not a branch"),
            (event(ref="refs/heads/" + "x" * 245), "ref: 256 characters, limit 255"),
            (event(after=None), "after: expected text, found NoneType"),
            (event(after=""), "after: expected a commit id (40 or 64 hex digits)"),
            (event(after="A" * 40), "after: expected a commit id"),
            (event(after="a" * 41), "after: expected a commit id"),
            (event(head_commit=[]), "head_commit: expected an object or null"),
            (event(**{"head_commit.id": 7}), "head_commit.id: expected text"),
            (event(repository="r"), "repository: expected an object, found str"),
            (event(**{"repository.id": True}), "repository.id: expected a number"),
            (event(**{"repository.id": 1.5}), "repository.id: expected a number"),
            (event(**{"repository.id": -1}), "repository.id: out of range"),
            (event(**{"repository.ssh_url": ["x"]}), "repository.ssh_url: expected text"),
            (event(**{"repository.pushed_at": "2026"}), "repository.pushed_at: expected unix seconds"),
            (event(**{"repository.pushed_at": 0}), "repository.pushed_at: expected unix seconds"),
        ]
        for raw, why in cases:
            with self.assertRaises(PayloadError, msg=raw[:80]) as e:
                parsePush(raw)
            self.assertIn(why, str(e.exception))

    def test_depthAtTheLimit(self):
        def nested(depth):
            # the event itself is depth 1
            extra = "x"
            for _ in range(depth - 1):
                extra = [extra]
            return encoded(pushEvent(extra=extra))

        parsePush(nested(MAX_DEPTH - 1))
        with self.assertRaises(PayloadError) as e:
            parsePush(nested(MAX_DEPTH))
        self.assertEqual(str(e.exception), f"the payload nests deeper than {MAX_DEPTH}")
        with self.assertRaises(PayloadError) as e:
            parsePush(b"[" * 100_000 + b"]" * 100_000)
        self.assertIn("nests deeper", str(e.exception))

    def test_lengthLimits(self):
        parsePush(encoded(pushEvent(ref="refs/heads/" + "x" * 244)))
        parsePush(encoded(pushEvent(after="c" * 64)))
        with self.assertRaises(PayloadError):
            parsePush(encoded(pushEvent(after="c" * 65)))

    @given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                        lambda children: st.lists(children, max_size=4)
                        | st.dictionaries(st.text(max_size=10), children, max_size=4), max_leaves=20))
    def test_anythingIsReadOrRefused(self, value):
        for candidate in (value, dict(pushEvent(), repository=value), dict(pushEvent(), ref=value)):
            try:
                parsePush(json.dumps(candidate).encode())
            except PayloadError:
                pass
