"""
Walking a project config repository into its YAML documents.

Layout (Taubyte's): C{config.yaml} is the project; C{<group>/<name>.yaml} is
one resource named after its file; C{applications/<app>/config.yaml} plus
the same group folders is an application.  A level's C{config.yaml} may also
hold a group inline (C{functions: {name: {...}}}), read only when the folder
of that group does not exist, as Taubyte reads it.

The project's C{clouds:} map may likewise be a C{clouds/<fqdn>.yaml} folder.

Only C{*.yaml} files count; hidden entries (C{.git}, C{.github}) are skipped.
What Taubyte would silently ignore but is surely a mistake is reported: a
folder of YAML files that is no resource kind, a YAML file where no resource
can be, a sub-folder in a group folder, a C{.yml} file.  Symbolic links are
refused (a repository must not read files outside itself), and files and
their number are bounded.
"""

import os

from tau.project.yamlnodes import Mapping, YamlError, parse

GROUPS = ("databases", "domains", "functions", "libraries", "messaging", "services", "smartops", "storages", "websites")

#: The largest YAML file read.
MAX_FILE_SIZE = 1 << 20
#: The most YAML files one repository may have.
MAX_FILES = 50_000


class Entry:
    """
    One resource's document: its C{name} (from its file), C{file} (relative
    to the repository), and C{doc} (a node; a L{Mapping} when well formed).
    """

    __slots__ = ("name", "file", "doc")

    def __init__(self, name, file, doc):
        self.name = name
        self.file = file
        self.doc = doc


class Level:
    """
    The project or one application: its C{config.yaml} (C{config} is a
    L{Mapping}, or C{None} when missing or broken) and its C{groups}
    (group -> [L{Entry}] sorted by name).
    """

    def __init__(self, name, prefix):
        self.name = name
        self.configFile = prefix + "config.yaml"
        self.config = None
        self.configPresent = False
        self.configBroken = False
        self.groups = {}
        #: C{clouds/<fqdn>.yaml} entries, or C{None} without that folder.
        self.clouds = None


class Repository:
    def __init__(self):
        self.project = Level("", "")
        self.apps = []


