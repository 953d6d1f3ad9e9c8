"""
The tns key tree (C{specs/taubyte-config.md} section 2), sans-IO.

A path is a list of text segments.  A leaf is stored at key
C{/tns/v1/<segments joined by />}; its value is the uvarint multicodec
C{0x51} (cbor) followed by the CBOR of the value.  A push flattens nested
maps into one leaf per value (lists are leaves); a map key holding C{/}
names several segments (the compiler's index keys are given flat).

Which project a key belongs to is read from its path (the object tree, the
branch pointers, the wasm and repository indexes) or, for the indexes
shared by every project (C{http/...}, C{p2p/pubsub/...}), from the index
values it holds (C{branches/<br>/projects/<P>/...}).
"""

import cbor2

KEY_PREFIX = "/tns/v1"
#: the multicodec of a stored value (cbor), one uvarint byte
CBOR_CODEC = b"\x51"
#: the longest segment and the most segments of a path
MAX_SEGMENT = 256
MAX_DEPTH = 64
#: the longest stored key (the kvdb's own limit)
MAX_KEY = 4096
UPDATES_PREFIX = "/tns/updates/"
#: announced by a tns node when its replica changed (a write here or a
#: merge of others' writes): every cached answer may be stale (a tau
#: extension; Taubyte's topics all have a suffix)
CHANGED_TOPIC = "/tns/updates"


class PathError(ValueError):
    """
    A path or a pushed key that tns does not store.
    """


def checkSegment(segment):
    if not isinstance(segment, str) or not segment:
        raise PathError(f"a path segment is non-empty text, found {segment!r}")
    if len(segment) > MAX_SEGMENT:
        raise PathError(f"a path segment is at most {MAX_SEGMENT} characters")
    if "/" in segment or segment in (".", "..") or any(ord(ch) < 0x20 for ch in segment):
        raise PathError(f"path segment {segment!r} would escape its key (a /, . or .. or a control character)")
    return segment


def checkPath(path):
    """
    C{path} (a list of text segments), checked.

    @raise PathError: naming what is wrong.
    """
    if not isinstance(path, (list, tuple)):
        raise PathError("path: expected a list of text segments")
    if len(path) > MAX_DEPTH:
        raise PathError(f"path: at most {MAX_DEPTH} segments")
    return [checkSegment(s) for s in path]


def splitKey(text):
    """
    The segments of a pushed map key (C{a/b/c} is three), checked.
    """
    if not isinstance(text, str):
        raise PathError(f"a pushed map key is text, found {text!r}")
    return [checkSegment(s) for s in text.split("/")]


def storedKey(path):
    key = "/".join([KEY_PREFIX, *path]).encode("utf-8")
    if len(key) > MAX_KEY:
        raise PathError(f"a key is at most {MAX_KEY} bytes")
    return key


def pathOf(key):
    """
    The path of a stored key (bytes).
    """
    text = key.decode("utf-8")
    return text[len(KEY_PREFIX) + 1:].split("/")


def leaves(path, data):
    """
    C{[(path, value)]}: one leaf per value of C{data} pushed at C{path};
    an empty map is a leaf.

    @raise PathError: for a key that is not a path segment, or a leaf
        given twice.
    """
    out = {}

    def walk(prefix, value):
        if isinstance(value, dict) and value:
            for key, child in value.items():
                walk(prefix + splitKey(key), child)
        else:
            if not prefix:
                raise PathError("a push at the root is a map of keys")
            if len(prefix) > MAX_DEPTH:
                raise PathError(f"path: at most {MAX_DEPTH} segments")
            joined = tuple(prefix)
            if joined in out:
                raise PathError(f"key {'/'.join(prefix)!r} is given twice")
            out[joined] = value

    walk(list(path), data)
    return [(list(p), v) for p, v in out.items()]


def encodeValue(value):
    return CBOR_CODEC + cbor2.dumps(value)


def decodeValue(raw):
    if not raw.startswith(CBOR_CODEC):
        raise ValueError("a stored tns value starts with the cbor multicodec (0x51)")
    return cbor2.loads(raw[1:])


def assemble(entries):
    """
    What C{fetch} answers from C{[(relative path, value)]}: None when there
    is nothing, the value itself for one leaf, else the nested map (null
    leaves dropped, as Taubyte drops them).
    """
    entries = [(p, v) for p, v in entries if v is not None]
    if not entries:
        return None
    if len(entries) == 1:
        return entries[0][1]
    tree = {}
    for path, value in entries:
        if not path:
            # the key itself and keys under it: the keys under it win
            continue
        node = tree
        for segment in path[:-1]:
            child = node.get(segment)
            if not isinstance(child, dict):
                child = node[segment] = {}
            node = child
        if not isinstance(node.get(path[-1]), dict):
            node[path[-1]] = value
    return tree


def updatesTopic(path):
    """
    The pubsub topic a push at C{path} is announced on, and a cached fetch
    of C{path} listens to (Taubyte's C{GetChannelFor}): C{/tns/updates/}
    and the first segment for a path of one, the first four (at most all
    but the last) for longer ones; None for the root.
    """
    if not path:
        return None
    if len(path) == 1:
        return UPDATES_PREFIX + path[0]
    return UPDATES_PREFIX + "/".join(path[: min(4, len(path) - 1)])


def pathProject(path):
    """
    The project a key belongs to by its path, or None (a shared index).
    """
    n = len(path)
    if n >= 6 and path[0] == "branches" and path[2] == "commit" and path[4] == "projects":
        return path[5]
    if n >= 2 and path[0] == "projects":
        return path[1]
    if n >= 3 and path[0] == "wasm" and path[1] == "project":
        return path[2]
    if n >= 4 and path[0] == "repositories":
        return path[3]
    return None


def indexProject(text):
    """
    The project an index value (C{branches/<br>/projects/<P>/...}) names,
    or None when C{text} is not one.
    """
    if not isinstance(text, str):
        return None
    parts = text.split("/")
    if len(parts) >= 4 and parts[0] == "branches" and parts[2] == "projects" and parts[3]:
        return parts[3]
    return None


def valueProjects(value):
    """
    The projects the index values in C{value} (one, or a list) name.
    """
    items = value if isinstance(value, list) else [value]
    return {p for p in map(indexProject, items) if p is not None}
