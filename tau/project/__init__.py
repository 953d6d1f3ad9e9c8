"""
Taubyte project config repositories compiled into Taubyte's tns key tree
(C{specs/taubyte-config.md}).

    compiled = compileProject(path)          # or: await compileInThread(reactor, path)
    compiled.object, compiled.indexes        # the tree
    compiled.pushes(commit)                  # what tns publishes

A broken repository raises L{ProjectErrors} with every mistake, each with
its file, line and field.

Modules: C{loader} walks the folders, C{yamlnodes} parses YAML with lines,
C{fields} reads typed fields, C{units} parses durations and sizes,
C{validators} checks values, C{kinds} declares every resource kind,
C{scopes} reads the project and its applications, C{references} resolves
names to ids, C{indexes} writes the index keys, C{tree} the compiled tree,
C{lookups} reads the tree back (on any C{async fetch(path)}: the tns
client's, with its cache).
"""

from tau.project.compiler import DEFAULT_BRANCH, compileInThread, compileProject
from tau.project.errors import ProjectError, ProjectErrors
from tau.project.tree import Compiled

__all__ = ["DEFAULT_BRANCH", "Compiled", "ProjectError", "ProjectErrors", "compileInThread", "compileProject"]