class _Walker:
    def __init__(self, root, report):
        self.root = root
        self.report = report
        self.files = 0

    def error(self, file, line, field, message):
        self.report.error(file, line, field, message)

    def entries(self, rel):
        """
        The visible entries of folder C{rel}, sorted; symbolic links reported.
        """
        try:
            found = sorted(os.scandir(os.path.join(self.root, rel)), key=lambda e: e.name)
        except OSError as e:
            self.error(rel or ".", 1, "folder", f"cannot be read: {e.strerror}")
            return []
        visible = []
        for entry in found:
            if entry.name.startswith("."):
                continue
            if entry.is_symlink():
                self.error(rel + entry.name, 1, "file", "is a symbolic link; links are not followed")
                continue
            visible.append(entry)
        return visible

    def document(self, rel):
        """
        The parsed document of file C{rel} (C{None} when empty or broken).
        """
        self.files += 1
        if self.files > MAX_FILES:
            if self.files == MAX_FILES + 1:
                self.error(rel, 1, "file", f"too many YAML files (at most {MAX_FILES})")
            return None
        try:
            with open(os.path.join(self.root, rel), "rb") as f:
                data = f.read(MAX_FILE_SIZE + 1)
        except OSError as e:
            self.error(rel, 1, "file", f"cannot be read: {e.strerror}")
            return None
        if len(data) > MAX_FILE_SIZE:
            self.error(rel, 1, "file", f"is larger than {MAX_FILE_SIZE} bytes")
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self.error(rel, 1, "yaml", "is not UTF-8 text")
            return None
        try:
            return parse(text)
        except YamlError as e:
            self.error(rel, e.line, "yaml", e.message)
            return None

    def hasYaml(self, rel):
        """
        Whether folder C{rel} holds a YAML file (so is meant as resources):
        looked for quietly, without following links, in at most
        C{MAX_FILES} entries.
        """
        pending = [os.path.join(self.root, rel)]
        seen = 0
        while pending and seen < MAX_FILES:
            try:
                found = list(os.scandir(pending.pop()))
            except OSError:
                continue
            for entry in found:
                seen += 1
                if entry.name.startswith(".") or entry.is_symlink():
                    continue
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif entry.name.endswith(".yaml"):
                    return True
        return False

    def level(self, level, rel, allowApps):
        folders = set()
        for entry in self.entries(rel):
            path = rel + entry.name
            if entry.is_dir(follow_symlinks=False):
                if entry.name in GROUPS:
                    folders.add(entry.name)
                    level.groups[entry.name] = self.group(path + "/")
                elif entry.name == "applications" and allowApps:
                    folders.add(entry.name)
                elif entry.name == "clouds" and allowApps:
                    level.clouds = self.group(path + "/")
                elif self.hasYaml(path + "/"):
                    self.error(path, 1, "kind", f"unknown resource kind {entry.name!r} (known: {', '.join(GROUPS)}{', applications' if allowApps else ''})")
            elif entry.name == "config.yaml":
                level.configPresent = True
                before = len(self.report.errors)
                level.config = self.document(path)
                level.configBroken = len(self.report.errors) != before
            elif entry.name.endswith((".yaml", ".yml")):
                self.error(path, 1, "file", "is not read: a level holds only config.yaml and resource folders")
        if not level.configPresent:
            self.error(level.configFile, 1, "id", "required attribute (config.yaml is missing)")
        elif level.config is None:
            if not level.configBroken:
                self.error(level.configFile, 1, "id", "required attribute (config.yaml is empty)")
        elif not isinstance(level.config, Mapping):
            self.error(level.configFile, level.config.line, "document", "must be a YAML mapping")
            level.config = None
        if level.config is not None:
            self.inline(level, folders)
        return folders

    def group(self, rel):
        found = []
        for entry in self.entries(rel):
            path = rel + entry.name
            if entry.is_dir(follow_symlinks=False):
                if self.hasYaml(path + "/"):
                    self.error(path, 1, "kind", "folders inside a resource folder are not read")
            elif entry.name.endswith(".yml"):
                self.error(path, 1, "file", "is not read: resource files end in .yaml")
            elif entry.name.endswith(".yaml") and entry.name != "config.yaml":
                before = len(self.report.errors)
                doc = self.document(path)
                if len(self.report.errors) == before:
                    found.append(Entry(entry.name[: -len(".yaml")], path, doc))
        return found

    def inline(self, level, folders):
        """
        Groups written inside config.yaml (when their folder is absent).
        """
        for group in GROUPS:
            node = level.config.get(group)
            if node is None or group in folders:
                continue
            if not isinstance(node, Mapping):
                self.error(level.configFile, level.config.keyLine(group), group, "has a value of the wrong type (expected a mapping of resource names)")
                continue
            level.groups[group] = [Entry(name, level.configFile, node.get(name)) for name in sorted(node.entries)]

    def applications(self, repository):
        for entry in self.entries("applications/"):
            path = "applications/" + entry.name
            if entry.is_dir(follow_symlinks=False):
                app = Level(entry.name, path + "/")
                self.level(app, path + "/", allowApps=False)
                repository.apps.append(app)
            elif entry.name.endswith((".yaml", ".yml")):
                self.error(path, 1, "file", "is not read: applications/ holds one folder per application")


def load(root, report):
    """
    Read the repository at C{root}; mistakes go to C{report}.

    @rtype: L{Repository}
    """
    walker = _Walker(root, report)
    repository = Repository()
    if not os.path.isdir(root):
        report.error(".", 1, "folder", f"{root} is not a folder")
        return repository
    folders = walker.level(repository.project, "", allowApps=True)
    if "applications" in folders:
        walker.applications(repository)
    return repository
