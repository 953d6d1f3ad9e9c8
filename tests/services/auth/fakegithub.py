"""
A local stand-in for the few GitHub REST endpoints auth calls, served by
twisted.web on 127.0.0.1:0.
"""

import json
from urllib.parse import parse_qs

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.web.resource import Resource
from twisted.web.server import Site

WRITE = {"admin": True, "push": True, "pull": True}
READ = {"admin": False, "push": False, "pull": True}


class FakeGitHub(Resource):
    """
    @ivar users: C{{token: login}}.
    @ivar repos: C{{id: {"full_name", "ssh_url", "access": {login: permissions}}}}.
    @ivar hooks, keys: what auth created, C{[(full_name, body)]}.
    @ivar removed: C{[(full_name, "hooks" or "keys", id)]}.
    @ivar limited: answer 403 (rate limited) to everything.
    """

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.users = {}
        self.repos = {}
        self.hooks = []
        self.keys = []
        self.removed = []
        self.requests = []
        self.limited = False

    def addUser(self, token, login):
        self.users[token] = login

    def addRepo(self, repoID, fullName, access):
        self.repos[repoID] = {"full_name": fullName, "ssh_url": f"git@github.com:{fullName}.git", "access": access}

    def _view(self, repoID, login):
        repo = self.repos[repoID]
        return {"id": repoID, "full_name": repo["full_name"], "ssh_url": repo["ssh_url"],
                "permissions": repo["access"][login]}

    def render(self, request):
        request.setHeader(b"content-type", b"application/json")
        auth = (request.getHeader(b"authorization") or b"").decode()
        self.requests.append((request.method.decode(), request.uri.decode(), auth))
        if self.limited:
            request.setResponseCode(403)
            return b'{"message": "API rate limit exceeded"}'
        login = self.users.get(auth.partition(" ")[2]) if auth.startswith("token ") else None
        if login is None:
            request.setResponseCode(401)
            return b'{"message": "Bad credentials"}'
        path = request.path.decode()
        method = request.method.decode()
        parts = path.strip("/").split("/")
        if method == "GET" and path == "/user":
            return json.dumps({"login": login, "id": 1}).encode()
        if method == "GET" and path == "/user/repos":
            query = parse_qs(request.uri.decode().partition("?")[2])
            page, size = int(query.get("page", ["1"])[0]), int(query.get("per_page", ["30"])[0])
            mine = [rid for rid in sorted(self.repos) if login in self.repos[rid]["access"]]
            chunk = mine[(page - 1) * size: page * size]
            return json.dumps([self._view(rid, login) for rid in chunk]).encode()
        if method == "GET" and parts[0] == "repositories" and len(parts) == 2:
            rid = int(parts[1])
            if rid in self.repos and login in self.repos[rid]["access"]:
                return json.dumps(self._view(rid, login)).encode()
            request.setResponseCode(404)
            return b'{"message": "Not Found"}'
        if parts[0] == "repos" and len(parts) >= 4:
            fullName = "/".join(parts[1:3])
            if not any(r["full_name"] == fullName and r["access"].get(login, READ)["push"] for r in self.repos.values()):
                request.setResponseCode(404)
                return b'{"message": "Not Found"}'
            if method == "POST" and parts[3] == "hooks":
                self.hooks.append((fullName, json.loads(request.content.read())))
                request.setResponseCode(201)
                return json.dumps({"id": 9000 + len(self.hooks)}).encode()
            if method == "POST" and parts[3] == "keys":
                self.keys.append((fullName, json.loads(request.content.read())))
                request.setResponseCode(201)
                return json.dumps({"id": 7000 + len(self.keys)}).encode()
            if method == "DELETE" and parts[3] in ("hooks", "keys") and len(parts) == 5:
                self.removed.append((fullName, parts[3], int(parts[4])))
                request.setResponseCode(204)
                return b""
        request.setResponseCode(404)
        return b'{"message": "Not Found"}'


async def startFakeGitHub(case):
    """
    A L{FakeGitHub} listening on 127.0.0.1:0 until the test ends, and its
    base URL.
    """
    github = FakeGitHub()
    site = Site(github)
    site.noisy = False
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    case.addCleanup(port.stopListening)
    return github, f"http://127.0.0.1:{port.getHost().port}"
