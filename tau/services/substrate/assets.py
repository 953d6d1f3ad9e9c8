"""
A resource's build (its "asset"): the CID a build job writes in tns at
L{tau.project.indexes.assetKey}, and for a function the WebAssembly module
it holds.

A function's build is either a raw module (it begins with C{\\0asm}) or
Taubyte's C{artifact.zip} holding C{main.wasm} (or C{artifact.wasm}).
Both are bounded: the build fetched is at most C{maxModule} bytes, and so
is the module read out of a zip, whatever its header claims (a zip bomb
stops at the limit).
"""

import io
import zipfile

from tau.store.content import BadInput, ContentError

WASM_MAGIC = b"\0asm"
ZIP_MAGIC = b"PK\x03\x04"
#: the entries of a build zip that hold the module, in the order tried
ZIP_ENTRIES = ("main.wasm", "artifact.wasm")


class AssetError(Exception):
    """
    A build that cannot be served; C{status} is the HTTP status that
    answers it (503: not available here now, 500: not a function module).
    """

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


def assetCID(value):
    """
    The CID text of a tns asset value, or None when it is not one.
    """
    if isinstance(value, str) and 0 < len(value) <= 200 and value.isascii() and value.isalnum():
        return value
    return None


def moduleOf(data, maxModule):
    """
    The WebAssembly module of a function's build C{data}.

    @raise AssetError: (500) when it is neither a module nor a zip holding
        one, or the module is larger than C{maxModule} bytes.
    """
    if data.startswith(WASM_MAGIC):
        return data
    if not data.startswith(ZIP_MAGIC):
        raise AssetError("the build is neither a WebAssembly module nor a zip", 500)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = set(archive.namelist())
        for name in ZIP_ENTRIES:
            if name in names:
                with archive.open(name) as f:
                    module = f.read(maxModule + 1)
                break
        else:
            raise AssetError(f"the build zip holds none of {', '.join(ZIP_ENTRIES)}", 500)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError, ValueError) as e:
        raise AssetError(f"the build zip does not read: {e}", 500) from None
    if len(module) > maxModule:
        raise AssetError(f"the module in the build zip is over {maxModule} bytes", 500)
    if not module.startswith(WASM_MAGIC):
        raise AssetError(f"{name} in the build zip is not a WebAssembly module", 500)
    return module


async def fetchBuild(content, cid, maxModule, timeout=None):
    """
    The bytes of the file C{cid} from C{content} (over bitswap when it is
    elsewhere), at most C{maxModule}.

    @raise AssetError: 503 when its blocks cannot be had, 500 when it is
        not a file or too large.
    """
    kw = {} if timeout is None else {"timeout": timeout}
    try:
        entry = await content.entry(cid, **kw)
        if entry.filesize > maxModule:
            raise AssetError(f"the build {cid} is {entry.filesize} bytes, over {maxModule}", 500)
        chunks = []
        got = 0
        async for chunk in await content.cat(cid, 0, maxModule + 1, **kw):
            got += len(chunk)
            if got > maxModule:
                raise AssetError(f"the build {cid} is over {maxModule} bytes", 500)
            chunks.append(chunk)
    except BadInput as e:
        raise AssetError(f"the build {cid} is not a file: {e}", 500) from None
    except ContentError as e:
        raise AssetError(f"the build {cid} is not available: {e}", 503) from None
    return b"".join(chunks)
