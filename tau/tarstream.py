"""
Tar streams made as they are sent: what C{tau add FOLDER} sends to the
node and what the control API's C{get} answers.  Headers are tarfile's own
(PAX format); times and owners are zeroed, so the same tree always gives
the same bytes.  L{entries} reads such a stream back, as the node takes it.
"""

from __future__ import annotations

import tarfile

from tau.store import unixfs, unixfsread

#: Longest path (in UTF-8 bytes) and name accepted in a tar stream.
MAX_TAR_PATH = 4096
MAX_TAR_NAME = 255


class BadTar(ValueError):
    """A tar stream the node does not take: what is wrong with it."""

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


def _path(member) -> str:
    """
    A tar member's path, as a relative "/"-separated path ("" for the top
    folder itself, as in C{tar -C DIR -c .}); BadTar when unsafe.
    """
    name = member.name
    parts = [x for x in name.split("/") if x not in ("", ".")]
    if (not (parts or member.isdir()) or name.startswith("/") or len(name.encode("utf-8")) > MAX_TAR_PATH
            or not all(unixfsread.safeName(x) and len(x.encode("utf-8")) <= MAX_TAR_NAME for x in parts)):
        raise BadTar(f"refusing the path {name[:200]!r} in the tar stream")
    return "/".join(parts)


async def entries(stream, inThread, maxEntries):
    """
    The (path, bytes or file object, or None for a folder) entries of the
    tar stream C{stream} (a binary file), read through C{inThread(f,
    *args)} (a Deferred of C{f(*args)} run in a worker thread); each file
    object must be read to its end before the next entry is asked for.
    Regular files and folders only; at most C{maxEntries} entries.

    @raise BadTar: an unsafe path, a link or device, too many entries, or
        not a tar stream (a stream cut inside a file raises
        C{tarfile.TarError} or C{EOFError} from the file object's read).
    """
    def nextEntries():
        """
        The next entries, many per thread hop: small files read already,
        up to a big one (streamed by the importer) or the end (None).
        """
        out, got = [], 0
        while len(out) < 256 and got < unixfs.SMALL_FILE:
            member = archive.next()
            if member is not None and member.isreg() and member.size <= unixfs.SMALL_FILE:
                out.append((member, archive.extractfile(member).read()))
                got += member.size
            else:
                out.append((member, None))
                if member is None or not member.isdir():
                    break
        return out
    try:
        archive = await inThread(lambda: tarfile.open(fileobj=stream, mode="r|"))
        count = 0
        while True:
            for member, data in await inThread(nextEntries):
                if member is None:
                    return
                count += 1
                if count > maxEntries:
                    raise BadTar(f"more than {maxEntries} entries in the tar stream")
                path = _path(member)
                if member.isdir():
                    if path:
                        yield path, None
                elif member.isreg():
                    yield path, archive.extractfile(member) if data is None else data
                else:
                    raise BadTar(f"{path}: only files and folders can be added (not links or devices)")
    except (tarfile.TarError, EOFError) as e:
        raise BadTar(f"not a valid tar stream: {e}") from None
