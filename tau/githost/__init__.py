"""
Git hosting over smart HTTP: the repositories a tau cloud hosts itself.

A real C{git clone} / C{git push} over C{http://} is answered by C{git
http-backend} (CGI) run with C{spawnProcess}: request bodies are spooled by
twisted.web (bounded) and streamed to git's stdin, git's answer is streamed
back to the client with flow control.  After a push, a GitHub-format push
webhook is posted (signed with the hook's secret) to the URL the host says,
in the background.

Modules: L{process} (run git, output bounded), L{repos} (bare repositories
on disk, refs and commits), L{cgi} (the C{git http-backend} bridge),
L{resource} (the HTTP resource and site, limits, who may read and write),
L{payload} (the push event as GitHub writes it), L{webhook} (signing and
delivery with bounded retries), L{credentials} (HTTP Basic and deploy read
tokens).

What the library asks of its host is L{IGitAccess}: who may read or push a
repository, and where its pushes are announced.  auth provides it
(L{tau.services.auth.hosting}).
"""

from zope.interface import Interface


class Denied(Exception):
    """
    No credential, or one that is not accepted: answered 401 with a Basic
    challenge (git then asks for, or sends, credentials).
    """


class Missing(Exception):
    """
    No such repository, or not the caller's: answered 404.
    """


class IGitAccess(Interface):
    """
    What git hosting asks of the service that owns the repositories.
    """

    async def authorize(repoID, credential, write):
        """
        Whether C{credential} (C{(user, password)} from HTTP Basic, or
        C{("", token)} from C{Authorization: tau <token>}, or None) may
        read (C{write} false) or push to C{repoID}.

        @return: the pusher, C{{"name", "email"}}.
        @raise Denied: no credential where one is needed, or a bad one.
        @raise Missing: no such repository, or the caller does not reach it.
        """

    async def pushTarget(repoID):
        """
        Where pushes to C{repoID} are announced: C{{"hook": hook id, "url":
        webhook URL, "secret": text, "repository": {"id", "name",
        "full_name", "owner"}}}, or None (no webhook).
        """
