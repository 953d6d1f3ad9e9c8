"""
L{FunctionContext}: what a function's host calls may know and reach beyond
its event: which resource of which project it is (the C{self*} functions,
and the scope of its databases and storages), and the node-backed services
its database, storage and HTTP-client calls use.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class FunctionContext:
    """
    @ivar project: the project's id.
    @ivar application: the application's id, C{""} at project level.
    @ivar resource: the function's resource id.
    @ivar commit: the config commit it was found under.
    @ivar branch: the branch it was found on.
    @ivar services: the node-backed services of the database, storage and
        HTTP-client host functions, or None: those answer their errno.
        Compared by identity (one object per substrate).
    """

    project: str = ""
    application: str = ""
    resource: str = ""
    commit: str = ""
    branch: str = "main"
    services: object = None


#: a function run with no project (C{tau run}, tests)
NO_CONTEXT = FunctionContext()
