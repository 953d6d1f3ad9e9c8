"""
The push event, as GitHub writes it (the fields patrick and Taubyte read:
C{ref}, C{before}, C{after}, C{head_commit.id}, C{repository.id},
C{repository.ssh_url}, C{repository.pushed_at}, and GitHub's others a
consumer may expect).
"""

import json

from tau.githost.repos import ZERO


def repositoryID(repoID):
    """
    The id as GitHub types it: a number when it is one (hosted
    repositories get numeric ids), else the text.
    """
    return int(repoID) if isinstance(repoID, str) and repoID.isdigit() else repoID


def pushEvent(*, ref, before, after, commits, repository, cloneURL, pusher, pushedAt, createdAt=None):
    """
    The push event (a dict) of one ref update.

    @param commits: the commits the push brought, oldest first (see
        L{tau.githost.repos.Repositories.commits}); the last is the head.
    @param repository: C{{"id", "name", "full_name", "owner"}}.
    @param cloneURL: where the repository is cloned from; it is both
        C{clone_url} and C{ssh_url} (patrick clones C{ssh_url}).
    @param pusher: C{{"name", "email"}}.
    @param pushedAt: unix seconds (int).
    """
    owner = repository.get("owner") or repository["full_name"].partition("/")[0]
    shaped = [dict(c, distinct=True, url=f"{cloneURL}#{c['id']}", added=[], removed=[], modified=[])
              for c in commits]
    head = shaped[-1] if shaped and after != ZERO else None
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "created": before == ZERO,
        "deleted": after == ZERO,
        "forced": False,
        "base_ref": None,
        "compare": f"{cloneURL}#{before[:12]}...{after[:12]}",
        "commits": shaped,
        "head_commit": head,
        "repository": {
            "id": repositoryID(repository["id"]),
            "name": repository["name"],
            "full_name": repository["full_name"],
            "private": True,
            "owner": {"name": owner, "login": owner},
            "html_url": cloneURL,
            "url": cloneURL,
            "clone_url": cloneURL,
            "git_url": cloneURL,
            "ssh_url": cloneURL,
            "default_branch": "main",
            "master_branch": "main",
            "pushed_at": int(pushedAt),
            "created_at": int(createdAt if createdAt is not None else pushedAt),
        },
        "pusher": {"name": pusher.get("name", ""), "email": pusher.get("email", "")},
        "sender": {"login": pusher.get("name", "")},
    }


def encode(event):
    """
    The raw body that is signed and sent.
    """
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode("utf-8")


def parseUpdates(data):
    """
    C{[(old, new, ref)]} of post-receive's lines; malformed lines are
    skipped.
    """
    found = []
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.split(" ")
        if len(parts) == 3 and all(len(p) == 40 and all(c in "0123456789abcdef" for c in p) for p in parts[:2]) \
                and parts[2].startswith("refs/"):
            found.append((parts[0], parts[1], parts[2]))
    return found
