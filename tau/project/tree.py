"""
A compiled project: its object subtree, its index keys and its deferred
validations, and how they are published to tns (Taubyte's three pushes).
"""

from tau.project.indexes import join
from tau.project.loader import GROUPS


class Compiled:
    """
    @ivar projectId: the project's id.
    @ivar branch: the branch compiled for (index values name it).
    @ivar object: the project's object subtree (nested dicts, ids as keys).
    @ivar indexes: every index key (a path) and its value, in Taubyte's order.
    @ivar validations: checks the compiler leaves to its caller
        (C{project_id}, and C{dns} for every domain).
    """

    def __init__(self, projectId, branch, object, indexes, validations):
        self.projectId = projectId
        self.branch = branch
        self.object = object
        self.indexes = indexes
        self.validations = validations

    def asJSON(self):
        return {
            "project": self.projectId,
            "branch": self.branch,
            "object": self.object,
            "indexes": self.indexes,
            "validations": self.validations,
        }

    def pushes(self, commit):
        """
        The tns pushes that publish this compile of C{commit}, in order:
        the indexes at the root, the object under
        C{branches/<br>/commit/<commit>/projects/<P>}, then the branch's
        current-commit pointer.  The indexes are given as flat keys (each a
        leaf: one domain's C{.../links} may be a prefix of another's, which a
        nested map could not hold); keys whose value is C{None} (domain
        placeholders) are set only where absent.

        @return: a list of C{(path, value)}.
        """
        return [
            ("", dict(self.indexes)),
            (join("branches", self.branch, "commit", commit, "projects", self.projectId), self.object),
            (join("projects", self.projectId, "branches", self.branch, "current"), {"current": commit}),
        ]


def leaves(path, value):
    """
    A push as tns stores it: one C{(key, value)} per leaf (lists are
    leaves), keys joined under C{path}.
    """
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from leaves(join(path, key), child)
    else:
        yield path, value


def _groups(scope):
    out = {}
    for group in GROUPS:
        resources = scope.resources[group]
        if resources:
            out[group] = {resource.id: resource.wire for resource in resources.values()}
    return out


def buildObject(project, apps):
    """
    The object subtree: the project's own keys, its groups keyed by id, and
    C{applications/<appId>/} with each application's keys and groups.
    """
    tree = dict(project.wire)
    tree.update(_groups(project))
    if apps:
        tree["applications"] = {app.id: {**app.wire, **_groups(app)} for app in apps}
    return tree
