"""
The control API's optional bearer token (C{api-token: true}), for hosts
with other users, in the manner of kubo's C{API.Authorizations} bearer
secrets: every request must carry C{Authorization: Bearer TOKEN}, else it
is answered 401 and its body is not kept.

The token is kept in C{ROOT/storage/SHAPE/api-token} (mode 0600), made on
the first start that needs it and kept after; the C{tau} command, run by
the same user, reads it from there.  Delete the file to have a new token
made at the next start.
"""

import hmac
import secrets

from twisted.web.resource import Resource

from tau.private import writePrivate


def readToken(path):
    """
    The token kept in C{path} (bytes), or None when there is none.
    """
    try:
        token = path.read_bytes().strip()
    except FileNotFoundError:
        return None
    return token or None


class TokenGuard(Resource):
    """
    Serve C{resource} only to requests that carry the token of C{path}.
    """

    isLeaf = True

    def __init__(self, resource, path):
        super().__init__()
        self._resource = resource
        self._path = path
        self._token = None

    def load(self):
        """
        Read the token, made first when there is none (at the node's start).
        """
        token = readToken(self._path)
        if token is None:
            token = secrets.token_urlsafe(32).encode("ascii")
            writePrivate(self._path, token.decode("ascii") + "\n")
        self._token = token

    def authorized(self, request):
        """
        Whether C{request} carries the token (compared in constant time).
        """
        given = request.getHeader(b"authorization") or b""
        scheme, _, value = given.partition(b" ")
        return (self._token is not None and scheme.lower() == b"bearer"
                and hmac.compare_digest(value.strip(), self._token))

    def refusal(self):
        return f"this node's control API needs its token: Authorization: Bearer (the contents of {self._path})"

    def challenge(self):
        return [(b"WWW-Authenticate", b'Bearer realm="tau"')]

    def render(self, request):
        if not self.authorized(request):
            from tau.control.server import _error   # not at the top: the CLI reads tokens, never serves

            for name, value in self.challenge():
                request.setHeader(name, value)
            return _error(request, 401, self.refusal())
        return self._resource.render(request)

