"""
Files that only the node's user may read: written mode 0600, and a
warning for those holding a secret (a private key, a swarm key, the
control API token) that other users can open.

Synchronous and small: called once at start, or by the CLI.
"""

import os
import stat

#: The warning for a file L{exposed} finds (fields C{path}, C{mode}), in
#: the node's log and on the tau command's stderr alike.
WARNING = "{path} holds a secret and is open to other users (mode {mode}); make it private: chmod 600 {path}"


def writePrivate(path, text):
    """
    Replace C{path} with C{text} (ASCII) as a file of mode 0600: written
    beside it first, so it is never seen half-written or open to others.
    """
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)   # a .tmp left over may have had another mode
        f.write(text)
    os.replace(tmp, path)


def exposed(paths):
    """
    The C{(path, mode)} pairs of those of C{paths} that other users (group
    or others) may open; missing files are skipped.
    """
    out = []
    for path in paths:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            continue
        if mode & 0o077:
            out.append((path, mode))
    return out
