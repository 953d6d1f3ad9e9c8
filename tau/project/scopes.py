"""
The project and its applications as scopes of named resources, read from a
L{tau.project.loader.Repository}.
"""

from tau.project.fields import STRS, Field, Reader
from tau.project.kinds import CLOUD, IDENTITY, KINDS, PROJECT, readFields, readResource
from tau.project.loader import GROUPS
from tau.project.validators import keySegment
from tau.project.yamlnodes import Mapping

SINGULAR = {
    "databases": "database",
    "domains": "domain",
    "functions": "function",
    "libraries": "library",
    "messaging": "messaging",
    "services": "service",
    "smartops": "smartop",
    "storages": "storage",
    "websites": "website",
}


class Resource:
    """
    One resource: C{wire} is its compiled dict (names resolved to ids later),
    C{id} its id (C{None} when missing or bad: already reported), C{read}
    what was read with lines, C{scope} the L{Scope} it belongs to.
    """

    __slots__ = ("group", "name", "id", "wire", "read", "file", "idLine", "scope")

    def __init__(self, group, name, file, scope):
        self.group = group
        self.name = name
        self.file = file
        self.scope = scope
        self.id = None
        self.idLine = 1
        self.wire = {}
        self.read = {}

    def where(self):
        return f"{self.file}:{self.idLine}"


class Scope:
    """
    The project (C{app} false) or one application: its own attributes
    (C{wire}), its C{id}, and its resources by group and name.
    """

    def __init__(self, name, app, file):
        self.name = name
        self.app = app
        self.file = file
        self.id = None
        self.wire = {}
        self.resources = {group: {} for group in GROUPS}

    def all(self):
        for group in GROUPS:
            yield from self.resources[group].values()


def _document(report, file, doc):
    """
    C{doc} as a mapping to read, or C{None} when it is empty or no mapping
    (reported).
    """
    if doc is None:
        report.error(file, 1, "document", "is empty (a resource needs at least an id)")
        return None
    if not isinstance(doc, Mapping):
        report.error(file, doc.line, "document", "must be a YAML mapping")
        return None
    return doc


def readResources(level, scope, report):
    for group, entries in level.groups.items():
        kind = KINDS[group]
        for entry in entries:
            doc = _document(report, entry.file, entry.doc)
            if doc is None:
                continue
            message = keySegment(entry.name) if entry.name else "a resource needs a name"
            if message:
                report.error(entry.file, doc.line, "name", f"the resource's name {message}")
                continue
            reader = Reader(report, entry.file, doc)
            resource = Resource(group, entry.name, entry.file, scope)
            resource.wire, resource.read = readResource(reader, kind)
            _identify(resource, doc)
            scope.resources[group][entry.name] = resource


def _identify(resource, doc):
    """
    Key the resource by its id; its name is its file's (a YAML C{name} was
    checked and is replaced, as Taubyte does).
    """
    resource.id = resource.wire.pop("id", None)
    if "id" in doc.entries:
        resource.idLine = doc.entries["id"][0]
    resource.wire["name"] = resource.name


def readProject(level, report, cloud):
    scope = Scope("", False, level.configFile)
    if level.config is not None:
        reader = Reader(report, level.configFile, level.config)
        scope.wire, _ = readFields(reader, PROJECT)
        # The project's tags are checked and dropped from the compiled tree.
        reader.read(Field("tags", "tags", STRS))
        scope.id = scope.wire.get("id")
        _clouds(reader, cloud, scope, level.clouds)
    readResources(level, scope, report)
    return scope


def _clouds(reader, cloud, scope, folder):
    """
    C{clouds.<fqdn>.{account, plan}} (or C{clouds/<fqdn>.yaml}, which wins):
    the entry of the network compiled for gives the project's C{account}
    and C{plan} (both or neither).
    """
    if cloud is None:
        return
    if folder is not None:
        found = [e for e in folder if e.name == cloud]
        if not found or found[0].doc is None:
            return
        file, entry, line = found[0].file, found[0].doc, 1
    else:
        clouds, _ = reader.locate(("clouds",))
        if clouds is None:
            return
        if not isinstance(clouds, Mapping):
            reader.error(clouds.line, "clouds", "has a value of the wrong type (expected a mapping of network FQDNs)")
            return
        entry = clouds.get(cloud)
        if entry is None:
            return
        file, line = reader.file, clouds.keyLine(cloud)
    if not isinstance(entry, Mapping):
        reader.report.error(file, entry.line, f"clouds/{cloud}", "has a value of the wrong type (expected a mapping)")
        return
    values, _ = readFields(Reader(reader.report, file, entry), CLOUD)
    values = {k: v for k, v in values.items() if v != ""}
    if len(values) == 1:
        reader.report.error(file, line, f"clouds/{cloud}", "is incomplete; fields account and plan must all be set or all omitted")
        return
    scope.wire.update(values)


def readApplication(level, report):
    scope = Scope(level.name, True, level.configFile)
    if level.config is not None:
        reader = Reader(report, level.configFile, level.config)
        scope.wire, _ = readFields(reader, IDENTITY)
        scope.id = scope.wire.pop("id", None)
        scope.wire["name"] = level.name
    readResources(level, scope, report)
    return scope
