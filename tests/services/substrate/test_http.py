"""
L{tau.services.substrate.wasm.http}: Go C{net/http} semantics of the request
and response the guest sees.
"""

from twisted.trial.unittest import SynchronousTestCase

from tau.services.substrate.wasm.http import HttpRequest, HttpResponse, ResponseTooLarge, canonicalKey


class CanonicalKeyTests(SynchronousTestCase):
    def test_canonical(self):
        """
        Header names are canonicalized as Go's C{CanonicalMIMEHeaderKey};
        a name with a non-token byte is kept as it is.
        """
        self.assertEqual(canonicalKey("content-TYPE"), "Content-Type")
        self.assertEqual(canonicalKey("x-a-b"), "X-A-B")
        self.assertEqual(canonicalKey("bad key"), "bad key")


class RequestTests(SynchronousTestCase):
    def test_body(self):
        """
        The body reads like Go's C{strings.Reader}: data, then EOF with no
        data; after C{closeBody} a read fails.
        """
        request = HttpRequest("POST", body=b"abc")
        self.assertEqual(request.readBody(2), (b"ab", False))
        self.assertEqual(request.readBody(2), (b"c", False))
        self.assertEqual(request.readBody(2), (b"", True))
        request.closeBody()
        self.assertRaises(ValueError, request.readBody, 1)

    def test_emptyBody(self):
        """
        A request without a body reads EOF at once.
        """
        self.assertEqual(HttpRequest().readBody(10), (b"", True))


class ResponseTests(SynchronousTestCase):
    def test_statusAfterWrite(self):
        """
        The first write sends 200; a status and headers set after it are
        ignored.
        """
        response = HttpResponse(maxBody=10)
        response.write(b"x")
        response.writeHeader(404)
        response.addHeader("a", "b")
        self.assertEqual(response.final(), (200, [], b"x"))

    def test_maxBody(self):
        """
        Exactly C{maxBody} bytes are answered; one more is refused.
        """
        response = HttpResponse(maxBody=3)
        response.write(b"abc")
        self.assertRaises(ResponseTooLarge, response.write, b"d")
        self.assertEqual(response.final(), (200, [], b"abc"))

    def redirect(self, path, url, method="GET", contentType=None):
        response = HttpResponse(maxBody=1000)
        if contentType:
            response.addHeader("Content-Type", contentType)
        response.redirect(HttpRequest(method, path), url, 302)
        return response.final()

    def test_redirectRelative(self):
        """
        A relative URL is resolved against the request path's folder and
        cleaned, keeping its trailing slash and query.
        """
        status, headers, body = self.redirect("/a/b/c", "../d/?x=1")
        self.assertEqual(status, 302)
        self.assertEqual(dict(headers)["Location"], "/a/d/?x=1")
        self.assertEqual(body, b'<a href="/a/d/?x=1">Found</a>.\n\n')

    def test_redirectPost(self):
        """
        A POST gets no Content-Type and no body; a non-ASCII URL is
        hex-escaped in Location.
        """
        self.assertEqual(self.redirect("/", "https://h/é", "POST"), (302, [("Location", "https://h/%c3%a9")], b""))

    def test_redirectWithContentType(self):
        """
        A GET whose Content-Type was set gets no body.
        """
        status, headers, body = self.redirect("/", "/x", contentType="text/plain")
        self.assertEqual((status, body), (302, b""))
        self.assertEqual(headers, [("Content-Type", "text/plain"), ("Location", "/x")])
