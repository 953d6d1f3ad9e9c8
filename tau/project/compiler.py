"""
Compiling a project config repository: read every file, check every field
and reference, and either build the tree or raise every mistake at once.
"""

from twisted.internet.threads import deferToThreadPool

from tau.project import indexes, references
from tau.project.errors import Report
from tau.project.loader import load
from tau.project.scopes import readApplication, readProject
from tau.project.tree import Compiled, buildObject

DEFAULT_BRANCH = "main"


def compileProject(root, branch=DEFAULT_BRANCH, cloud=None):
    """
    Compile the project config repository in folder C{root}.

    @param branch: the branch the index values name.
    @param cloud: the network FQDN whose C{clouds:} entry gives the
        project's C{account} and C{plan} (none: they are dropped).
    @rtype: L{Compiled}
    @raise tau.project.errors.ProjectErrors: with every mistake found;
        nothing is compiled then.
    """
    report = Report()
    repository = load(root, report)
    project = readProject(repository.project, report, cloud)
    apps = [readApplication(level, report) for level in repository.apps]
    references.checkIds(project, apps, report)
    guards, sources = references.resolve(project, apps, report)
    references.checkCycles(guards, sources, report)
    report.raiseIfAny()
    keys, validations = indexes.build(project, apps, branch)
    validations.insert(0, {"key": "project_id", "value": project.id, "validator": "project_id", "context": {}})
    return Compiled(project.id, branch, buildObject(project, apps), keys, validations)


async def compileInThread(reactor, root, branch=DEFAULT_BRANCH, cloud=None):
    """
    L{compileProject} in the reactor's thread pool (it reads files and
    parses YAML: never in the reactor thread).
    """
    return await deferToThreadPool(reactor, reactor.getThreadPool(), compileProject, root, branch, cloud)
