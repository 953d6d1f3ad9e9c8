"""
Tar streams made as they are sent: what C{tau add FOLDER} sends to the
node and what the control API's C{get} answers.  Headers are tarfile's own
(PAX format); times and owners are zeroed, so the same tree always gives
the same bytes.
"""

from __future__ import annotations

import tarfile

#: The two zero blocks that end an archive.
END = bytes(2 * tarfile.BLOCKSIZE)


def header(path: str, size: int | None) -> bytes:
    """The header of a file of ``size`` bytes at ``path``, or of a folder (``size`` None)."""
    info = tarfile.TarInfo(path)
    info.mtime = 0
    if size is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = size, 0o644
    return info.tobuf(tarfile.PAX_FORMAT)


def padding(size: int) -> bytes:
    """The zeros after ``size`` bytes of content, up to the next block."""
    return bytes(-size % tarfile.BLOCKSIZE)
