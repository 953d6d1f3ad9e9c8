"""
tau add, tau cat, tau ls, tau get, tau pin add|rm|ls, tau repo gc|stat.
"""

import os
import shutil
import sys
import tarfile
from pathlib import Path

from twisted.internet.threads import deferToThread

from tau import tarstream
from tau.cli import UsageError, runReactor
from tau.cli.swarm import _config
from tau.control.client import call, stream
from tau.store import unixfs, unixfsread


def register(sub):
    p = sub.add_parser("add", help="store a file or a folder, print its CID")
    p.add_argument("path", help="a file or a folder")
    p.add_argument("--chunker", default="size-262144", help="size-N (default size-262144) or buzhash")
    p.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin what is added")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the root CID")
    p.set_defaults(run=add)

    p = sub.add_parser("cat", help="write a file's bytes to stdout")
    p.add_argument("cid")
    p.add_argument("--timeout", type=float, default=60, help="seconds to find missing blocks (default 60)")
    p.set_defaults(run=cat)

    p = sub.add_parser("ls", help="list a folder by CID: CID, size and name per entry")
    p.add_argument("cid")
    p.add_argument("--timeout", type=float, default=60, help="seconds to find missing blocks (default 60)")
    p.set_defaults(run=ls)

    p = sub.add_parser("get", help="save a file or folder by CID")
    p.add_argument("cid")
    p.add_argument("-o", "--output", required=True, help="the path to write")
    p.add_argument("--timeout", type=float, default=60, help="seconds to find missing blocks (default 60)")
    p.set_defaults(run=get)

    p = sub.add_parser("pin", help="keep data from garbage collection")
    psub = p.add_subparsers(dest="action", metavar="ACTION")
    psub.required = True
    for name, run, needsCid in (("add", pinAdd, True), ("rm", pinRemove, True), ("ls", pinList, False)):
        q = psub.add_parser(name)
        if needsCid:
            q.add_argument("cid")
        q.set_defaults(run=run)

    p = sub.add_parser("repo", help="the block store")
    rsub = p.add_subparsers(dest="action", metavar="ACTION")
    rsub.required = True
    gc = rsub.add_parser("gc", help="remove unpinned blocks")
    gc.add_argument("--budget", type=int, default=None, help="stop once the store is under this many bytes")
    gc.set_defaults(run=repoGC)
    rsub.add_parser("stat", help="blocks, bytes, pins").set_defaults(run=repoStat)


class _Progress:
    """
    A file whose reads draw a progress bar on stderr when it is a terminal.
    """

    def __init__(self, f, total, name):
        self._f = f
        self._total = max(total, 1)
        self._done = 0
        self._name = name
        self._show = sys.stderr.isatty()

    def read(self, n=-1):
        data = self._f.read(n)
        self._done += len(data)
        if self._show:
            part = self._done / self._total
            bar = "#" * int(part * 30)
            sys.stderr.write(f"\r{self._name[-30:]:30} [{bar:30}] {part:6.1%}")
            if not data or self._done >= self._total:
                sys.stderr.write("\n")
        return data

    def close(self):
        pass  # the caller's "with" closes the file

    def __getattr__(self, name):   # seek and tell, when the file has them
        return getattr(self._f, name)


class _TarStream:
    """
    A folder as a tar stream (L{tau.tarstream}: regular files and empty
    folders, in path order), made as it is read: no copy of the folder is
    ever written or held.  ``size`` is known in advance; a file that
    shrinks while it is read is an error.
    """

    def __init__(self, entries):
        # entries: [(relative path, Path of a file, or None for a folder)]
        self._headers = []
        for rel, path in entries:
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                raise UsageError(f"{rel!r}: the name is not UTF-8") from None
            size = None if path is None else path.stat().st_size
            self._headers.append((tarstream.header(rel, size), size or 0, path))
        self.size = sum(len(h) + n + len(tarstream.padding(n)) for h, n, _ in self._headers) + len(tarstream.END)
        self._parts = self._generate()
        self._left = b""

    def _generate(self):
        for header, size, path in self._headers:
            yield header
            if path is not None:
                with open(path, "rb") as f:
                    left = size
                    while left:
                        data = f.read(min(left, 1 << 20))
                        if not data:
                            raise UsageError(f"{path}: the file shrank while it was added")
                        left -= len(data)
                        yield data
                yield tarstream.padding(size)
        yield tarstream.END

    def read(self, n=-1):
        out = [self._left]
        got = len(self._left)
        while n < 0 or got < n:
            part = next(self._parts, None)
            if part is None:
                break
            out.append(part)
            got += len(part)
        data = b"".join(out)
        if n < 0:
            self._left = b""
            return data
        self._left = data[n:]
        return data[:n]


async def _addFile(reactor, config, path, chunker, pin):
    with open(path, "rb") as f:
        body = _Progress(f, os.fstat(f.fileno()).st_size, str(path))
        return await call(reactor, config, "add", {"chunker": chunker, "pin": "true" if pin else "false"}, body=body, timeout=None)


