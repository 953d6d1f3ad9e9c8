"""
A built website's tree as a UnixFS folder.

The builder returns the host folder (L{tau.build.taubyte.BuildResult.folder});
L{addWebsite} adds it through L{tau.interfaces.IContent.addFolder}, so the
caller (monkey) decides when and to which store.  Taubyte zips C{/out} as
C{build.zip}; tau stores the tree itself, so substrate serves its files by
path and any IPFS tool can list it.
"""

from __future__ import annotations

import os

from twisted.internet.threads import deferToThreadPool

#: Most entries (files and folders) of a website.
MAX_ENTRIES = 10000


class BadWebsite(ValueError):
    """
    A built tree tau does not publish: why.
    """


def folderEntries(root, maxEntries=MAX_ENTRIES):
    """
    The C{(path, host path or None for a folder)} entries of the tree
    under C{root}, parents first, sorted ("/"-separated relative paths),
    for L{tau.interfaces.IContent.addFolder} (blocking).

    @raise BadWebsite: a link or special file, or more than C{maxEntries}.
    """
    entries = []
    for top, folders, files in os.walk(root):
        folders.sort()
        relative = os.path.relpath(top, root)
        prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        for name in folders + sorted(files):
            path = os.path.join(top, name)
            if os.path.islink(path) or not (os.path.isdir(path) or os.path.isfile(path)):
                raise BadWebsite(f"the website holds {prefix + name!r}, which is neither a file nor a folder")
            entries.append((prefix + name, None if os.path.isdir(path) else path))
            if len(entries) > maxEntries:
                raise BadWebsite(f"the website holds more than {maxEntries} entries")
    return sorted(entries, key=lambda e: e[0].split("/"))


async def addWebsite(reactor, content, folder, maxEntries=MAX_ENTRIES):
    """
    Add the tree under C{folder} to C{content} (an L{IContent}) as one
    UnixFS folder; its root L{tau.store.unixfs.Entry}.
    """
    entries = await deferToThreadPool(reactor, reactor.getThreadPool(), folderEntries, folder, maxEntries)
    if not entries:
        raise BadWebsite("the website is empty")
    return await content.addFolder(entries)
