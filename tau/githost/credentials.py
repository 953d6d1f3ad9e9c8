"""
Credentials git sends: HTTP Basic (C{http://user:token@host/...}, or a
credential helper), or C{Authorization: tau <token>} (C{git -c
http.extraHeader=...}); and the read token a builder derives from a
repository's deploy key.
"""

import base64
import hashlib

#: the longest Authorization header read
MAX_AUTHORIZATION = 2048


def parseAuthorization(header):
    """
    C{(user, password)} of an C{Authorization} header (bytes or None):
    Basic gives both, C{tau <token>} and C{Bearer <token>} give C{("",
    token)}; None when there is none or it cannot be read.
    """
    if not header or len(header) > MAX_AUTHORIZATION:
        return None
    try:
        scheme, _, value = header.decode("latin-1").strip().partition(" ")
    except UnicodeDecodeError:
        return None
    value = value.strip()
    scheme = scheme.lower()
    if scheme == "basic":
        try:
            text = base64.b64decode(value, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        user, colon, password = text.partition(":")
        return (user, password) if colon and password else None
    if scheme in ("tau", "bearer") and value and " " not in value:
        return ("", value)
    return None


def deployReadToken(privateKey):
    """
    The read-only git password of a repository, derived from its private
    deploy key (the PEM text auth gives a builder in C{repositories get}):
    a builder that may fetch the key may clone, nobody else.
    """
    if isinstance(privateKey, str):
        privateKey = privateKey.encode("ascii")
    return "tau-deploy-" + hashlib.sha256(b"tau git read\0" + privateKey).hexdigest()