async def _add(reactor, config, args):
    root = Path(args.path)
    if root.is_file():
        answer = await _addFile(reactor, config, root, args.chunker, args.pin)
        return [(root.name, answer["Hash"])]
    if not root.is_dir():
        raise UsageError(f"{root}: no such file or folder")
    body = _TarStream(unixfs.folderEntries(root))
    answer = await call(reactor, config, "add/tar",
                        {"chunker": args.chunker, "pin": "true" if args.pin else "false"},
                        body=_Progress(body, body.size, str(root)), timeout=None)
    added = [(f"{root.name}/{e['Name']}", e["Hash"]) for e in answer["Entries"]]
    added.append((root.name, answer["Hash"]))
    return added


def add(args):
    added = runReactor(_add, _config(args), args)
    if args.quiet:
        print(added[-1][1])
    else:
        for name, cid in added:
            print(f"added {cid} {name}")
    return 0


async def _cat(reactor, config, cid, timeout, write):
    await stream(reactor, config, "cat", {"arg": cid, "timeout": str(timeout)}, write)


def cat(args):
    out = sys.stdout.buffer
    runReactor(_cat, _config(args), args.cid, args.timeout, out.write)
    out.flush()
    return 0


def ls(args):
    listing = runReactor(_simple, _config(args), "ls", {"arg": args.cid, "timeout": str(args.timeout)})
    for link in listing["Links"]:
        print(f"{link['Hash']} {link['Size']} {link['Name']}")
    return 0


async def _get(reactor, config, cid, target, timeout):
    """
    The node's tar stream of ``cid`` (the control API's C{get}), unpacked
    as it arrives -- by a worker thread reading it from a pipe -- into
    ``target.part``, renamed ``target`` once whole.  When the stream is
    refused or cut short, ``target.part`` is removed: nothing is left.
    """
    part = target.with_name(target.name + ".part")
    r, w = os.pipe()
    reader, writer = os.fdopen(r, "rb"), os.fdopen(w, "wb")
    unpacking = deferToThread(_unpack, reader, part)
    failure = None
    try:
        await stream(reactor, config, "get", {"arg": cid, "timeout": str(timeout)}, writer.write)
    except Exception as e:
        failure = e
    finally:
        try:
            writer.close()
        except BrokenPipeError:
            pass
    try:
        await unpacking
    except (UsageError, OSError, tarfile.TarError) as e:
        if failure is None or isinstance(e, UsageError):
            failure = e if isinstance(e, UsageError) else UsageError(f"{target}: {e}")
    if failure is not None:
        await deferToThread(_remove, part)
        raise failure
    await deferToThread(_rename, part, target)


def _unpack(reader, part: Path) -> None:
    """
    Worker thread: unpack a tar stream whose first entry is named after the
    CID (a file, or a folder with everything below it) into ``part``.
    Files and folders only, names that are one safe path component each.
    """
    try:
        _remove(part)
        top = None
        with tarfile.open(fileobj=reader, mode="r|") as archive:
            for member in archive:
                parts = member.name.split("/")
                top = parts[0] if top is None else top
                if parts[0] != top or not all(unixfsread.safeName(x) for x in parts[1:]):
                    raise UsageError(f"refusing the unsafe path {member.name!r} in {top}")
                dest = part.joinpath(*parts[1:])
                if member.isdir():
                    dest.mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with archive.extractfile(member) as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                else:
                    raise UsageError(f"{member.name}: neither a file nor a folder")
    finally:
        reader.close()


def _rename(part: Path, target: Path) -> None:
    """
    Worker thread: the whole ``part`` becomes ``target`` (a folder is kept
    in ``part`` when ``target`` exists).
    """
    if part.is_dir() and target.exists():
        raise UsageError(f"{target} exists already (the folder is in {part})")
    part.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, target)


def _remove(path: Path) -> None:
    """
    Worker thread: remove ``path``, a file or a folder, if it is there.
    """
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def get(args):
    runReactor(_get, _config(args), args.cid, Path(args.output), args.timeout)
    print(f"saved {args.cid} to {args.output}")
    return 0


async def _simple(reactor, config, name, params):
    return await call(reactor, config, name, params)


def pinAdd(args):
    answer = runReactor(_simple, _config(args), "pin/add", {"arg": args.cid})
    print(f"pinned {answer['Pins'][0]} ({answer['Blocks']} blocks)")
    return 0


def pinRemove(args):
    answer = runReactor(_simple, _config(args), "pin/rm", {"arg": args.cid})
    print(f"unpinned {answer['Pins'][0]}")
    return 0


def pinList(args):
    for key in runReactor(_simple, _config(args), "pin/ls", {})["Keys"]:
        print(key)
    return 0


def repoGC(args):
    params = {} if args.budget is None else {"budget": str(args.budget)}
    answer = runReactor(_simple, _config(args), "repo/gc", params)
    print(f"removed {answer['Removed']} blocks, freed {answer['Freed']} bytes")
    return 0


def repoStat(args):
    answer = runReactor(_simple, _config(args), "repo/stat", {})
    print(f"NumObjects: {answer['NumObjects']}")
    print(f"RepoSize:   {answer['RepoSize']}")
    print(f"Pinned:     {answer['Pinned']}")
    print(f"RepoPath:   {answer['RepoPath']}")
    return 0
