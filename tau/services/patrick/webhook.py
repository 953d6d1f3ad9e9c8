"""
A push webhook, checked and read (sans-IO): its signature and its payload.

Taubyte's patrick checks only C{X-Hub-Signature} (HMAC-SHA1) and requires
but never checks C{X-Hub-Signature-256}.  tau does it right: the
HMAC-SHA256 signature C{X-Hub-Signature-256: sha256=<hex>} is the one
checked (in constant time); a request signed with SHA-1 only is refused.

The payload is GitHub's push event; what a job needs of it is read into a
L{Meta}, every field checked for its type and length, so that a malformed
payload is refused with a message naming the field.
"""

import hashlib
import hmac
import json
import re

from tau.services.patrick.job import Meta, Repository

#: the deepest nesting of a payload's JSON
MAX_DEPTH = 32
#: the longest ref, commit id and clone URL read
MAX_REF = 255
MAX_SHA = 64
MAX_URL = 2048
MAX_REPO_ID = 128
HEADS = "refs/heads/"
ZERO = "0" * 40
_SHA = re.compile(r"\A[0-9a-f]{40}(?:[0-9a-f]{24})?\Z")


class SignatureError(Exception):
    """
    The request's signature is missing or wrong; the message says which.
    """


class PayloadError(ValueError):
    """
    The payload is not a push event a job can be made of.
    """


def checkSignature(secret, body, sha256Header, sha1Header=None):
    """
    @param secret: the hook's secret (text).
    @param body: the raw body received.
    @param sha256Header: the C{X-Hub-Signature-256} header, or None.
    @param sha1Header: the C{X-Hub-Signature} header, or None (only to say
        why a request is refused).
    @raise SignatureError: unless C{sha256Header} is C{sha256=} and the
        hex HMAC-SHA256 of C{body} under C{secret}.
    """
    if not sha256Header:
        if sha1Header:
            raise SignatureError("only an X-Hub-Signature (HMAC-SHA1) header: tau checks X-Hub-Signature-256 "
                                 "(HMAC-SHA256)")
        raise SignatureError("no X-Hub-Signature-256 header")
    scheme, _, given = sha256Header.partition("=")
    if scheme != "sha256" or len(given) != 64:
        raise SignatureError("X-Hub-Signature-256 is not sha256=<64 hex digits>")
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode("ascii"), given.lower().encode("ascii", "replace")):
        raise SignatureError("X-Hub-Signature-256 does not match the body under the hook's secret")


def _depth(value):
    """
    How deep C{value} (decoded JSON) nests, walked without recursion.
    """
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def decodeJSON(raw):
    """
    The JSON object C{raw} holds.

    @raise PayloadError: not UTF-8 JSON, not an object, nested deeper than
        L{MAX_DEPTH}.
    """
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise PayloadError("the payload is not UTF-8") from None
    except RecursionError:
        raise PayloadError(f"the payload nests deeper than {MAX_DEPTH}") from None
    except ValueError as e:
        raise PayloadError(f"the payload is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise PayloadError(f"the payload is a JSON {type(value).__name__}, expected an object")
    if _depth(value) > MAX_DEPTH:
        raise PayloadError(f"the payload nests deeper than {MAX_DEPTH}")
    return value


def _text(container, key, where, limit, required=True):
    value = container.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"{where}{key}: expected text, found {type(value).__name__}")
    if len(value) > limit:
        raise PayloadError(f"{where}{key}: {len(value)} characters, limit {limit}")
    return value


def parsePush(raw):
    """
    The L{Meta} of a push event's raw body (C{ref}, C{before}, C{after},
    C{head_commit.id}, C{repository.id}, C{repository.ssh_url},
    C{repository.pushed_at}); C{repository.branch} is the pushed branch.

    @raise PayloadError: naming what is wrong.
    """
    event = decodeJSON(raw)
    ref = _text(event, "ref", "", MAX_REF)
    if not ref.startswith(HEADS) or len(ref) == len(HEADS):
        raise PayloadError(f"ref: {ref!r} is not a branch (refs/heads/...)")
    before = _text(event, "before", "", MAX_SHA, required=False)
    after = _text(event, "after", "", MAX_SHA)
    if not _SHA.match(after):
        raise PayloadError("after: expected a commit id (40 or 64 hex digits)")
    head = event.get("head_commit")
    if head is not None and not isinstance(head, dict):
        raise PayloadError(f"head_commit: expected an object or null, found {type(head).__name__}")
    headID = _text(head, "id", "head_commit.", MAX_SHA) if head is not None else ""
    repo = event.get("repository")
    if not isinstance(repo, dict):
        raise PayloadError(f"repository: expected an object, found {type(repo).__name__}")
    repoID = repo.get("id")
    if isinstance(repoID, bool) or not isinstance(repoID, (int, str)) or isinstance(repoID, str) and not (
            0 < len(repoID) <= MAX_REPO_ID):
        raise PayloadError("repository.id: expected a number (or an id of text)")
    if isinstance(repoID, int) and not 0 < repoID < 1 << 63:
        raise PayloadError("repository.id: out of range")
    sshURL = _text(repo, "ssh_url", "repository.", MAX_URL)
    pushedAt = repo.get("pushed_at")
    if isinstance(pushedAt, bool) or not isinstance(pushedAt, int) or not 0 < pushedAt < 1 << 40:
        raise PayloadError("repository.pushed_at: expected unix seconds (a whole number)")
    return Meta(ref=ref, before=before, after=after, headCommit=headID,
                repository=Repository(id=repoID, provider="github", sshURL=sshURL, branch=ref[len(HEADS):],
                                      pushedAt=pushedAt))
