"""
Every resource kind's fields, as Taubyte's schema declares them
(C{pkg/tcc/taubyte/v1/schema/definition.go}): YAML path, aliases, type,
required rule, default, check, and the compiled (wire) key.

A kind reads a resource with L{readFields} and then its C{after} hook
makes the derived keys (C{secure}, C{local}, C{public}, C{provider},
C{type}) and drops the keys Taubyte drops.
"""

from tau.project import validators as check
from tau.project.fields import BOOL, BYTES, DURATION, STRS, Field

HTTP_TYPES = ("http", "https")

IDENTITY = (
    Field("id", "id", required=True, check=check.cid),
    Field("name", "name", check=check.variableName),
    Field("description", "description"),
    Field("tags", "tags", STRS),
)

PROJECT = (
    Field("email", "notification/email", check=check.email),
    Field("id", "id", required=True, check=check.cid),
    Field("name", "name", check=check.variableName),
    Field("description", "description"),
)

CLOUD = (Field("account", "account"), Field("plan", "plan"))

_EXECUTION = (
    Field("source", "source", required=True, check=check.source),
    Field("timeout", "execution/timeout", DURATION, required=True),
    Field("memory", "execution/memory", BYTES, required=True),
    Field("call", "execution/call", required=True),
)

_GITHUB = (
    Field("repository-id", "source/github/id", required=True, check=check.keySegment),
    Field("repository-name", "source/github/fullname", required=True),
)


def _noHook(reader, wire):
    return None


def _githubBlock(reader, wire):
    node, line = reader.locate(("source", "github"))
    if node is None:
        reader.error(line, "source/github", "required attribute (the repository's git provider block)")
        return {"repository-id", "repository-name"}
    wire["provider"] = "github"
    return None


class Kind:
    """
    A resource kind: its group folder, fields and hooks.

    @ivar before: C{(reader, wire) -> set of wire keys not to read}, for
        blocks whose key is the value (C{object:}/C{streaming:}, C{github:}).
    @ivar after: C{(reader, wire) -> None}, derived and dropped keys.
    """

    def __init__(self, group, fields, before=_noHook, after=_noHook):
        self.group = group
        self.fields = IDENTITY + tuple(fields)
        self.before = before
        self.after = after


def _functionAfter(reader, wire):
    kind = wire.get("type")
    if kind in HTTP_TYPES:
        wire["secure"] = kind == "https"
    if kind != "p2p":
        wire.pop("service", None)


def _databaseAfter(reader, wire):
    network = wire.get("network-access")
    if network is not None:
        wire["local"] = network == "host"
        if network != "subnet":
            del wire["network-access"]


def _storageBefore(reader, wire):
    blocks = [name for name in ("object", "streaming") if reader.locate((name,))[0] is not None]
    if len(blocks) != 1:
        if blocks:
            reader.error(reader.doc.keyLine("streaming"), "streaming", "a storage has an object: block or a streaming: block, not both")
        else:
            reader.error(reader.doc.line, "object", "required attribute (a storage needs an object: or a streaming: block)")
        return {"size", "versioning", "ttl"}
    wire["type"] = blocks[0]
    return {"versioning"} if blocks[0] == "streaming" else {"ttl"}


def _storageAfter(reader, wire):
    network = wire.pop("network-access", None)
    if network is not None:
        wire["public"] = network == "all"
    if "size" not in wire and "type" in wire:
        # The size of the one block present (tcc reads object|streaming/size).
        field = _STORAGE_SIZE[wire["type"]]
        got = reader.read(field)
        if got is not None:
            wire["size"] = got.value


_STORAGE_SIZE = {
    "object": Field("size", "object/size", BYTES, required=True),
    "streaming": Field("size", "streaming/size", BYTES, required=True),
}

