"""
The HTTP side of an event: L{HttpRequest} (what the guest reads) and
L{HttpResponse} (what it writes), with Go C{net/http} semantics, which the
Taubyte SDKs were written against.
"""

import posixpath
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote, urlsplit

_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def canonicalKey(key):
    """
    Go's C{textproto.CanonicalMIMEHeaderKey}: C{content-type} ->
    C{Content-Type}; a key holding a byte that is not a token byte is kept
    as it is.
    """
    raw = key.encode("utf-8", "surrogateescape")
    if not raw or any(b not in _TOKEN for b in raw):
        return key
    return "-".join(part[:1].upper() + part[1:].lower() for part in key.split("-"))


def statusText(code):
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""


def _htmlEscape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;").replace("'", "&#39;")


def _hexEscapeNonAscii(s):
    return "".join(f"%{b:02x}" if b >= 0x80 else chr(b) for b in s.encode("utf-8", "surrogateescape"))


class HttpRequest:
    """
    The request of an HTTP event.  C{target} is the request target (path and
    optional query, as sent); C{headers} a list of C{(name, value)} strings.
    """

    def __init__(self, method="GET", target="/", host="example.com", headers=(), body=b""):
        self.method = method
        self.host = host
        parts = urlsplit(target)
        self.path = unquote(parts.path) or "/"
        self._query = parse_qsl(parts.query, keep_blank_values=True)
        self._headers = [(canonicalKey(k), v) for k, v in headers]
        self._body = bytes(body)
        self._read = 0
        self._closed = False

    def header(self, key):
        """
        The first value of header C{key} (any case), C{""} if absent.
        """
        key = canonicalKey(key)
        return next((v for k, v in self._headers if k == key), "")

    def headerKeys(self):
        return list(dict.fromkeys(k for k, _ in self._headers))

    def query(self, key):
        return next((v for k, v in self._query if k == key), "")

    def queryKeys(self):
        return list(dict.fromkeys(k for k, _ in self._query))

    @property
    def userAgent(self):
        return self.header("User-Agent")

    def readBody(self, size):
        """
        One C{Read} of at most C{size} bytes: C{(data, eof)}, like Go's
        C{strings.Reader}: data then C{(b"", True)}.

        @raise ValueError: the body was closed.
        """
        if self._closed:
            raise ValueError("read on a closed body")
        if self._read >= len(self._body):
            return b"", True
        data = self._body[self._read:self._read + size]
        self._read += len(data)
        return data, False

    def closeBody(self):
        self._closed = True


class ResponseTooLarge(Exception):
    """
    The guest wrote more body than the function may answer.
    """


class HttpResponse:
    """
    Go's C{ResponseWriter} as the guest sees it: the first write (or flush)
    sends status 200 unless one was set; a status set after that, and header
    changes after that, are ignored.  An informational status (1xx but 101)
    is not the final one.  C{invalid} is set when the guest asked for a status
    outside 100-599: the answer is then 500.
    """

    def __init__(self, maxBody):
        self.maxBody = maxBody
        self.status = None
        self.headers = []
        self.body = bytearray()
        self.flushes = 0
        self.invalid = False

    @property
    def headerSent(self):
        return self.status is not None

    def addHeader(self, key, value):
        if not self.headerSent:
            self.headers.append((canonicalKey(key), value))

    def getHeader(self, key):
        key = canonicalKey(key)
        return next((v for k, v in self.headers if k == key), None)

    def writeHeader(self, code):
        if self.headerSent or (100 <= code < 200 and code != 101):
            return
        self.status = code

    def write(self, data):
        if len(self.body) + len(data) > self.maxBody:
            raise ResponseTooLarge(len(self.body) + len(data))
        self.writeHeader(200)
        self.body += data

    def flush(self):
        self.writeHeader(200)
        self.flushes += 1

    def redirect(self, request, url, code):
        """
        Go's C{http.Redirect}: a relative C{url} is made absolute against the
        request path (cleaned, its trailing slash kept); C{Location} is set
        (non-ASCII bytes hex-escaped); a GET or HEAD without a Content-Type
        gets C{text/html}, and a GET that small HTML body.
        """
        parts = urlsplit(url)
        if not parts.scheme and not parts.netloc:
            if not url.startswith("/"):
                url = request.path.rsplit("/", 1)[0] + "/" + url
            url, mark, query = url.partition("?")
            cleaned = posixpath.normpath(url)
            cleaned = "/" + cleaned.lstrip("/")
            if url.endswith("/") and not cleaned.endswith("/"):
                cleaned += "/"
            url = cleaned + mark + query
        hadType = self.getHeader("Content-Type") is not None
        if not self.headerSent:
            self.headers = [(k, v) for k, v in self.headers if k != "Location"]
        self.addHeader("Location", _hexEscapeNonAscii(url))
        if not hadType and request.method in ("GET", "HEAD"):
            self.addHeader("Content-Type", "text/html; charset=utf-8")
        self.writeHeader(code)
        if not hadType and request.method == "GET":
            self.write(f'<a href="{_htmlEscape(url)}">{statusText(code)}</a>.\n\n'.encode())

    def final(self):
        """
        C{(status, headers, body)} as answered to the client.
        """
        if self.invalid:
            return 500, [], b""
        return self.status or 200, list(self.headers), bytes(self.body)
