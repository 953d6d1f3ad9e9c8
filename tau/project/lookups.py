"""
Lookups over the tns key tree (C{specs/taubyte-config.md} section 3), on
any C{async fetch(path)} (a client's, with its cache):

- L{project}: a project's current config on a branch;
- L{resource}: one resource of a project by its id, wherever it is (the
  project or one of its applications);
- L{http}: the function or website that serves a host, path and method,
  with Taubyte's substrate rules.

An index value C{branches/<br>/projects/<P>/...} is resolved against the
commit the branch's C{current} pointer names; only C{main} and C{master}
are served, as in Taubyte.
"""

from tau.project.indexes import reversedFqdn
from tau.project.loader import GROUPS

SERVED_BRANCHES = ("main", "master")
#: the score of an exact match; the first one wins
EXACT = 256


async def currentCommit(fetch, projectId, branch):
    commit = await fetch(["projects", projectId, "branches", branch, "current"])
    return commit if isinstance(commit, str) and commit else None


async def project(fetch, projectId, branch="main"):
    """
    C{{project, branch, commit, object}}, or None when the branch has no
    current commit.
    """
    commit = await currentCommit(fetch, projectId, branch)
    if commit is None:
        return None
    tree = await fetch(["branches", branch, "commit", commit, "projects", projectId])
    if not isinstance(tree, dict):
        return None
    return {"project": projectId, "branch": branch, "commit": commit, "object": tree}


async def resource(fetch, projectId, resourceId, branch="main"):
    """
    C{{project, application, group, id, branch, commit, config}} of the
    resource C{resourceId} of the project's current config, or None.
    """
    found = await project(fetch, projectId, branch)
    if found is None:
        return None
    tree = found["object"]
    scopes = [(None, tree)]
    apps = tree.get("applications")
    if isinstance(apps, dict):
        scopes += [(appId, app) for appId, app in apps.items() if isinstance(app, dict)]
    for appId, scope in scopes:
        for group in GROUPS:
            resources = scope.get(group)
            if isinstance(resources, dict) and isinstance(resources.get(resourceId), dict):
                return {"project": projectId, "application": appId, "group": group, "id": resourceId,
                        "branch": branch, "commit": found["commit"], "config": resources[resourceId]}
    return None


def parseIndexValue(value):
    """
    C{(branch, project, application or None, group, id)} of an index
    value, or None when it is not one.
    """
    if not isinstance(value, str):
        return None
    parts = value.split("/")
    if len(parts) == 6 and parts[0] == "branches" and parts[2] == "projects":
        return parts[1], parts[3], None, parts[4], parts[5]
    if len(parts) == 8 and parts[0] == "branches" and parts[2] == "projects" and parts[4] == "applications":
        return parts[1], parts[3], parts[5], parts[6], parts[7]
    return None


async def resolve(fetch, links):
    """
    The resources the index values C{links} name, on their branch's
    current commit: C{[{project, application, group, id, branch, commit,
    path}]} (C{path} the resource's key path); values on other branches
    than main and master, or on a branch with no current commit, are
    left out.
    """
    out = []
    for value in links if isinstance(links, list) else []:
        parsed = parseIndexValue(value)
        if parsed is None or parsed[0] not in SERVED_BRANCHES:
            continue
        branch, projectId, appId, group, resourceId = parsed
        commit = await currentCommit(fetch, projectId, branch)
        if commit is None:
            continue
        app = ["applications", appId] if appId else []
        path = ["branches", branch, "commit", commit, "projects", projectId, *app, group, resourceId]
        out.append({"project": projectId, "application": appId, "group": group, "id": resourceId,
                    "branch": branch, "commit": commit, "path": path})
    return out


async def hostProjects(fetch, host):
    """
    The projects that serve a website or function on C{host} (its index
    keys, on their branch's current commit), in order, each once.
    """
    labels = hostKey(host)
    projects = []
    for group in ("websites", "functions"):
        for found in await resolve(fetch, await fetch(["http", group, *labels, "links"])):
            if found["project"] not in projects:
                projects.append(found["project"])
    return projects


def hostKey(host):
    """
    The labels of a request's host, last first: lower-cased, the port cut.
    """
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return reversedFqdn(host.rstrip("."))


def functionScore(config, path, method):
    """
    Taubyte's function match: the method (upper-cased) equal and the path
    equal to one of the function's paths.
    """
    wanted = config.get("method")
    paths = config.get("paths")
    if not isinstance(wanted, str) or not isinstance(paths, list):
        return 0
    return EXACT if method == wanted.upper() and path in paths else 0


def websiteScore(config, path, method):
    """
    Taubyte's website match (GET, HEAD or no method): a path equal to one
    of the website's is exact; else the longest of its paths the request
    is under (C{len(p) + 1}), C{/} the weakest (1).
    """
    if method not in ("", "GET", "HEAD"):
        return 0
    paths = config.get("paths")
    best = 0
    for p in paths if isinstance(paths, list) else []:
        if not isinstance(p, str):
            continue
        if path == p:
            return EXACT
        if p == "/":
            score = 1
        elif path.startswith(p.rstrip("/") + "/"):
            score = len(p) + 1
        else:
            score = 0
        best = max(best, score)
    return best


async def http(fetch, host, path, method):
    """
    What serves C{method path} on C{host}: C{{kind: "website"|"function",
    project, application, group, id, branch, commit, config}}, or None.
    Websites are considered first, then functions; the first exact match
    wins, else the best partial one.
    """
    labels = hostKey(host)
    method = method.upper()
    best, bestScore = None, 0
    for group, kind, score in (("websites", "website", websiteScore), ("functions", "function", functionScore)):
        links = await fetch(["http", group, *labels, "links"])
        for found in await resolve(fetch, links):
            if found["group"] != group:
                continue
            config = await fetch(found["path"])
            if not isinstance(config, dict):
                continue
            points = score(config, path, method)
            if points > bestScore:
                best, bestScore = dict(found, kind=kind, config=config), points
                if points >= EXACT:
                    return best
    return best