KINDS = {
    "functions": Kind(
        "functions",
        (
            Field("type", "trigger/type", required=True, check=check.oneOf("http", "https", "pubsub", "p2p")),
            Field("local", "trigger/local", BOOL),
            Field("channel", "trigger/channel", requiredWhen=("trigger/type", ("pubsub",))),
            Field("service", "trigger/protocol", aliases=("trigger/service",), requiredWhen=("trigger/type", ("p2p",)), default=""),
            Field("command", "trigger/command", requiredWhen=("trigger/type", ("p2p",))),
            Field("method", "trigger/method", requiredWhen=("trigger/type", HTTP_TYPES), check=check.httpMethod),
            Field("methods", "trigger/methods", STRS),
            Field("domains", "trigger/domains", STRS, aliases=("domains",), requiredWhen=("trigger/type", HTTP_TYPES)),
            Field("paths", "trigger/paths", STRS, requiredWhen=("trigger/type", HTTP_TYPES)),
        )
        + _EXECUTION,
        after=_functionAfter,
    ),
    "websites": Kind(
        "websites",
        (
            Field("domains", "domains", STRS, required=True),
            Field("paths", "paths", STRS, aliases=("source/paths",), required=True),
            Field("branch", "source/branch"),
        )
        + _GITHUB,
        before=_githubBlock,
    ),
    "libraries": Kind(
        "libraries",
        (Field("path", "source/path"), Field("branch", "source/branch")) + _GITHUB,
        before=_githubBlock,
    ),
    "domains": Kind(
        "domains",
        (
            Field("fqdn", "fqdn", required=True, check=check.fqdn),
            Field("cert-file", "certificate/cert", requiredWhen=("certificate/type", ("inline",))),
            Field("key-file", "certificate/key", requiredWhen=("certificate/type", ("inline",))),
            Field("cert-type", "certificate/type", default="auto", check=check.oneOf("inline", "auto")),
        ),
    ),
    "databases": Kind(
        "databases",
        (
            Field("match", "match", requiredUnless=("regex", "useRegex")),
            Field("useRegex", "regex", BOOL, aliases=("useRegex",)),
            Field("network-access", "access/network", default="all", check=check.oneOf("all", "subnet", "host")),
            Field("size", "storage/size", BYTES, required=True),
            Field("encryption-type", "encryption/type"),
            Field("encryption-key", "encryption/key"),
        ),
        after=_databaseAfter,
    ),
    "storages": Kind(
        "storages",
        (
            # Taubyte leaves match optional here (a dead storage in its own
            # test project has none), unlike databases.
            Field("match", "match"),
            Field("useRegex", "regex", BOOL, aliases=("useRegex",)),
            Field("network-access", "access/network", default="all", check=check.oneOf("all", "subnet", "host")),
            Field("versioning", "object/versioning", BOOL),
            Field("ttl", "streaming/ttl", DURATION),
        ),
        before=_storageBefore,
        after=_storageAfter,
    ),
    "messaging": Kind(
        "messaging",
        (
            Field("local", "local", BOOL),
            Field("match", "channel/match", required=True),
            Field("regex", "channel/regex", BOOL),
            Field("mqtt", "bridges/mqtt/enable", BOOL),
            Field("webSocket", "bridges/websocket/enable", BOOL),
        ),
    ),
    "services": Kind("services", (Field("protocol", "protocol", required=True),)),
    "smartops": Kind("smartops", _EXECUTION),
}


def readFields(reader, fields, skip=()):
    """
    Read C{fields} into a wire dict (absent fields stay absent).

    @return: C{(wire, read)}: C{read} maps a wire key to its C{Got}.
    """
    wire, read = {}, {}
    for field in fields:
        if field.wire in skip:
            continue
        got = reader.read(field)
        if got is not None:
            wire[field.wire] = got.value
            read[field.wire] = got
    return wire, read


def readResource(reader, kind):
    """
    A resource's wire dict (with C{id} and C{name} as written, not yet the
    file's name) and what L{readFields} read.
    """
    wire = {}
    skip = kind.before(reader, wire) or set()
    fields, read = readFields(reader, kind.fields, skip)
    wire.update(fields)
    kind.after(reader, wire)
    return wire, read
