"""
The Content-Type of an answer that names none, as Go's C{net/http} server
gives it (C{http.DetectContentType}, on the first 512 bytes): the Taubyte
SDKs' functions rely on it (a function that writes HTML without a header is
served as HTML).  The common signatures only: HTML, XML, PDF, the usual
images, WebAssembly, text, else C{application/octet-stream}.
"""

#: the bytes looked at
SNIFF_LENGTH = 512

_HTML_TAGS = (b"<!DOCTYPE HTML", b"<HTML", b"<HEAD", b"<SCRIPT", b"<IFRAME", b"<H1", b"<DIV", b"<FONT", b"<TABLE",
              b"<A", b"<STYLE", b"<TITLE", b"<B", b"<BODY", b"<BR", b"<P", b"<!--")
_WHITESPACE = b"\t\n\x0c\r "
_EXACT = (
    (b"%PDF-", "application/pdf"),
    (b"%!PS-Adobe-", "application/postscript"),
    (b"\xfe\xff", "text/plain; charset=utf-16be"),
    (b"\xff\xfe", "text/plain; charset=utf-16le"),
    (b"\xef\xbb\xbf", "text/plain; charset=utf-8"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"BM", "image/bmp"),
    (b"\0asm", "application/wasm"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b\x08", "application/x-gzip"),
    (b"wOFF", "font/woff"),
    (b"wOF2", "font/woff2"),
)
_BINARY = frozenset(list(range(0x00, 0x09)) + [0x0B] + list(range(0x0E, 0x1B)) + list(range(0x1C, 0x20)))


def detectContentType(data):
    """
    The Content-Type Go's server would give a body beginning with C{data}.
    """
    data = data[:SNIFF_LENGTH]
    text = data.lstrip(_WHITESPACE)
    upper = text[:16].upper()
    for tag in _HTML_TAGS:
        if upper.startswith(tag) and len(text) > len(tag) and text[len(tag)] in b" >":
            return "text/html; charset=utf-8"
    if text.startswith(b"<?xml"):
        return "text/xml; charset=utf-8"
    for magic, kind in _EXACT:
        if data.startswith(magic):
            return kind
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    if any(b in _BINARY for b in data):
        return "application/octet-stream"
    return "text/plain; charset=utf-8"
