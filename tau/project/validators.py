"""
The checks Taubyte's schema puts on single values.  Each returns C{None}
for a good value or the message for a bad one (Taubyte's words where it has
them).
"""

import json
import re

import base58

from tau.cids import InvalidCID, parseCID

_VARIABLE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")


def quoted(text):
    """
    A value quoted for a message, as Go's C{%q} quotes printable text.
    """
    return json.dumps(text, ensure_ascii=False)


def variableName(value):
    if _VARIABLE_NAME.match(value):
        return None
    return "invalid variable name (letters, digits and _, not starting with a digit)"


def cid(value):
    """
    go-cid's C{Parse}: a 46-character C{Qm...} string is a CIDv0 (a base58
    sha2-256 multihash, checked here directly: py-cid's multibase guessing
    costs a third of a whole compile), anything else a multibase CIDv1.
    """
    if len(value) == 46 and value.startswith("Qm"):
        try:
            raw = base58.b58decode(value)
        except ValueError:
            raw = b""
        if len(raw) == 34 and raw[:2] == b"\x12\x20":
            return None
        return f"failed parsing `{value}` as a CID: not a base58 sha2-256 multihash"
    try:
        parseCID(value)
    except InvalidCID as e:
        reason = str(e).split(": ", 1)[-1]
        return f"failed parsing `{value}` as a CID: {reason}"
    return None


def keySegment(value):
    """
    A value that becomes one segment of a tns key: no C{/}, not C{.} or
    C{..} (Taubyte joins keys with Go's C{path.Join}, which would resolve
    them and let a name write outside its project's keys).
    """
    if "/" in value or value in (".", ".."):
        return f"{quoted(value)} cannot be part of a key (no /, not . or ..)"
    return None


def oneOf(*allowed):
    def check(value):
        if value in allowed:
            return None
        return f"invalid value {quoted(value)} (one of {', '.join(allowed)})"

    return check


def httpMethod(value):
    if value.upper() in HTTP_METHODS:
        return None
    return f"invalid http method {quoted(value)} (one of {' '.join(HTTP_METHODS)}, any case)"


def source(value):
    if value == "." or value.startswith("libraries/"):
        return None
    return f'must be "." or start with "libraries/", got {quoted(value)}'


def isDomainName(name):
    """
    Go's C{net.isDomainName} (which Taubyte's C{IsFqdn} copies): labels of
    letters, digits, C{-} and C{_}, 1-63 bytes, no leading or trailing
    hyphen, 253 bytes at most (254 with the final dot), not all digits; C{.}
    alone is the root and valid.
    """
    if name == ".":
        return True
    data = name.encode("utf-8")
    if not data or len(data) > 254 or (len(data) == 254 and data[-1:] != b"."):
        return False
    last = ord(".")
    nonNumeric = False
    partLength = 0
    for c in data:
        if ord("a") <= c <= ord("z") or ord("A") <= c <= ord("Z") or c == ord("_"):
            nonNumeric = True
            partLength += 1
        elif ord("0") <= c <= ord("9"):
            partLength += 1
        elif c == ord("-"):
            if last == ord("."):
                return False
            partLength += 1
            nonNumeric = True
        elif c == ord("."):
            if last in (ord("."), ord("-")) or partLength > 63 or partLength == 0:
                return False
            partLength = 0
        else:
            return False
        last = c
    return last != ord("-") and partLength <= 63 and nonNumeric


def fqdn(value):
    return None if isDomainName(value) else "invalid fqdn"


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATEXT}(?:\.{_ATEXT})*"
_QUOTED = r'"(?:[^"\\\r\n]|\\.)*"'
_ADDR_SPEC = re.compile(rf"(?:{_DOT_ATOM}|{_QUOTED})@(?:{_DOT_ATOM}|\[[^\[\]\\\s]*\])\Z")
_NAME_ADDR = re.compile(r"([^<>]*)<([^<>]*)>\Z")


def email(value):
    """
    An address as Go's C{net/mail.ParseAddress} takes one: C{user@host} or
    C{Display Name <user@host>} (RFC 5322 dot-atoms, quoted local parts and
    domain literals; the rarer obsolete forms Go also accepts are refused).
    """
    text = value.strip()
    if not text:
        return "mail: no address"
    match = _NAME_ADDR.match(text)
    address = match.group(2).strip() if match else text
    if "@" not in address:
        return "mail: missing '@' or angle-addr"
    if not _ADDR_SPEC.match(address):
        return f"mail: invalid address {quoted(value)}"
    return None
